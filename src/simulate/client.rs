//! A small Socket.IO v4 client over WebSocket only: the simulator's own
//! codec and connection, kept self-contained (the hub's server-side codec
//! lives elsewhere).
//!
//! Protocols: Engine.IO protocol 4
//! (<https://github.com/socketio/engine.io-protocol>) carrying Socket.IO
//! protocol 5 (<https://github.com/socketio/socket.io-protocol>). Over
//! WebSocket every text frame is one Engine.IO packet:
//!
//! ```text
//! 0{"sid":..,"pingInterval":25000,"pingTimeout":20000,..}   open (server)
//! 2 / 3                                                      ping (server) / pong
//! 1                                                          close
//! 6                                                          noop
//! 4<socket.io packet>                                        message
//! ```
//!
//! A Socket.IO packet is `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`
//! with types 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR,
//! 5 BINARY_EVENT, 6 BINARY_ACK; so the device's first event is
//! `42/device,1["loc",{...}]` and its ack `43/device,1[{"ok":true,...}]`.
//! The simulator never sends binary packets and ignores binary frames.
//!
//! [`Connection::read_burst`] is the read loop devices and phones share:
//! it answers pings, hands other frames to the caller and counts a hub
//! close or a failed read.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::stats::Stats;

/// Frames handled per wakeup before the queued replies are flushed.
pub const BURST: usize = 64;

/// Read buffer of each client WebSocket: thousands run in one process.
const READ_BUFFER: usize = 4 * 1024;
/// Frames are queued up to this many bytes before tungstenite writes them
/// (we flush explicitly after each burst anyway).
const WRITE_BUFFER: usize = 16 * 1024;
/// Largest frame accepted from the hub (its default `maxPayload` is 1 MB;
/// a fanned-out 600-point batch stays far below).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Codec

/// One Engine.IO packet received over WebSocket.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0` + JSON handshake data.
    Open(&'a str),
    /// `1`.
    Close,
    /// `2` (with optional data; only `probe` is used, during upgrades).
    Ping,
    /// `3`.
    Pong,
    /// `6`.
    Noop,
    /// `4` + a Socket.IO packet.
    Message(SioPacket<'a>),
    /// `5` upgrade, or a type we do not know.
    Other,
}

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioType {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// One Socket.IO packet; `data` is the raw JSON that follows the header.
#[derive(Debug, PartialEq, Eq)]
pub struct SioPacket<'a> {
    pub kind: SioType,
    pub nsp: &'a str,
    pub id: Option<u64>,
    pub data: &'a str,
}

/// Why a frame could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

/// Parse one WebSocket text frame.
pub fn parse(frame: &str) -> Result<Packet<'_>, ParseError> {
    let mut chars = frame.chars();
    let Some(kind) = chars.next() else {
        return Err(ParseError("empty frame"));
    };
    let rest = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open(rest),
        '1' => Packet::Close,
        '2' => Packet::Ping,
        '3' => Packet::Pong,
        '4' => Packet::Message(parse_sio(rest)?),
        '6' => Packet::Noop,
        _ => Packet::Other,
    })
}

fn parse_sio(s: &str) -> Result<SioPacket<'_>, ParseError> {
    let bytes = s.as_bytes();
    let kind = match bytes.first() {
        Some(b'0') => SioType::Connect,
        Some(b'1') => SioType::Disconnect,
        Some(b'2') => SioType::Event,
        Some(b'3') => SioType::Ack,
        Some(b'4') => SioType::ConnectError,
        Some(b'5') => SioType::BinaryEvent,
        Some(b'6') => SioType::BinaryAck,
        Some(_) => return Err(ParseError("unknown Socket.IO packet type")),
        None => return Err(ParseError("empty Socket.IO packet")),
    };
    let mut rest = &s[1..];
    if matches!(kind, SioType::BinaryEvent | SioType::BinaryAck) {
        let dash = rest
            .find('-')
            .ok_or(ParseError("binary packet without attachment count"))?;
        if dash == 0 || !rest[..dash].bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError("bad attachment count"));
        }
        rest = &rest[dash + 1..];
    }
    let nsp = if rest.starts_with('/') {
        match rest.find(',') {
            Some(comma) => {
                let nsp = &rest[..comma];
                rest = &rest[comma + 1..];
                nsp
            }
            None => {
                let nsp = rest;
                rest = "";
                nsp
            }
        }
    } else {
        "/"
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        let id = rest[..digits]
            .parse::<u64>()
            .map_err(|_| ParseError("ack id out of range"))?;
        rest = &rest[digits..];
        Some(id)
    } else {
        None
    };
    Ok(SioPacket {
        kind,
        nsp,
        id,
        data: rest,
    })
}

