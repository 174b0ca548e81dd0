//! The load balancer: real nginx (`/usr/sbin/nginx`, run as the current
//! user from a temp dir) with `docs/deploy/nginx.conf` itself, only its
//! addresses replaced, in front of two nodes on one Redis and one database.
//!
//! - stock `socket.io-client` apps (default options: polling then upgrade,
//!   and polling only) spread over both nodes by the handshake round-robin
//!   and kept on their node by the sid prefix; a device also behind nginx;
//!   every app gets its `loc` exactly once;
//! - an Engine.IO request with an unknown sid fails at once with 400;
//! - live video through nginx: RTMP through the stream module (to either
//!   node), HTTP-FLV, WS-FLV and HLS played through nginx (on either node:
//!   the other one pulls the stream from its origin); a stream published to
//!   node2 directly plays through nginx whichever node answers;
//! - `/internal/` (node-to-node) is not reachable through nginx;
//! - failover: node2, a `roadhub serve` process, killed
//!   with SIGKILL under stock clients (`tests/clients/failover_flow.js`):
//!   they reconnect through nginx to node1 by their own logic, presence
//!   heals within the TTL, every acknowledged point is stored.
//!
//! Needs nginx with the stream module (scripts/test installs nginx and
//! libnginx-mod-stream), ffmpeg/ffprobe, redis-server, and
//! `ROADHUB_TEST_NODE_MODULES` for the stock client (without it the client
//! test fails unless `ROADHUB_TEST_ALLOW_MISSING_CLIENTS=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::live::{Ffmpeg, assert_h264_aac_640x360, ffprobe_streams};
use common::process::{NodeArgs, free_port, start_process_node};
use common::redis::Redis;
use common::{TestServer, metric};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

const NGINX: &str = "/usr/sbin/nginx";
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";
const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy/nginx.conf");

fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// A running nginx, stopped (TERM, then KILL) on drop.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    http: SocketAddr,
    rtmp: SocketAddr,
}

impl Nginx {
    /// nginx with the documented config in front of two test servers.
    fn start(nodes: [&TestServer; 2]) -> Self {
        Self::start_at(nodes.map(|n| (n.base.as_str(), n.rtmp_addr)))
    }

