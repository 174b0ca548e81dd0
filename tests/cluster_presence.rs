//! Presence, commands and one session per device across nodes, and their
//! faults: a node killed with SIGKILL, Redis
//! restarted mid-traffic, a 3-master Redis Cluster. Nodes share one
//! database (PostgreSQL or one SQLite file) and one Redis; every wait is
//! bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::process::{Killed, NodeArgs, start_process_node};
use common::redis::Redis;
use common::sio::SioClient;
use common::{Api, Session, TestServer, metric};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

const T: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(700);
const SECRET: &str = "cluster-presence-test-secret-0123456789abcdef";

/// Where the nodes find Redis.
#[derive(Clone)]
enum Target {
    Single(String),
    Cluster(Vec<String>),
}

fn node(c: &mut roadhub::Config, target: &Target, id: &str) {
    match target {
        Target::Single(url) => c.redis.url = Some(url.clone()),
        Target::Cluster(seeds) => c.redis.cluster_nodes = seeds.clone(),
    }
    c.node.id = id.into();
    // Tokens issued by one node are valid on the others.
    c.auth.jwt_secret = Some(SECRET.into());
    c.realtime.command_timeout_ms = 1_500;
    c.live.start_timeout_secs = 1;
}

/// Nodes on `target` sharing the first node's database.
async fn nodes(target: &Target, ids: &[&str], ttl: u64) -> Vec<TestServer> {
    let first = TestServer::start_with(|c| {
        node(c, target, ids[0]);
        c.node.presence_ttl_secs = ttl;
    })
    .await;
    let db_url = first.config.database.url.clone();
    let mut out = vec![first];
    for id in &ids[1..] {
        let url = db_url.clone();
        out.push(
            TestServer::start_with(|c| {
                node(c, target, id);
                c.node.presence_ttl_secs = ttl;
                c.database.url = url;
            })
            .await,
        );
    }
    out
}

async fn eventually(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// The next `name` event, then none more of it for a while.
async fn once(client: &mut SioClient, name: &str, who: &str) -> Value {
    client.once(name, who, T, QUIET).await
}

/// Subscribers of a sharded channel: on one Redis, or summed over a
/// cluster's masters (a node not owning the slot answers a redirect).
fn subscribers(redis: &[Redis], topic: &str) -> i64 {
    redis
        .iter()
        .map(|r| r.try_shard_subscribers(topic).unwrap_or(0))
        .sum()
}

async fn wait_subscribers(redis: &[Redis], topic: &str, n: i64) {
    eventually(&format!("{n} subscribers of {topic}"), T, async || {
        subscribers(redis, topic) == n
    })
    .await;
}

/// `online` of `vehicle` in GET /api/v1/vehicles, and its last location.
async fn listed(api: &Api, owner: &Session, vehicle: i64) -> (bool, Value) {
    let r = api.get("/api/v1/vehicles", &owner.access).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == vehicle)
        .cloned()
        .unwrap();
    (v["online"].as_bool().unwrap(), v["last_location"].clone())
}

