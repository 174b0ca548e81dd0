//! Socket.IO test helpers: the echo server in this process on a free port,
//! raw Engine.IO long-polling and WebSocket clients, and a small reader of
//! Socket.IO packet texts.

use std::net::TcpListener;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use roadhub::socketio::EngineConfig;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// A server on its own actix System thread, stopped when dropped.
pub struct SioServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stop: tokio::sync::watch::Sender<bool>,
}

impl SioServer {
    /// Serve `app` (e.g. [`crate::common::echo::app`]).
    pub fn start(app: axum::Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        // Connections wait in the backlog until the workers accept them.
        std::thread::spawn(move || crate::common::echo::serve_blocking(listener, app, stop_rx));
        Self { base, stop }
    }

    /// The echo server of the conformance suites with `config`.
    pub fn echo(config: EngineConfig) -> Self {
        Self::start(crate::common::echo::app(config))
    }

    pub fn ws_base(&self) -> String {
        self.base.replacen("http", "ws", 1)
    }
}

impl Drop for SioServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Settings with a heartbeat far longer than any test, so only the tests
/// about heartbeats see pings.
pub fn quiet_config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(60),
        ..crate::common::echo::conformance_config()
    }
}

/// One long-polling session, raw: GET and POST bodies as text.
#[derive(Clone)]
pub struct Polling {
    pub http: reqwest::Client,
    /// `http://.../path/?EIO=4&transport=polling`
    pub url: String,
    pub sid: String,
    /// The handshake JSON.
    pub open: Value,
}

impl Polling {
    /// Handshake at `base` + `path` (`/engine.io/`, `/socket.io/`).
    pub async fn open(base: &str, path: &str) -> Self {
        let http = reqwest::Client::new();
        let url = format!("{base}{path}?EIO=4&transport=polling");
        let res = http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.text().await.unwrap();
        let json = body
            .strip_prefix('0')
            .unwrap_or_else(|| panic!("not an open packet: {body:?}"));
        let open: Value = serde_json::from_str(json).unwrap();
        let sid = open["sid"].as_str().unwrap().to_string();
        Self {
            http,
            url,
            sid,
            open,
        }
    }

    pub fn session_url(&self) -> String {
        format!("{}&sid={}", self.url, self.sid)
    }

    /// A GET: status and body.
    pub async fn get(&self) -> (StatusCode, String) {
        let res = tokio::time::timeout(WAIT, self.http.get(self.session_url()).send())
            .await
            .expect("GET timed out")
            .unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    /// A GET that must succeed: its packets.
    pub async fn get_packets(&self) -> Vec<String> {
        let (status, body) = self.get().await;
        assert_eq!(status, StatusCode::OK, "GET failed: {body}");
        body.split('\x1e').map(str::to_string).collect()
    }

    /// A POST of `packets` joined by the record separator.
    pub async fn post(&self, packets: &[&str]) -> (StatusCode, String) {
        let res = tokio::time::timeout(
            WAIT,
            self.http
                .post(self.session_url())
                .body(packets.join("\x1e"))
                .send(),
        )
        .await
        .expect("POST timed out")
        .unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    pub async fn post_ok(&self, packets: &[&str]) {
        let (status, body) = self.post(packets).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }

    /// GETs until `count` packets other than pings came (pings are answered).
    pub async fn collect(&self, count: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < count {
            for packet in self.get_packets().await {
                if packet == "2" {
                    self.post_ok(&["3"]).await;
                } else if packet != "6" {
                    out.push(packet);
                }
            }
        }
        out
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket to `url`; panics if the handshake fails.
pub async fn ws_connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("WebSocket connect timed out")
        .unwrap_or_else(|e| panic!("WebSocket to {url}: {e}"));
    ws
}

/// A new Engine.IO session over WebSocket: the socket and its handshake.
pub async fn ws_open(base_ws: &str, path: &str) -> (Ws, Value) {
    let mut ws = ws_connect(&format!("{base_ws}{path}?EIO=4&transport=websocket")).await;
    let open = ws_text(&mut ws).await;
    let json = open
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("not an open packet: {open:?}"));
    (ws, serde_json::from_str(json).unwrap())
}

/// The next frame (None once the socket is closed).
pub async fn ws_next(ws: &mut Ws) -> Option<Message> {
    match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(msg))) => Some(msg),
        Ok(Some(Err(_)) | None) => None,
        Err(_) => panic!("nothing received in {WAIT:?}"),
    }
}

/// The next text frame, answering pings (`2`) on the way.
pub async fn ws_text(ws: &mut Ws) -> String {
    loop {
        match ws_next(ws).await {
            Some(Message::Text(t)) if t.as_str() == "2" => ws_send(ws, "3").await,
            Some(Message::Text(t)) => return t.to_string(),
            Some(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next binary frame.
pub async fn ws_binary(ws: &mut Ws) -> Vec<u8> {
    match ws_next(ws).await {
        Some(Message::Binary(b)) => b.to_vec(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

pub async fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

pub async fn ws_send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::binary(data.to_vec())).await.unwrap();
}

/// Waits until the server closes the socket (a close frame or the end of
/// the stream); returns the close code if there was one. Data frames that
/// arrive first are skipped.
pub async fn ws_closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws_next(ws).await {
            None => return None,
            Some(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Some(_) => {}
        }
    }
}

/// A Socket.IO packet text (an Engine.IO message without its `4`), read
/// the way the protocol defines it, for assertions.
#[derive(Debug, PartialEq)]
pub struct SioPacket {
    pub kind: u8,
    pub attachments: usize,
    pub nsp: String,
    pub id: Option<u64>,
    pub data: Option<Value>,
}

/// Read an Engine.IO message frame (`4...`) as a Socket.IO packet.
pub fn sio_packet(frame: &str) -> SioPacket {
    let text = frame
        .strip_prefix('4')
        .unwrap_or_else(|| panic!("not a message: {frame:?}"));
    let kind = text.as_bytes()[0] - b'0';
    let mut rest = &text[1..];
    let mut attachments = 0;
    if kind == 5 || kind == 6 {
        let (n, r) = rest.split_once('-').unwrap();
        attachments = n.parse().unwrap();
        rest = r;
    }
    let mut nsp = "/".to_string();
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        nsp = rest[..end].to_string();
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = (digits > 0).then(|| rest[..digits].parse().unwrap());
    rest = &rest[digits..];
    let data = (!rest.is_empty()).then(|| serde_json::from_str(rest).unwrap());
    SioPacket {
        kind,
        attachments,
        nsp,
        id,
        data,
    }
}

/// `{"_placeholder":true,"num":n}`
pub fn placeholder(n: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": n})
}

/// Standard base64, as polling carries binary (`b` + base64).
pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}