    /// nginx with the documented config, node1 and node2 being `nodes`:
    /// (HTTP base URL, RTMP address) of each.
    fn start_at(nodes: [(&str, SocketAddr); 2]) -> Self {
        assert!(
            Path::new(NGINX).is_file() && Path::new(STREAM_MODULE).is_file(),
            "{NGINX} and {STREAM_MODULE} needed (scripts/test installs nginx and libnginx-mod-stream)"
        );
        let dir = tempfile::tempdir().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut conf = std::fs::read_to_string(CONF).unwrap();
        let replace = |conf: &mut String, from: &str, to: &str| {
            assert!(conf.contains(from), "{CONF} no longer has {from:?}");
            *conf = conf.replace(from, to);
        };
        replace(&mut conf, "10.0.0.11:8080", host_port(nodes[0].0));
        replace(&mut conf, "10.0.0.12:8080", host_port(nodes[1].0));
        replace(&mut conf, "10.0.0.11:1935", &nodes[0].1.to_string());
        replace(&mut conf, "10.0.0.12:1935", &nodes[1].1.to_string());
        replace(&mut conf, "listen 80;", &format!("listen {http};"));
        replace(&mut conf, "listen 1935;", &format!("listen {rtmp};"));
        // Our own logs and temp files, in the temp dir.
        let d = dir.path().display();
        let local = format!(
            "http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n"
        );
        replace(&mut conf, "http {\n", &local);
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut globals = format!("daemon off; pid {d}/nginx.pid; error_log stderr warn;");
        if is_root() {
            // Workers as root too, so they can use the temp dir.
            globals.push_str(" user root;");
        }
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-e", "stderr", "-g", &globals])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            child,
            dir,
            http,
            rtmp,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                panic!("nginx exited ({status}): {}", nginx.log());
            }
            if TcpStream::connect(http).is_ok() && TcpStream::connect(rtmp).is_ok() {
                return nginx;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening after 10 s: {}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    fn base(&self) -> String {
        format!("http://{}", self.http)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM: the master stops its workers (a killed master would leave
        // them listening).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Two nodes, node1 and node2, on one Redis and one database.
struct Cluster {
    // Dropped first: nginx, then the nodes, then Redis.
    nodes: [TestServer; 2],
    _redis: Redis,
}

async fn cluster(redis: Redis) -> Cluster {
    let setup = |c: &mut roadhub::Config, id: &str| {
        c.redis.url = Some(redis.url());
        c.node.id = id.into();
        c.auth.jwt_secret = Some("nginx-test-secret-".repeat(3));
        c.http.trust_forwarded_for = true;
    };
    let a = TestServer::start_with(|c| setup(c, "node1")).await;
    let db_url = a.config.database.url.clone();
    let b = TestServer::start_with(|c| {
        setup(c, "node2");
        c.database.url = db_url;
    })
    .await;
    Cluster {
        nodes: [a, b],
        _redis: redis,
    }
}

fn node_modules() -> Option<String> {
    match std::env::var("ROADHUB_TEST_NODE_MODULES") {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("ROADHUB_TEST_ALLOW_MISSING_CLIENTS").as_deref() == Ok("1") => None,
        _ => panic!(
            "ROADHUB_TEST_NODE_MODULES is not set: run the suite with scripts/test \
             (or set ROADHUB_TEST_ALLOW_MISSING_CLIENTS=1 to skip)"
        ),
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_through_nginx_spread_over_both_nodes_and_get_loc_once() {
    let Some(modules) = node_modules() else {
        return;
    };
    let cl = cluster(Redis::start()).await;
    let nginx = Nginx::start([&cl.nodes[0], &cl.nodes[1]]);
    let api = cl.nodes[0].api();
    let owner = api.new_user("lb@example.com").await;
    let v = api.new_vehicle(&owner, "LB-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let (default_apps, polling_apps) = (4, 2);
    let args = [
        script("lb_flow.js").display().to_string(),
        nginx.base(),
        "LB-1".into(),
        v["device_token"].as_str().unwrap().into(),
        owner.access.clone(),
        vehicle.to_string(),
        default_apps.to_string(),
        polling_apps.to_string(),
    ];
    let mut command = tokio::process::Command::new("node");
    command
        .args(&args)
        .env("ROADHUB_TEST_NODE_MODULES", &modules)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(40), command.output())
        .await
        .expect("the client ran over 40 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let context = format!(
        "{lines:?}\nstderr: {}\nnginx: {}",
        String::from_utf8_lossy(&output.stderr),
        nginx.log()
    );
    assert!(output.status.success(), "{context}");
    let find = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.get(key).cloned())
            .unwrap_or_else(|| panic!("no {key}: {context}"))
    };
    assert_eq!(
        find("loc_ack"),
        json!({"ok": true, "stored": 1}),
        "{context}"
    );
    let done = find("done");
    let n = default_apps + polling_apps;
    assert_eq!(done["locs"], json!(vec![1; n]), "every app once: {context}");
    let mut expected_transports = vec!["websocket"; default_apps];
    expected_transports.extend(vec!["polling"; polling_apps]);
    assert_eq!(done["transports"], json!(expected_transports), "{context}");
    assert_eq!(done["device"]["transport"], "websocket", "{context}");

    // The sessions were spread over both nodes; each sid names its node.
    let sids: Vec<String> = lines
        .iter()
        .filter_map(|l| l.get("app"))
        .map(|a| a["sid"].as_str().unwrap().to_owned())
        .chain([done["device"]["sid"].as_str().unwrap().to_owned()])
        .collect();
    assert_eq!(sids.len(), n + 1, "{context}");
    for sid in &sids {
        assert!(
            sid.starts_with("node1.") || sid.starts_with("node2."),
            "{sid}: {context}"
        );
    }
    for node in ["node1.", "node2."] {
        assert!(
            sids.iter().any(|s| s.starts_with(node)),
            "no session on {node} {sids:?}"
        );
    }
    drop(nginx);
}

/// An Engine.IO request with a sid the node does not hold (another node's,
/// or a closed session) fails at once: 400 with Engine.IO's body.
#[tokio::test]
async fn unknown_sid_fails_fast_with_400_on_a_node_and_through_nginx() {
    let cl = cluster(Redis::start()).await;
    let nginx = Nginx::start([&cl.nodes[0], &cl.nodes[1]]);
    let client = reqwest::Client::new();

    // A handshake on node1 gives a node1 sid.
    let open = client
        .get(format!(
            "{}/socket.io/?EIO=4&transport=polling",
            cl.nodes[0].base
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: Value = serde_json::from_str(open.trim_start_matches('0')).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("node1."), "{sid}");
    assert_eq!(sid.len(), "node1.".len() + 20, "{sid}");

    // The same sid on node2 directly (what a wrong route would do), and
    // made-up sids through nginx (routed by prefix, or anywhere).
    let wrong = [
        format!(
            "{}/socket.io/?EIO=4&transport=polling&sid={sid}",
            cl.nodes[1].base
        ),
        format!(
            "{}/socket.io/?EIO=4&transport=polling&sid=node2.AAAAAAAAAAAAAAAAAAAA",
            nginx.base()
        ),
        format!(
            "{}/socket.io/?EIO=4&transport=polling&sid=gone.AAAAAAAAAAAAAAAAAAAA",
            nginx.base()
        ),
    ];
    for url in &wrong {
        for how in ["get", "post", "upgrade"] {
            let started = Instant::now();
            let res = match how {
                "post" => client.post(url).body("40").send().await.unwrap(),
                "get" => client.get(url).send().await.unwrap(),
                _ => client
                    .get(url.replace("transport=polling", "transport=websocket"))
                    .header("connection", "Upgrade")
                    .header("upgrade", "websocket")
                    .header("sec-websocket-version", "13")
                    .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                    .send()
                    .await
                    .unwrap(),
            };
            let status = res.status();
            let body: Value = res.json().await.unwrap();
            let took = started.elapsed();
            assert_eq!(status, 400, "{url} {how}: {body}");
            assert_eq!(body["code"], 1, "{body}");
            assert_eq!(body["message"], "Session ID unknown", "{body}");
            assert_eq!(body["error"]["code"], "session_unknown", "{body}");
            assert!(took < Duration::from_secs(1), "{url} {how} took {took:?}");
        }
    }

    // Through nginx the real sid reaches node1: a namespace connect is
    // posted, and the next poll carries the answer (a Socket.IO packet).
    let via = format!(
        "{}/socket.io/?EIO=4&transport=polling&sid={sid}",
        nginx.base()
    );
    let res = client.post(&via).body("40").send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", nginx.log());
    let res = tokio::time::timeout(Duration::from_secs(5), client.get(&via).send())
        .await
        .expect("poll answered within 5 s")
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.starts_with('4'), "{body}");
    drop(nginx);
}

struct LiveFixture {
    vehicle: i64,
    device_token: String,
    access: String,
}

impl LiveFixture {
    /// ffmpeg publishing the vehicle's `front` channel to the RTMP
    /// server at `rtmp` (a node or nginx) for 40 s.
    fn publish_front(&self, rtmp: impl std::fmt::Display) -> Ffmpeg {
        Ffmpeg::publish(
            &format!(
                "rtmp://{rtmp}/live/{}-front?token={}",
                self.vehicle, self.device_token
            ),
            40,
        )
    }

    /// The path of the `front` channel's HTTP-FLV play, with the owner's token.
    fn flv_path(&self) -> String {
        format!("/live/{}-front.flv?token={}", self.vehicle, self.access)
    }

    /// The path of the `front` channel's HLS playlist, with the owner's token.
    fn hls_path(&self) -> String {
        format!(
            "/live/{}-front/index.m3u8?token={}",
            self.vehicle, self.access
        )
    }
}

async fn live_fixture(node: &TestServer) -> LiveFixture {
    let api = node.api();
    let owner = api.new_user("video@example.com").await;
    let v = api.new_vehicle(&owner, "LBV-1").await;
    LiveFixture {
        vehicle: v["id"].as_i64().unwrap(),
        device_token: v["device_token"].as_str().unwrap().to_owned(),
        access: owner.access,
    }
}

/// Wait until `url` answers 200, up to 15 s.
async fn wait_ok(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Ok(res)) =
            tokio::time::timeout(Duration::from_secs(8), client.get(url).send()).await
            && res.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not answer 200 within 15 s");
}

async fn probe(url: String) -> Value {
    tokio::task::spawn_blocking(move || ffprobe_streams(&url))
        .await
        .unwrap()
}

/// Video behind nginx: published through nginx's RTMP (stream module), it
/// lands on either node; HTTP-FLV, WS-FLV and HLS play through nginx from
/// either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_video_through_nginx_rtmp_http_flv_ws_flv_and_hls() {
    let cl = cluster(Redis::start()).await;
    let nginx = Nginx::start([&cl.nodes[0], &cl.nodes[1]]);
    let f = live_fixture(&cl.nodes[0]).await;
    let _ffmpeg = f.publish_front(&nginx.rtmp);
    let path = f.flv_path();
    // Published through nginx: playable through nginx, whichever node has it.
    wait_ok(&format!("{}{path}", nginx.base())).await;
    // The internal endpoint is not exposed.
    let internal = format!("{}/internal/live/{}-front.flv", nginx.base(), f.vehicle);
    assert_eq!(reqwest::get(&internal).await.unwrap().status(), 404);

    // HTTP-FLV through nginx.
    let flv = format!("{}{path}", nginx.base());
    let res = reqwest::get(&flv).await.unwrap();
    assert_eq!(res.status(), 200, "{}", nginx.log());
    assert_eq!(res.headers()["content-type"], "video/x-flv");
    drop(res);
    assert_h264_aac_640x360(&probe(flv).await);

    // WS-FLV through nginx: binary messages of FLV, the header first.
    let ws_url = format!("ws://{}{path}", nginx.http);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(ws_url.as_str()),
    )
    .await
    .expect("WS-FLV connect within 10 s")
    .unwrap();
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bytes.len() < 64 * 1024 {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) => {
                bytes.extend_from_slice(&b)
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("WS-FLV ended early: {other:?} after {} bytes", bytes.len()),
        }
    }
    assert_eq!(&bytes[..3], b"FLV");
    drop(ws);

