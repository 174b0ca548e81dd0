//! On-demand live: a viewer of a stream nobody publishes makes the hub send
//! `live.start` (with a publish URL) to the connected device, or pull the
//! channel's RTSP camera; nobody watching makes it send `live.stop` (or
//! stop the pull). Offline devices, start timeouts, unreachable cameras,
//! the plan's live minutes and the usage counters, with real ffmpeg and a
//! real RTSP server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::live::{Ffmpeg, read_flv_body};
use common::rtsp::{RtspServer, make_clip};
use common::sio::SioClient;
use common::{Session, TestServer};
use serde_json::{Value, json};

struct Fixture {
    server: TestServer,
    owner: Session,
    vehicle: i64,
    serial: String,
    device_token: String,
}

async fn fixture(adjust: impl FnOnce(&mut roadhub::Config)) -> Fixture {
    let server = TestServer::start_with(|c| {
        c.live.idle_timeout_secs = 2;
        c.live.publisher_grace_secs = 1;
        c.live.usage_flush_secs = 1;
        adjust(c);
    })
    .await;
    let api = server.api();
    let owner = api.new_user("owner@example.com").await;
    let v = api.new_vehicle(&owner, "OD-1").await;
    Fixture {
        vehicle: v["id"].as_i64().unwrap(),
        serial: "OD-1".into(),
        device_token: v["device_token"].as_str().unwrap().to_owned(),
        server,
        owner,
    }
}

impl Fixture {
    async fn device(&self) -> SioClient {
        SioClient::connect(
            &self.server.base,
            "/device",
            json!({"serial": self.serial, "token": self.device_token}),
        )
        .await
        .unwrap()
    }

    fn flv_url(&self, channel: &str) -> String {
        format!(
            "{}/live/{}-{channel}.flv?token={}",
            self.server.base, self.vehicle, self.owner.access
        )
    }

    async fn metric(&self, name: &str) -> f64 {
        common::metric(&self.server.base, name).await
    }
}