/// Split an event's data `["name",arg,...]` into the name and the raw JSON
/// of its arguments (`arg,...`, empty when there is none). `None` if the
/// name is not a plain string (escapes) or the brackets are missing; fall
/// back to a JSON parser then.
pub fn split_event(data: &str) -> Option<(&str, &str)> {
    let inner = data
        .trim()
        .strip_prefix('[')?
        .strip_suffix(']')?
        .trim_start();
    let after_quote = inner.strip_prefix('"')?;
    let end = after_quote.find('"')?;
    let name = &after_quote[..end];
    if name.contains('\\') {
        return None;
    }
    let rest = after_quote[end + 1..].trim_start();
    if rest.is_empty() {
        return Some((name, ""));
    }
    Some((name, rest.strip_prefix(',')?.trim()))
}

/// The first argument of an ack's data `[arg,...]`, parsed.
pub fn ack_arg(data: &str) -> Option<serde_json::Value> {
    let mut args: Vec<serde_json::Value> = serde_json::from_str(data).ok()?;
    if args.is_empty() {
        None
    } else {
        Some(args.swap_remove(0))
    }
}

/// The Engine.IO pong.
pub const PONG: &str = "3";

fn header(out: &mut String, kind: char, nsp: &str, id: Option<u64>) {
    use std::fmt::Write as _;
    out.push('4');
    out.push(kind);
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// `40/nsp,{auth}`.
pub fn encode_connect(nsp: &str, auth_json: &str) -> String {
    let mut out = String::with_capacity(8 + nsp.len() + auth_json.len());
    header(&mut out, '0', nsp, None);
    out.push_str(auth_json);
    out
}

/// Start an event frame `42/nsp,<id>["name",` into `out`; the caller
/// appends the argument's JSON and then calls [`finish_event`].
pub fn begin_event(out: &mut String, nsp: &str, id: Option<u64>, name: &str) {
    header(out, '2', nsp, id);
    out.push_str("[\"");
    out.push_str(name);
    out.push_str("\",");
}

/// Close an event frame started with [`begin_event`].
pub fn finish_event(out: &mut String) {
    out.push(']');
}

/// `42/nsp,<id>["name",<arg>]`.
pub fn encode_event(nsp: &str, id: Option<u64>, name: &str, arg_json: &str) -> String {
    let mut out = String::with_capacity(24 + nsp.len() + name.len() + arg_json.len());
    begin_event(&mut out, nsp, id, name);
    out.push_str(arg_json);
    finish_event(&mut out);
    out
}

/// `43/nsp,<id>[<arg>]`.
pub fn encode_ack(nsp: &str, id: u64, arg_json: &str) -> String {
    let mut out = String::with_capacity(16 + nsp.len() + arg_json.len());
    header(&mut out, '3', nsp, Some(id));
    out.push('[');
    out.push_str(arg_json);
    out.push(']');
    out
}

// ---------------------------------------------------------------------------
// Connection

/// Where the hub is: the WebSocket URL and the resolved socket address.
#[derive(Debug, Clone)]
pub struct Target {
    pub ws_url: String,
    pub addr: SocketAddr,
    /// Source addresses to spread over (127.0.0.2..); 0 = the OS chooses.
    pub source_addrs: u32,
    /// `HOST[:PORT]` as given in the URL (the `Host` header of requests).
    pub authority: String,
}

impl Target {
    /// From the hub's base URL (`http://HOST:PORT[/prefix]`).
    pub async fn resolve(base: &str) -> anyhow::Result<Self> {
        let uri: hyper::Uri = base
            .parse()
            .map_err(|e| anyhow::anyhow!("--url {base:?}: {e}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "--url {base:?}: only http:// URLs are supported"
        );
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("--url {base:?}: no host"))?;
        let host_port = match authority.port_u16() {
            Some(_) => authority.as_str().to_string(),
            None => format!("{}:80", authority.host()),
        };
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .map_err(|e| anyhow::anyhow!("resolving {host_port}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host_port} resolves to no address"))?;
        let prefix = uri.path().trim_end_matches('/');
        Ok(Self {
            ws_url: format!(
                "ws://{}{prefix}/socket.io/?EIO=4&transport=websocket",
                authority.as_str()
            ),
            addr,
            source_addrs: 0,
            authority: authority.as_str().to_string(),
        })
    }

    fn source_for(&self, index: usize) -> Option<SocketAddr> {
        if self.source_addrs == 0 || !self.addr.ip().is_loopback() || !self.addr.is_ipv4() {
            return None;
        }
        let last = 2 + (index % self.source_addrs as usize) as u8;
        Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))
    }
}

