//! Device presence across nodes, in Redis (only when `Hub::cluster` is
//! set; a single node answers from its local map and never touches Redis).
//!
//! Keys (every command touches one key, so it runs on a Redis Cluster):
//!
//! - `rh:dev:{vehicle}` → `{incarnation}|{conn}|{owner}|{node}`, `PX ttl`:
//!   which node holds the vehicle's device session. Written with
//!   `SET … PX ttl GET` on connect (the previous holder is kicked),
//!   refreshed every ttl/3 by a compare-and-pexpire script (batched),
//!   removed by compare-and-delete when the session ends.
//! - `rh:nodes`: set of node members `{node}@{incarnation}`.
//! - `rh:alive:{member}` → `{incarnation}|{started_ms}`, `PX 2·ttl/3`,
//!   refreshed every ttl/3: the node is alive. Two live members with the
//!   same `node.id` are a misconfiguration (they would share a control
//!   topic and the load balancer's sid routing): the later started one
//!   answers `/readyz` 503 `node_id_in_use` while the earlier lives (a
//!   crashed earlier run counts until its key expires, at most 2·ttl/3).
//! - `rh:devices:{member}`: hash vehicle → owner of the node's devices (for
//!   the reaper), `PX 10·ttl` refreshed every ttl/3.
//! - `rh:reap:{member}`: `SET NX PX 10·ttl` lock: one node reaps a dead one.
//!
//! The incarnation is random per process start, so a node restarting with
//! the same `node.id` is a new member, and its previous incarnation is
//! reaped like any dead node.
//!
//! One task per node (the writer) runs connects, disconnects and the
//! refresh in order, so a refresh never resurrects a key a later
//! disconnect removed. Another refreshes the liveness key, another reaps
//! dead nodes: their devices' keys still naming them are deleted and each
//! owner's user room gets `presence` `{"vehicle","online":false,"t"}`
//! through the room path (local members and the bus), once per phone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::{Cmd, Value as RValue};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::Cluster;
use super::control::Msg;
use crate::actors::Hub;
use crate::actors::device::{self, Reasserted, Replaced};
use crate::actors::room::{self, DetachPublisher, RoomKey};

/// The set of node members.
pub const NODES_KEY: &str = "rh:nodes";

/// Connects and disconnects waiting for the writer; past this they are
/// dropped (the refresh re-asserts connected devices, removed ones expire).
const QUEUE: usize = 65_536;

/// Devices per refresh batch.
const CHUNK: usize = 512;

/// Keep the key if it still names us; re-create it if it is gone (Redis
/// restarted, or we were taken for dead); otherwise answer its holder.
const REFRESH: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return v
";

/// Delete the key if it still holds ARGV[1] → 1; gone → 0; otherwise its
/// holder.
const CAD: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if not v then
  return 0
end
return v
";

/// A dead incarnation's device: delete the key if it still names the
/// incarnation (prefix ARGV[1]) → 1; gone → 2; another holder → 0.
const REAP_DEVICE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  return 2
end
if string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

pub fn device_key(vehicle: i64) -> String {
    format!("rh:dev:{vehicle}")
}

pub fn alive_key(member: &str) -> String {
    format!("rh:alive:{member}")
}

pub fn devices_key(member: &str) -> String {
    format!("rh:devices:{member}")
}

pub fn reap_key(member: &str) -> String {
    format!("rh:reap:{member}")
}

/// Who holds a device key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub incarnation: String,
    pub conn: u64,
    pub owner: i64,
    pub node: String,
}

impl Holder {
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.splitn(4, '|');
        let incarnation = parts.next()?.to_string();
        let conn = parts.next()?.parse().ok()?;
        let owner = parts.next()?.parse().ok()?;
        let node = parts.next()?.to_string();
        Some(Self {
            incarnation,
            conn,
            owner,
            node,
        })
    }

    pub fn value(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.incarnation, self.conn, self.owner, self.node
        )
    }
}

