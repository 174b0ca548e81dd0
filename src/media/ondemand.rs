//! On-demand live: a viewer asking for a stream nobody publishes starts
//! its source, and the source stops once nobody watches.
//!
//! Two sources, tried in this order for `{vehicle_id}-{channel}`:
//!
//! 1. **An RTSP camera** configured for the channel (`PUT
//!    /api/v1/vehicles/{id}/channels/{channel}`): the hub pulls it with
//!    retina ([`crate::media::rtsp`]) into the stream. The request waits
//!    (at most `live.start_timeout_secs`) for the first keyframe; a camera
//!    that cannot be reached answers 502 with the puller's error code
//!    (`rtsp_unreachable`, `rtsp_unauthorized`, ...). The pull keeps
//!    retrying with backoff while viewers wait.
//! 2. **The blackbox** over its `/device` session: the hub sends `command`
//!    `{"name": "live.start", "args": {"channel", "url"}}`, where `url` is
//!    the full RTMP publish URL with a short-lived publish token for this
//!    stream key only ([`crate::auth::JwtKeys::issue_publish`]), and the
//!    viewer waits for the publish (`live.start_timeout_secs`, then 504
//!    `live_start_timeout`). A device that is not connected: 404
//!    `vehicle_offline`. `live.start` is sent once per start attempt, not
//!    once per waiting viewer.
//!
//! When a stream has had no viewers for `live.idle_timeout_secs` the
//! [`Streams`] call [`StreamActivator::idle`]: the RTSP pull stops, or the
//! device gets `live.stop` `{"channel"}`.
//!
//! Before any of this the plan's live-video minutes are checked: past the
//! month's limit, play answers 403 `live_quota_exceeded` and nothing is
//! started. While a stream is published its live time is counted
//! ([`crate::media::usage`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::actors::Hub;
use crate::actors::device::SendCommand;
use crate::db::queries::channels;
use crate::error::ApiError;
use crate::media::edge::Edge;
use crate::media::flv::FlvPayload;
use crate::media::rtsp::{MediaSink, PullHandle, PullOptions, PullState, RtspPuller, RtspSource};
use crate::media::stream::{Publisher, PublisherInfo, StreamActivator, StreamKey, Streams};
use crate::media::usage::Usage;

/// The RTSP pull publishes through a [`Publisher`].
impl MediaSink for Publisher {
    fn push(&mut self, payload: FlvPayload) {
        Publisher::push(self, payload);
    }

    fn bytes_in(&mut self, n: u64) {
        Publisher::bytes_in(self, n);
    }

    fn ready(&mut self) -> impl std::future::Future<Output = ()> + Send {
        Publisher::ready(self)
    }
}

/// The RTMP URL a device publishes `key` to, with a publish token valid
/// for `ttl`.
pub fn publish_url(hub: &Hub, key: &StreamKey, ttl: Duration) -> Result<String, ApiError> {
    let token = hub
        .jwt
        .issue_publish(&key.to_string(), ttl.as_secs().max(60))
        .map_err(|_| ApiError::internal())?;
    let base = rtmp_base(&hub.config);
    Ok(format!("{base}/live/{key}?token={token}"))
}

/// `rtmp.public_url`, or `rtmp://` + `rtmp.listen`.
fn rtmp_base(config: &crate::config::Config) -> String {
    let public = config.rtmp.public_url.trim().trim_end_matches('/');
    if public.is_empty() {
        format!("rtmp://{}", config.rtmp.listen)
    } else {
        public.to_string()
    }
}

/// The answer to a live-video request over the plan's limit.
pub fn quota_exceeded() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "live_quota_exceeded",
        "this vehicle's plan has no live-video minutes left this month",
    )
}

fn vehicle_offline() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "vehicle_offline",
        "the vehicle is not connected, so it cannot start streaming",
    )
}

/// A running RTSP pull and the task that publishes it.
struct Pull {
    handle: PullHandle,
}

#[derive(Default)]
struct State {
    /// RTSP pulls by stream key.
    pulls: HashMap<StreamKey, Pull>,
    /// `live.start` sent to a device, and when.
    device_starts: HashMap<StreamKey, Instant>,
}

