//! The realtime hub over real Socket.IO: device and app sessions, rooms,
//! presence, durable acks, commands, limits, hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::sio::{Connect, SioClient};
use common::{Session, TestServer};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

struct Fixture {
    server: TestServer,
    owner: Session,
    vehicle: i64,
    serial: String,
    token: String,
}

async fn fixture(adjust: impl FnOnce(&mut roadhub::Config)) -> Fixture {
    let server = TestServer::start_with(adjust).await;
    let api = server.api();
    let owner = api.new_user("owner@example.com").await;
    let v = api.new_vehicle(&owner, "RT-1").await;
    Fixture {
        owner,
        vehicle: v["id"].as_i64().unwrap(),
        serial: "RT-1".into(),
        token: v["device_token"].as_str().unwrap().to_string(),
        server,
    }
}

impl Fixture {
    async fn device(&self) -> SioClient {
        SioClient::connect(
            &self.server.base,
            "/device",
            json!({"serial": self.serial, "token": self.token}),
        )
        .await
        .unwrap()
    }

    async fn app(&self) -> SioClient {
        SioClient::connect(
            &self.server.base,
            "/app",
            json!({"token": self.owner.access}),
        )
        .await
        .unwrap()
    }
}

fn now_ms() -> i64 {
    roadhub::util::now_ms()
}

fn points(n: usize, start: i64) -> Value {
    let pts: Vec<Value> = (0..n)
        .map(|i| json!({"t": start + i as i64 * 1000, "lat": 37.5 + i as f64 * 1e-4, "lon": 127.0, "spd": 42.0}))
        .collect();
    json!({"points": pts})
}

fn stored_points(server: &TestServer, vehicle: i64) -> i64 {
    use diesel::prelude::*;
    use roadhub::db::schema::locations;
    let db = server.db();
    let mut conn = db.get().unwrap();
    roadhub::db_run!(&mut conn, |c| locations::table
        .filter(locations::vehicle_id.eq(vehicle))
        .count()
        .get_result::<i64>(c)
        .unwrap())
}

