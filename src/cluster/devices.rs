//! What the hub registers with the cluster backends: its device sessions
//! as the backends need to see them, and the hooks through which they hand
//! events up (a command from another node for a device here, a kick, a
//! reaped node's devices going offline). The hub implements
//! [`LocalDevices`]; the backends never import the hub.

use futures_util::future::BoxFuture;
use serde_json::Value;

/// A device session on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDevice {
    pub vehicle: i64,
    /// Connection id, to tell a session from its replacement.
    pub conn: u64,
    /// The vehicle's owner (whose user room hears its presence).
    pub owner: i64,
}

/// This node's device sessions, as the hub exposes them to the backends.
pub trait LocalDevices: Send + Sync + 'static {
    /// The connection id of `vehicle`'s session here, if any.
    fn conn(&self, vehicle: i64) -> Option<u64>;

    /// Number of device sessions here.
    fn count(&self) -> usize;

    /// Every device session here.
    fn snapshot(&self) -> Vec<LocalDevice>;

    /// Run a command on `vehicle`'s device here and answer with its ack, or
    /// `{"ok": false, "error": "offline" | "timeout"}`.
    fn command(
        &self,
        vehicle: i64,
        user: Option<i64>,
        name: String,
        args: Value,
    ) -> BoxFuture<'_, Value>;

    /// Send `name` to `vehicle`'s device here, if any; its answer is only
    /// logged.
    fn emit(&self, vehicle: i64, name: String, args: Value);

    /// End `vehicle`'s session here, if any: its credentials are no longer
    /// valid (`why`).
    fn revoke(&self, vehicle: i64, why: String);

    /// Session `conn` of `vehicle`, if still here, was taken over by
    /// another node: end it as replaced (no offline presence).
    fn replace(&self, vehicle: i64, conn: u64);

    /// The cluster re-created the presence record of session `conn` of
    /// `vehicle`: tell the owner's phones it is online.
    fn reassert(&self, vehicle: i64, conn: u64);

    /// Tell `owner`'s phones that `vehicle` is online or offline.
    fn announce(&self, vehicle: i64, owner: i64, online: bool) -> BoxFuture<'_, ()>;
}
