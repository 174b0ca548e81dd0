//! Node control over the bus ([`RedisControl`]): each node subscribes to its
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
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Cluster, LocalDevices, NodeControl};

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

impl Cluster {
    /// Send `msg` to `node`'s control topic.
    pub(crate) fn send(&self, node: &str, msg: &Msg) {
        match serde_json::to_vec(msg) {
            Ok(bytes) => self.bus.publish(&topic(node), Bytes::from(bytes)),
            Err(e) => tracing::warn!(error = %e, "control message not encoded"),
        }
    }
}

/// Node control over the cluster's bus, with the commands sent to other
/// nodes waiting for their reply.
pub struct RedisControl {
    cluster: Arc<Cluster>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next: AtomicU64,
}

impl RedisControl {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    fn forget(&self, corr: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&corr);
        }
    }

    /// Look up the node holding `vehicle` and send it `msg` if it is
    /// another node (`what` names the message in logs).
    fn send_to_holder(&self, vehicle: i64, what: &'static str, msg: Msg) {
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            match cluster.lookup(vehicle).await {
                Ok(Some(h)) if !cluster.is_me(&h) => cluster.send(&h.node, &msg),
                Ok(_) => {}
                Err(e) => tracing::warn!(vehicle, error = %e, "{what}: Redis lookup failed"),
            }
        });
    }

    fn handle(self: &Arc<Self>, local: &Arc<dyn LocalDevices>, msg: Msg) {
        match msg {
            Msg::Reply { corr, value } => self.on_reply(corr, value),
            Msg::Cmd {
                corr,
                from,
                vehicle,
                user,
                name,
                args,
            } => self.on_cmd(local, corr, from, vehicle, user, name, args),
            Msg::Emit {
                vehicle,
                name,
                args,
            } => local.emit(vehicle, name, args),
            Msg::Revoke { vehicle, why } => local.revoke(vehicle, why),
            Msg::Kick {
                vehicle,
                conn,
                incarnation,
            } => self.on_kick(local, vehicle, conn, &incarnation),
        }
    }

    fn on_reply(&self, corr: u64, value: Value) {
        let tx = self.pending.lock().ok().and_then(|mut p| p.remove(&corr));
        if let Some(tx) = tx {
            let _ = tx.send(value);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_cmd(
        &self,
        local: &Arc<dyn LocalDevices>,
        corr: u64,
        from: String,
        vehicle: i64,
        user: Option<i64>,
        name: String,
        args: Value,
    ) {
        let local = local.clone();
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            let value = local.command(vehicle, user, name, args).await;
            cluster.send(&from, &Msg::Reply { corr, value });
        });
    }

    fn on_kick(&self, local: &Arc<dyn LocalDevices>, vehicle: i64, conn: u64, incarnation: &str) {
        if incarnation == self.cluster.incarnation && local.conn(vehicle) == Some(conn) {
            tracing::info!(
                vehicle,
                conn,
                "device connected to another node: session replaced"
            );
            local.replace(vehicle, conn);
        }
    }
}

impl NodeControl for RedisControl {
    /// Subscribe to this node's control topic and serve it.
    fn start(self: Arc<Self>, local: Arc<dyn LocalDevices>) {
        let mut sub = self.cluster.bus.subscribe(&topic(&self.cluster.node_id));
        tokio::spawn(async move {
            while let Some(msg) = sub.recv().await {
                match serde_json::from_slice::<Msg>(&msg.frame) {
                    Ok(m) => self.handle(&local, m),
                    Err(e) => tracing::warn!(error = %e, "control message not understood"),
                }
            }
        });
    }

    fn command(
        &self,
        node: String,
        vehicle: i64,
        user: Option<i64>,
        name: String,
        args: Value,
        limit: Duration,
    ) -> BoxFuture<'_, Value> {
        Box::pin(async move {
            let corr = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            let (tx, rx) = oneshot::channel();
            if let Ok(mut p) = self.pending.lock() {
                p.insert(corr, tx);
            }
            let from = self.cluster.node_id.clone();
            let cmd = Msg::Cmd {
                corr,
                from,
                vehicle,
                user,
                name,
                args,
            };
            self.cluster.send(&node, &cmd);
            let stats = &self.cluster.stats;
            stats.commands_sent.fetch_add(1, Ordering::Relaxed);
            let answer = match tokio::time::timeout(limit, rx).await {
                Ok(Ok(v)) => v,
                Ok(Err(_)) => json!({"ok": false, "error": "offline"}),
                Err(_) => {
                    stats.command_timeouts.fetch_add(1, Ordering::Relaxed);
                    json!({"ok": false, "error": "timeout"})
                }
            };
            self.forget(corr);
            answer
        })
    }

    fn emit(&self, vehicle: i64, name: &str, args: Value) {
        let name = name.to_string();
        let msg = Msg::Emit {
            vehicle,
            name,
            args,
        };
        self.send_to_holder(vehicle, "emit", msg);
    }

    fn revoke(&self, vehicle: i64, why: &str) {
        let why = why.to_string();
        self.send_to_holder(vehicle, "revoke", Msg::Revoke { vehicle, why });
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