/// Why a connection attempt failed; [`ConnectError::kind`] is the error
/// counter's key.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP connect failed.
    Tcp(std::io::Error),
    /// The WebSocket upgrade failed.
    WebSocket(String),
    /// The hub answered CONNECT_ERROR with this message.
    Refused(String),
    /// Closed before the namespace connected.
    Closed,
    /// A frame we could not read.
    Protocol(&'static str),
}

impl ConnectError {
    pub fn kind(&self) -> String {
        match self {
            Self::Tcp(e) => match e.kind() {
                std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::AddrInUse => {
                    "connect:no_source_port".into()
                }
                std::io::ErrorKind::ConnectionRefused => "connect:refused".into(),
                _ if e.raw_os_error() == Some(24) => "connect:too_many_open_files".into(),
                _ => "connect:tcp".into(),
            },
            Self::WebSocket(_) => "connect:websocket".into(),
            Self::Refused(message) => format!("connect_error:{}", sanitize(message)),
            Self::Closed => "connect:closed".into(),
            Self::Protocol(_) => "connect:protocol".into(),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(e) => write!(f, "tcp connect: {e}"),
            Self::WebSocket(e) => write!(f, "websocket upgrade: {e}"),
            Self::Refused(m) => write!(f, "connect_error: {m}"),
            Self::Closed => write!(f, "closed during the handshake"),
            Self::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

/// A short, key-safe version of a server-provided error code or message.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

/// One connected Socket.IO namespace over its own WebSocket.
pub struct Connection {
    ws: WebSocketStream<TcpStream>,
    pub nsp: &'static str,
    /// Server ping interval + timeout: silence longer than this means the
    /// hub is gone.
    pub heartbeat: Duration,
    out: Vec<String>,
}

/// Frames read from a connection.
pub enum Incoming {
    Text(Utf8Bytes),
    Closed,
    Error(String),
}

/// How [`Connection::read_burst`] ended.
pub enum Burst {
    /// Nothing more is ready, or [`BURST`] frames were handled: flush the
    /// replies and wait again.
    Alive,
    /// The session is over: the frame handler said so, or the hub closed
    /// (counted as `{role}:closed_by_hub`).
    Over,
    /// The read failed (counted as `{role}:read_error`).
    Failed(String),
}

impl Connection {
    /// TCP connect (from a spread source address if configured), WebSocket
    /// upgrade, Engine.IO open, then the Socket.IO CONNECT to `nsp` with
    /// `auth_json`. Server pings during the handshake are answered.
    pub async fn connect(
        target: &Target,
        index: usize,
        nsp: &'static str,
        auth_json: &str,
    ) -> Result<Self, ConnectError> {
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ConnectError::Tcp)?;
        if let Some(source) = target.source_for(index) {
            socket.bind(source).map_err(ConnectError::Tcp)?;
        }
        let stream = socket
            .connect(target.addr)
            .await
            .map_err(ConnectError::Tcp)?;
        stream.set_nodelay(true).map_err(ConnectError::Tcp)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            target.ws_url.as_str(),
            stream,
            Some(config),
        )
        .await
        .map_err(|e| ConnectError::WebSocket(e.to_string()))?;
        let mut conn = Self {
            ws,
            nsp,
            heartbeat: Duration::from_secs(45),
            out: Vec::new(),
        };
        // Engine.IO open.
        let open = match conn.next().await {
            Incoming::Text(t) => t,
            Incoming::Closed => return Err(ConnectError::Closed),
            Incoming::Error(e) => return Err(ConnectError::WebSocket(e)),
        };
        match parse(&open) {
            Ok(Packet::Open(json)) => {
                let v: serde_json::Value = serde_json::from_str(json)
                    .map_err(|_| ConnectError::Protocol("open packet is not JSON"))?;
                let interval = v["pingInterval"].as_u64().unwrap_or(25_000);
                let timeout = v["pingTimeout"].as_u64().unwrap_or(20_000);
                // Generous slack: a busy simulator reads late.
                conn.heartbeat = Duration::from_millis(interval + timeout + 5_000);
            }
            _ => return Err(ConnectError::Protocol("first frame is not an open packet")),
        }
        conn.queue(encode_connect(nsp, auth_json));
        conn.flush()
            .await
            .map_err(|e| ConnectError::WebSocket(e.to_string()))?;
        loop {
            let frame = match conn.next().await {
                Incoming::Text(t) => t,
                Incoming::Closed => return Err(ConnectError::Closed),
                Incoming::Error(e) => return Err(ConnectError::WebSocket(e)),
            };
            match parse(&frame) {
                Ok(Packet::Ping) => {
                    conn.queue(PONG.to_string());
                    conn.flush()
                        .await
                        .map_err(|e| ConnectError::WebSocket(e.to_string()))?;
                }
                Ok(Packet::Message(p)) if p.nsp == nsp => match p.kind {
                    SioType::Connect => return Ok(conn),
                    SioType::ConnectError => {
                        let message = serde_json::from_str::<serde_json::Value>(p.data)
                            .ok()
                            .and_then(|v| v["message"].as_str().map(str::to_string))
                            .unwrap_or_else(|| p.data.to_string());
                        return Err(ConnectError::Refused(message));
                    }
                    SioType::Disconnect => return Err(ConnectError::Closed),
                    _ => {}
                },
                Ok(Packet::Close) => return Err(ConnectError::Closed),
                Ok(_) => {}
                Err(ParseError(m)) => return Err(ConnectError::Protocol(m)),
            }
        }
    }

    /// The next text frame (binary frames and WebSocket pings are skipped;
    /// tungstenite answers pings itself). Cancel-safe.
    pub async fn next(&mut self) -> Incoming {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Incoming::Text(t),
                Some(Ok(Message::Close(_))) | None => return Incoming::Closed,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Incoming::Error(e.to_string()),
            }
        }
    }

    /// A frame that is already buffered, without waiting.
    pub fn next_ready(&mut self) -> Option<Incoming> {
        self.next().now_or_never()
    }

    /// Handle `first`, then what is already readable, up to [`BURST`]
    /// frames: an Engine.IO ping (`2`) is answered and pushes `heartbeat`
    /// back to [`Connection::heartbeat`] from now; any other text frame goes
    /// to `on_frame`, which returns false when the session is over. `role`
    /// (`device`, `phone`) prefixes the errors counted in `stats`.
    pub fn read_burst(
        &mut self,
        first: Incoming,
        mut heartbeat: Pin<&mut Sleep>,
        stats: &Stats,
        role: &str,
        mut on_frame: impl FnMut(&str, &mut Connection) -> bool,
    ) -> Burst {
        let mut incoming = first;
        let mut handled = 0;
        loop {
            match incoming {
                Incoming::Text(frame) => {
                    if frame.as_str() == "2" {
                        self.queue(PONG.to_string());
                        heartbeat.as_mut().reset(Instant::now() + self.heartbeat);
                    } else if !on_frame(&frame, self) {
                        return Burst::Over;
                    }
                }
                Incoming::Closed => {
                    stats.error(format!("{role}:closed_by_hub"));
                    return Burst::Over;
                }
                Incoming::Error(e) => {
                    stats.error(format!("{role}:read_error"));
                    return Burst::Failed(e);
                }
            }
            handled += 1;
            if handled >= BURST {
                return Burst::Alive;
            }
            match self.next_ready() {
                Some(next) => incoming = next,
                None => return Burst::Alive,
            }
        }
    }

    /// Queue a frame; [`Connection::flush`] sends everything queued.
    pub fn queue(&mut self, frame: String) {
        self.out.push(frame);
    }

    /// Whether frames are waiting for [`Connection::flush`].
    pub fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Feed every queued frame, then flush once.
    pub async fn flush(&mut self) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        for frame in self.out.drain(..) {
            self.ws.feed(Message::text(frame)).await?;
        }
        self.ws.flush().await
    }

    /// Close politely (Socket.IO DISCONNECT, then a WebSocket close), within
    /// a second.
    pub async fn close(mut self) {
        let mut bye = String::new();
        header(&mut bye, '1', self.nsp, None);
        self.out.push(bye);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.flush().await;
            let _ = self.ws.close(None).await;
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sio(frame: &str) -> SioPacket<'_> {
        match parse(frame).unwrap() {
            Packet::Message(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn engine_io_packets() {
        assert_eq!(
            parse(r#"0{"sid":"a","pingInterval":25000}"#).unwrap(),
            Packet::Open(r#"{"sid":"a","pingInterval":25000}"#)
        );
        assert_eq!(parse("1").unwrap(), Packet::Close);
        assert_eq!(parse("2").unwrap(), Packet::Ping);
        assert_eq!(parse("3").unwrap(), Packet::Pong);
        assert_eq!(parse("6").unwrap(), Packet::Noop);
        assert_eq!(parse("5").unwrap(), Packet::Other);
        assert!(parse("").is_err());
        assert!(parse("4").is_err());
        assert!(parse("49").is_err());
    }

    #[test]
    fn socket_io_packets() {
        let p = sio(r#"40/device,{"sid":"xyz"}"#);
        assert_eq!(p.kind, SioType::Connect);
        assert_eq!(p.nsp, "/device");
        assert_eq!(p.id, None);
        assert_eq!(p.data, r#"{"sid":"xyz"}"#);

        let p = sio(r#"43/device,17[{"ok":true,"stored":60}]"#);
        assert_eq!(p.kind, SioType::Ack);
        assert_eq!(p.id, Some(17));
        assert_eq!(p.data, r#"[{"ok":true,"stored":60}]"#);

        let p = sio(r#"42/app,["loc",{"vehicle":3,"points":[]}]"#);
        assert_eq!(p.kind, SioType::Event);
        assert_eq!((p.nsp, p.id), ("/app", None));

        let p = sio(r#"42/device,5["command",{"id":1}]"#);
        assert_eq!((p.nsp, p.id), ("/device", Some(5)));

        let p = sio(r#"44/app,{"message":"unauthorized"}"#);
        assert_eq!(p.kind, SioType::ConnectError);

        let p = sio("41/app,");
        assert_eq!((p.kind, p.nsp, p.data), (SioType::Disconnect, "/app", ""));
        let p = sio("41/app");
        assert_eq!((p.kind, p.nsp, p.data), (SioType::Disconnect, "/app", ""));

        // Default namespace, with and without an id.
        let p = sio(r#"42["hello",1]"#);
        assert_eq!((p.nsp, p.id, p.data), ("/", None, r#"["hello",1]"#));
        let p = sio(r#"4312["x"]"#);
        assert_eq!((p.kind, p.nsp, p.id), (SioType::Ack, "/", Some(12)));

        // Binary packets carry an attachment count.
        let p = sio(r#"451-/app,["img",{"_placeholder":true,"num":0}]"#);
        assert_eq!((p.kind, p.nsp), (SioType::BinaryEvent, "/app"));
        assert!(parse("45/app,[]").is_err());
        assert!(parse("4299999999999999999999999[]").is_err());
    }

    #[test]
    fn encoding() {
        assert_eq!(
            encode_connect("/device", r#"{"serial":"S","token":"T"}"#),
            r#"40/device,{"serial":"S","token":"T"}"#
        );
        assert_eq!(
            encode_event("/device", Some(17), "loc", r#"{"points":[]}"#),
            r#"42/device,17["loc",{"points":[]}]"#
        );
        assert_eq!(encode_event("/", None, "hi", "1"), r#"42["hi",1]"#);
        assert_eq!(
            encode_ack("/device", 5, r#"{"ok":true}"#),
            r#"43/device,5[{"ok":true}]"#
        );
        // Round trip through the parser.
        let frame = encode_event("/app", Some(1), "watch", r#"{"vehicle":9}"#);
        let p = sio(&frame);
        assert_eq!(p.id, Some(1));
        assert_eq!(split_event(p.data), Some(("watch", r#"{"vehicle":9}"#)));
    }

    #[test]
    fn events_split() {
        assert_eq!(
            split_event(r#"["loc",{"vehicle":1}]"#),
            Some(("loc", r#"{"vehicle":1}"#))
        );
        assert_eq!(split_event(r#"[ "a" , 1, 2 ]"#), Some(("a", "1, 2")));
        assert_eq!(split_event(r#"["ping"]"#), Some(("ping", "")));
        assert_eq!(split_event(r#"["a\"b",1]"#), None);
        assert_eq!(split_event(r#"{"a":1}"#), None);
        assert_eq!(split_event(r#"["a" 1]"#), None);
        assert_eq!(split_event(""), None);
    }

    #[test]
    fn ack_args() {
        assert_eq!(ack_arg(r#"[{"ok":true,"stored":3}]"#).unwrap()["stored"], 3);
        assert_eq!(ack_arg("[]"), None);
        assert_eq!(ack_arg("not json"), None);
    }

    #[test]
    fn error_kinds() {
        assert_eq!(
            ConnectError::Refused("unauthorized".into()).kind(),
            "connect_error:unauthorized"
        );
        assert_eq!(
            ConnectError::Refused("Too many sessions!".into()).kind(),
            "connect_error:too_many_sessions_"
        );
        assert_eq!(sanitize(""), "unknown");
    }

    #[tokio::test]
    async fn target_from_url() {
        let t = Target::resolve("http://127.0.0.1:8080").await.unwrap();
        assert_eq!(
            t.ws_url,
            "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        let t = Target::resolve("http://127.0.0.1:9/hub/").await.unwrap();
        assert_eq!(
            t.ws_url,
            "ws://127.0.0.1:9/hub/socket.io/?EIO=4&transport=websocket"
        );
        assert!(Target::resolve("https://127.0.0.1").await.is_err());
        assert!(Target::resolve("nonsense url").await.is_err());
        let mut t = Target::resolve("http://127.0.0.1:80").await.unwrap();
        assert_eq!(t.source_for(0), None);
        t.source_addrs = 250;
        assert_eq!(t.source_for(0), Some("127.0.0.2:0".parse().unwrap()));
        assert_eq!(t.source_for(251), Some("127.0.0.3:0".parse().unwrap()));
        assert_eq!(t.source_for(249), Some("127.0.0.251:0".parse().unwrap()));
    }
}
