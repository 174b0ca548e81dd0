//! The hub's cluster-aware view of devices: where a vehicle's device
//! session is (this node, another one, nowhere), and commands to it
//! wherever it is. Used by `watch`, `command`, `GET /api/v1/vehicles`,
//! on-demand live video and `Hub::revoke_device`.
//!
//! The local map is always asked first; Redis only with a cluster and only
//! for devices not connected here, so a single node never leaves memory.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::actors::Hub;
use crate::actors::device::SendCommand;
use crate::actors::presence::DeviceEntry;

/// Where a vehicle's device session is.
#[derive(Clone)]
pub enum DeviceNode {
    /// On this node.
    Local(DeviceEntry),
    /// On another node (its `node.id`).
    Remote {
        node: String,
    },
    Offline,
}

impl DeviceNode {
    pub fn is_online(&self) -> bool {
        !matches!(self, DeviceNode::Offline)
    }
}

/// The cluster-aware view of devices, for watch, the vehicle list,
/// commands, on-demand live video and revocations.
impl Hub {
    /// Where `vehicle`'s device is: the local map first, then Redis (a
    /// Redis error is logged and answered with the local view).
    pub async fn device_node(&self, vehicle: i64) -> DeviceNode {
        if let Some(entry) = self.presence.device(vehicle) {
            return DeviceNode::Local(entry);
        }
        let Some(cluster) = &self.cluster else {
            return DeviceNode::Offline;
        };
        match cluster.lookup(vehicle).await {
            Ok(Some(h)) if !cluster.is_me(&h) => DeviceNode::Remote { node: h.node },
            Ok(_) => DeviceNode::Offline,
            Err(e) => {
                tracing::warn!(vehicle, error = %e, "presence lookup in Redis failed: local view");
                DeviceNode::Offline
            }
        }
    }

    pub async fn is_online(&self, vehicle: i64) -> bool {
        self.device_node(vehicle).await.is_online()
    }

    /// Which of `vehicles` are online (on any node): one Redis batch for
    /// those not connected here.
    pub async fn online_set(&self, vehicles: &[i64]) -> HashSet<i64> {
        let (mut online, others): (HashSet<i64>, Vec<i64>) = {
            let mut online = HashSet::new();
            let mut others = Vec::new();
            for v in vehicles {
                if self.presence.is_online(*v) {
                    online.insert(*v);
                } else {
                    others.push(*v);
                }
            }
            (online, others)
        };
        if let Some(cluster) = &self.cluster
            && !others.is_empty()
        {
            match cluster.lookup_many(&others).await {
                Ok(holders) => online.extend(
                    holders
                        .into_iter()
                        .filter(|(_, h)| !cluster.is_me(h))
                        .map(|(v, _)| v),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "presence lookup in Redis failed: local view");
                }
            }
        }
        online
    }

    /// Relay a command to `vehicle`'s device wherever it is, and answer
    /// with its ack or `{"ok": false, "error": "offline" | "timeout"}`.
    pub async fn command(
        &self,
        at: DeviceNode,
        vehicle: i64,
        user_id: Option<i64>,
        name: String,
        args: Value,
    ) -> Value {
        // The device session times the command out; these bounds only
        // guard against a session or node that vanished.
        match at {
            DeviceNode::Local(device) => {
                let (tx, rx) = oneshot::channel();
                device.session.do_send(SendCommand {
                    user_id,
                    name,
                    args,
                    reply: tx,
                });
                let limit = self.command_timeout() + Duration::from_secs(1);
                match tokio::time::timeout(limit, rx).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) => json!({"ok": false, "error": "offline"}),
                    Err(_) => json!({"ok": false, "error": "timeout"}),
                }
            }
            DeviceNode::Remote { node } => match &self.cluster {
                Some(cluster) => {
                    let limit = self.command_timeout() + Duration::from_secs(2);
                    cluster
                        .request_command(&node, vehicle, user_id, name, args, limit)
                        .await
                }
                None => json!({"ok": false, "error": "offline"}),
            },
            DeviceNode::Offline => json!({"ok": false, "error": "offline"}),
        }
    }

    /// Fire-and-forget `name` to `vehicle`'s device on another node (no-op
    /// on a single node). For a device on this node use `SendCommand`.
    pub fn emit_remote(&self, vehicle: i64, name: &str, args: Value) {
        if let Some(cluster) = &self.cluster {
            cluster.emit_remote(vehicle, name, args);
        }
    }
}
