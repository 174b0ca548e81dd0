//! `/metrics`: Socket.IO requests counted with bounded labels, process CPU
//! time in fractions of a second, and the latency histograms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::TestServer;
use common::engine::Polling;
use reqwest::Method;

async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every value of `label` on the `roadhub_http_requests_total` lines.
fn http_label_values(text: &str, label: &str) -> BTreeSet<String> {
    let key = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with("roadhub_http_requests_total{"))
        .filter_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

#[tokio::test]
async fn socketio_requests_are_counted_with_bounded_labels() {
    let server = TestServer::start().await;
    let polling = Polling::open(&server.base, "/socket.io/").await;
    polling.post_ok(&["6"]).await;
    let text = scrape(&server.base).await;
    for method in ["GET", "POST"] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("roadhub_http_requests_total{")
                    && l.contains(&format!("method=\"{method}\""))
                    && l.contains("route=\"/socket.io/\"")
            })
            .unwrap_or_else(|| panic!("no {method} /socket.io/ in\n{text}"));
        assert!(!line.ends_with(" 0"), "{line}");
    }

    // Invented methods and random paths: once to see their fixed labels,
    // then again with other spellings, which must add no label value.
    let client = server.api().client;
    let odd = |method: &str, path: &str| {
        client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", server.base),
            )
            .send()
    };
    odd("BREW", "/api/v1/vehicles").await.unwrap();
    odd("GET", "/no-such-route-a1").await.unwrap();
    odd("WHEN", "/no-such-route-b2").await.unwrap();
    let text = scrape(&server.base).await;
    let methods = http_label_values(&text, "method");
    let routes = http_label_values(&text, "route");
    odd("SPLASH", "/api/v1/vehicles").await.unwrap();
    odd("GET", "/random-c3").await.unwrap();
    odd("TWIRL", "/socket.io/").await.unwrap();
    odd("FLOP", "/random-d4/x").await.unwrap();
    let text = scrape(&server.base).await;
    assert_eq!(http_label_values(&text, "method"), methods, "{text}");
    assert_eq!(http_label_values(&text, "route"), routes, "{text}");
    for raw in ["BREW", "WHEN", "SPLASH", "no-such-route", "random-"] {
        assert!(!text.contains(raw), "{raw} in\n{text}");
    }
    assert!(methods.contains("other"), "{methods:?}");
    assert!(routes.contains("unmatched"), "{routes:?}");
}

#[tokio::test]
async fn process_cpu_seconds_has_fractions() {
    let server = TestServer::start().await;
    // The node runs in this process: burn some CPU here.
    let start = Instant::now();
    let mut x: u64 = 1;
    while start.elapsed() < Duration::from_millis(400) {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
    }
    std::hint::black_box(x);
    let cpu = common::metric(&server.base, "process_cpu_seconds_total").await;
    assert!(cpu > 0.0, "{cpu}");
    assert!(cpu.fract() != 0.0, "whole seconds only: {cpu}");
}

/// A histogram's `_count` on the node.
async fn count(base: &str, histogram: &str) -> f64 {
    common::metric(base, &format!("{histogram}_count")).await
}

#[tokio::test]
async fn device_acks_commands_and_commits_are_timed() {
    use common::sio::SioClient;
    use serde_json::json;
    const T: Duration = Duration::from_secs(10);
    let server = TestServer::start().await;
    let base = server.base.clone();
    let api = server.api();
    let owner = api.new_user("owner@example.com").await;
    let v = api.new_vehicle(&owner, "MX-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let token = v["device_token"].as_str().unwrap();
    let histograms = [
        "roadhub_device_ack_duration_seconds",
        "roadhub_command_round_trip_seconds",
        "roadhub_ingest_commit_duration_seconds",
    ];
    let mut before = Vec::new();
    for h in histograms {
        before.push(count(&base, h).await);
    }
    let mut device =
        SioClient::connect(&base, "/device", json!({"serial": "MX-1", "token": token}))
            .await
            .unwrap();
    let mut app = SioClient::connect(&base, "/app", json!({"token": owner.access}))
        .await
        .unwrap();
    let t = roadhub::util::now_ms();
    let ack = device
        .emit_ack(
            "loc",
            json!({"points": [{"t": t, "lat": 37.5, "lon": 127.0}]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let id = app
        .send_with_ack(
            "command",
            json!({"vehicle": vehicle, "name": "snapshot", "args": {}}),
        )
        .await;
    let (_cmd, ack_id) = device.event("command", T).await.expect("command");
    device
        .ack(ack_id.expect("ack id"), json!({"ok": true}))
        .await;
    assert_eq!(app.wait_ack(id, T).await.unwrap(), json!({"ok": true}));
    // The parts' readings are registered (a missing name panics).
    for name in [
        "roadhub_devices_online",
        "roadhub_socketio_connections",
        "roadhub_ingest_queue_jobs",
        "roadhub_cluster_redis_up",
        "roadhub_device_messages_total",
    ] {
        common::metric(&base, name).await;
    }
    assert!(common::metric(&base, "roadhub_devices_online").await >= 1.0);
    for (h, was) in histograms.into_iter().zip(before) {
        let now = count(&base, h).await;
        assert!(now > was, "{h}: {was} -> {now}");
    }
}