#[tokio::test]
async fn a_viewer_starts_the_device_and_leaving_stops_it() {
    let f = fixture(|_| {}).await;
    let mut device = f.device().await;
    // The viewer asks first; the hub holds it while the device starts.
    let url = f.flv_url("front");
    let viewer = tokio::spawn(async move { reqwest::get(url).await.unwrap() });
    let (cmd, ack) = device
        .event("command", Duration::from_secs(5))
        .await
        .expect("live.start reaches the device");
    assert_eq!(cmd["name"], "live.start", "{cmd}");
    assert_eq!(cmd["args"]["channel"], "front");
    let publish_url = cmd["args"]["url"].as_str().unwrap().to_owned();
    let prefix = format!(
        "rtmp://{}/live/{}-front?token=",
        f.server.rtmp_addr, f.vehicle
    );
    assert!(publish_url.starts_with(&prefix), "{publish_url}");
    assert!(
        !publish_url.contains(&f.device_token),
        "the device token is never put in a URL"
    );
    device.ack(ack.unwrap(), json!({"ok": true})).await;
    // The device publishes to the URL it was given.
    let mut ffmpeg = Ffmpeg::publish(&publish_url, 20);
    let res = tokio::time::timeout(Duration::from_secs(12), viewer)
        .await
        .expect("the waiting viewer is answered")
        .unwrap();
    assert_eq!(res.status(), 200);
    let reader = read_flv_body(res, Duration::from_secs(2)).await;
    assert!(reader.tags.iter().any(|t| t.is_keyframe()), "video arrives");
    // The viewer left: after live.idle_timeout_secs the device is told.
    let (cmd, _) = device
        .event("command", Duration::from_secs(8))
        .await
        .expect("live.stop reaches the device");
    assert_eq!(cmd["name"], "live.stop");
    assert_eq!(cmd["args"]["channel"], "front");
    drop(ffmpeg.0.kill());
    // What was received is accounted to the vehicle.
    let api = f.server.api();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api
            .get(
                &format!("/api/v1/vehicles/{}/traffic", f.vehicle),
                &f.owner.access,
            )
            .await;
        let live_in = r.body["traffic"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "live_in")
            .and_then(|t| t["bytes"].as_i64())
            .unwrap_or(0);
        let seconds = r.body["live_quota"]["used_seconds"].as_i64().unwrap();
        if live_in > 10_000 && seconds >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "usage not recorded: {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn offline_devices_and_silent_ones_are_clear_errors() {
    let f = fixture(|c| c.live.start_timeout_secs = 1).await;
    let api = f.server.api();
    let path = format!("/live/{}-front.flv", f.vehicle);
    // Offline: 404 vehicle_offline at once.
    let r = api.get(&path, &f.owner.access).await;
    r.assert_error(404, "vehicle_offline");
    // Online but it never publishes: 504 after live.start_timeout_secs;
    // two viewers waiting together make one live.start.
    let mut device = f.device().await;
    let started = Instant::now();
    let (a, b) = tokio::join!(
        api.get(&path, &f.owner.access),
        api.get(&path, &f.owner.access)
    );
    a.assert_error(504, "live_start_timeout");
    b.assert_error(504, "live_start_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (cmd, _) = device
        .event("command", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(cmd["name"], "live.start");
    assert!(
        device
            .event("command", Duration::from_millis(300))
            .await
            .is_none(),
        "one live.start for viewers waiting together"
    );
}

#[tokio::test]
async fn the_app_can_start_live_and_the_publish_url_is_for_that_stream_only() {
    let f = fixture(|_| {}).await;
    let mut device = f.device().await;
    let mut app = SioClient::connect(&f.server.base, "/app", json!({"token": f.owner.access}))
        .await
        .unwrap();
    let id = app
        .send_with_ack(
            "command",
            json!({"vehicle": f.vehicle, "name": "live.start", "args": {"channel": "rear", "quality": "low"}}),
        )
        .await;
    let (cmd, ack) = device
        .event("command", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cmd["name"], "live.start");
    assert_eq!(cmd["args"]["channel"], "rear");
    assert_eq!(
        cmd["args"]["quality"], "low",
        "other arguments pass through"
    );
    let url = cmd["args"]["url"].as_str().unwrap().to_owned();
    device
        .ack(ack.unwrap(), json!({"ok": true, "starting": true}))
        .await;
    let answer = app.wait_ack(id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer, json!({"ok": true, "starting": true}));

    // The token in that URL publishes `rear` of this vehicle, nothing else.
    let other = url.replace("-rear?", "-front?");
    let mut refused = Ffmpeg::publish(&other, 5);
    let (status, _) = refused.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(!status.success(), "a publish token is for one stream key");
    let _ffmpeg = Ffmpeg::publish(&url, 20);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = reqwest::get(f.flv_url("rear")).await.unwrap();
        if res.status() == 200 {
            let reader = read_flv_body(res, Duration::from_secs(2)).await;
            assert!(reader.tags.iter().any(|t| t.is_keyframe()));
            break;
        }
        assert!(Instant::now() < deadline, "rear never played");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn past_the_plans_live_minutes_nothing_starts() {
    let f = fixture(|_| {}).await;
    let mut device = f.device().await;
    // The free plan has 60 minutes a month: use them up.
    let day = roadhub::db::queries::usage::day_start_ms(roadhub::util::now_ms());
    let vehicle = f.vehicle;
    f.server
        .db()
        .run(move |c| {
            roadhub::db::queries::usage::add(
                c,
                &[],
                &[roadhub::db::queries::usage::LiveAdd {
                    vehicle_id: vehicle,
                    day,
                    seconds: 3600,
                }],
            )
        })
        .await
        .unwrap();
    let api = f.server.api();
    let r = api
        .get(&format!("/live/{}-front.flv", f.vehicle), &f.owner.access)
        .await;
    r.assert_error(403, "live_quota_exceeded");
    let r = api
        .get(
            &format!("/live/{}-front/index.m3u8", f.vehicle),
            &f.owner.access,
        )
        .await;
    r.assert_error(403, "live_quota_exceeded");
    let mut app = SioClient::connect(&f.server.base, "/app", json!({"token": f.owner.access}))
        .await
        .unwrap();
    let answer = app
        .emit_ack(
            "command",
            json!({"vehicle": f.vehicle, "name": "live.start", "args": {"channel": "front"}}),
        )
        .await;
    assert_eq!(answer, json!({"ok": false, "error": "live_quota_exceeded"}));
    assert!(
        device
            .event("command", Duration::from_millis(500))
            .await
            .is_none(),
        "no live.start past the limit"
    );
    let r = api
        .get(
            &format!("/api/v1/vehicles/{}/traffic", f.vehicle),
            &f.owner.access,
        )
        .await;
    assert_eq!(r.body["live_quota"]["used_seconds"], 3600);
}

#[tokio::test]
async fn an_rtsp_channel_is_pulled_for_viewers_and_released_after() {
    let f = fixture(|c| {
        c.rtsp.retry_min_ms = 100;
        c.rtsp.retry_max_ms = 400;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), 30);
    let camera = RtspServer::start(&clip, None);
    let api = f.server.api();
    let r = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/vehicles/{}/channels/cabin", f.vehicle),
            Some(&f.owner.access),
            Some(json!({"rtsp_url": camera.url("clip")})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // No device connected: the camera is the source.
    let res = reqwest::get(f.flv_url("cabin")).await.unwrap();
    assert_eq!(res.status(), 200);
    let reader = read_flv_body(res, Duration::from_secs(2)).await;
    let config = reader
        .tags
        .iter()
        .find(|t| t.is_video_config())
        .expect("the camera's H.264 configuration");
    assert!(config.body.len() > 10);
    assert!(reader.tags.iter().any(|t| t.is_keyframe()));
    assert_eq!(f.metric("roadhub_live_publishers").await, 1.0);
    // Nobody watches: the pull stops (idle 2 s), the stream ends (grace 1 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.metric("roadhub_live_publishers").await > 0.0 {
        assert!(Instant::now() < deadline, "the RTSP pull did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Playing again restarts the pull; changing the channel's URL stops
    // it at once (well before the idle timeout).
    let res = reqwest::get(f.flv_url("cabin")).await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    assert_eq!(f.metric("roadhub_live_publishers").await, 1.0);
    let r = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/vehicles/{}/channels/cabin", f.vehicle),
            Some(&f.owner.access),
            Some(json!({"rtsp_url": camera.url("other")})),
        )
        .await;
    assert_eq!(r.status, 200);
    let changed = Instant::now();
    while f.metric("roadhub_live_publishers").await > 0.0 {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the old pull goes when the URL changes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A camera that cannot be reached: a clear error, quickly.
    let r = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/vehicles/{}/channels/rear", f.vehicle),
            Some(&f.owner.access),
            Some(json!({"rtsp_url": "rtsp://127.0.0.1:1/none"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let started = Instant::now();
    let r = api
        .get(&format!("/live/{}-rear.flv", f.vehicle), &f.owner.access)
        .await;
    r.assert_error(502, "rtsp_unreachable");
    assert!(started.elapsed() < Duration::from_secs(5));
    let _: Value = r.body;
}
