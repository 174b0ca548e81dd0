//! A small raw Socket.IO v4 client over WebSocket for tests: it speaks the
//! packets byte by byte, so tests can also send what stock clients never
//! would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct SioClient {
    ws: Ws,
    pub nsp: String,
    next_ack: u64,
    events: VecDeque<(String, Value, Option<u64>)>,
    acks: HashMap<u64, Vec<Value>>,
    pub closed: bool,
    pub disconnected: bool,
}

/// How a connection attempt ended.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Connect {
    Ok(SioClient),
    Refused(Value),
}

impl Connect {
    pub fn unwrap(self) -> SioClient {
        match self {
            Connect::Ok(c) => c,
            Connect::Refused(v) => panic!("connect refused: {v}"),
        }
    }
}

impl std::fmt::Debug for SioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SioClient({})", self.nsp)
    }
}

impl SioClient {
    /// Open a WebSocket Engine.IO session and connect `nsp` with `auth`.
    pub async fn connect(base: &str, nsp: &str, auth: Value) -> Connect {
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            base.replace("http://", "ws://")
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connect");
        let open = next_text(&mut ws).await.expect("open packet");
        assert!(open.starts_with("0{"), "{open}");
        let connect = match (nsp, &auth) {
            ("/", Value::Null) => "40".to_string(),
            ("/", _) => format!("40{auth}"),
            (_, Value::Null) => format!("40{nsp},"),
            _ => format!("40{nsp},{auth}"),
        };
        ws.send(Message::text(connect)).await.unwrap();
        let mut client = SioClient {
            ws,
            nsp: nsp.to_string(),
            next_ack: 1,
            events: VecDeque::new(),
            acks: HashMap::new(),
            closed: false,
            disconnected: false,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = tokio::time::timeout_at(deadline, client.next_raw())
                .await
                .expect("connect answer")
                .expect("open");
            let prefix = format!("4{}", client.nsp_prefix(0));
            let err_prefix = format!("4{}", client.nsp_prefix(4));
            if let Some(rest) = text.strip_prefix(&prefix) {
                let v: Value = serde_json::from_str(rest).unwrap();
                assert!(v["sid"].is_string(), "{text}");
                return Connect::Ok(client);
            }
            if let Some(rest) = text.strip_prefix(&err_prefix) {
                return Connect::Refused(serde_json::from_str(rest).unwrap());
            }
        }
    }

    fn nsp_prefix(&self, kind: u8) -> String {
        if self.nsp == "/" {
            format!("{kind}")
        } else {
            format!("{kind}{},", self.nsp)
        }
    }

    /// The next text frame, answering pings; `None` when closed.
    async fn next_raw(&mut self) -> Option<String> {
        loop {
            let text = next_text(&mut self.ws).await;
            let Some(text) = text else {
                self.closed = true;
                return None;
            };
            if text == "2" {
                let _ = self.ws.send(Message::text("3")).await;
                continue;
            }
            return Some(text);
        }
    }

    /// Read one frame and file it (event or ack). False when closed.
    async fn pump(&mut self) -> bool {
        let Some(text) = self.next_raw().await else {
            return false;
        };
        let event_prefix = format!("4{}", self.nsp_prefix(2));
        let ack_prefix = format!("4{}", self.nsp_prefix(3));
        let disc = format!("4{}", self.nsp_prefix(1));
        if text == disc || text == disc.trim_end_matches(',') {
            self.disconnected = true;
        } else if let Some(rest) = text.strip_prefix(&event_prefix) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let id = digits.parse().ok();
            let arr: Value = serde_json::from_str(&rest[digits.len()..]).unwrap();
            let name = arr[0].as_str().unwrap().to_string();
            let arg = arr.get(1).cloned().unwrap_or(Value::Null);
            self.events.push_back((name, arg, id));
        } else if let Some(rest) = text.strip_prefix(&ack_prefix) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let id: u64 = digits.parse().unwrap();
            let arr: Value = serde_json::from_str(&rest[digits.len()..]).unwrap();
            self.acks
                .insert(id, arr.as_array().cloned().unwrap_or_default());
        }
        true
    }

    /// Send raw Engine.IO text.
    pub async fn send_raw(&mut self, text: impl Into<String>) {
        let _ = self.ws.send(Message::text(text.into())).await;
    }

    /// Emit without an ack.
    pub async fn emit(&mut self, event: &str, arg: Value) {
        let frame = format!("4{}{}", self.nsp_prefix(2), json!([event, arg]));
        self.send_raw(frame).await;
    }

    /// Emit and wait (up to 10 s) for the ack's first argument.
    pub async fn emit_ack(&mut self, event: &str, arg: Value) -> Value {
        let id = self.send_with_ack(event, arg).await;
        self.wait_ack(id, Duration::from_secs(10))
            .await
            .expect("ack in time")
    }

    pub async fn send_with_ack(&mut self, event: &str, arg: Value) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        let frame = format!("4{}{}{}", self.nsp_prefix(2), id, json!([event, arg]));
        self.send_raw(frame).await;
        id
    }

    pub async fn wait_ack(&mut self, id: u64, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(args) = self.acks.remove(&id) {
                return Some(args.into_iter().next().unwrap_or(Value::Null));
            }
            match tokio::time::timeout_at(deadline, self.pump()).await {
                Ok(true) => {}
                _ => return None,
            }
        }
    }

    /// The next `name` event's argument (and ack id), other events kept.
    /// The next `name` event within `within`, then none more of it for
    /// `quiet` (delivered exactly once); panics naming `who` otherwise.
    pub async fn once(
        &mut self,
        name: &str,
        who: &str,
        within: Duration,
        quiet: Duration,
    ) -> Value {
        let (v, _) = self
            .event(name, within)
            .await
            .unwrap_or_else(|| panic!("{who}: no {name}"));
        assert!(
            self.event(name, quiet).await.is_none(),
            "{who}: {name} delivered twice"
        );
        v
    }

    pub async fn event(&mut self, name: &str, within: Duration) -> Option<(Value, Option<u64>)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.events.iter().position(|(n, _, _)| n == name) {
                let (_, v, id) = self.events.remove(i).unwrap();
                return Some((v, id));
            }
            match tokio::time::timeout_at(deadline, self.pump()).await {
                Ok(true) => {}
                _ => return None,
            }
        }
    }

    /// Answer a server event that asked for an ack.
    pub async fn ack(&mut self, id: u64, arg: Value) {
        let frame = format!("4{}{}{}", self.nsp_prefix(3), id, json!([arg]));
        self.send_raw(frame).await;
    }

    /// Read until the server closes the connection (or `within` passes).
    pub async fn wait_closed(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.closed {
            if tokio::time::timeout_at(deadline, self.pump())
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Events received and not yet taken.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}
