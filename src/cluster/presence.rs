//! Device presence across nodes: which node holds each device session,
//! node liveness, and reaping the devices of nodes that died (the
//! `PresenceManager` of this hub). This node's own sessions are the hub's
//! (`actors::presence`); a backend only answers for the other nodes.
//!
//! Backends: [`MemoryPresence`](super::MemoryPresence) (single node:
//! nothing elsewhere) and [`RedisPresence`](super::RedisPresence).

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::LocalDevices;

/// A presence lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("presence lookup in Redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

/// Device presence across nodes.
pub trait DevicePresence: Send + Sync + 'static {
    /// Start the background work (writer, liveness, reaper), handing
    /// events up to `local`. Call once, inside the node's runtime.
    fn start(self: Arc<Self>, local: Arc<dyn LocalDevices>);

    /// A device session started here (already in the hub's map).
    fn connected(&self, vehicle: i64, conn: u64, owner: i64);

    /// A device session here ended (already out of the hub's map); `last`:
    /// it was the vehicle's last session here. True when the backend tells
    /// the owner's phones it is offline (once it knows the device is not
    /// connected elsewhere); false: the caller does.
    fn disconnected(&self, vehicle: i64, conn: u64, owner: i64, last: bool) -> bool;

    /// The other node holding `vehicle`'s device, if any.
    fn locate(&self, vehicle: i64) -> BoxFuture<'_, Result<Option<String>, PresenceError>>;

    /// Which of `vehicles` are held by another node (one batch).
    fn held_elsewhere(
        &self,
        vehicles: Vec<i64>,
    ) -> BoxFuture<'_, Result<HashSet<i64>, PresenceError>>;

    /// Shutting down: wait (bounded) for the sessions' disconnects to be
    /// written, then remove this node's records so nobody reaps it.
    fn leave(&self) -> BoxFuture<'_, ()>;
}
