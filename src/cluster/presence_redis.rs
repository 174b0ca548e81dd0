//! [`RedisPresence`]: device presence across nodes, in Redis (the backend
//! of a cluster; a single node uses `MemoryPresence` and never touches
//! Redis).
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
//! owner's phones are told the device is offline (handed up to the hub
//! through [`LocalDevices::announce`]), once per phone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::{Cmd, Value as RValue};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::control_redis::Msg;
use super::{Cluster, DevicePresence, LocalDevices, PresenceError};

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

/// Device presence in Redis, for a node of a cluster.
pub struct RedisPresence {
    cluster: Arc<Cluster>,
    tx: mpsc::Sender<Op>,
    rx: Mutex<Option<mpsc::Receiver<Op>>>,
    /// The node left the cluster (shutting down): liveness and reaper stop.
    left: AtomicBool,
    /// The hub's sessions, once started.
    local: std::sync::OnceLock<Arc<dyn LocalDevices>>,
}

impl RedisPresence {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            cluster,
            tx,
            rx: Mutex::new(Some(rx)),
            left: AtomicBool::new(false),
            local: std::sync::OnceLock::new(),
        }
    }

    /// Queue `op`; counted as dropped if the queue is full.
    fn send(&self, op: Op) {
        if let Err(e) = self.tx.try_send(op) {
            tracing::warn!(error = %e, "cluster presence queue full: an update is dropped");
            self.cluster
                .stats
                .presence_ops_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl DevicePresence for RedisPresence {
    fn start(self: Arc<Self>, local: Arc<dyn LocalDevices>) {
        if self.local.set(local.clone()).is_err() {
            return;
        }
        let rx = self.rx.lock().ok().and_then(|mut rx| rx.take());
        let Some(rx) = rx else {
            return;
        };
        tokio::spawn(writer(self.cluster.clone(), local.clone(), rx));
        tokio::spawn(liveness(self.clone()));
        tokio::spawn(reaper(self, local));
    }

    fn connected(&self, vehicle: i64, conn: u64, owner: i64) {
        self.send(Op::Connect {
            vehicle,
            conn,
            owner,
        });
    }

    /// With Redis reachable the offline frame is published after the key's
    /// compare-and-delete, and only if the device is not held by another
    /// node by then.
    fn disconnected(&self, vehicle: i64, conn: u64, owner: i64, last: bool) -> bool {
        let deferred = self.cluster.redis_up();
        self.send(Op::Disconnect {
            vehicle,
            conn,
            owner,
            offline: last && deferred,
        });
        deferred
    }

    fn locate(&self, vehicle: i64) -> BoxFuture<'_, Result<Option<String>, PresenceError>> {
        Box::pin(async move {
            let holder = self.cluster.lookup(vehicle).await?;
            Ok(holder.filter(|h| !self.cluster.is_me(h)).map(|h| h.node))
        })
    }

    fn held_elsewhere(
        &self,
        vehicles: Vec<i64>,
    ) -> BoxFuture<'_, Result<HashSet<i64>, PresenceError>> {
        Box::pin(async move {
            let holders = self.cluster.lookup_many(&vehicles).await?;
            Ok(holders
                .into_iter()
                .filter(|(_, h)| !self.cluster.is_me(h))
                .map(|(v, _)| v)
                .collect())
        })
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            if let Some(local) = self.local.get() {
                while local.count() > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            self.left.store(true, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            if self.tx.send(Op::Leave(tx)).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            }
        })
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
}

fn eval(script: &str, key: String, args: &[&str]) -> Cmd {
    let mut c = Cmd::new();
    c.arg("EVAL").arg(script).arg(1).arg(key);
    for a in args {
        c.arg(*a);
    }
    c
}

fn ttl_ms(cluster: &Cluster) -> u64 {
    u64::try_from(cluster.presence_ttl.as_millis()).unwrap_or(u64::MAX)
}

fn period(cluster: &Cluster) -> Duration {
    cluster.presence_ttl / 3
}