pub(crate) enum Op {
    Connect {
        vehicle: i64,
        conn: u64,
        owner: i64,
    },
    /// `offline`: publish `presence` offline once the key is deleted
    /// (unless another incarnation holds it, or a new local session).
    Disconnect {
        vehicle: i64,
        conn: u64,
        owner: i64,
        offline: bool,
    },
    /// Shutting down: remove this node's records, then stop.
    Leave(oneshot::Sender<()>),
}

/// The presence state a [`Cluster`] carries.
pub struct Presence {
    tx: mpsc::Sender<Op>,
    rx: Mutex<Option<mpsc::Receiver<Op>>>,
    /// The node left the cluster (shutting down): liveness and reaper stop.
    left: AtomicBool,
}

impl Presence {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            left: AtomicBool::new(false),
        }
    }

    /// Queue `op`; false if the queue is full (the op is dropped).
    fn send(&self, op: Op) -> bool {
        match self.tx.try_send(op) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cluster presence queue full: an update is dropped");
                false
            }
        }
    }
}

impl Cluster {
    /// This node's member name in `rh:nodes`.
    pub fn member(&self) -> String {
        format!("{}@{}", self.node_id, self.incarnation)
    }

    fn holder(&self, conn: u64, owner: i64) -> Holder {
        Holder {
            incarnation: self.incarnation.clone(),
            conn,
            owner,
            node: self.node_id.clone(),
        }
    }

    /// Whether `h` is this process.
    pub fn is_me(&self, h: &Holder) -> bool {
        h.incarnation == self.incarnation && h.node == self.node_id
    }

    /// A device session started here (already in the local map).
    pub fn device_connected(&self, vehicle: i64, conn: u64, owner: i64) {
        let queued = self.presence.send(Op::Connect {
            vehicle,
            conn,
            owner,
        });
        self.count_dropped(queued);
    }

    /// A device session here ended (already out of the local map);
    /// `offline`: it was the vehicle's last session here, so the owner's
    /// phones are told, unless the device is connected elsewhere by then.
    pub fn device_disconnected(&self, vehicle: i64, conn: u64, owner: i64, offline: bool) {
        let queued = self.presence.send(Op::Disconnect {
            vehicle,
            conn,
            owner,
            offline,
        });
        self.count_dropped(queued);
    }

