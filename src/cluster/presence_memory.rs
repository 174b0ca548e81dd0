//! Device presence on a single node: there is no other node, so nothing is
//! held elsewhere, nothing is written and nothing is reaped. Not for more
//! than one node (use [`RedisPresence`](super::RedisPresence)).

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{DevicePresence, LocalDevices, PresenceError};

/// Presence of a single node (the hub's own map is the whole truth).
pub struct MemoryPresence;

impl DevicePresence for MemoryPresence {
    fn start(self: Arc<Self>, _local: Arc<dyn LocalDevices>) {}

    fn connected(&self, _vehicle: i64, _conn: u64, _owner: i64) {}

    fn disconnected(&self, _vehicle: i64, _conn: u64, _owner: i64, _last: bool) -> bool {
        false
    }

    fn locate(&self, _vehicle: i64) -> BoxFuture<'_, Result<Option<String>, PresenceError>> {
        Box::pin(async { Ok(None) })
    }

    fn held_elsewhere(
        &self,
        _vehicles: Vec<i64>,
    ) -> BoxFuture<'_, Result<HashSet<i64>, PresenceError>> {
        Box::pin(async { Ok(HashSet::new()) })
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
