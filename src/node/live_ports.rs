//! The live runtime's ports ([`crate::live::ports`]) over the hub and the
//! database: device sessions through the hub (on this node or, in a
//! cluster, another), plans, usage, channels and device tokens through the
//! database's queries; and the hub's one need of the live runtime, an
//! app's `live.start` ([`LiveStarts`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::actors::device::SendCommand;
use crate::actors::{Hub, LiveStart};
use crate::auth::JwtKeys;
use crate::config::RtmpConfig;
use crate::db::queries::{channels, usage, vehicles};
use crate::db::{Db, DbError};
use crate::live::ondemand;
use crate::live::ports::{
    BackendError, BackendResult, Channels, DeviceLink, LiveAllowance, LiveCount, Plans,
    PublishAuth, TrafficCount,
};
use crate::live::stream::StreamKey;
use crate::live::usage::Usage;
use crate::util::sha256_hex;

/// A database failure as the live runtime sees it: no free connection is
/// "unavailable", anything else a failure.
fn backend(e: DbError) -> BackendError {
    match e {
        DbError::Pool(_) => BackendError::Unavailable(e.to_string()),
        other => BackendError::Failed(other.to_string()),
    }
}

/// Device sessions through the hub.
pub struct HubDevices(pub Arc<Hub>);

impl DeviceLink for HubDevices {
    fn is_online(&self, vehicle_id: i64) -> BoxFuture<'_, bool> {
        Box::pin(self.0.is_online(vehicle_id))
    }

    fn command(
        &self,
        vehicle_id: i64,
        name: &'static str,
        args: Value,
    ) -> Option<oneshot::Receiver<Value>> {
        let Some(device) = self.0.presence.device(vehicle_id) else {
            self.0.emit_remote(vehicle_id, name, args);
            return None;
        };
        let (tx, rx) = oneshot::channel();
        device.session.do_send(SendCommand {
            user_id: None,
            name: name.to_string(),
            args,
            reply: tx,
        });
        Some(rx)
    }
}

impl Channels for Db {
    fn rtsp_url(
        &self,
        vehicle_id: i64,
        channel: String,
    ) -> BoxFuture<'_, BackendResult<Option<String>>> {
        Box::pin(async move {
            let found = self
                .run(move |c| channels::find(c, vehicle_id, &channel))
                .await
                .map_err(backend)?;
            Ok(found.and_then(|c| c.rtsp_url))
        })
    }
}

impl Plans for Db {
    fn add_usage(
        &self,
        traffic: Vec<TrafficCount>,
        live: Vec<LiveCount>,
    ) -> BoxFuture<'_, BackendResult<()>> {
        let traffic: Vec<usage::TrafficAdd> = traffic
            .into_iter()
            .map(|t| usage::TrafficAdd {
                vehicle_id: t.vehicle_id,
                day: t.day,
                kind: t.kind.to_string(),
                bytes: t.bytes,
            })
            .collect();
        let live: Vec<usage::LiveAdd> = live
            .into_iter()
            .map(|l| usage::LiveAdd {
                vehicle_id: l.vehicle_id,
                day: l.day,
                seconds: l.seconds,
            })
            .collect();
        Box::pin(async move {
            self.run(move |c| usage::add(c, &traffic, &live))
                .await
                .map_err(backend)
        })
    }

    fn live_allowance(
        &self,
        vehicle_id: i64,
        since_ms: i64,
    ) -> BoxFuture<'_, BackendResult<LiveAllowance>> {
        Box::pin(async move {
            let (stored_seconds, plan) = self
                .run(move |c| {
                    Ok((
                        usage::live_seconds_since(c, vehicle_id, since_ms)?,
                        usage::plan_of(c, vehicle_id)?,
                    ))
                })
                .await
                .map_err(backend)?;
            Ok(LiveAllowance {
                stored_seconds,
                minutes_per_month: plan.map(|p| i64::from(p.live_minutes_per_month)),
            })
        })
    }
}

impl PublishAuth for Db {
    fn device_token_vehicle(&self, token: String) -> BoxFuture<'_, BackendResult<Option<i64>>> {
        let hash = sha256_hex(&token);
        Box::pin(async move {
            let vehicle = self
                .run(move |c| vehicles::find_by_token_hash(c, &hash))
                .await
                .map_err(backend)?;
            Ok(vehicle.map(|v| v.id))
        })
    }
}

/// An app's `live.start` as the hub asks for it ([`LiveStart`]): the plan's
/// live minutes from the runtime's usage, then a publish URL carrying a
/// publish token for that one stream.
pub struct LiveStarts {
    pub usage: Arc<Usage>,
    pub jwt: JwtKeys,
    pub rtmp: RtmpConfig,
}

/// How long the publish token of an app's `live.start` URL is good for.
const LIVE_START_URL_TTL: Duration = Duration::from_secs(600);

impl LiveStart for LiveStarts {
    fn publish_url(
        &self,
        vehicle_id: i64,
        channel: String,
    ) -> BoxFuture<'_, Result<String, &'static str>> {
        Box::pin(async move {
            let key = StreamKey::new(vehicle_id, &channel).ok_or("invalid_payload")?;
            match self.usage.live_quota(vehicle_id).await {
                Ok(q) if q.exceeded() => return Err("live_quota_exceeded"),
                Ok(_) => {}
                Err(_) => return Err("unavailable"),
            }
            ondemand::publish_url(&self.jwt, &self.rtmp, &key, LIVE_START_URL_TTL)
                .map_err(|_| "unavailable")
        })
    }
}
