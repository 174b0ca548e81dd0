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
    let (v, _) = client
        .event(name, T)
        .await
        .unwrap_or_else(|| panic!("{who}: no {name}"));
    assert!(
        client.event(name, QUIET).await.is_none(),
        "{who}: {name} delivered twice"
    );
    v
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
