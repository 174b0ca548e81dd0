//! The realtime hub: blackboxes and phones meet in rooms.
//!
//! - [`device`]: a `DeviceSession` actor per `/device` socket: validates
//!   telemetry, hands it to the group-commit writer, acks after commit,
//!   fans it out, answers commands.
//! - [`app`]: an `AppSession` actor per `/app` socket: `watch`, `unwatch`,
//!   `command`, for the user's own vehicles only.
//! - [`room`]: `Room` actors per `vehicle:{id}` and `user:{id}`, and the
//!   `RoomSupervisor` that creates and forgets them.
//! - [`presence`]: which vehicles are online here, and their latest state.
//! - [`devices`]: where a device is in the cluster, commands and
//!   revocations wherever it is, and the hooks the cluster backends
//!   (`crate::cluster`, below the hub) hand their events up through.
//!
//! What goes where: `loc`, `status` and `obd` go to the vehicle's room
//! (its watchers); `event` and `presence` go to the owner's user room
//! (every app session of the owner, watching or not), so each reaches a
//! phone exactly once.

pub mod app;
pub mod device;
pub mod devices;
pub mod presence;
pub mod readings;
pub mod room;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::Addr;

use crate::auth::JwtKeys;
use crate::config::Config;
use crate::db::Db;
use crate::ingest::IngestWriter;
use crate::socketio::{EngineConfig, SocketIo};
pub use devices::DeviceNode;
pub use presence::Presence;
pub use room::{RoomKey, RoomSupervisor};

/// Counters of the hub, read by the metrics exporter.
#[derive(Debug, Default)]
pub struct HubStats {
    pub device_messages: AtomicU64,
    pub app_messages: AtomicU64,
    pub rate_limited: AtomicU64,
    pub rejected: AtomicU64,
    pub busy: AtomicU64,
    pub commands: AtomicU64,
    pub fanout_frames: AtomicU64,
    /// A device's loc/event to its ack.
    pub device_ack: crate::metrics::Latency,
    /// An app's command to the device's ack.
    pub command_round_trip: crate::metrics::Latency,
}

impl HubStats {
    /// Zeroed counters and fresh latency histograms.
    pub fn new() -> Self {
        Self {
            device_ack: crate::metrics::Latency::new(&crate::metrics::DEVICE_ACK),
            command_round_trip: crate::metrics::Latency::new(&crate::metrics::COMMAND_ROUND_TRIP),
            ..Self::default()
        }
    }
}

/// What every session actor shares.
pub struct Hub {
    pub config: Config,
    pub db: Db,
    pub ingest: IngestWriter,
    pub jwt: JwtKeys,
    pub rooms: Addr<RoomSupervisor>,
    pub presence: Presence,
    pub stats: HubStats,
    /// The live-video runtime's answer to an app's `live.start` (handed in
    /// by the node: the runtime stands above the hub).
    live: std::sync::OnceLock<std::sync::Arc<dyn LiveStart>>,
    /// The other nodes (None on a single node): identity, secret, stats.
    pub cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
    /// Presence and control across nodes (in process on a single node).
    pub backends: crate::cluster::Backends,
    app_sessions: Mutex<HashMap<i64, u32>>,
    next_command: AtomicU64,
}

/// What the hub asks of the live-video runtime, which stands above it in
/// the layering: for an app's `live.start`, the RTMP publish URL of a
/// vehicle's channel once the plan's live minutes are checked. The node
/// implements it over the runtime and hands it in with [`Hub::set_live`].
pub trait LiveStart: Send + Sync + 'static {
    /// The publish URL, or the ack error code (`invalid_payload` for a bad
    /// channel name, `live_quota_exceeded`, `unavailable`).
    fn publish_url(
        &self,
        vehicle_id: i64,
        channel: String,
    ) -> futures_util::future::BoxFuture<'_, Result<String, &'static str>>;
}

impl Hub {
    /// Hand in the live runtime (once, when the node is wired).
    pub fn set_live(&self, live: std::sync::Arc<dyn LiveStart>) {
        let _ = self.live.set(live);
    }

    /// The live runtime, if the node wired one (it always does in `serve`).
    pub(crate) fn live(&self) -> Option<&std::sync::Arc<dyn LiveStart>> {
        self.live.get()
    }

    pub fn new(
        config: Config,
        db: Db,
        ingest: IngestWriter,
        jwt: JwtKeys,
        rooms: Addr<RoomSupervisor>,
        cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
    ) -> Self {
        Self {
            live: std::sync::OnceLock::new(),
            config,
            db,
            ingest,
            jwt,
            rooms,
            backends: crate::cluster::Backends::new(cluster.as_ref()),
            cluster,
            presence: Presence::default(),
            stats: HubStats::new(),
            app_sessions: Mutex::new(HashMap::new()),
            next_command: AtomicU64::new(1),
        }
    }

    /// Count a new app session of `user`; false over the per-user limit.
    pub(crate) fn acquire_app_session(&self, user: i64) -> bool {
        let limit = self.config.limits.app_sessions_per_user;
        let Ok(mut map) = self.app_sessions.lock() else {
            return false;
        };
        let n = map.entry(user).or_insert(0);
        if limit != 0 && *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    pub(crate) fn release_app_session(&self, user: i64) {
        if let Ok(mut map) = self.app_sessions.lock()
            && let Some(n) = map.get_mut(&user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&user);
            }
        }
    }

    pub(crate) fn next_command_id(&self) -> u64 {
        self.next_command.fetch_add(1, Ordering::Relaxed)
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.config.realtime.command_timeout_ms.max(1))
    }

    /// The Engine.IO settings from the configuration.
    pub fn engine_config(config: &Config) -> EngineConfig {
        let r = &config.realtime;
        EngineConfig {
            ping_interval: Duration::from_millis(r.ping_interval_ms.max(1)),
            ping_timeout: Duration::from_millis(r.ping_timeout_ms.max(1)),
            max_payload: r.max_payload,
            queue_soft_frames: r.queue_soft_frames,
            queue_hard_bytes: r.queue_hard_bytes,
            slow_timeout: Duration::from_secs(r.slow_timeout_secs.max(1)),
            ..EngineConfig::default()
        }
    }
}

/// Start the cluster backends (nothing to start on a single node), with
/// the hub as the receiver of their events. Call once, inside the node's
/// runtime, before any command is sent.
pub fn start_backends(hub: &std::sync::Arc<Hub>) {
    let local: std::sync::Arc<dyn crate::cluster::LocalDevices> = hub.clone();
    hub.backends.start(local);
}

/// The Socket.IO server of the hub, with its `/device` and `/app`
/// namespaces.
pub fn socketio(hub: std::sync::Arc<Hub>) -> SocketIo {
    SocketIo::builder(Hub::engine_config(&hub.config))
        .ns("/device", device::DeviceNamespace { hub: hub.clone() })
        .ns("/app", app::AppNamespace { hub })
        .build()
}

/// A per-session rate limiter: `per_second` messages a second with that
/// burst; `None` when unlimited (0).
pub(crate) fn session_limiter(per_second: u32) -> Option<governor::DefaultDirectRateLimiter> {
    std::num::NonZeroU32::new(per_second)
        .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n).allow_burst(n)))
}