#[tokio::test]
async fn device_telemetry_reaches_watchers_and_is_stored_before_the_ack() {
    let f = fixture(|_| {}).await;
    let mut app = f.app().await;
    let r = app.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
    assert_eq!(r, json!({"ok": true, "online": false, "last": null}));

    let mut device = f.device().await;
    let (presence, _) = app.event("presence", T).await.expect("presence online");
    assert_eq!(presence["vehicle"], f.vehicle);
    assert_eq!(presence["online"], true);

    let start = now_ms() - 10_000;
    let ack = device.emit_ack("loc", points(3, start)).await;
    assert_eq!(ack, json!({"ok": true, "stored": 3}));
    // Durable: the ack came after the commit.
    assert_eq!(stored_points(&f.server, f.vehicle), 3);
    let (loc, _) = app.event("loc", T).await.expect("loc fan-out");
    assert_eq!(loc["vehicle"], f.vehicle);
    assert_eq!(loc["points"].as_array().unwrap().len(), 3);
    assert_eq!(loc["points"][0]["t"], start);
    assert_eq!(loc["points"][0]["spd"], 42.0);

    // Resending the same batch (a lost ack) stores nothing twice.
    let ack = device.emit_ack("loc", points(3, start)).await;
    assert_eq!(ack["ok"], true);
    assert_eq!(stored_points(&f.server, f.vehicle), 3);

    let ack = device
        .emit_ack(
            "event",
            json!({"type": "impact", "t": now_ms(), "lat": 37.5, "lon": 127.0, "meta": {"g": 2.5}}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    let event_id = ack["id"].as_i64().unwrap();
    let (ev, _) = app.event("event", T).await.expect("event fan-out");
    assert_eq!(ev["vehicle"], f.vehicle);
    assert_eq!(ev["id"], event_id);
    assert_eq!(ev["type"], "impact");
    assert_eq!(ev["meta"]["g"], 2.5);

    // The device cannot pass for another vehicle in its payload.
    let ack = device
        .emit_ack("status", json!({"battery": 12.6, "vehicle": 999_999}))
        .await;
    assert_eq!(ack, json!({"ok": true}));
    let (status, _) = app.event("status", T).await.expect("status fan-out");
    assert_eq!(status["vehicle"], f.vehicle);
    assert_eq!(status["battery"], 12.6);
    let ack = device.emit_ack("obd", json!({"rpm": 900})).await;
    assert_eq!(ack, json!({"ok": true}));
    let (obd, _) = app.event("obd", T).await.expect("obd fan-out");
    assert_eq!(obd["rpm"], 900);

    // REST sees the live state.
    let list = f
        .server
        .api()
        .get("/api/v1/vehicles", &f.owner.access)
        .await;
    assert_eq!(list.body[0]["online"], true);
    assert_eq!(list.body[0]["last_location"]["t"], start + 2000);
    let status = f
        .server
        .api()
        .get(
            &format!("/api/v1/vehicles/{}/status", f.vehicle),
            &f.owner.access,
        )
        .await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["status"]["data"]["battery"], 12.6);
    assert_eq!(status.body["obd"]["data"]["rpm"], 900);

    // A watch now answers online with the last point.
    let mut app2 = f.app().await;
    let r = app2.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
    assert_eq!(r["online"], true);
    assert_eq!(r["last"]["t"], start + 2000);

    device.close().await;
    let (presence, _) = app.event("presence", T).await.expect("presence offline");
    assert_eq!(presence["online"], false);
    let list = f
        .server
        .api()
        .get("/api/v1/vehicles", &f.owner.access)
        .await;
    assert_eq!(list.body[0]["online"], false);
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let f = fixture(|c| c.auth.jwt_secret = Some("k".repeat(40))).await;
    let other = f.server.api().new_user("other@example.com").await;
    let other_v = f.server.api().new_vehicle(&other, "OTHER-1").await;
    let base = &f.server.base;
    let refused = |c: Connect| match c {
        Connect::Refused(v) => v,
        Connect::Ok(_) => panic!("should be refused"),
    };
    // A device token with another vehicle's serial: cannot act as another.
    let r = refused(
        SioClient::connect(
            base,
            "/device",
            json!({"serial": "OTHER-1", "token": f.token}),
        )
        .await,
    );
    assert_eq!(r, json!({"message": "unauthorized"}));
    let r = refused(
        SioClient::connect(
            base,
            "/device",
            json!({"serial": "RT-1", "token": other_v["device_token"]}),
        )
        .await,
    );
    assert_eq!(r["message"], "unauthorized");
    let r = refused(SioClient::connect(base, "/device", json!({"serial": "RT-1"})).await);
    assert_eq!(r["message"], "unauthorized");
    let r = refused(SioClient::connect(base, "/device", Value::Null).await);
    assert_eq!(r["message"], "unauthorized");
    let r = refused(SioClient::connect(base, "/app", json!({"token": "nope"})).await);
    assert_eq!(r["message"], "unauthorized");
    // An expired access token (signed with the node's key).
    let claims =
        json!({"sub": f.owner.user_id.to_string(), "iat": 1, "exp": 1000, "typ": "access"});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret("k".repeat(40).as_bytes()),
    )
    .unwrap();
    let r = refused(SioClient::connect(base, "/app", json!({"token": expired})).await);
    assert_eq!(r["message"], "unauthorized");
    // An unknown namespace.
    let r = refused(SioClient::connect(base, "/admin", json!({})).await);
    assert_eq!(r["message"], "Invalid namespace");
}

