//! `roadhub simulate` end to end, through `roadhub::simulate::run`.
//!
//! - Against a real node (`TestServer`): a small run loses nothing.
//! - Against a tiny in-process mock hub (below): the simulator's own
//!   behaviour (setup, connects, acks, fan-out counting, loss detection,
//!   commands, pings, idle mode, credentials reuse), so it stays tested
//!   while the hub is being written. The mock is a test double, not a
//!   Socket.IO server: one namespace per WebSocket, no polling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use roadhub::simulate::{SimulateOptions, run};

fn small(url: &str) -> SimulateOptions {
    SimulateOptions {
        url: url.to_string(),
        devices: 3,
        phones_per_vehicle: 2,
        points: 10,
        interval: Duration::from_millis(100),
        event_rate: 60.0,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        drain: Duration::from_millis(500),
        ack_timeout: Duration::from_secs(5),
        timeout: Some(Duration::from_secs(60)),
        seed: Some(1),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_simulation_against_a_node_loses_nothing() {
    let server = TestServer::start_with(|c| {
        c.limits.auth_attempts_per_minute = 0;
        c.limits.app_sessions_per_user = 0;
        c.limits.device_messages_per_second = 0;
        c.limits.app_messages_per_second = 0;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.json");
    let report = run(SimulateOptions {
        save_credentials: Some(creds.clone()),
        duration: Duration::from_secs(2),
        ..small(&server.base)
    })
    .await
    .unwrap();
    assert!(!report.timed_out, "{report}");
    assert_eq!(report.connect.devices_connected, 3, "{report}");
    assert_eq!(report.connect.phones_watching, 6, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert!(report.ingest.batches_acked > 0, "{report}");
    assert_eq!(report.ingest.unacked, 0, "{report}");
    assert_eq!(
        report.ingest.points_acked_total,
        report.ingest.batches_acked * 10,
        "{report}"
    );
    assert_eq!(report.loss.lost, 0, "{report}");
    assert_eq!(report.loss.expected, report.loss.delivered, "{report}");
    assert_eq!(report.loss.events_lost, 0, "{report}");
    assert!(report.delivery.e2e_latency.count > 0, "{report}");

    // The same fleet again, from the credentials file.
    let again = run(SimulateOptions {
        credentials: Some(creds),
        ..small(&server.base)
    })
    .await
    .unwrap();
    assert!(again.setup.reused_credentials);
    assert_eq!(again.loss.lost, 0, "{again}");
    assert!(again.errors.is_empty(), "{again}");
}

/// `--phone-url`: devices on node A, phones on node B of a cluster (one
/// Redis, one database): every delivery crosses the bus, none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_on_another_node_get_every_delivery() {
    let redis = common::redis::Redis::start();
    let cluster = |c: &mut roadhub::Config, id: &str| {
        c.redis.url = Some(redis.url());
        c.node.id = id.into();
        c.auth.jwt_secret = Some("simulate-cluster-secret-".repeat(2));
        c.limits.auth_attempts_per_minute = 0;
        c.limits.app_sessions_per_user = 0;
        c.limits.device_messages_per_second = 0;
        c.limits.app_messages_per_second = 0;
    };
    let a = TestServer::start_with(|c| cluster(c, "node-a")).await;
    let db_url = a.config.database.url.clone();
    let b = TestServer::start_with(|c| {
        cluster(c, "node-b");
        c.database.url = db_url;
    })
    .await;
    let report = run(SimulateOptions {
        phone_url: Some(b.base.clone()),
        event_rate: 0.0,
        ..small(&a.base)
    })
    .await
    .unwrap();
    assert!(!report.timed_out, "{report}");
    assert_eq!(report.phone_url.as_deref(), Some(b.base.as_str()));
    assert_eq!(report.connect.devices_connected, 3, "{report}");
    assert_eq!(report.connect.phones_watching, 6, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert!(report.loss.delivered > 0, "{report}");
    assert_eq!(report.loss.lost, 0, "{report}");
    assert_eq!(report.loss.expected, report.loss.delivered, "{report}");
    // The phones really were on node B.
    let metrics = reqwest::get(format!("{}/metrics", b.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let opened = metrics
        .lines()
        .find_map(|l| l.strip_prefix("roadhub_socketio_connections_opened_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(opened >= 6.0, "node B opened {opened} connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_against_a_mock_hub_counts_every_delivery() {
    let hub = mock::Hub::start(mock::Knobs::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.json");
    let report = run(SimulateOptions {
        save_credentials: Some(creds.clone()),
        ..small(&hub.url)
    })
    .await
    .unwrap();
    assert!(!report.timed_out, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.mode, "traffic");
    assert_eq!(report.setup.users, 3);
    assert_eq!(report.setup.vehicles, 3);
    assert_eq!(report.connect.devices_connected, 3);
    assert_eq!(report.connect.phones_watching, 6);
    // Three devices, 10 batches a second each, for about 1.2 s.
    let acked = report.ingest.batches_acked;
    assert!((15..=80).contains(&acked), "{report}");
    assert_eq!(report.ingest.points_acked_total, acked * 10);
    assert_eq!(report.ingest.unacked, 0);
    assert_eq!(report.loss.expected, acked * 2, "two phones per vehicle");
    assert_eq!(report.loss.delivered, report.loss.expected, "{report}");
    assert_eq!((report.loss.lost, report.loss.extra), (0, 0));
    assert_eq!(report.loss.events_expected, report.ingest.events_acked * 2);
    assert_eq!(report.loss.events_lost, 0);
    // The window saw about a second of it.
    let d = &report.delivery;
    assert!(d.loc_messages > 0 && d.e2e_latency.count == d.loc_messages);
    assert!(
        d.e2e_latency.p50_ms >= 0.0 && d.e2e_latency.max_ms < 5000.0,
        "{report}"
    );
    assert!(report.ingest.ack_latency.count > 0);
    assert!(report.ingest.points_per_s > 0.0);
    // Every device answered the mock's command.
    assert_eq!(report.commands_answered, 3);
    assert_eq!(hub.command_acks(), 3);
    assert!(hub.pongs() > 0, "pings answered");
    assert!(report.cpu.total_s > 0.0);
    let line = report.to_json_line();
    assert!(!line.contains('\n'));

    // Reuse: no registration, one login per owner.
    let registered = hub.registrations();
    let again = run(SimulateOptions {
        credentials: Some(creds),
        devices: 2,
        ..small(&hub.url)
    })
    .await
    .unwrap();
    assert!(again.setup.reused_credentials);
    assert_eq!((again.setup.logins, hub.registrations()), (2, registered));
    assert_eq!(again.loss.lost, 0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losses_and_error_acks_are_counted() {
    let hub = mock::Hub::start(mock::Knobs {
        drop_every: 4,
        busy_every: 5,
    })
    .await;
    let report = run(SimulateOptions {
        event_rate: 0.0,
        ..small(&hub.url)
    })
    .await
    .unwrap();
    let busy = report.errors.get("loc:busy").copied().unwrap_or(0);
    assert!(busy > 0, "{report}");
    let dropped = hub.dropped();
    assert!(dropped > 0);
    assert_eq!(report.loss.lost, dropped * 2, "{report}");
    assert_eq!(report.loss.expected - report.loss.delivered, dropped * 2);
    assert!(report.loss.phones_with_loss >= 2, "{report}");
    assert_eq!(
        report.ingest.batches_sent,
        report.ingest.batches_acked + busy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_mode_connects_phones_and_holds_them() {
    let hub = mock::Hub::start(mock::Knobs::default()).await;
    let report = run(SimulateOptions {
        connect_only: true,
        devices: 5,
        vehicles_per_user: 5,
        phones: Some(60),
        duration: Duration::from_millis(800),
        source_addrs: Some(3),
        ..small(&hub.url)
    })
    .await
    .unwrap();
    assert_eq!(report.mode, "connect_only");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.setup.users, 1);
    assert_eq!(report.connect.devices_attempted, 0);
    assert_eq!(report.connect.phones_watching, 60);
    assert!(report.connect.phones_per_s > 0.0);
    assert_eq!(report.connect.phone_latency.count, 60);
    assert_eq!(report.ingest.batches_sent, 0);
    assert_eq!(report.sessions_dropped, 0);
    assert!(report.window_s >= 0.79);
    assert_eq!(hub.peak_app_sessions(), 60);
    // Three source addresses were used.
    assert_eq!(hub.peers(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_devices_are_errors_not_hangs() {
    let hub = mock::Hub::start(mock::Knobs::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.json");
    run(SimulateOptions {
        save_credentials: Some(creds.clone()),
        duration: Duration::from_millis(100),
        ..small(&hub.url)
    })
    .await
    .unwrap();
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    saved["vehicles"][0]["device_token"] = "dt_wrong".into();
    std::fs::write(&creds, saved.to_string()).unwrap();
    let report = run(SimulateOptions {
        credentials: Some(creds),
        ..small(&hub.url)
    })
    .await
    .unwrap();
    assert_eq!(report.connect.devices_connected, 2, "{report}");
    assert_eq!(report.errors["device:connect_error:unauthorized"], 1);
    assert_eq!(
        report.loss.lost, 0,
        "the refused device's phones expect nothing"
    );
}

/// A minimal hub double: REST register/login/vehicles over HTTP/1.1 with
/// `Connection: close`, and `/device` + `/app` over WebSocket with acks,
/// room fan-out, one command per device, and pings every 200 ms.
mod mock {
    use std::collections::{HashMap, HashSet};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures_util::{SinkExt as _, StreamExt as _};
    use roadhub::simulate::client::{self, Packet, SioType};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message;

    #[derive(Default, Clone, Copy)]
    pub struct Knobs {
        /// Do not fan out every Nth acknowledged batch.
        pub drop_every: u64,
        /// Answer `busy` to every Nth batch.
        pub busy_every: u64,
    }

    #[derive(Default)]
    struct State {
        users: HashMap<String, (i64, String)>,
        tokens: HashMap<String, i64>,
        /// serial -> (vehicle id, owner, device token)
        vehicles: HashMap<String, (i64, i64, String)>,
        owners: HashMap<i64, i64>,
        rooms: HashMap<i64, Vec<mpsc::UnboundedSender<String>>>,
        registrations: u64,
        batches: u64,
        acked: u64,
        dropped: u64,
        command_acks: u64,
        pongs: u64,
        app_sessions: u64,
        peak_app_sessions: u64,
        peers: HashSet<std::net::IpAddr>,
    }

    pub struct Hub {
        pub url: String,
        state: Arc<Mutex<State>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Hub {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Hub {
        pub async fn start(knobs: Knobs) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let state = Arc::new(Mutex::new(State::default()));
            let st = Arc::clone(&state);
            let task = tokio::spawn(async move {
                while let Ok((stream, peer)) = listener.accept().await {
                    tokio::spawn(serve(stream, peer, Arc::clone(&st), knobs));
                }
            });
            Self { url, state, task }
        }

        fn get<T>(&self, f: impl FnOnce(&State) -> T) -> T {
            f(&self.state.lock().unwrap())
        }
        pub fn registrations(&self) -> u64 {
            self.get(|s| s.registrations)
        }
        pub fn dropped(&self) -> u64 {
            self.get(|s| s.dropped)
        }
        pub fn command_acks(&self) -> u64 {
            self.get(|s| s.command_acks)
        }
        pub fn pongs(&self) -> u64 {
            self.get(|s| s.pongs)
        }
        pub fn peak_app_sessions(&self) -> u64 {
            self.get(|s| s.peak_app_sessions)
        }
        /// Distinct client addresses of WebSocket connections.
        pub fn peers(&self) -> usize {
            self.get(|s| s.peers.len())
        }
    }

    async fn serve(stream: TcpStream, peer: SocketAddr, st: Arc<Mutex<State>>, knobs: Knobs) {
        let mut head = [0u8; 16];
        let mut n = 0;
        for _ in 0..100 {
            n = stream.peek(&mut head).await.unwrap_or(0);
            if n >= head.len() || n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if head[..n].starts_with(b"GET /socket.io/") {
            st.lock().unwrap().peers.insert(peer.ip());
            websocket(stream, st, knobs).await;
        } else {
            rest(stream, st).await;
        }
    }

    async fn rest(mut stream: TcpStream, st: Arc<Mutex<State>>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, length) = loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                break (pos + 4, length);
            }
        };
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let body: Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
        let request_line = head.lines().next().unwrap_or_default().to_string();
        let bearer = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("authorization: Bearer ")
                    .or_else(|| l.strip_prefix("Authorization: Bearer "))
            })
            .unwrap_or_default()
            .trim()
            .to_string();
        let (status, answer) = {
            let mut s = st.lock().unwrap();
            match request_line.split(' ').take(2).collect::<Vec<_>>()[..] {
                ["POST", "/api/v1/auth/register"] => {
                    let email = body["email"].as_str().unwrap().to_string();
                    let id = s.users.len() as i64 + 1;
                    s.users.insert(
                        email.clone(),
                        (id, body["password"].as_str().unwrap().into()),
                    );
                    s.registrations += 1;
                    (201, json!({"id": id, "email": email}))
                }
                ["POST", "/api/v1/auth/login"] => {
                    match s.users.get(body["email"].as_str().unwrap()).cloned() {
                        Some((id, pw)) if body["password"] == pw => {
                            let token = format!("at-{id}-{}", s.tokens.len());
                            s.tokens.insert(token.clone(), id);
                            (
                                200,
                                json!({"access_token": token, "refresh_token": "rt", "expires_in": 600}),
                            )
                        }
                        _ => (
                            401,
                            json!({"error": {"code": "invalid_credentials", "message": "no"}}),
                        ),
                    }
                }
                ["POST", "/api/v1/vehicles"] => match s.tokens.get(&bearer).copied() {
                    Some(owner) => {
                        let id = s.vehicles.len() as i64 + 1;
                        let serial = body["serial"].as_str().unwrap().to_string();
                        let token = format!("dt_{id}");
                        s.vehicles
                            .insert(serial.clone(), (id, owner, token.clone()));
                        s.owners.insert(id, owner);
                        (
                            201,
                            json!({"id": id, "name": body["name"], "serial": serial, "device_token": token}),
                        )
                    }
                    None => (
                        401,
                        json!({"error": {"code": "unauthorized", "message": "no"}}),
                    ),
                },
                _ => (
                    404,
                    json!({"error": {"code": "not_found", "message": "no"}}),
                ),
            }
        };
        let text = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    async fn websocket(stream: TcpStream, st: Arc<Mutex<State>>, knobs: Knobs) {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let (mut sink, mut source) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let writer = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if sink.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
        });
        let _ = tx.send(
            r#"0{"sid":"mock","upgrades":[],"pingInterval":200,"pingTimeout":1000,"maxPayload":1000000}"#.into(),
        );
        let pinger = {
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if tx.send("2".into()).is_err() {
                        break;
                    }
                }
            })
        };
        let mut vehicle: Option<i64> = None; // a device's vehicle
        let mut user: Option<i64> = None; // an app's user
        while let Some(Ok(msg)) = source.next().await {
            let Message::Text(text) = msg else { continue };
            let p = match client::parse(&text) {
                Ok(Packet::Pong) => {
                    st.lock().unwrap().pongs += 1;
                    continue;
                }
                Ok(Packet::Message(p)) => p,
                _ => continue,
            };
            let nsp = p.nsp;
            match p.kind {
                SioType::Connect => {
                    let auth: Value = serde_json::from_str(p.data).unwrap_or_default();
                    let s = st.lock().unwrap();
                    let ok = if nsp == "/device" {
                        let found = s.vehicles.get(auth["serial"].as_str().unwrap_or_default());
                        vehicle = found.filter(|v| auth["token"] == v.2).map(|v| v.0);
                        vehicle.is_some()
                    } else {
                        user = s
                            .tokens
                            .get(auth["token"].as_str().unwrap_or_default())
                            .copied();
                        user.is_some()
                    };
                    drop(s);
                    if !ok {
                        let _ = tx.send(format!(r#"44{nsp},{{"message":"unauthorized"}}"#));
                        continue;
                    }
                    let _ = tx.send(format!(r#"40{nsp},{{"sid":"s"}}"#));
                    if nsp == "/device" {
                        let _ = tx.send(format!(
                            r#"42{nsp},900["command",{{"id":1,"name":"snapshot","args":{{}}}}]"#
                        ));
                    } else {
                        let mut s = st.lock().unwrap();
                        s.app_sessions += 1;
                        s.peak_app_sessions = s.peak_app_sessions.max(s.app_sessions);
                    }
                }
                SioType::Ack if nsp == "/device" && p.id == Some(900) => {
                    let body = client::ack_arg(p.data).unwrap_or_default();
                    if body["ok"] == true {
                        st.lock().unwrap().command_acks += 1;
                    }
                }
                SioType::Event => {
                    let args: Vec<Value> = serde_json::from_str(p.data).unwrap_or_default();
                    let (Some(name), Some(arg), Some(id)) = (args.first(), args.get(1), p.id)
                    else {
                        continue;
                    };
                    let mut s = st.lock().unwrap();
                    let answer = match (nsp, name.as_str().unwrap_or_default(), vehicle, user) {
                        ("/device", "loc", Some(v), _) => {
                            s.batches += 1;
                            if knobs.busy_every > 0 && s.batches.is_multiple_of(knobs.busy_every) {
                                json!({"ok": false, "error": "busy"})
                            } else {
                                let stored = arg["points"].as_array().map_or(0, Vec::len);
                                s.acked += 1;
                                if knobs.drop_every > 0 && s.acked.is_multiple_of(knobs.drop_every)
                                {
                                    s.dropped += 1;
                                } else {
                                    let out = json!({"vehicle": v, "points": arg["points"]});
                                    let frame = format!(r#"42/app,["loc",{out}]"#);
                                    for m in s.rooms.get(&v).into_iter().flatten() {
                                        let _ = m.send(frame.clone());
                                    }
                                }
                                json!({"ok": true, "stored": stored})
                            }
                        }
                        ("/device", "event", Some(v), _) => {
                            let mut out = arg.clone();
                            out["vehicle"] = v.into();
                            out["id"] = 1.into();
                            let frame = format!(r#"42/app,["event",{out}]"#);
                            for m in s.rooms.get(&v).into_iter().flatten() {
                                let _ = m.send(frame.clone());
                            }
                            json!({"ok": true, "id": 1})
                        }
                        ("/app", "watch", _, Some(u)) => {
                            let v = arg["vehicle"].as_i64().unwrap_or(-1);
                            if s.owners.get(&v) == Some(&u) {
                                s.rooms.entry(v).or_default().push(tx.clone());
                                json!({"ok": true, "online": false, "last": null})
                            } else {
                                json!({"ok": false, "error": "forbidden"})
                            }
                        }
                        _ => json!({"ok": false, "error": "unknown_event"}),
                    };
                    let _ = tx.send(client::encode_ack(nsp, id, &answer.to_string()));
                }
                _ => {}
            }
        }
        if user.is_some() {
            st.lock().unwrap().app_sessions -= 1;
        }
        pinger.abort();
        writer.abort();
    }
}

/// A short H.264 + AAC FLV for the video simulation's publishers.
fn video_fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("fixture.flv");
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "15",
        ])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k", "-f", "flv",
        ])
        .arg(&path)
        .output()
        .expect("ffmpeg is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_video_simulation_plays_in_real_time() {
    use roadhub::simulate::video::{VideoOptions, VideoProtocol, run as run_video};
    let server = TestServer::start_with(|c| {
        c.limits.auth_attempts_per_minute = 0;
        c.limits.app_sessions_per_user = 0;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = video_fixture(dir.path());
    for (protocol, viewers) in [(VideoProtocol::Flv, 3), (VideoProtocol::WsFlv, 2)] {
        let report = run_video(SimulateOptions {
            url: server.base.clone(),
            devices: 2,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(3),
            timeout: Some(Duration::from_secs(60)),
            video: VideoOptions {
                video: true,
                video_file: Some(fixture.clone()),
                viewers_per_stream: viewers,
                video_protocol: protocol,
                rtmp_url: Some(format!("rtmp://{}", server.rtmp_addr)),
                first_frame_probes: 2,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(!report.timed_out, "{report}");
        assert!(report.errors.is_empty(), "{report}");
        assert_eq!(report.streams_publishing, 2, "{report}");
        assert_eq!(report.viewers_connected, 2 * viewers, "{report}");
        assert_eq!(report.viewers_dropped, 0, "{report}");
        assert!(report.realtime_ratio_min > 0.8, "{report}");
        assert!(report.publish_kbps > 0.0, "{report}");
        assert!(report.viewer_kbps_min > 0.0, "{report}");
        assert_eq!(report.first_frame.count, 2, "{report}");
        // Window edges may shift a frame or two per viewer, no more.
        assert!(
            report.video_frames_lost <= 2 * report.viewers_attempted as u64,
            "{report}"
        );
    }
}
