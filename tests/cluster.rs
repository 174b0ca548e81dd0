//! Two nodes on one Redis and one database: a room's frames reach its
//! members on every node, once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use common::redis::Redis;
use common::sio::SioClient;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

const T: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(500);

fn cluster(c: &mut roadhub::Config, redis: &Redis, id: &str) {
    c.redis.url = Some(redis.url());
    c.node.id = id.into();
    // Tokens issued by one node are valid on the other.
    c.auth.jwt_secret = Some("cluster-test-secret-".repeat(3));
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// The next `name` event, then none more of it for a while.
async fn once(client: &mut SioClient, name: &str, who: &str) -> Value {
    client.once(name, who, T, QUIET).await
}

#[tokio::test]
async fn room_frames_reach_members_on_every_node_once() {
    let redis = Redis::start();
    let a = TestServer::start_with(|c| cluster(c, &redis, "node-a")).await;
    // The same database as node A (PostgreSQL or the same SQLite file).
    let db_url = a.config.database.url.clone();
    let b = TestServer::start_with(|c| {
        cluster(c, &redis, "node-b");
        c.database.url = db_url;
    })
    .await;

    let api = a.api();
    let owner = api.new_user("owner@example.com").await;
    let v = api.new_vehicle(&owner, "CL-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let token = v["device_token"].as_str().unwrap().to_string();
    let auth = json!({"token": owner.access});

    let mut app_b = SioClient::connect(&b.base, "/app", auth.clone())
        .await
        .unwrap();
    let r = app_b.emit_ack("watch", json!({"vehicle": vehicle})).await;
    assert_eq!(r["ok"], true, "{r}");
    let mut app_a = SioClient::connect(&a.base, "/app", auth.clone())
        .await
        .unwrap();
    let r = app_a.emit_ack("watch", json!({"vehicle": vehicle})).await;
    assert_eq!(r["ok"], true, "{r}");

    // Each node subscribes to the rooms it has members of.
    let vehicle_topic = format!("vehicle:{vehicle}");
    let user_topic = format!("user:{}", owner.user_id);
    eventually("both nodes subscribed", || {
        redis.shard_subscribers(&vehicle_topic) == 2 && redis.shard_subscribers(&user_topic) == 2
    })
    .await;

    let mut device = SioClient::connect(
        &a.base,
        "/device",
        json!({"serial": "CL-1", "token": token}),
    )
    .await
    .unwrap();
    let start = roadhub::util::now_ms() - 5_000;
    let ack = device
        .emit_ack(
            "loc",
            json!({"points": [{"t": start, "lat": 37.5, "lon": 127.0, "spd": 42.0}]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = device
        .emit_ack("event", json!({"type": "impact", "t": start}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let event_id = ack["id"].clone();

    for (app, who) in [(&mut app_b, "app on node B"), (&mut app_a, "app on node A")] {
        let loc = once(app, "loc", who).await;
        assert_eq!(loc["vehicle"], vehicle, "{who}");
        assert_eq!(loc["points"][0]["t"], start, "{who}");
        let ev = once(app, "event", who).await;
        assert_eq!(ev["vehicle"], vehicle, "{who}");
        assert_eq!(ev["type"], "impact", "{who}");
        assert_eq!(ev["id"], event_id, "{who}");
    }

    // The last member on node B gone, node B unsubscribes.
    app_b.close().await;
    eventually("node B unsubscribed", || {
        redis.shard_subscribers(&vehicle_topic) == 1 && redis.shard_subscribers(&user_topic) == 1
    })
    .await;
    device.close().await;
    app_a.close().await;
}

/// A TCP proxy to `target` that holds every chunk `delay` before passing
/// it on (both directions, order kept): a slow link to Redis.
async fn slow_proxy(target: std::net::SocketAddr, delay: Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let pump = |mut r: tokio::net::tcp::OwnedReadHalf,
                        mut w: tokio::net::tcp::OwnedWriteHalf| async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 || {
                        sleep(delay).await;
                        w.write_all(&buf[..n]).await.is_err()
                    } {
                        break;
                    }
                }
            };
            tokio::spawn(pump(cr, sw));
            tokio::spawn(pump(sr, cw));
        }
    });
    addr
}

/// A `watch` answered on one node receives the frames another node
/// publishes right after, even on a slow link to Redis: the answer waits
/// for the node's Redis subscription to the room (no join window).
#[tokio::test]
async fn a_watch_answered_receives_the_next_frame_from_another_node() {
    let redis = Redis::start();
    let a = TestServer::start_with(|c| cluster(c, &redis, "node-a")).await;
    let db_url = a.config.database.url.clone();
    // Node B reaches Redis over a link adding 150 ms each way.
    let redis_addr = redis.url().trim_start_matches("redis://").parse().unwrap();
    let slow = slow_proxy(redis_addr, Duration::from_millis(150)).await;
    let b = TestServer::start_with(|c| {
        cluster(c, &redis, "node-b");
        c.redis.url = Some(format!("redis://{slow}"));
        c.database.url = db_url;
    })
    .await;
    let api = a.api();
    let owner = api.new_user("window@example.com").await;
    let v = api.new_vehicle(&owner, "CL-W").await;
    let vehicle = v["id"].as_i64().unwrap();
    let token = v["device_token"].as_str().unwrap().to_string();
    let mut device = SioClient::connect(
        &a.base,
        "/device",
        json!({"serial": "CL-W", "token": token}),
    )
    .await
    .unwrap();
    // Node B ready: its bus is connected to Redis (over the slow link).
    let readyz = format!("{}/readyz", b.base);
    let deadline = Instant::now() + T;
    while reqwest::get(&readyz)
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "node B never ready");
        sleep(Duration::from_millis(50)).await;
    }
    let topic = format!("vehicle:{vehicle}");
    let user_topic = format!("user:{}", owner.user_id);
    let t0 = roadhub::util::now_ms() - 60_000;
    for round in 0..3i64 {
        // A connected app is in its user room (events, presence): the
        // first member on node B, so a fresh subscription each round.
        let mut app_b = SioClient::connect(&b.base, "/app", json!({"token": owner.access}))
            .await
            .unwrap();
        let t = t0 + round * 1000;
        let ack = device
            .emit_ack("event", json!({"type": "impact", "t": t}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        let (ev, _) = app_b
            .event("event", T)
            .await
            .unwrap_or_else(|| panic!("round {round}: no event on node B right after connect"));
        assert_eq!(ev["t"], t, "round {round}");
        // And a watch answered receives the next `loc`.
        let r = app_b.emit_ack("watch", json!({"vehicle": vehicle})).await;
        assert_eq!(r["ok"], true, "{r}");
        let ack = device
            .emit_ack(
                "loc",
                json!({"points": [{"t": t, "lat": 37.5, "lon": 127.0, "spd": 1.0}]}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        let (loc, _) = app_b
            .event("loc", T)
            .await
            .unwrap_or_else(|| panic!("round {round}: no loc on node B right after watch"));
        assert_eq!(loc["points"][0]["t"], t, "round {round}");
        app_b.close().await;
        eventually("node B unsubscribed", || {
            redis.shard_subscribers(&topic) == 0 && redis.shard_subscribers(&user_topic) == 0
        })
        .await;
    }
    device.close().await;
}