/// Connects, disconnects and the refresh of this node's device keys, in
/// order.
async fn writer(cluster: Arc<Cluster>, local: Arc<dyn LocalDevices>, mut rx: mpsc::Receiver<Op>) {
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
                Some(op) => if !apply(&*local, &cluster, op, &mut unconfirmed).await { return },
                None => return,
            },
            _ = tick.tick() => {
                // Ops queued before the snapshot go first (a session
                // registered locally has its connect queued already).
                while let Ok(op) = rx.try_recv() {
                    if !apply(&*local, &cluster, op, &mut unconfirmed).await {
                        return;
                    }
                }
                let retry: Vec<(i64, (u64, i64))> =
                    unconfirmed.iter().map(|(v, c)| (*v, *c)).collect();
                for (vehicle, (conn, owner)) in retry {
                    let current = local.conn(vehicle) == Some(conn);
                    if !current || connect(&cluster, vehicle, conn, owner).await {
                        unconfirmed.remove(&vehicle);
                    }
                }
                refresh(&*local, &cluster, &unconfirmed).await;
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
    local: &dyn LocalDevices,
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
            let here = local.conn(vehicle).is_some();
            if offline && !moved && !here {
                local.announce(vehicle, owner, false).await;
            }
            if local.conn(vehicle).is_none() {
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
async fn refresh(
    local: &dyn LocalDevices,
    cluster: &Cluster,
    unconfirmed: &HashMap<i64, (u64, i64)>,
) {
    let mut entries = local.snapshot();
    entries.retain(|d| !unconfirmed.contains_key(&d.vehicle));
    if entries.is_empty() {
        return;
    }
    let ttl = ttl_ms(cluster).to_string();
    let member = cluster.member();
    for chunk in entries.chunks(CHUNK) {
        let cmds: Vec<Cmd> = chunk
            .iter()
            .map(|d| {
                let me = cluster.holder(d.conn, d.owner);
                eval(REFRESH, device_key(d.vehicle), &[&me.value(), &ttl])
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
        for (d, r) in chunk.iter().zip(results) {
            let vehicle = d.vehicle;
            match r {
                Ok(RValue::Int(1)) => {}
                Ok(RValue::Int(2)) => {
                    let mut c = Cmd::new();
                    c.arg("HSET")
                        .arg(devices_key(&member))
                        .arg(vehicle)
                        .arg(d.owner);
                    hsets.push(c);
                    local.reassert(vehicle, d.conn);
                }
                Ok(RValue::BulkString(v)) => {
                    let holder = std::str::from_utf8(&v).ok().and_then(Holder::parse);
                    if let Some(h) = holder
                        && h.incarnation != cluster.incarnation
                    {
                        tracing::info!(vehicle, node = %h.node, "device taken over by another node");
                        local.replace(vehicle, d.conn);
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
async fn liveness(presence: Arc<RedisPresence>) {
    let cluster = &presence.cluster;
    let member = cluster.member();
    let alive_ms = ttl_ms(cluster) * 2 / 3;
    let record_ms = ttl_ms(cluster) * 10;
    let mut tick = tokio::time::interval(period(cluster));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tick.tick().await;
        if presence.left.load(Ordering::Relaxed) {
            return;
        }
        let mut set = Cmd::new();
        set.arg("SET")
            .arg(alive_key(&member))
            .arg(alive_value(cluster))
            .arg("PX")
            .arg(alive_ms);
        if let Err(e) = cluster.redis.query::<RValue>(&set).await {
            tracing::debug!(error = %e, "liveness: Redis failed");
            continue;
        }
        if presence.left.load(Ordering::Relaxed) {
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
async fn reaper(presence: Arc<RedisPresence>, local: Arc<dyn LocalDevices>) {
    let cluster = &presence.cluster;
    let me = cluster.member();
    let mut warned = std::collections::HashSet::new();
    // Out of phase with the liveness task.
    tokio::time::sleep(period(cluster) / 2).await;
    let mut tick = tokio::time::interval(period(cluster));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if presence.left.load(Ordering::Relaxed) {
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
            check_node_id(cluster, &[], &mut warned).await;
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
                Ok(RValue::Int(0)) => reap(&*local, cluster, member).await,
                Ok(_) if member_node(member) == Some(cluster.node_id.as_str()) => {
                    namesakes.push(member.clone());
                }
                _ => {}
            }
        }
        check_node_id(cluster, &namesakes, &mut warned).await;
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
async fn reap(local: &dyn LocalDevices, cluster: &Cluster, member: &str) {
    let Some((node, incarnation)) = member.rsplit_once('@') else {
        return;
    };
    let devices = match lock_and_list(cluster, member).await {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reaper: Redis failed");
            return;
        }
    };
    let prefix = format!("{incarnation}|");
    let mut offline = 0usize;
    for chunk in devices.chunks(CHUNK) {
        match reap_devices(local, cluster, &prefix, chunk).await {
            Ok(n) => offline += n,
            Err(e) => {
                tracing::warn!(error = %e, "reaper: Redis failed");
                return;
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

/// Take the reap lock of `member` (None: another node reaps it) and list
/// its devices (vehicle, owner).
async fn lock_and_list(
    cluster: &Cluster,
    member: &str,
) -> ::redis::RedisResult<Option<Vec<(i64, i64)>>> {
    let mut lock = Cmd::new();
    lock.arg("SET")
        .arg(reap_key(member))
        .arg(cluster.member())
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms(cluster) * 10);
    if cluster
        .redis
        .query::<Option<String>>(&lock)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let devices: HashMap<i64, i64> = cluster
        .redis
        .query(Cmd::new().arg("HGETALL").arg(devices_key(member)))
        .await?;
    Ok(Some(devices.into_iter().collect()))
}

/// Delete the keys of `chunk` (vehicle, owner) still naming the dead
/// incarnation (`prefix`) and announce those devices offline; the number
/// announced.
async fn reap_devices(
    local: &dyn LocalDevices,
    cluster: &Cluster,
    prefix: &str,
    chunk: &[(i64, i64)],
) -> ::redis::RedisResult<usize> {
    let cmds: Vec<Cmd> = chunk
        .iter()
        .map(|(vehicle, _)| eval(REAP_DEVICE, device_key(*vehicle), &[prefix]))
        .collect();
    let results = cluster.redis.batch(&cmds).await?;
    let mut reaped = Vec::new();
    for ((vehicle, owner), r) in chunk.iter().zip(results) {
        if matches!(r, Ok(RValue::Int(1 | 2))) && local.conn(*vehicle).is_none() {
            cluster.stats.devices_reaped.fetch_add(1, Ordering::Relaxed);
            local.announce(*vehicle, *owner, false).await;
            reaped.push((*vehicle, *owner));
        }
    }
    reannounce_reconnected(local, cluster, &reaped).await;
    Ok(reaped.len())
}

/// A device that reconnected (on any node) between the delete and the
/// offline frame had its `online` published first: say online again, so
/// its watchers end on the truth.
async fn reannounce_reconnected(
    local: &dyn LocalDevices,
    cluster: &Cluster,
    reaped: &[(i64, i64)],
) {
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
                local.announce(*vehicle, *owner, true).await;
            }
        }
    }
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