    // HLS through nginx.
    plays_h264_aac(format!("{}{}", nginx.base(), f.hls_path())).await;
    drop(nginx);
}

/// `url` answers 200 (bounded wait), and ffprobe reads H.264 + AAC
/// 640x360 from it (the first HLS playlist request waits for a segment).
async fn plays_h264_aac(url: String) {
    wait_ok(&url).await;
    assert_h264_aac_640x360(&probe(url).await);
}

/// A stream published to node2 directly, played through nginx, which sends
/// the plays round-robin: node1 answers them through its edge pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_play_through_nginx_of_a_stream_published_to_one_node() {
    let cl = cluster(Redis::start()).await;
    let nginx = Nginx::start([&cl.nodes[0], &cl.nodes[1]]);
    let f = live_fixture(&cl.nodes[0]).await;
    let _ffmpeg = f.publish_front(cl.nodes[1].rtmp_addr);
    let path = f.flv_path();
    wait_ok(&format!("{}{path}", cl.nodes[1].base)).await;
    plays_h264_aac(format!("{}{path}", nginx.base())).await;
    plays_h264_aac(format!("{}{}", nginx.base(), f.hls_path())).await;
    drop(nginx);
}

/// The next JSON line of the client holding `key` (an `error` line, the
/// end of its output or the deadline fail the test with `context()`).
async fn line_with(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    key: &str,
    within: Duration,
    context: impl Fn() -> String,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(other) => panic!("the client ended before {key}: {other:?}\n{}", context()),
            Err(_) => panic!("no {key} from the client within {within:?}\n{}", context()),
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        assert!(v.get("error").is_none(), "client: {v}\n{}", context());
        if let Some(found) = v.get(key) {
            return found.clone();
        }
    }
}

