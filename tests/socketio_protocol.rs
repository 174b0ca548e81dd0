//! The Engine.IO 4 / Socket.IO 5 server spoken to raw, over HTTP
//! long-polling and WebSocket: the behaviour the official protocol suites
//! check (see `scripts/conformance`), and more, on the echo server of
//! `examples/socketio_conformance/echo.rs` running in this process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::echo::{Echo, conformance_config};
use common::engine::*;
use reqwest::StatusCode;
use roadhub::socketio::transport::router;
use roadhub::socketio::{
    ConnectResult, DisconnectReason, EngineConfig, IncomingEvent, Namespace, Socket, SocketHandler,
    SocketIo,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Refuses every CONNECT with data.
struct Refuse;

impl Namespace for Refuse {
    fn connect(&self, _: Socket, _: Value) -> Pin<Box<dyn Future<Output = ConnectResult>>> {
        Box::pin(async { Err(json!({"message": "not allowed", "data": {"reason": "test"}})) })
    }
}

/// Records why its sockets left; `kick` makes the server disconnect the
/// socket.
#[derive(Clone, Default)]
struct Recorder {
    left: Arc<Mutex<Vec<DisconnectReason>>>,
}

struct RecorderSocket {
    socket: Socket,
    left: Arc<Mutex<Vec<DisconnectReason>>>,
}

impl Namespace for Recorder {
    fn connect(&self, socket: Socket, _: Value) -> Pin<Box<dyn Future<Output = ConnectResult>>> {
        let left = self.left.clone();
        Box::pin(
            async move { Ok(Box::new(RecorderSocket { socket, left }) as Box<dyn SocketHandler>) },
        )
    }
}

impl SocketHandler for RecorderSocket {
    fn on_event(&mut self, event: IncomingEvent) {
        if event.name == "kick" {
            self.socket.disconnect();
        }
    }

    fn on_disconnect(&mut self, reason: DisconnectReason) {
        self.left.lock().unwrap().push(reason);
    }
}

impl Recorder {
    fn reasons(&self) -> Vec<DisconnectReason> {
        self.left.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<DisconnectReason> {
        let deadline = Instant::now() + WAIT;
        loop {
            let reasons = self.reasons();
            if reasons.len() >= count || Instant::now() > deadline {
                return reasons;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The echo server plus `/refuse` and `/record` on `/socket.io/`.
fn server(config: EngineConfig) -> (SioServer, Recorder) {
    let recorder = Recorder::default();
    let sio = SocketIo::builder(config.clone())
        .ns("/", Echo)
        .ns("/custom", Echo)
        .ns("/refuse", Refuse)
        .ns("/record", recorder.clone())
        .build();
    let app = axum::Router::new()
        .merge(router("/engine.io/", SocketIo::engine_echo(config)))
        .merge(router("/socket.io/", sio));
    (SioServer::start(app), recorder)
}

/// A WebSocket session connected to the main namespace (auth read).
async fn sio_ws(srv: &SioServer) -> Ws {
    let (mut ws, _) = ws_open(&srv.ws_base(), "/socket.io/").await;
    ws_send(&mut ws, "40").await;
    assert!(ws_text(&mut ws).await.starts_with("40{"));
    assert_eq!(ws_text(&mut ws).await, r#"42["auth",{}]"#);
    ws
}

/// A polling session connected to the main namespace (auth read).
async fn sio_polling(srv: &SioServer) -> Polling {
    let p = Polling::open(&srv.base, "/socket.io/").await;
    p.post_ok(&["40"]).await;
    let packets = p.collect(2).await;
    assert!(packets[0].starts_with("40{"), "{packets:?}");
    assert_eq!(packets[1], r#"42["auth",{}]"#);
    p
}

#[tokio::test]
async fn handshake_fields_on_both_transports() {
    let (srv, _) = server(conformance_config());
    let p = Polling::open(&srv.base, "/socket.io/").await;
    let keys: Vec<&String> = p.open.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    assert!(p.sid.len() >= 16);
    assert_eq!(p.open["upgrades"], json!(["websocket"]));
    assert_eq!(p.open["pingInterval"], 300);
    assert_eq!(p.open["pingTimeout"], 200);
    assert_eq!(p.open["maxPayload"], 1_000_000);

    let res = p
        .http
        .get(format!("{}/socket.io/?EIO=4&transport=polling", srv.base))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    // Over WebSocket there is nothing to upgrade to.
    let (_ws, open) = ws_open(&srv.ws_base(), "/engine.io/").await;
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(open["pingInterval"], 300);
    assert_ne!(open["sid"], p.open["sid"]);
}

#[tokio::test]
async fn bad_requests_get_400_with_an_engine_io_error_code() {
    let (srv, _) = server(quiet_config());
    let http = reqwest::Client::new();
    let code_of = |url: String, method: reqwest::Method| {
        let http = http.clone();
        async move {
            let res = http.request(method, url).send().await.unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap();
            (status, body["code"].as_i64().unwrap())
        }
    };
    let base = format!("{}/socket.io/", srv.base);
    let get = reqwest::Method::GET;
    let bad = StatusCode::BAD_REQUEST;
    // Protocol version: missing, unsupported, not a number.
    for q in [
        "transport=polling",
        "EIO=3&transport=polling",
        "EIO=abc&transport=polling",
    ] {
        assert_eq!(
            code_of(format!("{base}?{q}"), get.clone()).await,
            (bad, 5),
            "{q}"
        );
    }
    // Transport: missing, unknown.
    for q in ["EIO=4", "EIO=4&transport=abc"] {
        assert_eq!(
            code_of(format!("{base}?{q}"), get.clone()).await,
            (bad, 0),
            "{q}"
        );
    }
    // A handshake must be a GET.
    let q = format!("{base}?EIO=4&transport=polling");
    assert_eq!(code_of(q.clone(), reqwest::Method::POST).await, (bad, 2));
    assert_eq!(code_of(q.clone(), reqwest::Method::PUT).await.0, bad);
    // Unknown session, on every transport.
    let unknown = format!("{q}&sid=nosuchsession");
    assert_eq!(code_of(unknown.clone(), get.clone()).await, (bad, 1));
    assert_eq!(code_of(unknown, reqwest::Method::POST).await, (bad, 1));
    let ws = tokio_tungstenite::connect_async(format!(
        "{}/socket.io/?EIO=4&transport=websocket&sid=nosuchsession",
        srv.ws_base()
    ))
    .await;
    match ws {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 400);
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    // A WebSocket with a bad version is refused before the upgrade.
    assert!(
        tokio_tungstenite::connect_async(format!(
            "{}/socket.io/?transport=websocket",
            srv.ws_base()
        ))
        .await
        .is_err()
    );
}

#[tokio::test]
async fn polling_carries_batches_both_ways() {
    let (srv, _) = server(quiet_config());
    // Raw Engine.IO: messages and binary, several per request, echoed.
    let p = Polling::open(&srv.base, "/engine.io/").await;
    p.post_ok(&["4one", "4two", "bAQIDBA==", "4"]).await;
    assert_eq!(p.get_packets().await, ["4one", "4two", "bAQIDBA==", "4"]);

    // Socket.IO: two events in one POST; the answers come in one GET.
    let p = sio_polling(&srv).await;
    p.post_ok(&[r#"42["message",1]"#, r#"421["message-with-ack","a"]"#])
        .await;
    assert_eq!(
        p.get_packets().await,
        [r#"42["message-back",1]"#, r#"431["a"]"#]
    );
}

#[tokio::test]
async fn a_get_waits_for_data_then_returns_it() {
    let (srv, _) = server(quiet_config());
    let p = Polling::open(&srv.base, "/engine.io/").await;
    let getter = {
        let p = p.clone();
        tokio::spawn(async move { p.get_packets().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!getter.is_finished(), "the GET must wait for data");
    p.post_ok(&["4late"]).await;
    assert_eq!(getter.await.unwrap(), ["4late"]);
}

#[tokio::test]
async fn a_second_concurrent_get_closes_the_session() {
    let (srv, _) = server(quiet_config());
    let p = Polling::open(&srv.base, "/engine.io/").await;
    let first = {
        let p = p.clone();
        tokio::spawn(async move { p.get().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = p.get().await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(first.await.unwrap(), (StatusCode::OK, "1".to_string()));
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);
    assert_eq!(p.post(&["4x"]).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_abandoned_get_closes_the_session() {
    let (srv, _) = server(quiet_config());
    let p = Polling::open(&srv.base, "/engine.io/").await;
    // A client that sends its GET and hangs up at once.
    let addr = srv.base.trim_start_matches("http://").to_string();
    let path = p.session_url().replacen(&srv.base, "", 1);
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn client_close_ends_the_pending_get_with_a_noop() {
    let (srv, recorder) = server(quiet_config());
    let p = Polling::open(&srv.base, "/socket.io/").await;
    p.post_ok(&["40/record,"]).await;
    assert!(p.collect(1).await[0].starts_with("40/record,{"));
    let pending = {
        let p = p.clone();
        tokio::spawn(async move { p.get().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.post_ok(&["1"]).await;
    assert_eq!(pending.await.unwrap(), (StatusCode::OK, "6".to_string()));
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);
    assert_eq!(recorder.wait_for(1).await, [DisconnectReason::ClientClose]);

    // Over WebSocket, a close packet closes the socket.
    let (mut ws, _) = ws_open(&srv.ws_base(), "/socket.io/").await;
    ws_send(&mut ws, "1").await;
    ws_closed(&mut ws).await;
}

#[tokio::test]
async fn polling_payload_over_max_is_413_and_closes_the_session() {
    let config = EngineConfig {
        max_payload: 1000,
        ..quiet_config()
    };
    let (srv, _) = server(config);
    let p = Polling::open(&srv.base, "/engine.io/").await;
    assert_eq!(p.open["maxPayload"], 1000);
    // At the limit: fine.
    let at_limit = format!("4{}", "a".repeat(999));
    p.post_ok(&[&at_limit]).await;
    assert_eq!(p.get_packets().await, [at_limit]);
    // Over it (Content-Length known): 413, and the session is gone.
    let over = format!("4{}", "a".repeat(1000));
    assert_eq!(p.post(&[&over]).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);

    // Over it in a chunked body (no Content-Length): the same.
    let p = Polling::open(&srv.base, "/engine.io/").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"4".to_vec()), Ok(vec![b'b'; 600]), Ok(vec![b'c'; 600])];
    let res = p
        .http
        .post(p.session_url())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn websocket_message_over_max_closes_with_1009() {
    let config = EngineConfig {
        max_payload: 1000,
        ..quiet_config()
    };
    let (srv, _) = server(config);
    let (mut other, _) = ws_open(&srv.ws_base(), "/engine.io/").await;
    let (mut ws, _) = ws_open(&srv.ws_base(), "/engine.io/").await;
    ws_send(&mut ws, &format!("4{}", "a".repeat(999))).await;
    assert_eq!(ws_text(&mut ws).await.len(), 1000);
    ws_send(&mut ws, &format!("4{}", "a".repeat(1000))).await;
    assert_eq!(ws_closed(&mut ws).await, Some(1009));
    // Another connection is not affected.
    ws_send(&mut other, "4still here").await;
    assert_eq!(ws_text(&mut other).await, "4still here");
}

#[tokio::test]
async fn heartbeat_on_polling() {
    let (srv, _) = server(conformance_config());
    let p = Polling::open(&srv.base, "/engine.io/").await;
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(p.get_packets().await, ["2"]);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200),
            "ping after {waited:?}"
        );
        p.post_ok(&["3"]).await;
    }
    // No pong: closed by pingInterval + pingTimeout.
    let p = Polling::open(&srv.base, "/engine.io/").await;
    tokio::time::sleep(Duration::from_millis(300 + 200 + 20)).await;
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn heartbeat_on_websocket() {
    let (srv, recorder) = server(conformance_config());
    let (mut ws, _) = ws_open(&srv.ws_base(), "/engine.io/").await;
    for _ in 0..3 {
        assert_eq!(ws_next(&mut ws).await, Some(Message::text("2")));
        ws_send(&mut ws, "3").await;
    }
    // A socket that stops answering is closed, and its namespaces told why.
    let (mut ws, _) = ws_open(&srv.ws_base(), "/socket.io/").await;
    ws_send(&mut ws, "40/record,").await;
    let started = Instant::now();
    ws_closed(&mut ws).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "closed after {waited:?}"
    );
    assert_eq!(recorder.wait_for(1).await, [DisconnectReason::PingTimeout]);
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let (srv, _) = server(quiet_config());
    let p = sio_polling(&srv).await;
    // The client's long-poll, pending while it probes.
    let pending = {
        let p = p.clone();
        tokio::spawn(async move { p.get().await })
    };
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&sid={}",
        srv.ws_base(),
        p.sid
    );
    let mut ws = ws_connect(&ws_url).await;
    ws_send(&mut ws, "2probe").await;
    assert_eq!(ws_text(&mut ws).await, "3probe");
    // The pending GET is released with a noop, so the client can pause.
    assert_eq!(pending.await.unwrap(), (StatusCode::OK, "6".to_string()));
    // What the server sends meanwhile waits for the new transport.
    p.post_ok(&[r#"42["message","during"]"#]).await;
    ws_send(&mut ws, "5").await;
    assert_eq!(ws_text(&mut ws).await, r#"42["message-back","during"]"#);
    // The session goes on over WebSocket only.
    ws_send(&mut ws, r#"42["message","after"]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["message-back","after"]"#);
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        p.post(&["42[\"message\"]"]).await.0,
        StatusCode::BAD_REQUEST
    );
    // A second WebSocket for the same session is closed; the first goes on.
    let mut second = ws_connect(&ws_url).await;
    ws_closed(&mut second).await;
    ws_send(&mut ws, r#"42["message","still"]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["message-back","still"]"#);
}

#[tokio::test]
async fn a_failed_probe_leaves_the_session_on_polling() {
    let (srv, _) = server(quiet_config());
    let p = Polling::open(&srv.base, "/engine.io/").await;
    let url = format!(
        "{}/engine.io/?EIO=4&transport=websocket&sid={}",
        srv.ws_base(),
        p.sid
    );
    // A probe that goes away, then one that sends nonsense.
    let mut ws = ws_connect(&url).await;
    ws.close(None).await.unwrap();
    ws_closed(&mut ws).await;
    let mut ws = ws_connect(&url).await;
    ws_send(&mut ws, "4not a probe").await;
    ws_closed(&mut ws).await;
    p.post_ok(&["4polling"]).await;
    assert_eq!(p.get_packets().await, ["4polling"]);
    // And it can still upgrade.
    let mut ws = ws_connect(&url).await;
    ws_send(&mut ws, "2probe").await;
    assert_eq!(ws_text(&mut ws).await, "3probe");
    ws_send(&mut ws, "5").await;
    ws_send(&mut ws, "4ws").await;
    assert_eq!(ws_text(&mut ws).await, "4ws");
}

#[tokio::test]
async fn namespaces_connect_refuse_and_disconnect() {
    let (srv, recorder) = server(quiet_config());
    let (mut ws, _) = ws_open(&srv.ws_base(), "/socket.io/").await;
    // Main namespace without auth, custom namespace with auth.
    ws_send(&mut ws, "40").await;
    let connect = sio_packet(&ws_text(&mut ws).await);
    assert_eq!((connect.kind, connect.nsp.as_str()), (0, "/"));
    assert!(connect.data.unwrap()["sid"].is_string());
    assert_eq!(ws_text(&mut ws).await, r#"42["auth",{}]"#);
    ws_send(&mut ws, r#"40/custom,{"token":"abc"}"#).await;
    let connect = sio_packet(&ws_text(&mut ws).await);
    assert_eq!((connect.kind, connect.nsp.as_str()), (0, "/custom"));
    assert_eq!(
        ws_text(&mut ws).await,
        r#"42/custom,["auth",{"token":"abc"}]"#
    );
    // Unknown namespace; a namespace that refuses with data.
    ws_send(&mut ws, "40/nope,").await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    ws_send(&mut ws, "40/refuse,").await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"44/refuse,{"data":{"reason":"test"},"message":"not allowed"}"#
    );
    // The client leaves /custom: its events there go nowhere, the main
    // namespace goes on.
    ws_send(&mut ws, "41/custom,").await;
    ws_send(&mut ws, r#"42/custom,["message","ignored"]"#).await;
    ws_send(&mut ws, r#"42["message","main"]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["message-back","main"]"#);
    // The server disconnects a socket; then the client leaves another.
    ws_send(&mut ws, "40/record,").await;
    assert!(ws_text(&mut ws).await.starts_with("40/record,{"));
    ws_send(&mut ws, r#"42/record,["kick"]"#).await;
    assert_eq!(ws_text(&mut ws).await, "41/record,");
    ws_send(&mut ws, "40/record,").await;
    assert!(ws_text(&mut ws).await.starts_with("40/record,{"));
    ws_send(&mut ws, "41/record,").await;
    ws_send(&mut ws, r#"42["message","still"]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["message-back","still"]"#);
    assert_eq!(
        recorder.wait_for(2).await,
        [
            DisconnectReason::ServerNamespaceDisconnect,
            DisconnectReason::ClientNamespaceDisconnect
        ]
    );
    // Each namespace socket has its own id.
    ws_send(&mut ws, "40/custom,").await;
    let again = sio_packet(&ws_text(&mut ws).await);
    assert_eq!(again.nsp, "/custom");
}

#[tokio::test]
async fn events_and_acks_both_ways_on_websocket() {
    let (srv, _) = server(quiet_config());
    let mut ws = sio_ws(&srv).await;
    // Client to server, with an ack.
    ws_send(&mut ws, r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    ws_send(&mut ws, r#"4212["message-with-ack",{"a":null},[]]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"4312[{"a":null},[]]"#);
    // Server to client, with an ack the client answers.
    ws_send(&mut ws, r#"42["request-ack","question",7]"#).await;
    let ask = sio_packet(&ws_text(&mut ws).await);
    assert_eq!((ask.kind, ask.nsp.as_str()), (2, "/"));
    assert_eq!(ask.data, Some(json!(["ack-me", "question", 7])));
    let id = ask.id.expect("an ack id");
    ws_send(&mut ws, &format!(r#"43{id}["answer",{{"n":8}}]"#)).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["acked","answer",{"n":8}]"#);
    // On a custom namespace too, with ids of its own.
    ws_send(&mut ws, "40/custom,").await;
    ws_text(&mut ws).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, r#"42/custom,5["message-with-ack","c"]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"43/custom,5["c"]"#);
    ws_send(&mut ws, r#"42/custom,["request-ack"]"#).await;
    let ask = sio_packet(&ws_text(&mut ws).await);
    assert_eq!(ask.nsp, "/custom");
    ws_send(&mut ws, &format!("43/custom,{}[]", ask.id.unwrap())).await;
    assert_eq!(ws_text(&mut ws).await, r#"42/custom,["acked"]"#);
}

#[tokio::test]
async fn events_and_acks_both_ways_on_polling() {
    let (srv, _) = server(quiet_config());
    let p = sio_polling(&srv).await;
    p.post_ok(&[
        r#"423["message-with-ack","x"]"#,
        r#"42["request-ack",true]"#,
    ])
    .await;
    let packets = p.collect(2).await;
    assert_eq!(packets[0], r#"433["x"]"#);
    let ask = sio_packet(&packets[1]);
    assert_eq!(ask.data, Some(json!(["ack-me", true])));
    p.post_ok(&[&format!("43{}[false]", ask.id.unwrap())]).await;
    assert_eq!(p.collect(1).await, [r#"42["acked",false]"#]);
}

#[tokio::test]
async fn binary_events_and_acks_on_websocket() {
    let (srv, _) = server(quiet_config());
    let mut ws = sio_ws(&srv).await;
    let ph = |n: usize| placeholder(n).to_string();
    // An event with two attachments, echoed with them.
    ws_send(
        &mut ws,
        &format!(r#"452-["message",{},"text",{}]"#, ph(0), ph(1)),
    )
    .await;
    ws_send_binary(&mut ws, &[1, 2, 3]).await;
    ws_send_binary(&mut ws, &[]).await;
    let back = sio_packet(&ws_text(&mut ws).await);
    assert_eq!((back.kind, back.attachments), (5, 2));
    assert_eq!(
        back.data,
        Some(json!([
            "message-back",
            placeholder(0),
            "text",
            placeholder(1)
        ]))
    );
    assert_eq!(ws_binary(&mut ws).await, [1, 2, 3]);
    assert_eq!(ws_binary(&mut ws).await, Vec::<u8>::new());
    // A binary ack of a client's event.
    ws_send(
        &mut ws,
        &format!(r#"451-9["message-with-ack",{{"file":{}}}]"#, ph(0)),
    )
    .await;
    ws_send_binary(&mut ws, &[0xff, 0x00]).await;
    assert_eq!(
        ws_text(&mut ws).await,
        format!(r#"461-9[{{"file":{}}}]"#, ph(0))
    );
    assert_eq!(ws_binary(&mut ws).await, [0xff, 0x00]);
    // The server asks with binary, the client acks with binary.
    ws_send(&mut ws, &format!(r#"451-["request-ack",{}]"#, ph(0))).await;
    ws_send_binary(&mut ws, b"ask").await;
    let ask = sio_packet(&ws_text(&mut ws).await);
    assert_eq!((ask.kind, ask.attachments), (5, 1));
    assert_eq!(ask.data, Some(json!(["ack-me", placeholder(0)])));
    assert_eq!(ws_binary(&mut ws).await, b"ask");
    let id = ask.id.unwrap();
    ws_send(&mut ws, &format!(r#"461-{id}["ok",{}]"#, ph(0))).await;
    ws_send_binary(&mut ws, b"reply").await;
    assert_eq!(
        ws_text(&mut ws).await,
        format!(r#"451-["acked","ok",{}]"#, ph(0))
    );
    assert_eq!(ws_binary(&mut ws).await, b"reply");
}

#[tokio::test]
async fn binary_events_and_acks_on_polling() {
    let (srv, _) = server(quiet_config());
    let p = sio_polling(&srv).await;
    let ph = |n: usize| placeholder(n).to_string();
    let event = format!(r#"451-["message",{}]"#, ph(0));
    let with_ack = format!(r#"452-4["message-with-ack",{},{}]"#, ph(1), ph(0));
    let (one, two, three) = (b64(&[1, 2, 3]), b64(b"first"), b64(b"second"));
    p.post_ok(&[
        &event,
        &format!("b{one}"),
        &with_ack,
        &format!("b{two}"),
        &format!("b{three}"),
    ])
    .await;
    let packets = p.collect(5).await;
    assert_eq!(
        packets,
        [
            format!(r#"451-["message-back",{}]"#, ph(0)),
            format!("b{one}"),
            format!(r#"462-4[{},{}]"#, ph(1), ph(0)),
            format!("b{two}"),
            format!("b{three}"),
        ]
    );
    // The server asks with binary; the client acks with binary.
    p.post_ok(&[
        &format!(r#"451-["request-ack",{}]"#, ph(0)),
        &format!("b{one}"),
    ])
    .await;
    let packets = p.collect(2).await;
    let ask = sio_packet(&packets[0]);
    assert_eq!(ask.data, Some(json!(["ack-me", placeholder(0)])));
    assert_eq!(packets[1], format!("b{one}"));
    p.post_ok(&[
        &format!(r#"461-{}[{}]"#, ask.id.unwrap(), ph(0)),
        &format!("b{two}"),
    ])
    .await;
    assert_eq!(
        p.collect(2).await,
        [format!(r#"451-["acked",{}]"#, ph(0)), format!("b{two}")]
    );
}

#[tokio::test]
async fn invalid_packets_close_only_their_connection() {
    let (srv, recorder) = server(quiet_config());
    let mut bystander = sio_ws(&srv).await;
    let invalid_texts = [
        "abc",                                         // unknown Engine.IO type
        "",                                            // empty frame
        "4abc",                                        // unknown Socket.IO type
        "42{}",                                        // event data not an array
        r#"42abc["message"]"#,                         // bad ack id
        r#"42["message""#,                             // broken JSON
        r#"42[1]"#,                                    // no event name
        r#"43["no id"]"#,                              // ack without an id
        r#"44{"message":"x"}"#,                        // CONNECT_ERROR from a client
        r#"451-["message"]"#,                          // placeholder missing
        r#"4511-["m",{"_placeholder":true,"num":0}]"#, // too many attachments
        "0{}",                                         // a second handshake
        "5",                                           // upgrade without a probe
    ];
    for text in invalid_texts {
        let (mut ws, _) = ws_open(&srv.ws_base(), "/socket.io/").await;
        ws_send(&mut ws, "40/record,").await;
        assert!(ws_text(&mut ws).await.starts_with("40/record,{"));
        ws_send(&mut ws, text).await;
        ws_closed(&mut ws).await;
    }
    // Binary where text was expected, and the other way round.
    let (mut ws, _) = ws_open(&srv.ws_base(), "/socket.io/").await;
    ws_send_binary(&mut ws, &[1]).await;
    ws_closed(&mut ws).await;
    let (mut ws, _) = ws_open(&srv.ws_base(), "/socket.io/").await;
    ws_send(&mut ws, "40").await;
    ws_send(&mut ws, &format!(r#"451-["message",{}]"#, placeholder(0))).await;
    ws_send(&mut ws, r#"42["message"]"#).await;
    ws_closed(&mut ws).await;
    // Polling: a bad payload is refused and closes that session.
    let p = Polling::open(&srv.base, "/socket.io/").await;
    assert_eq!(p.post(&["40", "x"]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);
    let p = Polling::open(&srv.base, "/socket.io/").await;
    assert_eq!(p.post(&["b!!!"]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);
    // A bad Socket.IO packet over polling closes the session too.
    let p = Polling::open(&srv.base, "/socket.io/").await;
    p.post_ok(&["4abc"]).await;
    assert_eq!(p.get().await.0, StatusCode::BAD_REQUEST);

    let reasons = recorder.wait_for(invalid_texts.len()).await;
    assert_eq!(reasons.len(), invalid_texts.len());
    assert!(
        reasons
            .iter()
            .all(|r| *r == DisconnectReason::ProtocolError),
        "{reasons:?}"
    );
    // The bystander never noticed.
    ws_send(&mut bystander, r#"42["message","fine"]"#).await;
    assert_eq!(
        ws_text(&mut bystander).await,
        r#"42["message-back","fine"]"#
    );
}

#[tokio::test]
async fn engine_io_echo_over_websocket_text_and_binary() {
    let (srv, _) = server(quiet_config());
    let (mut ws, _) = ws_open(&srv.ws_base(), "/engine.io/").await;
    ws_send(&mut ws, "4hello €").await;
    assert_eq!(ws_text(&mut ws).await, "4hello €");
    ws_send_binary(&mut ws, &[1, 2, 3, 4]).await;
    assert_eq!(ws_binary(&mut ws).await, [1, 2, 3, 4]);
    // A client ping is answered with the same data.
    ws_send(&mut ws, "2data").await;
    assert_eq!(ws_text(&mut ws).await, "3data");
}
