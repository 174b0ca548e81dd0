//! The backends below the hub that join the nodes of a cluster, one
//! interface per concept and one file per backend (in process: the single
//! node default; Redis: many nodes):
//!
//! - [`DevicePresence`] ([`presence`]): which node holds each device
//!   session, node liveness, reaping dead nodes' devices
//!   ([`MemoryPresence`], [`RedisPresence`]).
//! - [`NodeControl`] ([`control`]): node-to-node `cmd`/`reply`/`emit`/
//!   `revoke`/`kick` ([`MemoryControl`], [`RedisControl`]).
//! - [`LocalDevices`] ([`devices`]): what the hub registers with the
//!   backends ([`Backends::start`]) so they can hand events up (a remote
//!   command for a device here, a kick, a reaped node's devices going
//!   offline) without knowing the hub.
//!
//! With `redis.url` or `redis.cluster_nodes` set, a [`Cluster`] holds what
//! the Redis backends share: the [`Bus`] for room frames and node-to-node
//! messages, a Redis command connection ([`RedisConn`]) for shared state
//! (device presence, the live-stream registry), this node's identity and
//! the cluster secret nodes present to each other. A single node has no
//! [`Cluster`] (`Hub::cluster` is `None`): no Redis, no bus hop.

pub mod control;
mod control_memory;
mod control_redis;
pub mod devices;
pub mod presence;
mod presence_memory;
mod presence_redis;
pub mod readings;
pub mod redis_conn;
pub mod streams;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::bus::{Bus, BusStatus, RedisBus, RedisTarget};
use crate::config::Config;
pub use control::NodeControl;
pub use control_memory::MemoryControl;
pub use control_redis::RedisControl;
pub use devices::{LocalDevice, LocalDevices};
pub use presence::{DevicePresence, PresenceError};
pub use presence_memory::MemoryPresence;
pub use presence_redis::RedisPresence;
pub use redis_conn::RedisConn;

/// Header carrying the cluster secret on node-to-node HTTP requests.
pub const SECRET_HEADER: &str = "x-roadhub-cluster-secret";

/// Counters of the cluster's work, read by the metrics exporter.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Presence updates dropped because the writer's queue was full.
    pub presence_ops_dropped: AtomicU64,
    /// Dead nodes (incarnations) this node reaped.
    pub nodes_reaped: AtomicU64,
    /// Devices of dead nodes this node announced offline.
    pub devices_reaped: AtomicU64,
    /// Commands sent to devices on other nodes.
    pub commands_sent: AtomicU64,
    /// Of those, answered `timeout` here (no reply in time).
    pub command_timeouts: AtomicU64,
    /// Sessions on other nodes kicked by a connect here.
    pub kicks_sent: AtomicU64,
}

/// This node's view of the cluster.
pub struct Cluster {
    /// `node.id`.
    pub node_id: String,
    /// Where other nodes reach this node's HTTP (`node.advertise_url`).
    pub advertise_url: String,
    /// Room frames and node-to-node messages.
    pub bus: Bus,
    /// Shared state in Redis.
    pub redis: Arc<RedisConn>,
    /// How long presence entries live without a refresh.
    pub presence_ttl: Duration,
    /// Random per process start: tells this run of `node_id` from an
    /// earlier one (see `presence`).
    pub incarnation: String,
    /// When this process joined (ms since the epoch): the older of two
    /// live processes with one `node.id` keeps it (see `presence`).
    pub started_ms: i64,
    /// Set while an older live process holds this `node.id`: this node
    /// answers `/readyz` 503 `node_id_in_use`.
    pub node_id_in_use: std::sync::atomic::AtomicBool,
    pub stats: ClusterStats,
    secret: String,
}

impl Cluster {
    /// The Redis the configuration names, if any: `redis.cluster_nodes`
    /// (a Redis Cluster) or `redis.url` (one server).
    pub fn target(config: &Config) -> Option<RedisTarget> {
        let seeds: Vec<String> = config
            .redis
            .cluster_nodes
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if !seeds.is_empty() {
            return Some(RedisTarget::Cluster(seeds));
        }
        config
            .redis
            .url
            .as_ref()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .map(RedisTarget::Single)
    }

    /// Join the cluster the configuration names (None for a single node).
    /// `jwt_secret` derives the cluster secret when `node.cluster_secret`
    /// is unset (every node of a cluster shares the JWT secret anyway).
    /// `advertise_url` is `node.advertise_url` already resolved.
    /// Must run inside a tokio runtime (the bus driver is spawned).
    pub fn start(
        config: &Config,
        jwt_secret: &str,
        advertise_url: String,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(target) = Self::target(config) else {
            return Ok(None);
        };
        let bus = Bus::Redis(
            RedisBus::new(&config.node.id, target.clone())
                .map_err(|e| anyhow::anyhow!("starting the Redis bus: {e}"))?,
        );
        let secret = match &config.node.cluster_secret {
            Some(s) if !s.is_empty() => s.clone(),
            _ => hex::encode(Sha256::digest(
                format!("roadhub-cluster-secret:{jwt_secret}").as_bytes(),
            )),
        };
        Ok(Some(Arc::new(Self {
            node_id: config.node.id.clone(),
            advertise_url,
            bus,
            redis: Arc::new(RedisConn::new(target)),
            presence_ttl: Duration::from_secs(config.node.presence_ttl_secs.max(3)),
            incarnation: {
                use rand::RngCore as _;
                let mut b = [0u8; 8];
                rand::rng().fill_bytes(&mut b);
                hex::encode(b)
            },
            started_ms: crate::util::now_ms(),
            node_id_in_use: std::sync::atomic::AtomicBool::new(false),
            stats: ClusterStats::default(),
            secret,
        })))
    }

    /// The secret to send in [`SECRET_HEADER`].
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `presented` is the cluster secret (constant time).
    pub fn secret_matches(&self, presented: &str) -> bool {
        crate::util::secure_eq(presented, &self.secret)
    }

    /// Whether Redis is reachable (the bus's view).
    pub fn redis_up(&self) -> bool {
        self.bus.status() != BusStatus::Disconnected
    }
}

/// The cluster backends the hub uses: in process without a [`Cluster`],
/// Redis with one.
#[derive(Clone)]
pub struct Backends {
    pub presence: Arc<dyn DevicePresence>,
    pub control: Arc<dyn NodeControl>,
}

impl Backends {
    /// The backends for `cluster` (in process when `None`).
    pub fn new(cluster: Option<&Arc<Cluster>>) -> Self {
        match cluster {
            None => Self {
                presence: Arc::new(MemoryPresence),
                control: Arc::new(MemoryControl),
            },
            Some(c) => Self {
                presence: Arc::new(RedisPresence::new(c.clone())),
                control: Arc::new(RedisControl::new(c.clone())),
            },
        }
    }

    /// Start the backends' background work, handing events up to `local`.
    /// Call once, inside the node's runtime, before any command is sent
    /// (so replies find the control subscription).
    pub fn start(&self, local: Arc<dyn LocalDevices>) {
        self.control.clone().start(local.clone());
        self.presence.clone().start(local);
    }
}
