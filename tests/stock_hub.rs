//! The hub with the stock clients: JavaScript `socket.io-client` 4.8 with
//! default options (polling, then upgrade) and WebSocket only, and
//! python-socketio. scripts/test installs them and sets
//! `ROADHUB_TEST_NODE_MODULES` and `ROADHUB_TEST_PYTHON`; without them
//! these tests fail unless `ROADHUB_TEST_ALLOW_MISSING_CLIENTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestServer;
use common::sio::SioClient;
use serde_json::{Value, json};

fn client_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("ROADHUB_TEST_ALLOW_MISSING_CLIENTS").as_deref() == Ok("1") => None,
        _ => panic!(
            "{var} is not set: run the suite with scripts/test (or set ROADHUB_TEST_ALLOW_MISSING_CLIENTS=1 to skip)"
        ),
    }
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn find<'a>(lines: &'a [Value], key: &str) -> &'a Value {
    lines
        .iter()
        .find_map(|l| l.get(key))
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

async fn node_flow(mode: &str) {
    let Some(modules) = client_env("ROADHUB_TEST_NODE_MODULES") else {
        return;
    };
    let server = TestServer::start().await;
    let api = server.api();
    let owner = api.new_user("js@example.com").await;
    let v = api.new_vehicle(&owner, "JS-1").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/hub_flow.js");
    let args = [
        script.to_string(),
        server.base.clone(),
        "JS-1".into(),
        v["device_token"].as_str().unwrap().into(),
        owner.access.clone(),
        v["id"].to_string(),
        mode.into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(&args)
            .env("ROADHUB_TEST_NODE_MODULES", modules)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let lines = lines(&out.stdout);
    assert!(
        out.status.success(),
        "{lines:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(find(&lines, "watch")["ok"], true);
    assert_eq!(find(&lines, "loc_ack"), &json!({"ok": true, "stored": 1}));
    assert_eq!(find(&lines, "loc")["vehicle"], v["id"]);
    assert_eq!(find(&lines, "command")["name"], "snapshot");
    assert_eq!(
        find(&lines, "command_answer"),
        &json!({"ok": true, "echoed": "snapshot"})
    );
    assert_eq!(find(&lines, "presence")["online"], true);
    // Default options start with polling and upgrade to WebSocket.
    assert_eq!(
        find(&lines, "transports"),
        &json!(["websocket", "websocket"])
    );
}

#[tokio::test]
async fn stock_js_client_with_default_options() {
    node_flow("default").await;
}

#[tokio::test]
async fn stock_js_client_websocket_only() {
    node_flow("websocket").await;
}

#[tokio::test]
async fn python_socketio_device() {
    let Some(python) = client_env("ROADHUB_TEST_PYTHON") else {
        return;
    };
    let server = TestServer::start().await;
    let api = server.api();
    let owner = api.new_user("py@example.com").await;
    let v = api.new_vehicle(&owner, "PY-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let mut app = SioClient::connect(&server.base, "/app", json!({"token": owner.access}))
        .await
        .unwrap();
    app.emit_ack("watch", json!({"vehicle": vehicle})).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/hub_device.py");
    let mut child = Command::new(python)
        .args([
            script,
            &server.base,
            "PY-1",
            v["device_token"].as_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &Value| l.get("ready").is_some()) {
        let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("python output")
            .expect("line");
        seen.push(line);
    }
    assert_eq!(find(&seen, "loc_ack"), &json!({"ok": true, "stored": 1}));
    assert_eq!(find(&seen, "event_ack")["ok"], true);
    let (loc, _) = app.event("loc", Duration::from_secs(10)).await.unwrap();
    assert_eq!(loc["points"][0]["lat"], 35.1);
    let answer = app
        .emit_ack(
            "command",
            json!({"vehicle": vehicle, "name": "ping", "args": {}}),
        )
        .await;
    assert_eq!(answer, json!({"ok": true, "from": "python"}));
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}