    fn count_dropped(&self, queued: bool) {
        if !queued {
            self.stats
                .presence_ops_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Who holds `vehicle` according to Redis (`Err` when Redis fails).
    pub async fn lookup(&self, vehicle: i64) -> ::redis::RedisResult<Option<Holder>> {
        let v: Option<String> = self
            .redis
            .query(Cmd::new().arg("GET").arg(device_key(vehicle)))
            .await?;
        Ok(v.as_deref().and_then(Holder::parse))
    }

    /// Holders of many vehicles (one batch).
    pub async fn lookup_many(
        &self,
        vehicles: &[i64],
    ) -> ::redis::RedisResult<HashMap<i64, Holder>> {
        let cmds: Vec<Cmd> = vehicles
            .iter()
            .map(|v| {
                let mut c = Cmd::new();
                c.arg("GET").arg(device_key(*v));
                c
            })
            .collect();
        let results = self.redis.batch(&cmds).await?;
        let mut out = HashMap::new();
        for (v, r) in vehicles.iter().zip(results) {
            if let RValue::BulkString(bytes) = r?
                && let Some(h) = std::str::from_utf8(&bytes).ok().and_then(Holder::parse)
            {
                out.insert(*v, h);
            }
        }
        Ok(out)
    }

    /// Send `revoke` to the node holding `vehicle`, if another one does.
    pub fn revoke_remote(self: &Arc<Self>, vehicle: i64, why: &str) {
        let cluster = self.clone();
        let why = why.to_string();
        tokio::spawn(async move {
            match cluster.lookup(vehicle).await {
                Ok(Some(h)) if !cluster.is_me(&h) => {
                    cluster.send(&h.node, &Msg::Revoke { vehicle, why });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(vehicle, error = %e, "revoke: Redis lookup failed"),
            }
        });
    }

    /// Fire-and-forget command to `vehicle`'s device on another node
    /// (its answer is logged there).
    pub fn emit_remote(self: &Arc<Self>, vehicle: i64, name: &str, args: Value) {
        let cluster = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            match cluster.lookup(vehicle).await {
                Ok(Some(h)) if !cluster.is_me(&h) => {
                    cluster.send(
                        &h.node,
                        &Msg::Emit {
                            vehicle,
                            name,
                            args,
                        },
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(vehicle, error = %e, "emit: Redis lookup failed"),
            }
        });
    }
}

fn eval(script: &str, key: String, args: &[&str]) -> Cmd {
    let mut c = Cmd::new();
    c.arg("EVAL").arg(script).arg(1).arg(key);
    for a in args {
        c.arg(*a);
    }
    c
}

/// Publish `frame` to `owner`'s user room through the room path (this
/// node's members and the bus).
pub async fn publish_to_user(hub: &Hub, owner: i64, frame: crate::socketio::Frame) {
    if let Some(room) = room::attach_publisher(&hub.rooms, RoomKey::User(owner)).await {
        room.publish(frame);
        room.addr.do_send(DetachPublisher);
    }
}

/// Start the presence tasks (writer, liveness, reaper) of a cluster node.
/// Call once, inside the node's runtime.
pub fn spawn(hub: Arc<Hub>) {
    let Some(cluster) = hub.cluster.clone() else {
        return;
    };
    let rx = cluster.presence.rx.lock().ok().and_then(|mut rx| rx.take());
    let Some(rx) = rx else {
        return;
    };
    tokio::spawn(writer(hub.clone(), cluster.clone(), rx));
    tokio::spawn(liveness(cluster.clone()));
    tokio::spawn(reaper(hub, cluster));
}

/// Shutting down: wait (bounded) for the sessions' disconnects to be
/// written, then remove this node's records so nobody reaps it.
pub async fn leave(hub: &Hub) {
    let Some(cluster) = &hub.cluster else {
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while hub.presence.online_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.presence.left.store(true, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    if cluster.presence.tx.send(Op::Leave(tx)).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
    }
}

fn ttl_ms(cluster: &Cluster) -> u64 {
    u64::try_from(cluster.presence_ttl.as_millis()).unwrap_or(u64::MAX)
}

fn period(cluster: &Cluster) -> Duration {
    cluster.presence_ttl / 3
}

/// Connects, disconnects and the refresh of this node's device keys, in
/// order.
async fn writer(hub: Arc<Hub>, cluster: Arc<Cluster>, mut rx: mpsc::Receiver<Op>) {
    let mut tick = tokio::time::interval(period(&cluster));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Connects whose write failed (Redis unreachable): vehicle → (conn,
    // owner). Retried before each refresh, and left out of it (the key may
    // still name the previous holder, which must be kicked, not obeyed).
    let mut unconfirmed: HashMap<i64, (u64, i64)> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            op = rx.recv() => match op {
                Some(op) => if !apply(&hub, &cluster, op, &mut unconfirmed).await { return },
                None => return,
            },
            _ = tick.tick() => {
                // Ops queued before the snapshot go first (a session
                // registered locally has its connect queued already).
                while let Ok(op) = rx.try_recv() {
                    if !apply(&hub, &cluster, op, &mut unconfirmed).await {
                        return;
                    }
                }
                let retry: Vec<(i64, (u64, i64))> =
                    unconfirmed.iter().map(|(v, c)| (*v, *c)).collect();
                for (vehicle, (conn, owner)) in retry {
                    let current = hub
                        .presence
                        .device(vehicle)
                        .is_some_and(|e| e.conn_id == conn);
                    if !current || connect(&cluster, vehicle, conn, owner).await {
                        unconfirmed.remove(&vehicle);
                    }
                }
                refresh(&hub, &cluster, &unconfirmed).await;
            }
        }
    }
}

/// Write a new session's key (`SET … GET`) and kick the previous holder if
/// it is another incarnation; false if Redis failed.
async fn connect(cluster: &Cluster, vehicle: i64, conn: u64, owner: i64) -> bool {
    // The node's record first: a key naming us is always in it.
    let mut hset = Cmd::new();
    hset.arg("HSET")
        .arg(devices_key(&cluster.member()))
        .arg(vehicle)
        .arg(owner);
    if let Err(e) = cluster.redis.query::<RValue>(&hset).await {
        tracing::warn!(vehicle, error = %e, "presence: Redis write failed (retried)");
        return false;
    }
    let me = cluster.holder(conn, owner);
    let mut set = Cmd::new();
    set.arg("SET")
        .arg(device_key(vehicle))
        .arg(me.value())
        .arg("PX")
        .arg(ttl_ms(cluster))
        .arg("GET");
    match cluster.redis.query::<Option<String>>(&set).await {
        Ok(prev) => {
            if let Some(prev) = prev.as_deref().and_then(Holder::parse)
                && prev.incarnation != cluster.incarnation
            {
                // One session per device: the other node's session goes as
                // if replaced here.
                tracing::info!(vehicle, node = %prev.node, "device moved here: kicking its old session");
                cluster.stats.kicks_sent.fetch_add(1, Ordering::Relaxed);
                cluster.send(
                    &prev.node,
                    &Msg::Kick {
                        vehicle,
                        conn: prev.conn,
                        incarnation: prev.incarnation,
                    },
                );
            }
            true
        }
        Err(e) => {
            tracing::warn!(vehicle, error = %e, "presence: Redis write failed (retried)");
            false
        }
    }
}

/// Run one op; false when the writer must stop.
async fn apply(
    hub: &Hub,
    cluster: &Cluster,
    op: Op,
    unconfirmed: &mut HashMap<i64, (u64, i64)>,
) -> bool {
    let member = cluster.member();
    match op {
        Op::Connect {
            vehicle,
            conn,
            owner,
        } => {
            if connect(cluster, vehicle, conn, owner).await {
                unconfirmed.remove(&vehicle);
            } else {
                unconfirmed.insert(vehicle, (conn, owner));
            }
        }
        Op::Disconnect {
            vehicle,
            conn,
            owner,
            offline,
        } => {
            if unconfirmed.get(&vehicle).is_some_and(|(c, _)| *c == conn) {
                unconfirmed.remove(&vehicle);
            }
            let me = cluster.holder(conn, owner);
            let cad = eval(CAD, device_key(vehicle), &[&me.value()]);
            let moved = match cluster.redis.query::<RValue>(&cad).await {
                Ok(RValue::BulkString(v)) => std::str::from_utf8(&v)
                    .ok()
                    .and_then(Holder::parse)
                    .is_some_and(|h| h.incarnation != cluster.incarnation),
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(vehicle, error = %e, "presence: Redis delete failed (the key expires)");
                    false
                }
            };
            if offline && !moved && !hub.presence.is_online(vehicle) {
                publish_to_user(hub, owner, device::presence_frame(vehicle, false)).await;
            }
            if !hub.presence.is_online(vehicle) {
                let mut hdel = Cmd::new();
                hdel.arg("HDEL").arg(devices_key(&member)).arg(vehicle);
                let _ = cluster.redis.query::<RValue>(&hdel).await;
            }
        }
        Op::Leave(done) => {
            let cmds = [
                {
                    let mut c = Cmd::new();
                    c.arg("SREM").arg(NODES_KEY).arg(&member);
                    c
                },
                {
                    let mut c = Cmd::new();
                    c.arg("DEL").arg(alive_key(&member));
                    c
                },
                {
                    let mut c = Cmd::new();
                    c.arg("DEL").arg(devices_key(&member));
                    c
                },
            ];
            if let Err(e) = cluster.redis.batch(&cmds).await {
                tracing::warn!(error = %e, "leaving the cluster: Redis failed (the node will be reaped)");
            }
            let _ = done.send(());
            return false;
        }
    }
    true
}

/// Refresh every local device's key; re-create the missing ones; a key
/// another node holds means that node took the device over.
async fn refresh(hub: &Hub, cluster: &Cluster, unconfirmed: &HashMap<i64, (u64, i64)>) {
    let mut entries = hub.presence.snapshot();
    entries.retain(|(v, _)| !unconfirmed.contains_key(v));
    if entries.is_empty() {
        return;
    }
    let ttl = ttl_ms(cluster).to_string();
    let member = cluster.member();
    for chunk in entries.chunks(CHUNK) {
        let cmds: Vec<Cmd> = chunk
            .iter()
            .map(|(vehicle, e)| {
                let me = cluster.holder(e.conn_id, e.owner_id);
                eval(REFRESH, device_key(*vehicle), &[&me.value(), &ttl])
            })
            .collect();
        let results = match cluster.redis.batch(&cmds).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "presence refresh: Redis failed");
                return;
            }
        };
        let mut hsets = Vec::new();
        for ((vehicle, entry), r) in chunk.iter().zip(results) {
            match r {
                Ok(RValue::Int(1)) => {}
                Ok(RValue::Int(2)) => {
                    let mut c = Cmd::new();
                    c.arg("HSET")
                        .arg(devices_key(&member))
                        .arg(*vehicle)
                        .arg(entry.owner_id);
                    hsets.push(c);
                    entry.session.do_send(Reasserted);
                }
                Ok(RValue::BulkString(v)) => {
                    let holder = std::str::from_utf8(&v).ok().and_then(Holder::parse);
                    if let Some(h) = holder
                        && h.incarnation != cluster.incarnation
                    {
                        tracing::info!(vehicle, node = %h.node, "device taken over by another node");
                        entry.session.do_send(Replaced);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(vehicle, error = %e, "presence refresh failed"),
            }
        }
        if let Err(e) = cluster.redis.batch(&hsets).await {
            tracing::warn!(error = %e, "presence refresh: Redis failed");
        }
    }
}

/// Keep this node's liveness key, its membership and its device record.
async fn liveness(cluster: Arc<Cluster>) {
    let member = cluster.member();
    let alive_ms = ttl_ms(&cluster) * 2 / 3;
    let record_ms = ttl_ms(&cluster) * 10;
    let mut tick = tokio::time::interval(period(&cluster));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tick.tick().await;
        if cluster.presence.left.load(Ordering::Relaxed) {
            return;
        }
        let mut set = Cmd::new();
        set.arg("SET")
            .arg(alive_key(&member))
            .arg(alive_value(&cluster))
            .arg("PX")
            .arg(alive_ms);
        if let Err(e) = cluster.redis.query::<RValue>(&set).await {
            tracing::debug!(error = %e, "liveness: Redis failed");
            continue;
        }
        if cluster.presence.left.load(Ordering::Relaxed) {
            return;
        }
        let mut sadd = Cmd::new();
        sadd.arg("SADD").arg(NODES_KEY).arg(&member);
        let mut expire = Cmd::new();
        expire
            .arg("PEXPIRE")
            .arg(devices_key(&member))
            .arg(record_ms);
        match cluster.redis.batch(&[sadd, expire]).await {
            Ok(r) => {
                // Added again: we were reaped (or Redis lost its data);
                // let a later death of ours be reaped at once.
                if !first && matches!(r.first(), Some(Ok(RValue::Int(1)))) {
                    tracing::warn!("this node was missing from the cluster's members: re-joined");
                    let mut del = Cmd::new();
                    del.arg("DEL").arg(reap_key(&member));
                    let _ = cluster.redis.query::<RValue>(&del).await;
                }
                first = false;
            }
            Err(e) => tracing::debug!(error = %e, "liveness: Redis failed"),
        }
    }
}

