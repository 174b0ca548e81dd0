//! Node control: commands, revocations and kicks between nodes (the
//! `Broker` of node-to-node messages). A message for a device here is
//! handed up to the hub through [`LocalDevices`].
//!
//! Backends: [`MemoryControl`](super::MemoryControl) (single node: no other
//! node to reach) and [`RedisControl`](super::RedisControl) (the bus).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::LocalDevices;

/// Messages to the devices of other nodes.
pub trait NodeControl: Send + Sync + 'static {
    /// Serve this node's control messages, handing them up to `local`.
    /// Call once, inside the node's runtime.
    fn start(self: Arc<Self>, local: Arc<dyn LocalDevices>);

    /// Run a command on `vehicle`'s device held by `node`; its answer, or
    /// `{"ok":false,"error":"timeout"}` after `limit`.
    fn command(
        &self,
        node: String,
        vehicle: i64,
        user: Option<i64>,
        name: String,
        args: Value,
        limit: Duration,
    ) -> BoxFuture<'_, Value>;

    /// Fire-and-forget `name` to `vehicle`'s device on another node, if
    /// another node holds it (its answer is logged there).
    fn emit(&self, vehicle: i64, name: &str, args: Value);

    /// End `vehicle`'s device session on another node, if another node
    /// holds it.
    fn revoke(&self, vehicle: i64, why: &str);
}