/// Every `t` stored for `vehicle` in [from, to), paged (small pages, so the
/// cursor is used).
async fn stored_ts(base: &str, access: &str, vehicle: i64, from: i64, to: i64) -> Vec<i64> {
    let api = common::Api::new(base);
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut path = format!("/api/v1/vehicles/{vehicle}/locations?from={from}&to={to}&limit=50");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = api.get(&path, access).await;
        assert_eq!(r.status, 200, "{r:?}");
        out.extend(
            r.body["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["t"].as_i64().unwrap()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("more than 10,000 pages of locations");
}

fn starts(v: &Value, prefix: &str) -> bool {
    v.as_str().is_some_and(|s| s.starts_with(prefix))
}

/// Failover: node2 killed with SIGKILL behind nginx. Stock
/// `socket.io-client` sockets (default options, so their own reconnection
/// with the default delays) of a device and an app on node2 reconnect
/// through nginx to node1; the device's `loc` goes on; both apps (the one
/// on node1 never disconnected) get `loc` again; node2 is reaped within the
/// presence TTL (3 s); every point the device got an ack for is stored.
/// The device is usually back before node2 is reaped: then the app on
/// node1 sees only `presence` online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_behind_nginx_its_stock_clients_reconnect_to_the_other_and_no_acked_point_is_lost()
 {
    failover(None).await;
}

/// The same with the device's reconnection delay fixed at 4 s (longer than
/// the reaping takes, at most 3 s with a TTL of 3 s): the app on node1
/// sees `presence` offline (node2 reaped), then online once the device is
/// back; the points the device buffered meanwhile are acked and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_behind_nginx_its_device_back_after_the_reaping_goes_offline_then_online() {
    failover(Some(4_000)).await;
}

/// node2 killed under the stock clients of `tests/clients/failover_flow.js`;
/// `device_delay_ms`: the device's fixed reconnection delay (None: the
/// stock delays).
async fn failover(device_delay_ms: Option<u64>) {
    let Some(modules) = node_modules() else {
        return;
    };
    let redis = Redis::start();
    let secret = "nginx-test-secret-".repeat(3);
    let node1 = TestServer::start_with(|c| {
        c.redis.url = Some(redis.url());
        c.node.id = "node1".into();
        c.auth.jwt_secret = Some(secret.clone());
        c.http.trust_forwarded_for = true;
        c.node.presence_ttl_secs = 3;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let rtmp2: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let redis_url = redis.url();
    let args = NodeArgs {
        db_url: &node1.config.database.url,
        redis: &redis_url,
        id: "node2",
        secret: &secret,
        rtmp: Some(rtmp2),
        set: &["http.trust_forwarded_for=true"],
    };
    // Killed on drop, also when the test fails.
    let (mut node2, base2) = start_process_node(dir.path(), &args).await;
    let nginx = Nginx::start_at([(&node1.base, node1.rtmp_addr), (&base2, rtmp2)]);

    let api = node1.api();
    let owner = api.new_user("failover@example.com").await;
    let v = api.new_vehicle(&owner, "FO-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let (acks_after, settle_ms) = (20, 5_000);
    let stderr_path = dir.path().join("client.stderr");
    let mut child = tokio::process::Command::new("node")
        .arg(script("failover_flow.js"))
        .args([
            nginx.base(),
            "FO-1".into(),
            v["device_token"].as_str().unwrap().into(),
            owner.access.clone(),
            vehicle.to_string(),
            acks_after.to_string(),
            settle_ms.to_string(),
            device_delay_ms.unwrap_or(0).to_string(),
        ])
        .env("ROADHUB_TEST_NODE_MODULES", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let context = || {
        format!(
            "client stderr: {}\nnginx: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            nginx.log()
        )
    };

    let started = Instant::now();
    let ready = line_with(&mut lines, "ready", Duration::from_secs(30), context).await;
    eprintln!("ready after {:?}: {ready}", started.elapsed());
    assert!(starts(&ready["device"]["sid"], "node2."), "{ready}");
    assert!(starts(&ready["apps"]["a"]["sid"], "node1."), "{ready}");
    assert!(starts(&ready["apps"]["b"]["sid"], "node2."), "{ready}");

    // Points flow for a second, then node2 dies without a goodbye.
    tokio::time::sleep(Duration::from_secs(1)).await;
    node2.kill();
    let killed = Instant::now();
    let done = line_with(&mut lines, "done", Duration::from_secs(30), context).await;
    let done_after = killed.elapsed();
    let (dev, a, b) = (&done["device"], &done["apps"]["a"], &done["apps"]["b"]);
    let ms = |v: &Value| v.as_i64().unwrap_or_else(|| panic!("not a time: {done}"));

    // The stock clients reconnected on their own, through nginx, to node1.
    assert!(starts(&dev["sidAfter"], "node1."), "{done}");
    assert!(starts(&b["sidAfter"], "node1."), "{done}");
    assert!(a["downAt"].is_null(), "the app on node1 stayed up: {done}");
    let dev_gap = ms(&dev["upAt"]) - ms(&dev["downAt"]);
    let app_gap = ms(&b["upAt"]) - ms(&b["downAt"]);
    eprintln!(
        "device: down {} ms after ready ({}), back on node1 after {dev_gap} ms ({} attempts); \
         app b: back after {app_gap} ms ({} attempts); done {done_after:?} after the kill",
        ms(&dev["downAt"]) - ms(&done["readyAt"]),
        dev["reason"],
        dev["attempts"],
        b["attempts"],
    );
    // Default reconnection delays: the first attempt after 0.5 to 1.5 s.
    let delay = device_delay_ms.map_or(0, |d| d as i64);
    assert!(
        dev_gap >= delay && dev_gap < delay + 8_000,
        "device back after {dev_gap} ms: {done}"
    );
    assert!(app_gap < 8_000, "app back after {app_gap} ms: {done}");
    assert!(
        b["watches"].as_i64().unwrap() >= 2,
        "b watched again: {done}"
    );
    // Both apps get the device's loc again.
    assert!(a["locsAfter"].as_i64().unwrap() >= 3, "{done}");
    assert!(b["locsAfter"].as_i64().unwrap() >= 3, "{done}");
    assert!(dev["acksAfter"].as_i64().unwrap() >= acks_after, "{done}");
    assert_eq!(dev["nacked"], json!([]), "no point refused: {done}");

    // node2 was reaped by node1. Its device's key had been taken over by
    // the reconnect unless the reaper got there first: then (and only then)
    // the reaper published offline before the reconnect's online.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&node1.base, "roadhub_cluster_nodes_reaped_total").await < 1.0 {
        assert!(Instant::now() < deadline, "node2 not reaped: {done}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reaped = metric(&node1.base, "roadhub_cluster_devices_reaped_total").await;
    let seen = |app: &Value| -> Vec<bool> {
        app["presence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["online"].as_bool().unwrap())
            .collect()
    };
    if device_delay_ms.is_some() {
        assert_eq!(
            reaped, 1.0,
            "the device came back after the reaping: {done}"
        );
    }
    let expected = if reaped == 0.0 {
        vec![true]
    } else {
        assert_eq!(reaped, 1.0, "{done}");
        let off = &a["presence"][0];
        let took = ms(&off["at"]) - ms(&dev["downAt"]);
        eprintln!("offline {took} ms after the device's disconnect");
        assert!(took < 5_000, "offline after {took} ms: {done}");
        vec![false, true]
    };
    eprintln!(
        "devices reaped by node1: {reaped}; presence seen by a: {:?}",
        seen(a)
    );
    assert_eq!(seen(a), expected, "app a's presence: {done}");
    let online = ms(&a["presence"][expected.len() - 1]["at"]) - ms(&dev["downAt"]);
    eprintln!("online again (on node1) {online} ms after the device's disconnect");
    assert!(online < delay + 8_000, "online after {online} ms: {done}");
    // App b was away for part of it: it saw the end of the same story.
    assert!(expected.ends_with(&seen(b)), "app b's presence: {done}");

    // The vehicle is online, held by node1.
    let r = api.get("/api/v1/vehicles", &owner.access).await;
    let listed = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == vehicle);
    assert_eq!(listed.unwrap()["online"], true, "{r:?}");
    // The client disconnects once its stdin closes.
    drop(child.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("the client exits once its stdin closes")
        .unwrap();
    assert!(status.success(), "{status}: {done}\n{}", context());

    // Nothing acknowledged is lost: every acked point is stored.
    let acked: Vec<i64> = dev["acked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    let (from, to) = (
        *acked.iter().min().unwrap(),
        *acked.iter().max().unwrap() + 1,
    );
    let stored: std::collections::HashSet<i64> =
        stored_ts(&node1.base, &owner.access, vehicle, from, to)
            .await
            .into_iter()
            .collect();
    // Points in flight when node2 died got no ack: stored or not, either
    // is right (the client does not resend them).
    let unanswered: Vec<i64> = dev["unanswered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    let stored_unanswered = stored_ts(&node1.base, &owner.access, vehicle, 0, i64::MAX)
        .await
        .into_iter()
        .filter(|t| unanswered.contains(t))
        .count();
    eprintln!("never answered: {unanswered:?} ({stored_unanswered} of them stored)");
    let missing: Vec<i64> = acked
        .iter()
        .filter(|t| !stored.contains(t))
        .copied()
        .collect();
    let sent = dev["sent"].as_i64().unwrap();
    eprintln!(
        "points: {sent} sent, {} acked, {} stored in the acked range",
        acked.len(),
        stored.len(),
    );
    assert!(missing.is_empty(), "acked but not stored: {missing:?}");
    drop(nginx);
}