/// Every ttl/3: reap members whose liveness key is gone.
async fn reaper(hub: Arc<Hub>, cluster: Arc<Cluster>) {
    let me = cluster.member();
    let mut warned = std::collections::HashSet::new();
    // Out of phase with the liveness task.
    tokio::time::sleep(period(&cluster) / 2).await;
    let mut tick = tokio::time::interval(period(&cluster));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.presence.left.load(Ordering::Relaxed) {
            return;
        }
        let members: Vec<String> = match cluster
            .redis
            .query(Cmd::new().arg("SMEMBERS").arg(NODES_KEY))
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "reaper: Redis failed");
                continue;
            }
        };
        let others: Vec<String> = members.into_iter().filter(|m| *m != me).collect();
        if others.is_empty() {
            check_node_id(&cluster, &[], &mut warned).await;
            continue;
        }
        let cmds: Vec<Cmd> = others
            .iter()
            .map(|m| {
                let mut c = Cmd::new();
                c.arg("EXISTS").arg(alive_key(m));
                c
            })
            .collect();
        let Ok(alive) = cluster.redis.batch(&cmds).await else {
            continue;
        };
        let mut namesakes = Vec::new();
        for (member, a) in others.iter().zip(alive) {
            match a {
                Ok(RValue::Int(0)) => reap(&hub, &cluster, member).await,
                Ok(_) if member_node(member) == Some(cluster.node_id.as_str()) => {
                    namesakes.push(member.clone());
                }
                _ => {}
            }
        }
        check_node_id(&cluster, &namesakes, &mut warned).await;
    }
}