#[tokio::test]
async fn another_users_vehicle_cannot_be_watched_or_commanded() {
    let f = fixture(|_| {}).await;
    let mallory = f.server.api().new_user("mallory@example.com").await;
    let mut device = f.device().await;
    let mut app = SioClient::connect(&f.server.base, "/app", json!({"token": mallory.access}))
        .await
        .unwrap();
    for vehicle in [json!(f.vehicle), json!(999_999)] {
        let r = app.emit_ack("watch", json!({"vehicle": vehicle})).await;
        assert_eq!(r, json!({"ok": false, "error": "forbidden"}));
        let r = app
            .emit_ack(
                "command",
                json!({"vehicle": vehicle, "name": "reboot", "args": {}}),
            )
            .await;
        assert_eq!(r, json!({"ok": false, "error": "forbidden"}));
    }
    // Nothing reaches mallory when the device reports.
    let ack = device.emit_ack("loc", points(1, now_ms())).await;
    assert_eq!(ack["ok"], true);
    device
        .emit_ack("event", json!({"type": "impact", "t": now_ms()}))
        .await;
    assert!(app.event("loc", Duration::from_millis(500)).await.is_none());
    assert!(
        app.event("event", Duration::from_millis(100))
            .await
            .is_none()
    );
    assert!(
        app.event("presence", Duration::from_millis(100))
            .await
            .is_none()
    );
    let r = app.emit_ack("watch", json!({"vehicle": "1"})).await;
    assert_eq!(r["error"], "invalid_payload");
}

#[tokio::test]
async fn invalid_telemetry_is_refused_and_the_session_stays() {
    let f = fixture(|_| {}).await;
    let mut device = f.device().await;
    let now = now_ms();
    let cases = [
        (json!("not an object"), "invalid_payload"),
        (json!({"points": []}), "no_points"),
        (points(601, now - 700_000), "too_many_points"),
        (
            json!({"points": [{"t": now, "lat": 91.0, "lon": 0.0}]}),
            "invalid_coordinates",
        ),
        (
            json!({"points": [{"t": now, "lat": 1.0, "lon": 181.0}]}),
            "invalid_coordinates",
        ),
        (
            json!({"points": [{"t": 5, "lat": 1.0, "lon": 1.0}]}),
            "invalid_time",
        ),
        (
            json!({"points": [{"t": now + 3_600_000, "lat": 1.0, "lon": 1.0}]}),
            "invalid_time",
        ),
        (
            json!({"points": [{"t": "x", "lat": 1.0, "lon": 1.0}]}),
            "invalid_payload",
        ),
        (
            json!({"points": [{"t": now, "lat": 1.0, "lon": 1.0, "spd": -5}]}),
            "invalid_value",
        ),
    ];
    for (payload, code) in cases {
        let r = device.emit_ack("loc", payload.clone()).await;
        assert_eq!(r, json!({"ok": false, "error": code}), "{payload}");
    }
    let r = device
        .emit_ack("event", json!({"type": "Bad Type!", "t": now}))
        .await;
    assert_eq!(r["error"], "invalid_type");
    let r = device
        .emit_ack("status", json!(["not", "an", "object"]))
        .await;
    assert_eq!(r["ok"], false);
    let r = device
        .emit_ack("status", json!({"blob": "x".repeat(20_000)}))
        .await;
    assert_eq!(r["error"], "too_large");
    let r = device.emit_ack("teleport", json!({})).await;
    assert_eq!(r["error"], "unknown_event");
    // Still connected and working.
    let r = device.emit_ack("loc", points(600, now - 700_000)).await;
    assert_eq!(r, json!({"ok": true, "stored": 600}));
    assert_eq!(stored_points(&f.server, f.vehicle), 600);
}

#[tokio::test]
async fn commands_are_relayed_and_time_out() {
    let f = fixture(|c| c.realtime.command_timeout_ms = 500).await;
    let mut app = f.app().await;
    let r = app
        .emit_ack(
            "command",
            json!({"vehicle": f.vehicle, "name": "reboot", "args": {}}),
        )
        .await;
    assert_eq!(r, json!({"ok": false, "error": "offline"}));

    let mut device = f.device().await;
    let id = app
        .send_with_ack(
            "command",
            json!({"vehicle": f.vehicle, "name": "snapshot", "args": {"channel": "front"}}),
        )
        .await;
    let (cmd, ack_id) = device
        .event("command", T)
        .await
        .expect("command at the device");
    assert_eq!(cmd["name"], "snapshot");
    assert_eq!(cmd["args"]["channel"], "front");
    assert!(cmd["id"].is_u64());
    device
        .ack(
            ack_id.expect("an ack id"),
            json!({"ok": true, "file": "x.jpg"}),
        )
        .await;
    let answer = app.wait_ack(id, T).await.unwrap();
    assert_eq!(answer, json!({"ok": true, "file": "x.jpg"}));

    // The device does not answer: timeout.
    let id = app
        .send_with_ack(
            "command",
            json!({"vehicle": f.vehicle, "name": "slow", "args": null}),
        )
        .await;
    let (_cmd, _ack) = device.event("command", T).await.unwrap();
    let answer = app.wait_ack(id, T).await.unwrap();
    assert_eq!(answer, json!({"ok": false, "error": "timeout"}));

    // Commands are logged.
    use diesel::prelude::*;
    use roadhub::db::schema::command_log;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let db = f.server.db();
    let mut conn = db.get().unwrap();
    let statuses: Vec<String> = roadhub::db_run!(&mut conn, |c| command_log::table
        .filter(command_log::vehicle_id.eq(f.vehicle))
        .order(command_log::id)
        .select(command_log::status)
        .load(c)
        .unwrap());
    assert_eq!(statuses, ["answered", "timeout"]);
}