/// Starts and stops live sources on demand; the [`StreamActivator`] of a
/// node's [`Streams`].
pub struct OnDemand {
    hub: Arc<Hub>,
    streams: Streams,
    usage: Arc<Usage>,
    rtsp: PullOptions,
    state: Mutex<State>,
    /// Edge pulls from other nodes (in a cluster).
    edge: OnceLock<Arc<Edge>>,
}

impl OnDemand {
    pub fn new(hub: Arc<Hub>, streams: Streams, usage: Arc<Usage>) -> Arc<Self> {
        let rtsp = PullOptions::from_config(&hub.config.rtsp);
        Arc::new(Self {
            hub,
            streams,
            usage,
            rtsp,
            state: Mutex::new(State::default()),
            edge: OnceLock::new(),
        })
    }

    /// In a cluster: a stream published on another node is pulled from
    /// there before any local source is tried.
    pub fn set_edge(&self, edge: Arc<Edge>) {
        let _ = self.edge.set(edge);
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.streams.config().start_timeout_secs.max(1))
    }

    /// Check the plan's live minutes for `vehicle`: 403 past the limit.
    pub async fn check_quota(&self, vehicle: i64) -> Result<(), ApiError> {
        let quota = self.usage.live_quota(vehicle).await?;
        if quota.exceeded() {
            return Err(quota_exceeded());
        }
        Ok(())
    }

    /// Before a viewer plays `key` (its owner already checked): the quota,
    /// then, when nothing publishes `key`, start a source: an RTSP pull
    /// (waited for here, so its error reaches the viewer) or `live.start`
    /// to the device (waited for by [`Streams::play`]). 404
    /// `vehicle_offline` when there is no way to start it.
    pub async fn prepare(&self, key: &StreamKey) -> Result<(), ApiError> {
        self.check_quota(key.vehicle_id).await?;
        if self.pulling(key) {
            return self.pull(key, None).await;
        }
        if self.streams.is_published(key).await {
            return Ok(());
        }
        if let Some(edge) = self.edge.get()
            && edge.prepare(key).await?
        {
            return Ok(());
        }
        let (vehicle, name) = (key.vehicle_id, key.channel.clone());
        let channel = self
            .hub
            .db
            .run(move |c| channels::find(c, vehicle, &name))
            .await?;
        if let Some(url) = channel.and_then(|c| c.rtsp_url) {
            return self.pull(key, Some(&url)).await;
        }
        if self.hub.is_online(key.vehicle_id).await {
            return self.start_device(key);
        }
        // A stream in its grace period may get its publisher back (a
        // blackbox reconnecting): the viewer waits with the others.
        if self.streams.exists(key).await {
            return Ok(());
        }
        Err(vehicle_offline())
    }

    fn pulling(&self, key: &StreamKey) -> bool {
        self.state.lock().is_ok_and(|s| s.pulls.contains_key(key))
    }

    /// Start (from `url`) or join the RTSP pull of `key` and wait for its
    /// first keyframe or a definite failure.
    async fn pull(&self, key: &StreamKey, url: Option<&str>) -> Result<(), ApiError> {
        let mut state_rx = {
            let running = self
                .state
                .lock()
                .ok()
                .and_then(|s| s.pulls.get(key).map(|p| p.handle.state()));
            match (running, url) {
                (Some(rx), _) => rx,
                (None, None) => return Ok(()),
                (None, Some(url)) => {
                    let source = RtspSource::parse(url).map_err(|e| {
                        ApiError::new(StatusCode::BAD_GATEWAY, e.code(), e.to_string())
                    })?;
                    let publisher = self
                        .streams
                        .publish(
                            key.clone(),
                            PublisherInfo {
                                protocol: "rtsp",
                                remote: None,
                            },
                        )
                        .await?;
                    let handle = RtspPuller::new(key.vehicle_id, key.channel.clone(), source)
                        .with_options(self.rtsp.clone())
                        .spawn(publisher);
                    let rx = handle.state();
                    if let Ok(mut s) = self.state.lock() {
                        s.pulls.insert(key.clone(), Pull { handle });
                    }
                    tracing::info!(stream = %key, "RTSP pull started for a viewer");
                    rx
                }
            }
        };
        let deadline = tokio::time::Instant::now() + self.start_timeout();
        loop {
            let current = state_rx.borrow_and_update().clone();
            match current {
                PullState::Playing => return Ok(()),
                PullState::Failed { error, .. } => {
                    // A definite answer from the camera (not a timeout of
                    // ours): tell the viewer now; the pull goes on
                    // retrying for later viewers until the stream idles.
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        error.code(),
                        format!("the camera could not be pulled: {error}"),
                    ));
                }
                PullState::Stopped => {
                    if let Ok(mut s) = self.state.lock() {
                        s.pulls.remove(key);
                    }
                    return Err(ApiError::unavailable(
                        "rtsp_stopped",
                        "the camera pull stopped; retry",
                    ));
                }
                PullState::Connecting { .. } => {}
            }
            match tokio::time::timeout_at(deadline, state_rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(ApiError::unavailable(
                        "rtsp_stopped",
                        "the camera pull stopped; retry",
                    ));
                }
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "live_start_timeout",
                        "the camera did not start streaming in time",
                    ));
                }
            }
        }
    }

    /// Send `live.start` for `key` to its device, unless one was sent
    /// within the start timeout.
    fn start_device(&self, key: &StreamKey) -> Result<(), ApiError> {
        let now = Instant::now();
        let fresh = self.state.lock().is_ok_and(|mut s| {
            let timeout = self.start_timeout();
            // Starts that never led to a stream are forgotten once stale.
            s.device_starts
                .retain(|_, at| now.duration_since(*at) < timeout * 2);
            match s.device_starts.get(key) {
                Some(at) if now.duration_since(*at) < timeout => false,
                _ => {
                    s.device_starts.insert(key.clone(), now);
                    true
                }
            }
        });
        if !fresh {
            return Ok(());
        }
        let url = publish_url(&self.hub, key, self.start_timeout() * 30)?;
        self.command(
            key,
            "live.start",
            json!({"channel": key.channel, "url": url}),
        );
        Ok(())
    }

    /// Send `name` to the device of `key` (if connected, on this node or,
    /// with a cluster, another); its answer is logged, not awaited.
    fn command(&self, key: &StreamKey, name: &'static str, args: Value) {
        let Some(device) = self.hub.presence.device(key.vehicle_id) else {
            self.hub.emit_remote(key.vehicle_id, name, args);
            return;
        };
        let (tx, rx) = oneshot::channel();
        device.session.do_send(SendCommand {
            user_id: None,
            name: name.to_string(),
            args,
            reply: tx,
        });
        let key = key.clone();
        actix_rt::spawn(async move {
            if let Ok(answer) = rx.await
                && answer.get("ok") != Some(&Value::Bool(true))
            {
                tracing::info!(stream = %key, command = name, %answer, "the device declined");
            }
        });
    }

    /// The channel's RTSP URL changed or was removed: a pull of the old
    /// URL stops (its publisher goes, viewers are held for the grace
    /// period; the next viewer starts the new source).
    pub fn source_changed(&self, vehicle_id: i64, channel: &str) {
        let Some(key) = StreamKey::new(vehicle_id, channel) else {
            return;
        };
        let pull = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.pulls.remove(&key));
        if let Some(pull) = pull {
            tracing::info!(stream = %key, "channel source changed: RTSP pull stopped");
            pull.handle.stop();
        }
    }

    /// Stop every pull (node shutdown).
    pub fn stop_all(&self) {
        if let Some(edge) = self.edge.get() {
            edge.stop_all();
        }
        if let Ok(mut s) = self.state.lock() {
            for (_, pull) in s.pulls.drain() {
                pull.handle.stop();
            }
        }
    }
}

impl StreamActivator for OnDemand {
    fn viewer_waiting(&self, key: &StreamKey) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        s.pulls.contains_key(key)
            || self.edge.get().is_some_and(|e| e.pulling(key))
            || s.device_starts
                .get(key)
                .is_some_and(|at| at.elapsed() < self.start_timeout())
    }

    fn idle(&self, key: &StreamKey) {
        if self.edge.get().is_some_and(|e| e.idle(key)) {
            return;
        }
        let pull = self.state.lock().ok().and_then(|mut s| {
            s.device_starts.remove(key);
            s.pulls.remove(key)
        });
        match pull {
            Some(pull) => {
                tracing::info!(stream = %key, "no viewers: RTSP pull stopped");
                pull.handle.stop();
            }
            None => {
                tracing::info!(stream = %key, "no viewers: live.stop sent");
                self.command(key, "live.stop", json!({"channel": key.channel}));
            }
        }
    }
}
