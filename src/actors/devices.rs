//! The hub's cluster-aware view of devices: where a vehicle's device
//! session is (this node, another one, nowhere), commands to it wherever
//! it is, revocations, and the hooks through which the cluster backends
//! hand events up ([`LocalDevices`] for [`Hub`]). Used by `watch`,
//! `command`, `GET /api/v1/vehicles`, on-demand live video and the REST
//! routes that delete vehicles or rotate their tokens.
//!
//! The local map is always asked first; the presence backend only for
//! devices not connected here (on a single node it has nothing to add).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Hub;
use super::device::{self, Reasserted, Replaced, Revoked, SendCommand};
use super::presence::DeviceEntry;
use super::room::{self, DetachPublisher, RoomKey};
use crate::cluster::{LocalDevice, LocalDevices};

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

impl Hub {
    /// Where `vehicle`'s device is: the local map first, then the presence
    /// backend (an error is logged and answered with the local view).
    pub async fn device_node(&self, vehicle: i64) -> DeviceNode {
        if let Some(entry) = self.presence.device(vehicle) {
            return DeviceNode::Local(entry);
        }
        match self.backends.presence.locate(vehicle).await {
            Ok(Some(node)) => DeviceNode::Remote { node },
            Ok(None) => DeviceNode::Offline,
            Err(e) => {
                tracing::warn!(vehicle, error = %e, "presence lookup failed: local view");
                DeviceNode::Offline
            }
        }
    }

    pub async fn is_online(&self, vehicle: i64) -> bool {
        self.device_node(vehicle).await.is_online()
    }

    /// Which of `vehicles` are online (on any node): one backend batch for
    /// those not connected here.
    pub async fn online_set(&self, vehicles: &[i64]) -> HashSet<i64> {
        let (online, others): (Vec<i64>, Vec<i64>) = vehicles
            .iter()
            .copied()
            .partition(|v| self.presence.is_online(*v));
        let mut online: HashSet<i64> = online.into_iter().collect();
        if others.is_empty() {
            return online;
        }
        match self.backends.presence.held_elsewhere(others).await {
            Ok(elsewhere) => online.extend(elsewhere),
            Err(e) => tracing::warn!(error = %e, "presence lookup failed: local view"),
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
            DeviceNode::Remote { node } => {
                let limit = self.command_timeout() + Duration::from_secs(2);
                let control = &self.backends.control;
                control
                    .command(node, vehicle, user_id, name, args, limit)
                    .await
            }
            DeviceNode::Offline => json!({"ok": false, "error": "offline"}),
        }
    }

    /// Fire-and-forget `name` to `vehicle`'s device on another node (no-op
    /// on a single node). For a device on this node use `SendCommand`.
    pub fn emit_remote(&self, vehicle: i64, name: &str, args: Value) {
        self.backends.control.emit(vehicle, name, args);
    }

    /// End the device session of `vehicle` (token rotated, vehicle
    /// deleted): the device is told why and disconnected, on whichever
    /// node it is connected.
    pub fn revoke_device(&self, vehicle: i64, why: &'static str) {
        if let Some(entry) = self.presence.device(vehicle) {
            entry.session.do_send(Revoked(why.into()));
        } else {
            self.backends.control.revoke(vehicle, why);
        }
    }

    /// `vehicle` was removed (deleted, or its account was): its device
    /// session ends wherever it is (`why`) and its state here is forgotten.
    pub fn vehicle_removed(&self, vehicle: i64, why: &'static str) {
        self.revoke_device(vehicle, why);
        self.presence.forget(vehicle);
    }

    /// Shutting down: leave the cluster (bounded; nothing on a single node).
    pub async fn leave_cluster(&self) {
        self.backends.presence.leave().await;
    }

    /// Publish `frame` to `owner`'s user room through the room path (this
    /// node's members and the bus).
    async fn publish_to_user(&self, owner: i64, frame: crate::socketio::Frame) {
        if let Some(room) = room::attach_publisher(&self.rooms, RoomKey::User(owner)).await {
            room.publish(frame);
            room.addr.do_send(DetachPublisher);
        }
    }

    /// The session `conn` of `vehicle`, if it is still the current one here.
    fn session_of(&self, vehicle: i64, conn: u64) -> Option<DeviceEntry> {
        self.presence
            .device(vehicle)
            .filter(|entry| entry.conn_id == conn)
    }
}

/// What the cluster backends see of this node's sessions, and how they
/// hand events up.
impl LocalDevices for Hub {
    fn conn(&self, vehicle: i64) -> Option<u64> {
        self.presence.device(vehicle).map(|e| e.conn_id)
    }

    fn count(&self) -> usize {
        self.presence.online_count()
    }

    fn snapshot(&self) -> Vec<LocalDevice> {
        self.presence
            .snapshot()
            .into_iter()
            .map(|(vehicle, e)| LocalDevice {
                vehicle,
                conn: e.conn_id,
                owner: e.owner_id,
            })
            .collect()
    }

    fn command(
        &self,
        vehicle: i64,
        user: Option<i64>,
        name: String,
        args: Value,
    ) -> BoxFuture<'_, Value> {
        Box::pin(async move {
            match self.presence.device(vehicle) {
                Some(entry) => {
                    let at = DeviceNode::Local(entry);
                    Hub::command(self, at, vehicle, user, name, args).await
                }
                None => json!({"ok": false, "error": "offline"}),
            }
        })
    }

    fn emit(&self, vehicle: i64, name: String, args: Value) {
        let Some(entry) = self.presence.device(vehicle) else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        entry.session.do_send(SendCommand {
            user_id: None,
            name: name.clone(),
            args,
            reply: tx,
        });
        tokio::spawn(async move {
            if let Ok(answer) = rx.await
                && answer.get("ok") != Some(&Value::Bool(true))
            {
                tracing::info!(vehicle, command = %name, %answer, "the device declined");
            }
        });
    }

    fn revoke(&self, vehicle: i64, why: String) {
        if let Some(entry) = self.presence.device(vehicle) {
            entry.session.do_send(Revoked(why.into()));
        }
    }

    fn replace(&self, vehicle: i64, conn: u64) {
        if let Some(entry) = self.session_of(vehicle, conn) {
            entry.session.do_send(Replaced);
        }
    }

    fn reassert(&self, vehicle: i64, conn: u64) {
        if let Some(entry) = self.session_of(vehicle, conn) {
            entry.session.do_send(Reasserted);
        }
    }

    fn announce(&self, vehicle: i64, owner: i64, online: bool) -> BoxFuture<'_, ()> {
        let frame = device::presence_frame(vehicle, online);
        Box::pin(self.publish_to_user(owner, frame))
    }
}