#[tokio::test]
async fn a_second_connection_of_a_device_replaces_the_first() {
    let f = fixture(|_| {}).await;
    let mut app = f.app().await;
    app.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
    let mut first = f.device().await;
    app.event("presence", T).await.unwrap();
    let mut second = f.device().await;
    let (why, _) = first.event("session_replaced", T).await.expect("told why");
    assert!(why["reason"].is_string());
    assert!(first.wait_closed(T).await, "the old connection is closed");
    // The vehicle stays online, and the new session works.
    let ack = second.emit_ack("loc", points(1, now_ms())).await;
    assert_eq!(ack["ok"], true);
    assert!(app.event("loc", T).await.is_some());
    let list = f
        .server
        .api()
        .get("/api/v1/vehicles", &f.owner.access)
        .await;
    assert_eq!(list.body[0]["online"], true);
    // No "offline" was announced for the replaced session.
    while let Some((p, _)) = app.event("presence", Duration::from_millis(300)).await {
        assert_eq!(p["online"], true, "{p}");
    }
}

#[tokio::test]
async fn rate_limits_answer_rate_limited_and_keep_the_session() {
    let f = fixture(|c| {
        c.limits.device_messages_per_second = 3;
        c.limits.app_messages_per_second = 2;
    })
    .await;
    let mut device = f.device().await;
    let mut codes = Vec::new();
    for i in 0..6 {
        let r = device
            .emit_ack("loc", points(1, now_ms() - 60_000 + i))
            .await;
        codes.push(r["error"].as_str().unwrap_or("ok").to_string());
    }
    assert_eq!(&codes[..3], ["ok", "ok", "ok"]);
    assert!(codes[3..].iter().all(|c| c == "rate_limited"), "{codes:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = device.emit_ack("loc", points(1, now_ms())).await;
    assert_eq!(r["ok"], true, "the session stays and recovers");

    let mut app = f.app().await;
    let mut app_codes = Vec::new();
    for _ in 0..4 {
        let r = app.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
        app_codes.push(r["error"].as_str().unwrap_or("ok").to_string());
    }
    assert_eq!(app_codes, ["ok", "ok", "rate_limited", "rate_limited"]);
}

#[tokio::test]
async fn app_sessions_per_user_are_limited() {
    let f = fixture(|c| c.limits.app_sessions_per_user = 2).await;
    let a = f.app().await;
    let _b = f.app().await;
    let r = SioClient::connect(&f.server.base, "/app", json!({"token": f.owner.access})).await;
    match r {
        Connect::Refused(v) => assert_eq!(v["message"], "too_many_sessions"),
        Connect::Ok(_) => panic!("a third session must be refused"),
    }
    a.close().await;
    // The slot frees up once a session ends.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Connect::Ok(_) =
            SioClient::connect(&f.server.base, "/app", json!({"token": f.owner.access})).await
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn missed_heartbeats_make_the_device_offline() {
    let f = fixture(|c| {
        // Short, but with room for the test's own clients, which answer
        // pings only while the test reads from them.
        c.realtime.ping_interval_ms = 300;
        c.realtime.ping_timeout_ms = 1500;
    })
    .await;
    let mut app = f.app().await;
    app.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
    let device = f.device().await; // never read again: pings go unanswered
    let (p, _) = app.event("presence", T).await.unwrap();
    assert_eq!(p["online"], true);
    let (p, _) = app
        .event("presence", Duration::from_secs(8))
        .await
        .expect("offline after missed pongs");
    assert_eq!(p["online"], false);
    drop(device);
}

#[tokio::test]
async fn hostile_packets_close_only_their_own_connection() {
    let f = fixture(|c| c.realtime.max_payload = 64 * 1024).await;
    let mut app = f.app().await;
    app.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
    let _device = f.device().await;
    app.event("presence", T).await.unwrap();

    for garbage in [
        "4garbage",
        "42/device,[",
        "42/device,{\"not\":\"an array\"}",
        "49",
        "451-/device,[\"loc\",{\"_placeholder\":true,\"num\":7}]",
        "\u{0}\u{1}",
        "",
    ] {
        let mut bad = f.device().await;
        bad.send_raw(garbage).await;
        assert!(
            bad.wait_closed(T).await,
            "{garbage:?} must close the connection"
        );
    }
    // Over maxPayload.
    let mut big = f.device().await;
    big.send_raw(format!(
        "42/device,[\"status\",{{\"x\":\"{}\"}}]",
        "a".repeat(100 * 1024)
    ))
    .await;
    assert!(
        big.wait_closed(T).await,
        "oversized message closes the connection"
    );

    // The node and the other sessions are fine.
    let mut device = f.device().await;
    let ack = device.emit_ack("loc", points(1, now_ms())).await;
    assert_eq!(ack["ok"], true);
    assert!(app.event("loc", T).await.is_some());
    let r = f
        .server
        .api()
        .send(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_slow_phone_is_coalesced_then_dropped_without_slowing_others() {
    let f = fixture(|c| {
        c.realtime.queue_soft_frames = 8;
        c.realtime.queue_hard_bytes = 256 * 1024;
        c.realtime.slow_timeout_secs = 2;
        c.limits.device_messages_per_second = 0;
    })
    .await;
    let mut fast = f.app().await;
    fast.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
    let mut slow = f.app().await;
    slow.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
    let mut device = f.device().await;
    // The slow phone stops reading; the device sends 400 batches of 600
    // points (~25 MB of fan-out), far more than loopback socket buffers absorb.
    let start = now_ms() - 250_000_000;
    let mut fast_got = 0;
    for i in 0..400 {
        let ack = device
            .emit_ack("loc", points(600, start + i * 600_000))
            .await;
        assert_eq!(ack["ok"], true);
        while fast.event("loc", Duration::ZERO).await.is_some() {
            fast_got += 1;
        }
    }
    while fast
        .event("loc", Duration::from_millis(500))
        .await
        .is_some()
    {
        fast_got += 1;
    }
    assert_eq!(fast_got, 400, "the fast phone got every batch");
    assert!(
        slow.wait_closed(Duration::from_secs(15)).await,
        "the slow phone was disconnected"
    );
    let metrics = reqwest::get(format!("{}/metrics", f.server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("roadhub_socketio_slow_disconnects_total"))
        .unwrap();
    assert!(!line.ends_with(" 0"), "{line}");
}

#[tokio::test]
async fn watch_answers_the_newest_stored_point_when_memory_has_none() {
    use diesel::prelude::*;
    use roadhub::db::models::NewLocation;
    use roadhub::db::schema::locations;
    let f = fixture(|_| {}).await;
    let db = f.server.db();
    let mut conn = db.get().unwrap();
    for t in [1_700_000_000_000_i64, 1_700_000_005_000] {
        let row = NewLocation {
            vehicle_id: f.vehicle,
            t,
            lat: 10.0,
            lon: 20.0,
            speed: None,
            heading: Some(90.0),
            altitude: None,
        };
        roadhub::db_run!(&mut conn, |c| diesel::insert_into(locations::table)
            .values(&row)
            .execute(c)
            .unwrap());
    }
    let mut app = f.app().await;
    let r = app.emit_ack("watch", json!({"vehicle": f.vehicle})).await;
    assert_eq!(r["ok"], true);
    assert_eq!(r["online"], false);
    assert_eq!(r["last"]["t"], 1_700_000_005_000_i64);
    assert_eq!(r["last"]["hdg"], 90.0);
}

/// A device that missed an event's ack sends it again (the same event):
/// it is stored once and acked with the first id, on a new session too;
/// another event at the same time (another type, or other meta) is new.
#[tokio::test]
async fn a_resent_event_is_stored_once_and_keeps_its_id() {
    use diesel::prelude::*;
    use roadhub::db::schema::events;
    let f = fixture(|_| {}).await;
    let mut app = f.app().await;
    let mut device = f.device().await;
    let t = now_ms() - 1_000;
    let ev = json!({"type": "impact", "t": t, "meta": {"g": 2.5}});
    let first = device.emit_ack("event", ev.clone()).await;
    assert_eq!(first["ok"], true, "{first}");
    let id = first["id"].as_i64().unwrap();
    let (out, _) = app.event("event", T).await.expect("event fan-out");
    assert_eq!(out["id"], id);
    // Resent on the same session, then on a new one.
    let again = device.emit_ack("event", ev.clone()).await;
    assert_eq!(again, json!({"ok": true, "id": id}));
    device.close().await;
    let mut device = f.device().await;
    let again = device.emit_ack("event", ev.clone()).await;
    assert_eq!(again, json!({"ok": true, "id": id}));
    // Phones may see it again, always with the first id.
    while let Some((out, _)) = app.event("event", Duration::from_millis(300)).await {
        assert_eq!(out["id"], id, "{out}");
    }
    // Another type at the same time is another event.
    let other = device
        .emit_ack("event", json!({"type": "harsh_brake", "t": t}))
        .await;
    assert_eq!(other["ok"], true, "{other}");
    assert_ne!(other["id"], id);
    let other_meta = device
        .emit_ack(
            "event",
            json!({"type": "impact", "t": t, "meta": {"g": 3.0}}),
        )
        .await;
    assert_eq!(other_meta["ok"], true, "{other_meta}");
    assert_ne!(other_meta["id"], id);
    let db = f.server.db();
    let mut conn = db.get().unwrap();
    let rows: i64 = roadhub::db_run!(&mut conn, |c| events::table
        .filter(events::vehicle_id.eq(f.vehicle))
        .count()
        .get_result::<i64>(c)
        .unwrap());
    assert_eq!(rows, 3);
    device.close().await;
    app.close().await;
}

#[tokio::test]
async fn a_resent_status_or_obd_is_stored_once() {
    use diesel::prelude::*;
    use roadhub::db::schema::{obd_records, status_snapshots};
    let f = fixture(|_| {}).await;
    let mut device = f.device().await;
    let t = now_ms() - 1_000;
    let status = json!({"t": t, "battery": 12.4, "storage": {"free": 1024}});
    let obd = json!({"t": t, "rpm": 900, "coolant": 88});
    // Sent, then resent (the device missed the ack) on the same session and
    // on a new one: every send is acked as before.
    for send in 0..3 {
        if send == 2 {
            device.close().await;
            device = f.device().await;
        }
        for (name, report) in [("status", &status), ("obd", &obd)] {
            let ack = device.emit_ack(name, report.clone()).await;
            assert_eq!(ack, json!({"ok": true}), "{name} #{send}");
        }
    }
    // Other data at the same time is another report.
    assert_eq!(
        device
            .emit_ack("status", json!({"t": t, "battery": 12.1}))
            .await,
        json!({"ok": true})
    );
    let db = f.server.db();
    let mut conn = db.get().unwrap();
    let statuses: i64 = roadhub::db_run!(&mut conn, |c| status_snapshots::table
        .filter(status_snapshots::vehicle_id.eq(f.vehicle))
        .count()
        .get_result::<i64>(c)
        .unwrap());
    let obds: i64 = roadhub::db_run!(&mut conn, |c| obd_records::table
        .filter(obd_records::vehicle_id.eq(f.vehicle))
        .count()
        .get_result::<i64>(c)
        .unwrap());
    assert_eq!((statuses, obds), (2, 1));
    device.close().await;
}
