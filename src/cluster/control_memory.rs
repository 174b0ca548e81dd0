//! Node control on a single node: there is no other node, so a command to
//! one answers `offline` and emits and revocations go nowhere. Not for more
//! than one node (use [`RedisControl`](super::RedisControl)).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{LocalDevices, NodeControl};

/// Node control of a single node.
pub struct MemoryControl;

impl NodeControl for MemoryControl {
    fn start(self: Arc<Self>, _local: Arc<dyn LocalDevices>) {}

    fn command(
        &self,
        _node: String,
        _vehicle: i64,
        _user: Option<i64>,
        _name: String,
        _args: Value,
        _limit: Duration,
    ) -> BoxFuture<'_, Value> {
        Box::pin(async { json!({"ok": false, "error": "offline"}) })
    }

    fn emit(&self, _vehicle: i64, _name: &str, _args: Value) {}

    fn revoke(&self, _vehicle: i64, _why: &str) {}
}
