//! An ack means durable: the node is killed with SIGKILL right after it
//! acknowledged a stream of `loc` batches; after a restart on the same
//! database every acknowledged point is there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sio::SioClient;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_roadhub");

fn spawn_node(dir: &std::path::Path, port: u16, url: &str) -> Child {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROADHUB_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            url,
        ])
        .args([
            "--set",
            "limits.auth_attempts_per_minute=0",
            "--set",
            "limits.device_messages_per_second=0",
            "--set",
            "rtmp.listen=127.0.0.1:0",
        ])
        .args([
            "--set",
            "auth.jwt_secret=durability-test-secret-0123456789abcdef",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node not healthy");
}

#[tokio::test]
async fn every_acknowledged_point_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let pg = common::pg_admin_url().map(|a| common::PgDatabase::create(&a));
    let url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}/roadhub.db", dir.path().display()),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut node = spawn_node(dir.path(), port, &url);
    wait_healthy(&base).await;
    let api = common::Api::new(&base);
    let owner = api.new_user("durable@example.com").await;
    let v = api.new_vehicle(&owner, "DUR-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let mut device = SioClient::connect(
        &base,
        "/device",
        json!({"serial": "DUR-1", "token": v["device_token"]}),
    )
    .await
    .unwrap();

    // 300 batches of 60 points, all in flight at once.
    let start = roadhub::util::now_ms() - 30 * 3600 * 1000;
    let mut batches: HashMap<u64, i64> = HashMap::new();
    for b in 0..300i64 {
        let first = start + b * 60_000;
        let pts: Vec<Value> = (0..60)
            .map(|i| json!({"t": first + i * 1000, "lat": 37.0, "lon": 127.0}))
            .collect();
        let id = device.send_with_ack("loc", json!({"points": pts})).await;
        batches.insert(id, first);
    }
    // Take acks until 150 came, then kill the node at once.
    let mut acked = Vec::new();
    for (&id, &first) in &batches {
        if acked.len() >= 150 {
            break;
        }
        if let Some(ack) = device.wait_ack(id, Duration::from_secs(30)).await
            && ack["ok"] == true
        {
            acked.push(first);
        }
    }
    node.kill().unwrap(); // SIGKILL
    node.wait().unwrap();
    assert!(
        acked.len() >= 100,
        "only {} acks before the kill",
        acked.len()
    );

    let mut node = spawn_node(dir.path(), port, &url);
    wait_healthy(&base).await;
    let owner = api
        .login("durable@example.com", "correct horse battery")
        .await;
    let access = owner.body["access_token"].as_str().unwrap().to_string();
    for first in &acked {
        let r = api
            .get(
                &format!(
                    "/api/v1/vehicles/{vehicle}/locations?from={first}&to={}&limit=100",
                    first + 60_000
                ),
                &access,
            )
            .await;
        assert_eq!(
            r.body["points"].as_array().map(Vec::len),
            Some(60),
            "batch at {first} lost"
        );
    }
    // Directly in the database too.
    {
        use diesel::prelude::*;
        use roadhub::db::schema::locations;
        let mut config = roadhub::Config::default();
        config.database.url = url.clone();
        let db = roadhub::db::Db::connect(&config).unwrap();
        let mut conn = db.get().unwrap();
        for first in &acked {
            let first = *first;
            let n: i64 = roadhub::db_run!(&mut conn, |c| locations::table
                .filter(locations::vehicle_id.eq(vehicle))
                .filter(locations::t.ge(first))
                .filter(locations::t.lt(first + 60_000))
                .count()
                .get_result(c)
                .unwrap());
            assert_eq!(
                n, 60,
                "acknowledged batch at {first} is not complete after kill -9"
            );
        }
    }
    node.kill().unwrap();
    node.wait().unwrap();
}
