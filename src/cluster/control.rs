//! Node-to-node control messages on the bus: each node subscribes to its
//! own topic `node:{node_id}`; a message is one JSON object with a `type`.
//!
//! - `cmd {corr, from, vehicle, user, name, args}`: run a command on the
//!   device held here; the answer goes back as `reply {corr, value}` to
//!   `node:{from}`. The asking node waits for it in a pending map, bounded
//!   by the command timeout plus a margin (`{"ok":false,"error":"timeout"}`).
//!   A device no longer here answers `{"ok":false,"error":"offline"}`.
//! - `emit {vehicle, name, args}`: a command whose answer is only logged
//!   (on-demand `live.start`/`live.stop`).
//! - `revoke {vehicle, why}`: end the device session (token rotated,
//!   vehicle or account deleted).
//! - `kick {vehicle, conn, incarnation}`: the device connected to another
//!   node; the session here ends as replaced (`session_replaced`, no
//!   offline presence).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Cluster;
use crate::actors::Hub;
use crate::actors::device::{Replaced, Revoked, SendCommand};

/// A control message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    Cmd {
        corr: u64,
        from: String,
        vehicle: i64,
        user: Option<i64>,
        name: String,
        args: Value,
    },
    Reply {
        corr: u64,
        value: Value,
    },
    Emit {
        vehicle: i64,
        name: String,
        args: Value,
    },
    Revoke {
        vehicle: i64,
        why: String,
    },
    Kick {
        vehicle: i64,
        conn: u64,
        incarnation: String,
    },
}

/// The control topic of `node`.
pub fn topic(node: &str) -> String {
    format!("node:{node}")
}

/// Commands sent to other nodes, waiting for their reply.
#[derive(Default)]
pub struct Control {
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next: AtomicU64,
}

impl Control {
    fn forget(&self, corr: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&corr);
        }
    }
}

impl Cluster {
    /// Send `msg` to `node`'s control topic.
    pub fn send(&self, node: &str, msg: &Msg) {
        match serde_json::to_vec(msg) {
            Ok(bytes) => self.bus.publish(&topic(node), Bytes::from(bytes)),
            Err(e) => tracing::warn!(error = %e, "control message not encoded"),
        }
    }

    /// Run a command on `vehicle`'s device held by `node`; its answer, or
    /// `timeout` after `limit`.
    pub async fn request_command(
        &self,
        node: &str,
        vehicle: i64,
        user: Option<i64>,
        name: String,
        args: Value,
        limit: Duration,
    ) -> Value {
        let corr = self.control.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.control.pending.lock() {
            p.insert(corr, tx);
        }
        self.send(
            node,
            &Msg::Cmd {
                corr,
                from: self.node_id.clone(),
                vehicle,
                user,
                name,
                args,
            },
        );
        self.stats.commands_sent.fetch_add(1, Ordering::Relaxed);
        let answer = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => json!({"ok": false, "error": "offline"}),
            Err(_) => {
                self.stats.command_timeouts.fetch_add(1, Ordering::Relaxed);
                json!({"ok": false, "error": "timeout"})
            }
        };
        self.control.forget(corr);
        answer
    }
}

/// Subscribe to this node's control topic and serve it. Call once, inside
/// the node's runtime (before any command is sent, so replies find the
/// subscription).
pub fn spawn(hub: Arc<Hub>) {
    let Some(cluster) = hub.cluster.clone() else {
        return;
    };
    let mut sub = cluster.bus.subscribe(&topic(&cluster.node_id));
    tokio::spawn(async move {
        while let Some(msg) = sub.recv().await {
            match serde_json::from_slice::<Msg>(&msg.frame) {
                Ok(m) => handle(&hub, &cluster, m),
                Err(e) => tracing::warn!(error = %e, "control message not understood"),
            }
        }
    });
}

fn handle(hub: &Arc<Hub>, cluster: &Arc<Cluster>, msg: Msg) {
    match msg {
        Msg::Reply { corr, value } => {
            let tx = cluster
                .control
                .pending
                .lock()
                .ok()
                .and_then(|mut p| p.remove(&corr));
            if let Some(tx) = tx {
                let _ = tx.send(value);
            }
        }
        Msg::Cmd {
            corr,
            from,
            vehicle,
            user,
            name,
            args,
        } => {
            let hub = hub.clone();
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let value = match hub.presence.device(vehicle) {
                    Some(entry) => {
                        hub.command(super::DeviceNode::Local(entry), vehicle, user, name, args)
                            .await
                    }
                    None => json!({"ok": false, "error": "offline"}),
                };
                cluster.send(&from, &Msg::Reply { corr, value });
            });
        }
        Msg::Emit {
            vehicle,
            name,
            args,
        } => {
            let Some(entry) = hub.presence.device(vehicle) else {
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
        Msg::Revoke { vehicle, why } => {
            if let Some(entry) = hub.presence.device(vehicle) {
                entry.session.do_send(Revoked(why.into()));
            }
        }
        Msg::Kick {
            vehicle,
            conn,
            incarnation,
        } => {
            if incarnation == cluster.incarnation
                && let Some(entry) = hub.presence.device(vehicle)
                && entry.conn_id == conn
            {
                tracing::info!(
                    vehicle,
                    conn,
                    "device connected to another node: session replaced"
                );
                entry.session.do_send(Replaced);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let m = Msg::Kick {
            vehicle: 3,
            conn: 9,
            incarnation: "i".into(),
        };
        let v = serde_json::to_value(&m).unwrap_or_default();
        assert_eq!(
            v,
            json!({"type": "kick", "vehicle": 3, "conn": 9, "incarnation": "i"})
        );
        let back: Msg =
            serde_json::from_value(json!({"type": "reply", "corr": 1, "value": {"ok": true}}))
                .unwrap_or(Msg::Revoke {
                    vehicle: 0,
                    why: String::new(),
                });
        assert!(matches!(back, Msg::Reply { corr: 1, .. }));
    }
}