/// The node id of a member `{node}@{incarnation}`.
fn member_node(member: &str) -> Option<&str> {
    member.rsplit_once('@').map(|(node, _)| node)
}

/// What this node writes in its liveness key.
fn alive_value(cluster: &Cluster) -> String {
    format!("{}|{}", cluster.incarnation, cluster.started_ms)
}

/// Whether the member whose liveness key holds `value` started before
/// this node (ties broken by incarnation). A value without a start time
/// (an older build) counts as earlier.
fn started_before(value: &str, cluster: &Cluster) -> bool {
    let Some((incarnation, started)) = value.rsplit_once('|') else {
        return true;
    };
    let started: i64 = started.parse().unwrap_or(i64::MIN);
    (started, incarnation) < (cluster.started_ms, cluster.incarnation.as_str())
}

/// Given the other live members with this node's `node.id`: flag this
/// node as the duplicate while one of them started earlier (readiness
/// answers 503), and say so once per change.
async fn check_node_id(
    cluster: &Cluster,
    namesakes: &[String],
    warned: &mut std::collections::HashSet<String>,
) {
    let mut earlier = None;
    if !namesakes.is_empty() {
        let cmds: Vec<Cmd> = namesakes
            .iter()
            .map(|m| {
                let mut c = Cmd::new();
                c.arg("GET").arg(alive_key(m));
                c
            })
            .collect();
        let Ok(values) = cluster.redis.batch(&cmds).await else {
            return;
        };
        for (member, value) in namesakes.iter().zip(values) {
            let value = match value {
                Ok(RValue::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                Ok(RValue::SimpleString(s)) => s,
                _ => continue, // expired meanwhile
            };
            if started_before(&value, cluster) {
                earlier = Some(member.clone());
            } else if warned.insert(member.clone()) {
                tracing::warn!(other = %member, node_id = %cluster.node_id, "a process started later with this node.id: it reports itself unready; give each node its own node.id");
            }
        }
    }
    let was = cluster
        .node_id_in_use
        .swap(earlier.is_some(), Ordering::Relaxed);
    match (&earlier, was) {
        (Some(other), false) => {
            tracing::error!(other = %other, node_id = %cluster.node_id, "another live process already uses this node.id: this node answers /readyz 503 until it is gone; give each node its own node.id");
        }
        (None, true) => {
            tracing::info!(node_id = %cluster.node_id, "no other live process uses this node.id any more: ready");
        }
        _ => {}
    }
}

/// Reap a dead member, if no other node does.
async fn reap(hub: &Hub, cluster: &Cluster, member: &str) {
    let Some((node, incarnation)) = member.rsplit_once('@') else {
        return;
    };
    let mut lock = Cmd::new();
    lock.arg("SET")
        .arg(reap_key(member))
        .arg(cluster.member())
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms(cluster) * 10);
    match cluster.redis.query::<Option<String>>(&lock).await {
        Ok(Some(_)) => {}
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reaper: Redis failed");
            return;
        }
    }
    let devices: HashMap<i64, i64> = match cluster
        .redis
        .query(Cmd::new().arg("HGETALL").arg(devices_key(member)))
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "reaper: Redis failed");
            return;
        }
    };
    let prefix = format!("{incarnation}|");
    let list: Vec<(i64, i64)> = devices.into_iter().collect();
    let mut offline = 0usize;
    for chunk in list.chunks(CHUNK) {
        let cmds: Vec<Cmd> = chunk
            .iter()
            .map(|(vehicle, _)| eval(REAP_DEVICE, device_key(*vehicle), &[&prefix]))
            .collect();
        let results = match cluster.redis.batch(&cmds).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reaper: Redis failed");
                return;
            }
        };
        let mut reaped = Vec::new();
        for ((vehicle, owner), r) in chunk.iter().zip(results) {
            if matches!(r, Ok(RValue::Int(1 | 2))) && !hub.presence.is_online(*vehicle) {
                offline += 1;
                cluster.stats.devices_reaped.fetch_add(1, Ordering::Relaxed);
                publish_to_user(hub, *owner, device::presence_frame(*vehicle, false)).await;
                reaped.push((*vehicle, *owner));
            }
        }
        // A device that reconnected (on any node) between the delete and
        // the offline frame had its `online` published first: say online
        // again, so its watchers end on the truth.
        let cmds: Vec<Cmd> = reaped
            .iter()
            .map(|(vehicle, _)| {
                let mut c = Cmd::new();
                c.arg("EXISTS").arg(device_key(*vehicle));
                c
            })
            .collect();
        if let Ok(results) = cluster.redis.batch(&cmds).await {
            for ((vehicle, owner), r) in reaped.iter().zip(results) {
                if matches!(r, Ok(RValue::Int(1))) {
                    publish_to_user(hub, *owner, device::presence_frame(*vehicle, true)).await;
                }
            }
        }
    }
    let cmds = [
        {
            let mut c = Cmd::new();
            c.arg("DEL").arg(devices_key(member));
            c
        },
        {
            let mut c = Cmd::new();
            c.arg("SREM").arg(NODES_KEY).arg(member);
            c
        },
    ];
    if let Err(e) = cluster.redis.batch(&cmds).await {
        tracing::warn!(error = %e, "reaper: Redis failed");
    }
    cluster.stats.nodes_reaped.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        node,
        incarnation,
        devices = offline,
        "reaped a dead node: its devices are offline"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_values_round_trip_and_node_ids_may_hold_separators() {
        let h = Holder {
            incarnation: "abc".into(),
            conn: 7,
            owner: 42,
            node: "node|a@b".into(),
        };
        assert_eq!(Holder::parse(&h.value()), Some(h));
        assert_eq!(Holder::parse("x|y|1|n"), None);
        assert_eq!(Holder::parse("x|1|1"), None);
    }
}
