//! The stock clients against the echo server (`common::echo`)
//! in this process: socket.io-client 4.8 on Node with default options
//! (polling, then the upgrade to WebSocket), WebSocket only and polling
//! only; python-socketio's client with its defaults and WebSocket only.
//! Each connects with auth, emits with acks both ways, sends and receives
//! binary, and uses the `/custom` namespace; the scripts are in
//! `tests/clients/`.
//!
//! They need `ROADHUB_TEST_NODE_MODULES` (a node_modules holding
//! socket.io-client) and `ROADHUB_TEST_PYTHON` (a python with
//! python-socketio[client] and websocket-client); scripts/test installs
//! both and sets them. Without them these tests fail, unless
//! `ROADHUB_TEST_ALLOW_MISSING_CLIENTS=1` (then they pass without running).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::engine::SioServer;
use roadhub::socketio::EngineConfig;
use serde_json::{Value, json};

/// A client's whole run, at most.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn allow_missing() -> bool {
    std::env::var("ROADHUB_TEST_ALLOW_MISSING_CLIENTS").is_ok_and(|v| v == "1")
}

/// The value of `var`, or `None` (test skipped) when it is unset and
/// missing clients are allowed; otherwise an unset variable fails.
fn required_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if allow_missing() => {
            eprintln!("skipped: {var} is not set ({what}); ROADHUB_TEST_ALLOW_MISSING_CLIENTS=1");
            None
        }
        _ => panic!(
            "{var} is not set: it must name {what}. scripts/test installs the \
             clients and sets it; or set ROADHUB_TEST_ALLOW_MISSING_CLIENTS=1 \
             to skip the stock-client tests"
        ),
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// The echo server, with a heartbeat short enough for the clients to
/// answer several pings during a run, and a timeout that a busy machine
/// does not miss.
fn server() -> SioServer {
    SioServer::echo(EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_secs(5),
        ..crate::common::echo::conformance_config()
    })
}

/// Run a client and return the JSON line it printed last.
async fn run_client(mut command: tokio::process::Command, what: &str) -> Value {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    let out: Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("{what} printed no result\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    assert!(
        output.status.success() && out.get("error").is_none(),
        "{what} failed ({}): {out}\nstderr:\n{stderr}",
        output.status
    );
    out
}

async fn node_client(mode: &str) -> Option<Value> {
    let modules = required_env(
        "ROADHUB_TEST_NODE_MODULES",
        "a node_modules directory holding socket.io-client 4.8",
    )?;
    assert!(
        Path::new(&modules)
            .join("socket.io-client/package.json")
            .is_file(),
        "ROADHUB_TEST_NODE_MODULES={modules} holds no socket.io-client"
    );
    let srv = server();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script("socketio_client.js"))
        .arg(&srv.base)
        .arg(mode)
        .env("NODE_PATH", &modules);
    Some(run_client(command, &format!("socket.io-client ({mode})")).await)
}

async fn python_client(mode: &str) -> Option<Value> {
    let python = required_env(
        "ROADHUB_TEST_PYTHON",
        "a python with python-socketio[client] and websocket-client",
    )?;
    assert!(
        Path::new(&python).is_file(),
        "ROADHUB_TEST_PYTHON={python} is not a file"
    );
    let srv = server();
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(script("socketio_client.py"))
        .arg(&srv.base)
        .arg(mode);
    Some(run_client(command, &format!("python-socketio ({mode})")).await)
}

/// What every client run must have seen.
fn assert_round_trips(out: &Value) {
    assert_eq!(out["auth"], json!({"token": "abc"}), "{out}");
    assert_eq!(out["ack"], json!(["hello", 42, {"a": [1]}]), "{out}");
    assert_eq!(out["binary"], json!([[1, 2, 3], "xyz"]), "{out}");
    assert_eq!(out["binaryAck"], json!([[9, 8], "t"]), "{out}");
    assert_eq!(out["serverAck"], json!(["pong-q", [7]]), "{out}");
}

#[tokio::test]
async fn node_client_with_default_options_upgrades_to_websocket() {
    let Some(out) = node_client("default").await else {
        return;
    };
    assert_round_trips(&out);
    assert_eq!(out["firstTransport"], "polling", "{out}");
    assert_eq!(out["upgradedTo"], "websocket", "{out}");
    assert_eq!(out["transport"], "websocket", "{out}");
    assert_eq!(out["customAuth"], json!({"ns": "custom"}), "{out}");
    assert_eq!(out["customAck"], json!(["c"]), "{out}");
    assert_eq!(out["badNamespace"], "Invalid namespace", "{out}");
    assert_eq!(out["afterUpgrade"], json!(["after"]), "{out}");
    assert_eq!(out["mainAfterCustomLeft"], json!(["main"]), "{out}");
}

#[tokio::test]
async fn node_client_websocket_only() {
    let Some(out) = node_client("websocket").await else {
        return;
    };
    assert_round_trips(&out);
    assert_eq!(out["firstTransport"], "websocket", "{out}");
    assert!(out.get("upgradedTo").is_none(), "{out}");
    assert_eq!(out["customAck"], json!(["c"]), "{out}");
    assert_eq!(out["badNamespace"], "Invalid namespace", "{out}");
    assert_eq!(out["mainAfterCustomLeft"], json!(["main"]), "{out}");
}

#[tokio::test]
async fn node_client_polling_only() {
    let Some(out) = node_client("polling").await else {
        return;
    };
    assert_round_trips(&out);
    assert_eq!(out["transport"], "polling", "{out}");
    assert_eq!(out["customAck"], json!(["c"]), "{out}");
    assert_eq!(out["mainAfterCustomLeft"], json!(["main"]), "{out}");
}

#[tokio::test]
async fn python_client_with_default_options() {
    let Some(out) = python_client("default").await else {
        return;
    };
    assert_round_trips(&out);
    // python-socketio sends the same auth to every namespace.
    assert_eq!(out["customAuth"], json!({"token": "abc"}), "{out}");
    assert_eq!(out["customAck"], "c", "{out}");
    assert_eq!(out["transport"], "websocket", "{out}");
    assert!(
        out["badNamespace"].as_str().unwrap().contains("/nope"),
        "{out}"
    );
}

#[tokio::test]
async fn python_client_websocket_only() {
    let Some(out) = python_client("websocket").await else {
        return;
    };
    assert_round_trips(&out);
    assert_eq!(out["customAck"], "c", "{out}");
    assert_eq!(out["transport"], "websocket", "{out}");
}