/// Read `presence` events for a while; panics on an offline one.
async fn no_offline(app: &mut SioClient, who: &str) {
    let deadline = Instant::now() + QUIET * 2;
    while let Some((p, _)) = app
        .event(
            "presence",
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
    {
        assert_eq!(p["online"], true, "{who}: unexpected {p}");
    }
}

/// The next command named `name` the device gets (others, such as an
/// on-demand `live.stop`, are skipped).
async fn command(device: &mut SioClient, name: &str) -> (Value, Option<u64>) {
    let deadline = Instant::now() + T;
    loop {
        let (cmd, ack) = device
            .event(
                "command",
                deadline.saturating_duration_since(Instant::now()),
            )
            .await
            .unwrap_or_else(|| panic!("no {name} command"));
        if cmd["name"] == name {
            return (cmd, ack);
        }
    }
}

fn redis_cmd(redis: &Redis, args: &[&str]) -> redis::Value {
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_presence_commands_and_one_session_per_device() {
    let redis = Redis::start();
    let rs = std::slice::from_ref(&redis);
    let target = Target::Single(redis.url());
    let ns = nodes(&target, &["node-a", "node-b", "node-c"], 30).await;
    let (a, b, c) = (&ns[0], &ns[1], &ns[2]);
    for id in ["node-a", "node-b", "node-c"] {
        wait_subscribers(rs, &format!("node:{id}"), 1).await;
    }
    let api = a.api();
    let owner = api.new_user("presence@example.com").await;
    let v = api.new_vehicle(&owner, "PR-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let device_auth = json!({"serial": "PR-1", "token": v["device_token"]});
    let auth = json!({"token": owner.access});

    let mut app_b = SioClient::connect(&b.base, "/app", auth.clone())
        .await
        .unwrap();
    let mut app_c = SioClient::connect(&c.base, "/app", auth.clone())
        .await
        .unwrap();
    let user_topic = format!("user:{}", owner.user_id);
    wait_subscribers(rs, &user_topic, 2).await;
    let r = app_b.emit_ack("watch", json!({"vehicle": vehicle})).await;
    assert_eq!(r, json!({"ok": true, "online": false, "last": null}));
    wait_subscribers(rs, &format!("vehicle:{vehicle}"), 1).await;

    // The device connects to node A: presence online reaches B and C once.
    let mut device = SioClient::connect(&a.base, "/device", device_auth.clone())
        .await
        .unwrap();
    for (app, who) in [(&mut app_b, "app on B"), (&mut app_c, "app on C")] {
        let p = once(app, "presence", who).await;
        assert_eq!(
            (p["vehicle"].as_i64(), &p["online"]),
            (Some(vehicle), &json!(true)),
            "{who}"
        );
        assert!(p["t"].is_i64(), "{who}: {p}");
    }
    let t1 = roadhub::util::now_ms() - 10_000;
    let ack = device
        .emit_ack(
            "loc",
            json!({"points": [{"t": t1, "lat": 37.5, "lon": 127.0}]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    // watch on nodes B and C: online, and the newest point (stored).
    for (app, who) in [(&mut app_b, "app on B"), (&mut app_c, "app on C")] {
        let r = app.emit_ack("watch", json!({"vehicle": vehicle})).await;
        assert_eq!(r["ok"], true, "{who}: {r}");
        assert_eq!(r["online"], true, "{who}: {r}");
        assert_eq!(r["last"]["t"], t1, "{who}: {r}");
    }
    // app B watched before the loc: it had that loc live too.
    let loc = once(&mut app_b, "loc", "app on B").await;
    assert_eq!(loc["points"][0]["t"], t1);
    wait_subscribers(rs, &format!("vehicle:{vehicle}"), 2).await;

    // loc and event reach both watchers once.
    let t2 = t1 + 1_000;
    let ack = device
        .emit_ack(
            "loc",
            json!({"points": [{"t": t2, "lat": 37.6, "lon": 127.1}]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = device
        .emit_ack("event", json!({"type": "impact", "t": t2}))
        .await;
    let event_id = ack["id"].clone();
    for (app, who) in [(&mut app_b, "app on B"), (&mut app_c, "app on C")] {
        let loc = once(app, "loc", who).await;
        assert_eq!(loc["points"][0]["t"], t2, "{who}");
        let ev = once(app, "event", who).await;
        assert_eq!(ev["id"], event_id, "{who}");
    }

    // The vehicle list on nodes B and C says online, with the newest point.
    for n in [b, c] {
        let (online, last) = listed(&n.api(), &owner, vehicle).await;
        assert!(online, "{}", n.base);
        assert_eq!(last["t"], t2, "{}", n.base);
    }

    // A command from node C reaches the device on node A; its ack returns.
    let id = app_c
        .send_with_ack(
            "command",
            json!({"vehicle": vehicle, "name": "beep", "args": {"n": 2}}),
        )
        .await;
    let (cmd, cmd_ack) = command(&mut device, "beep").await;
    assert_eq!(cmd["name"], "beep");
    assert_eq!(cmd["args"], json!({"n": 2}));
    device
        .ack(
            cmd_ack.expect("command asks for an ack"),
            json!({"ok": true, "beeped": 2}),
        )
        .await;
    let answer = app_c.wait_ack(id, T).await.expect("command answer");
    assert_eq!(answer, json!({"ok": true, "beeped": 2}));

    // A device that does not answer: timeout, bounded.
    let started = Instant::now();
    let id = app_c
        .send_with_ack("command", json!({"vehicle": vehicle, "name": "mute"}))
        .await;
    command(&mut device, "mute").await;
    let answer = app_c.wait_ack(id, T).await.expect("command answer");
    assert_eq!(answer, json!({"ok": false, "error": "timeout"}));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // On-demand live video on node C starts the device on node A with node
    // C's RTMP URL (C is the stream's origin); it never publishes: 504.
    let viewer = {
        let api = c.api();
        let path = format!("/live/{vehicle}-front.flv");
        let token = owner.access.clone();
        tokio::spawn(async move { api.get(&path, &token).await })
    };
    let (cmd, _) = command(&mut device, "live.start").await;
    let url = cmd["args"]["url"].as_str().unwrap();
    let prefix = format!("rtmp://{}/live/{vehicle}-front?token=", c.rtmp_addr);
    assert!(url.starts_with(&prefix), "{url}");
    viewer
        .await
        .unwrap()
        .assert_error(504, "live_start_timeout");
    // live.start from an app on node C: the same, through `command`.
    let id = app_c
        .send_with_ack(
            "command",
            json!({"vehicle": vehicle, "name": "live.start", "args": {"channel": "rear"}}),
        )
        .await;
    let (cmd, ack) = command(&mut device, "live.start").await;
    let prefix = format!("rtmp://{}/live/{vehicle}-rear?token=", c.rtmp_addr);
    assert!(
        cmd["args"]["url"].as_str().unwrap().starts_with(&prefix),
        "{cmd}"
    );
    device.ack(ack.unwrap(), json!({"ok": true})).await;
    assert_eq!(app_c.wait_ack(id, T).await.unwrap(), json!({"ok": true}));

    // The device reconnects to node B: the session on A is replaced, the
    // watchers see it online (again), never offline.
    let mut device_b = SioClient::connect(&b.base, "/device", device_auth.clone())
        .await
        .unwrap();
    let (why, _) = device
        .event("session_replaced", T)
        .await
        .expect("the old session is told it was replaced");
    assert!(why["reason"].is_string(), "{why}");
    assert!(device.wait_closed(T).await, "the old session closes");
    no_offline(&mut app_b, "app on B").await;
    no_offline(&mut app_c, "app on C").await;
    assert_eq!(
        metric(&b.base, "roadhub_cluster_kicks_sent_total").await,
        1.0
    );
    let (online, _) = listed(&c.api(), &owner, vehicle).await;
    assert!(online);
    let r = app_c.emit_ack("watch", json!({"vehicle": vehicle})).await;
    assert_eq!(r["online"], true, "{r}");
    // Commands follow it.
    let id = app_c
        .send_with_ack("command", json!({"vehicle": vehicle, "name": "where"}))
        .await;
    let (_, cmd_ack) = command(&mut device_b, "where").await;
    device_b
        .ack(cmd_ack.unwrap(), json!({"ok": true, "on": "b"}))
        .await;
    assert_eq!(
        app_c.wait_ack(id, T).await.unwrap(),
        json!({"ok": true, "on": "b"})
    );

    // Its token rotated through node C: the session on node B is revoked
    // and the device leaves: offline, once, on every node.
    let r = c
        .api()
        .post(
            &format!("/api/v1/vehicles/{vehicle}/device-token"),
            Some(&owner.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let (why, _) = device_b
        .event("session_revoked", T)
        .await
        .expect("the session on B is revoked");
    assert!(why["reason"].is_string(), "{why}");
    assert!(device_b.wait_closed(T).await);
    for (app, who) in [(&mut app_b, "app on B"), (&mut app_c, "app on C")] {
        let deadline = Instant::now() + T;
        loop {
            let (p, _) = app
                .event(
                    "presence",
                    deadline.saturating_duration_since(Instant::now()),
                )
                .await
                .unwrap_or_else(|| panic!("{who}: no offline presence"));
            if p["online"] == false {
                break;
            }
        }
        assert!(app.event("presence", QUIET).await.is_none(), "{who}: twice");
    }
    eventually("the presence key removed", T, async || {
        redis_cmd(&redis, &["EXISTS", &format!("rh:dev:{vehicle}")]) == redis::Value::Int(0)
    })
    .await;
    let (online, _) = listed(&a.api(), &owner, vehicle).await;
    assert!(!online);
    let r = app_c
        .emit_ack("command", json!({"vehicle": vehicle, "name": "x"}))
        .await;
    assert_eq!(r, json!({"ok": false, "error": "offline"}));

    // A key naming a live node that no longer has the device: offline.
    let key = format!("rh:dev:{vehicle}");
    let stale = format!("0000|1|{}|node-b", owner.user_id);
    redis_cmd(&redis, &["SET", &key, &stale, "PX", "60000"]);
    let r = app_c
        .emit_ack("command", json!({"vehicle": vehicle, "name": "x"}))
        .await;
    assert_eq!(r, json!({"ok": false, "error": "offline"}));
    // A key naming a node that is gone: no answer, a bounded timeout.
    let gone = format!("0000|1|{}|node-z", owner.user_id);
    redis_cmd(&redis, &["SET", &key, &gone, "PX", "60000"]);
    let started = Instant::now();
    let r = app_c
        .emit_ack("command", json!({"vehicle": vehicle, "name": "x"}))
        .await;
    assert_eq!(r, json!({"ok": false, "error": "timeout"}));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    redis_cmd(&redis, &["DEL", &key]);
    // Commands C sent to other nodes: beep, mute, live.start, where, x, x;
    // the last one timed out here (mute timed out on the device's node).
    assert_eq!(
        metric(&c.base, "roadhub_cluster_commands_sent_total").await,
        6.0
    );
    assert_eq!(
        metric(&c.base, "roadhub_cluster_command_timeouts_total").await,
        1.0
    );

    app_b.close().await;
    app_c.close().await;
    // A node shutting down leaves the cluster's members (nobody reaps it).
    let members = |redis: &Redis| -> Vec<String> {
        redis::from_redis_value(&redis_cmd(redis, &["SMEMBERS", "rh:nodes"])).unwrap()
    };
    assert_eq!(members(&redis).len(), 3, "{:?}", members(&redis));
    let mut ns = ns;
    ns.pop().unwrap().stop().unwrap();
    let left = members(&redis);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|m| !m.starts_with("node-c@")), "{left:?}");
}

/// node-x in its own process (so it can be killed with SIGKILL).
async fn start_node_x(dir: &std::path::Path, db_url: &str, redis: &str) -> (Killed, String) {
    let args = NodeArgs {
        db_url,
        redis,
        id: "node-x",
        secret: SECRET,
        rtmp: None,
        set: &[],
    };
    start_process_node(dir, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_devices_go_offline_within_the_presence_ttl() {
    let redis = Redis::start();
    let rs = std::slice::from_ref(&redis);
    let target = Target::Single(redis.url());
    let ns = nodes(&target, &["node-b"], 3).await;
    let b = &ns[0];
    let dir = tempfile::tempdir().unwrap();
    let (mut x, x_base) = start_node_x(dir.path(), &b.config.database.url, &redis.url()).await;

    let api = b.api();
    let owner = api.new_user("killed@example.com").await;
    let v = api.new_vehicle(&owner, "KILL-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let device_auth = json!({"serial": "KILL-1", "token": v["device_token"]});
    let mut app = SioClient::connect(&b.base, "/app", json!({"token": owner.access}))
        .await
        .unwrap();
    wait_subscribers(rs, &format!("user:{}", owner.user_id), 1).await;
    let mut device = SioClient::connect(&x_base, "/device", device_auth.clone())
        .await
        .unwrap();
    let p = once(&mut app, "presence", "app on B").await;
    assert_eq!(p["online"], true, "{p}");
    eventually("B sees the device online", T, async || {
        listed(&api, &owner, vehicle).await.0
    })
    .await;
    let r = app.emit_ack("watch", json!({"vehicle": vehicle})).await;
    assert_eq!(r["online"], true, "{r}");

    // kill -9: no goodbye; node B reaps X once its liveness key expires.
    x.kill();
    let killed = Instant::now();
    let (p, _) = app
        .event("presence", Duration::from_secs(8))
        .await
        .expect("presence offline after the kill");
    assert_eq!(p, json!({"vehicle": vehicle, "online": false, "t": p["t"]}));
    let took = killed.elapsed();
    eprintln!("offline {took:?} after the kill");
    // The bound: presence_ttl_secs (3 s), and a little for a loaded machine.
    assert!(took < Duration::from_secs(5), "offline after {took:?}");
    assert!(
        app.event("presence", QUIET).await.is_none(),
        "offline twice"
    );
    assert_eq!(
        metric(&b.base, "roadhub_cluster_nodes_reaped_total").await,
        1.0
    );
    assert_eq!(
        metric(&b.base, "roadhub_cluster_devices_reaped_total").await,
        1.0
    );
    assert!(!listed(&api, &owner, vehicle).await.0);
    let r = app.emit_ack("watch", json!({"vehicle": vehicle})).await;
    assert_eq!(r["online"], false, "{r}");
    assert!(device.wait_closed(T).await);
    assert_eq!(
        redis_cmd(&redis, &["EXISTS", &format!("rh:dev:{vehicle}")]),
        redis::Value::Int(0)
    );

    // The device comes back on node B: online again.
    let mut device = SioClient::connect(&b.base, "/device", device_auth)
        .await
        .unwrap();
    let p = once(&mut app, "presence", "app on B").await;
    assert_eq!(p["online"], true, "{p}");
    assert!(listed(&api, &owner, vehicle).await.0);
    let id = app
        .send_with_ack("command", json!({"vehicle": vehicle, "name": "hello"}))
        .await;
    let (_, ack) = command(&mut device, "hello").await;
    device.ack(ack.unwrap(), json!({"ok": true})).await;
    assert_eq!(app.wait_ack(id, T).await.unwrap(), json!({"ok": true}));
    device.close().await;
    let p = once(&mut app, "presence", "app on B").await;
    assert_eq!(p["online"], false, "{p}");

    // node.id reused: X restarted, a device on it, killed again and
    // restarted at once with the same id. The previous run's device goes
    // offline all the same (it is another incarnation).
    let (mut x2, x2_base) = start_node_x(dir.path(), &b.config.database.url, &redis.url()).await;
    let v2 = api.new_vehicle(&owner, "KILL-2").await;
    let vehicle2 = v2["id"].as_i64().unwrap();
    let _device2 = SioClient::connect(
        &x2_base,
        "/device",
        json!({"serial": "KILL-2", "token": v2["device_token"]}),
    )
    .await
    .unwrap();
    let p = once(&mut app, "presence", "app on B").await;
    assert_eq!(
        (p["vehicle"].as_i64(), &p["online"]),
        (Some(vehicle2), &json!(true))
    );
    eventually("B sees device 2 online", T, async || {
        listed(&api, &owner, vehicle2).await.0
    })
    .await;
    x2.kill();
    let killed = Instant::now();
    let (_x3, _) = start_node_x(dir.path(), &b.config.database.url, &redis.url()).await;
    let (p, _) = app
        .event("presence", Duration::from_secs(8))
        .await
        .expect("presence offline after the second kill");
    assert_eq!(
        (p["vehicle"].as_i64(), &p["online"]),
        (Some(vehicle2), &json!(false))
    );
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(6), "offline after {took:?}");
    assert!(
        app.event("presence", QUIET).await.is_none(),
        "offline twice"
    );
    assert!(!listed(&api, &owner, vehicle2).await.0);
    app.close().await;
}

async fn readyz(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Two live processes with one `node.id` (a copied configuration): the
/// later one answers `/readyz` 503 `node_id_in_use` while the earlier
/// lives, and the earlier stays ready; once the earlier dies (SIGKILL) the
/// later becomes ready within the life of the earlier's liveness key
/// (2/3 of the 3 s TTL) and a reaper period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_node_id_is_unready_while_the_first_lives() {
    let redis = Redis::start();
    let target = Target::Single(redis.url());
    // node-b holds the database and watches.
    let ns = nodes(&target, &["node-b"], 3).await;
    let b = &ns[0];
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut earlier, earlier_base) =
        start_node_x(dir1.path(), &b.config.database.url, &redis.url()).await;
    eventually("the first node-x is ready", T, async || {
        readyz(&earlier_base).await.0 == 200
    })
    .await;
    let (mut later, later_base) =
        start_node_x(dir2.path(), &b.config.database.url, &redis.url()).await;
    eventually("the second node-x reports node_id_in_use", T, async || {
        let (status, body) = readyz(&later_base).await;
        status == 503 && body["error"]["code"] == "node_id_in_use"
    })
    .await;
    assert_eq!(
        metric(&later_base, "roadhub_cluster_node_id_in_use").await,
        1.0
    );
    // Still so a few reaper periods later; the first stays ready.
    sleep(Duration::from_secs(2)).await;
    assert_eq!(readyz(&later_base).await.0, 503);
    let (status, body) = readyz(&earlier_base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(&earlier_base, "roadhub_cluster_node_id_in_use").await,
        0.0
    );
    assert_eq!(readyz(&b.base).await.0, 200);

    earlier.kill();
    let killed = Instant::now();
    eventually("the second node-x becomes ready", T, async || {
        readyz(&later_base).await.0 == 200
    })
    .await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "ready {took:?} after the kill"
    );
    assert_eq!(
        metric(&later_base, "roadhub_cluster_node_id_in_use").await,
        0.0
    );
    later.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_traffic() {
    let mut redis = Redis::start();
    let target = Target::Single(redis.url());
    let ns = nodes(&target, &["node-a", "node-b"], 3).await;
    let (a, b) = (&ns[0], &ns[1]);
    let api = a.api();
    let owner = api.new_user("restart@example.com").await;
    let v = api.new_vehicle(&owner, "RR-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let auth = json!({"token": owner.access});
    let mut app_a = SioClient::connect(&a.base, "/app", auth.clone())
        .await
        .unwrap();
    let mut app_b = SioClient::connect(&b.base, "/app", auth.clone())
        .await
        .unwrap();
    for app in [&mut app_a, &mut app_b] {
        let r = app.emit_ack("watch", json!({"vehicle": vehicle})).await;
        assert_eq!(r["ok"], true, "{r}");
    }
    wait_subscribers(
        std::slice::from_ref(&redis),
        &format!("vehicle:{vehicle}"),
        2,
    )
    .await;
    let mut device = SioClient::connect(
        &a.base,
        "/device",
        json!({"serial": "RR-1", "token": v["device_token"]}),
    )
    .await
    .unwrap();
    let mut t = roadhub::util::now_ms() - 60_000;
    let mut send = async |device: &mut SioClient| {
        t += 100;
        let ack = device
            .emit_ack("loc", json!({"points": [{"t": t, "lat": 1.0, "lon": 2.0}]}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        t
    };
    let sent = send(&mut device).await;
    for app in [&mut app_a, &mut app_b] {
        assert_eq!(once(app, "loc", "app").await["points"][0]["t"], sent);
    }

    redis.kill();
    eventually("A not ready", T, async || {
        let (s, body) = readyz(&a.base).await;
        s == 503 && body["error"]["code"] == "redis_unavailable"
    })
    .await;
    assert_eq!(metric(&a.base, "roadhub_cluster_redis_up").await, 0.0);
    // Local delivery goes on.
    let sent = send(&mut device).await;
    let (loc, _) = app_a
        .event("loc", T)
        .await
        .expect("app on A still gets loc");
    assert_eq!(loc["points"][0]["t"], sent);
    // The vehicle list answers (the local view) while Redis is down.
    assert!(listed(&api, &owner, vehicle).await.0);

    redis.spawn();
    for n in [a, b] {
        eventually("ready again", Duration::from_secs(15), async || {
            readyz(&n.base).await.0 == 200
        })
        .await;
        assert_eq!(metric(&n.base, "roadhub_cluster_redis_up").await, 1.0);
    }
    // Node B receives again (its subscription restored), within a bound.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sent = send(&mut device).await;
        if let Some((loc, _)) = app_b.event("loc", Duration::from_millis(300)).await
            && loc["points"][0]["t"].as_i64() >= Some(sent - 1_000)
        {
            break;
        }
        assert!(Instant::now() < deadline, "node B never received again");
    }
    // Presence is restored in the new Redis (the refresh re-creates it).
    eventually("B sees the device online", T, async || {
        listed(&b.api(), &owner, vehicle).await.0
    })
    .await;
    device.close().await;
    app_a.close().await;
    app_b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_watch_loc_command_presence() {
    let rc = common::redis::start_cluster();
    let target = Target::Cluster(rc.iter().map(Redis::url).collect());
    let ns = nodes(&target, &["node-a", "node-b"], 3).await;
    let (a, b) = (&ns[0], &ns[1]);
    for id in ["node-a", "node-b"] {
        wait_subscribers(&rc, &format!("node:{id}"), 1).await;
    }
    let api = a.api();
    let owner = api.new_user("rcluster@example.com").await;
    // Vehicles whose keys land on different masters.
    let mut vehicles = Vec::new();
    for i in 0..3 {
        let serial = format!("RC-{i}");
        let v = api.new_vehicle(&owner, &serial).await;
        vehicles.push((v["id"].as_i64().unwrap(), serial, v["device_token"].clone()));
    }
    let mut app = SioClient::connect(&b.base, "/app", json!({"token": owner.access}))
        .await
        .unwrap();
    wait_subscribers(&rc, &format!("user:{}", owner.user_id), 1).await;
    let mut devices = Vec::new();
    for (_, serial, token) in &vehicles {
        let d = SioClient::connect(
            &a.base,
            "/device",
            json!({"serial": serial, "token": token}),
        )
        .await
        .unwrap();
        devices.push(d);
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..vehicles.len() {
        let (p, _) = app.event("presence", T).await.expect("presence online");
        assert_eq!(p["online"], true, "{p}");
        seen.insert(p["vehicle"].as_i64().unwrap());
    }
    assert_eq!(seen.len(), vehicles.len());
    eventually("all online in the list", T, async || {
        let r = b.api().get("/api/v1/vehicles", &owner.access).await;
        r.body
            .as_array()
            .is_some_and(|l| l.len() == 3 && l.iter().all(|v| v["online"] == true))
    })
    .await;

    let (vehicle, _, _) = vehicles[0].clone();
    let r = app.emit_ack("watch", json!({"vehicle": vehicle})).await;
    assert_eq!(r["online"], true, "{r}");
    wait_subscribers(&rc, &format!("vehicle:{vehicle}"), 1).await;
    let t = roadhub::util::now_ms() - 1_000;
    let ack = devices[0]
        .emit_ack("loc", json!({"points": [{"t": t, "lat": 1.0, "lon": 2.0}]}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(once(&mut app, "loc", "app on B").await["points"][0]["t"], t);

    let id = app
        .send_with_ack("command", json!({"vehicle": vehicle, "name": "ping"}))
        .await;
    let (_, ack) = command(&mut devices[0], "ping").await;
    devices[0]
        .ack(ack.unwrap(), json!({"ok": true, "pong": 1}))
        .await;
    assert_eq!(
        app.wait_ack(id, T).await.unwrap(),
        json!({"ok": true, "pong": 1})
    );

    for d in devices {
        d.close().await;
    }
    let mut off = std::collections::HashSet::new();
    while off.len() < vehicles.len() {
        let (p, _) = app.event("presence", T).await.expect("presence offline");
        if p["online"] == false {
            assert!(off.insert(p["vehicle"].as_i64().unwrap()), "twice: {p}");
        }
    }
    eventually("all offline in the list", T, async || {
        let r = b.api().get("/api/v1/vehicles", &owner.access).await;
        r.body
            .as_array()
            .is_some_and(|l| l.iter().all(|v| v["online"] == false))
    })
    .await;
    app.close().await;
}
