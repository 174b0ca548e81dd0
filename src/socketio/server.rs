//! The Socket.IO server: configuration, namespaces, and the handles that
//! the application (the hub's session actors, or the conformance example)
//! uses to talk to a connected socket.
//!
//! An Engine.IO connection is a [`Conn`](super::conn::Conn) actor that owns
//! its transport (long-polling or WebSocket) and runs the Socket.IO layer
//! for every namespace multiplexed on it. The application plugs in through
//! [`Namespace`] (authorise a CONNECT, return a [`SocketHandler`]) and talks
//! back through [`Socket`] (emit, ack, emit with ack, disconnect).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::conn::{Conn, Control, Deliver};
use super::frame::Frame;
use super::queue::Pushed;

/// Engine.IO settings (the defaults are Socket.IO's own).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest message (WebSocket) or payload (polling POST) accepted.
    pub max_payload: usize,
    /// Time a client has to connect to a namespace after the handshake.
    pub connect_timeout: Duration,
    /// Outbound frames above which coalescible frames (`loc`) replace the
    /// queued frame with the same key instead of queueing.
    pub queue_soft_frames: usize,
    /// Outbound bytes above which the client is too slow and is closed.
    pub queue_hard_bytes: usize,
    /// A client whose queue stays above the soft limit this long is closed.
    pub slow_timeout: Duration,
    /// WebSocket read buffer per connection (grows on demand).
    pub ws_read_buffer: usize,
    /// Binary attachments accepted per packet.
    pub max_attachments: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            queue_soft_frames: 256,
            queue_hard_bytes: 4 * 1024 * 1024,
            slow_timeout: Duration::from_secs(30),
            ws_read_buffer: 1024,
            max_attachments: 10,
        }
    }
}

/// An event received from a client.
#[derive(Debug)]
pub struct IncomingEvent {
    pub name: String,
    /// The arguments after the event name (placeholders for binary parts).
    pub args: Vec<Value>,
    /// Binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<u64>,
}

/// A client's acknowledgement of an event the server emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    /// The ack's arguments (placeholders for binary parts).
    pub args: Vec<Value>,
    /// Binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
}

/// Why a socket left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT for this namespace.
    ClientNamespaceDisconnect,
    /// The server disconnected the socket.
    ServerNamespaceDisconnect,
    /// The client closed the Engine.IO connection.
    ClientClose,
    /// The transport closed or failed.
    TransportClose,
    /// No pong within `ping_timeout`.
    PingTimeout,
    /// The client fell too far behind.
    SlowClient,
    /// The client broke the protocol (bad packet, too large).
    ProtocolError,
    /// The server is shutting down or replaced the connection.
    ServerShutdown,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::ClientClose => "client close",
            Self::TransportClose => "transport close",
            Self::PingTimeout => "ping timeout",
            Self::SlowClient => "slow client",
            Self::ProtocolError => "parse error",
            Self::ServerShutdown => "server shutting down",
        }
    }
}

/// What the application does with a connected socket's traffic. Runs on
/// the connection's thread; keep it quick (forward to an actor).
pub trait SocketHandler: 'static {
    /// The CONNECT was acknowledged; frames sent from here on follow it.
    fn on_connected(&mut self) {}
    fn on_event(&mut self, event: IncomingEvent);
    fn on_disconnect(&mut self, reason: DisconnectReason);
}

/// The answer to a CONNECT: a handler, or CONNECT_ERROR data.
pub type ConnectResult = Result<Box<dyn SocketHandler>, Value>;

/// A namespace the application serves (`/device`, `/app`, ...).
pub trait Namespace: Send + Sync + 'static {
    /// Authorise a CONNECT with its auth payload (`Value::Null` if none).
    fn connect(&self, socket: Socket, auth: Value) -> Pin<Box<dyn Future<Output = ConnectResult>>>;
}

/// Failure to get an acknowledgement from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the socket is gone")]
    Disconnected,
    #[error("no acknowledgement in time")]
    Timeout,
}

/// A handle on one connected socket (one namespace of one connection).
/// Cheap to clone, `Send`: any actor may hold it.
#[derive(Clone)]
pub struct Socket {
    pub(crate) conn: Addr<Conn>,
    pub(crate) nsp: Arc<str>,
    pub(crate) sid: Arc<str>,
    pub(crate) conn_id: u64,
    pub(crate) remote: Option<std::net::SocketAddr>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("nsp", &self.nsp)
            .field("sid", &self.sid)
            .field("conn_id", &self.conn_id)
            .finish()
    }
}

impl Socket {
    pub fn nsp(&self) -> &str {
        &self.nsp
    }

    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// A process-unique id of the Engine.IO connection.
    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.remote
    }

    /// The connection actor, to deliver pre-encoded frames (fan-out).
    pub fn conn(&self) -> &Addr<Conn> {
        &self.conn
    }

    /// Send a pre-encoded frame (see [`Frame`]). On the connection's own
    /// thread it goes straight to its outbound queue (see
    /// [`Outlet`](super::conn::Outlet)), else through its mailbox.
    pub fn send_frame(&self, frame: Frame) {
        match super::conn::local_outlet(self.conn_id) {
            Some(outlet) => {
                outlet.deliver(frame);
            }
            None => self.conn.do_send(Deliver(frame)),
        }
    }

    /// Send a request to the connection, in order with frames sent from
    /// this thread.
    fn control(&self, control: Control) {
        match super::conn::local_outlet(self.conn_id) {
            Some(outlet) => outlet.control(control),
            None => self.conn.do_send(control),
        }
    }

    /// Emit `event` with one JSON argument.
    pub fn emit(&self, event: &str, arg: &Value) {
        let json = serde_json::to_vec(arg).unwrap_or_else(|_| b"null".to_vec());
        self.send_frame(Frame::event(&self.nsp, event, &json));
    }

    /// Acknowledge the client's packet `id` with one JSON argument.
    pub fn ack(&self, id: u64, arg: &Value) {
        let json = serde_json::to_vec(arg).unwrap_or_else(|_| b"null".to_vec());
        self.send_frame(Frame::ack(&self.nsp, id, &json));
    }

    /// Acknowledge with several arguments and binary attachments.
    pub fn ack_args(&self, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) {
        self.send_frame(Frame::ack_args(&self.nsp, id, args, attachments));
    }

    /// Emit with several arguments and binary attachments.
    pub fn emit_args(&self, event: &str, args: Vec<Value>, attachments: Vec<Bytes>) {
        self.send_frame(Frame::event_args(&self.nsp, event, args, attachments));
    }

    /// Emit `event` with one JSON argument and wait for the client's
    /// acknowledgement (its arguments).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        arg: Value,
        timeout: Duration,
    ) -> Result<Vec<Value>, AckError> {
        self.emit_with_ack_args(event, vec![arg], Vec::new(), timeout)
            .await
            .map(|acked| acked.args)
    }

    /// Emit `event` with several arguments and binary attachments, and
    /// wait for the client's acknowledgement.
    pub async fn emit_with_ack_args(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
        timeout: Duration,
    ) -> Result<Acked, AckError> {
        let (tx, rx) = oneshot::channel();
        // If the connection is gone, `tx` is dropped and `rx` fails.
        self.control(Control::EmitWithAck {
            nsp: self.nsp.clone(),
            event: event.to_string(),
            args,
            attachments,
            reply: tx,
        });
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(acked)) => Ok(acked),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => Err(AckError::Timeout),
        }
    }

    /// Disconnect this socket from its namespace (the connection stays).
    pub fn disconnect(&self) {
        self.control(Control::DisconnectSocket {
            nsp: self.nsp.clone(),
        });
    }

    /// Close the whole Engine.IO connection.
    pub fn close(&self) {
        self.control(Control::Close(DisconnectReason::ServerShutdown));
    }
}

/// Counters shared by every connection of a server.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub connections: AtomicUsize,
    pub opened: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_in: AtomicU64,
    pub coalesced: AtomicU64,
    pub slow_closed: AtomicU64,
}

impl EngineStats {
    /// Count a frame pushed on a connection's queue and what became of it
    /// (`frames_out`, and `coalesced` or `slow_closed`); true if the client
    /// is too slow and must be closed.
    pub(crate) fn count_pushed(&self, pushed: Pushed) -> bool {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        match pushed {
            Pushed::Queued => false,
            Pushed::Coalesced => {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
                false
            }
            Pushed::TooSlow => {
                self.slow_closed.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }
}

/// What the server is: Socket.IO with namespaces, or a raw Engine.IO echo
/// (for the protocol conformance suite).
pub(crate) enum Mode {
    SocketIo(HashMap<String, Arc<dyn Namespace>>),
    EngineEcho,
}

pub(crate) struct Inner {
    pub config: EngineConfig,
    /// Put before every Engine.IO session id this server hands out (see
    /// [`SocketIo::with_sid_prefix`]); empty by default.
    pub sid_prefix: Box<str>,
    pub mode: Mode,
    pub sessions: Sessions,
    pub stats: EngineStats,
    next_conn: AtomicU64,
}

/// A Socket.IO (or raw Engine.IO) server, mounted on an HTTP path.
#[derive(Clone)]
pub struct SocketIo {
    pub(crate) inner: Arc<Inner>,
}

impl SocketIo {
    fn with_mode(config: EngineConfig, mode: Mode) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                sid_prefix: Box::from(""),
                mode,
                sessions: Sessions::default(),
                stats: EngineStats::default(),
                next_conn: AtomicU64::new(1),
            }),
        }
    }

    /// A Socket.IO server; add namespaces with [`SocketIoBuilder::ns`].
    pub fn builder(config: EngineConfig) -> SocketIoBuilder {
        SocketIoBuilder {
            config,
            namespaces: HashMap::new(),
        }
    }

    /// A raw Engine.IO server that sends every message back as is.
    pub fn engine_echo(config: EngineConfig) -> Self {
        Self::with_mode(config, Mode::EngineEcho)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Engine.IO session ids handed out from now on start with
    /// `sid_prefix(node_id)` (`{node}.`), so a load balancer can send a
    /// session's polling requests to the node that holds it (see
    /// `docs/deploy/nginx.conf`). Call it on a server just built, before it
    /// serves: a server already shared keeps its ids unprefixed.
    pub fn with_sid_prefix(mut self, node_id: &str) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.sid_prefix = sid_prefix(node_id).into_boxed_str(),
            None => tracing::warn!("Engine.IO sid prefix not set: the server is already shared"),
        }
        self
    }

    /// A new Engine.IO session id: the node prefix, then 20 random
    /// URL-safe characters (120 bits).
    pub(crate) fn new_engine_sid(&self) -> Arc<str> {
        Arc::from(crate::util::random_token(&self.inner.sid_prefix, 15))
    }

    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Close every connection (shutdown).
    pub fn close_all(&self) {
        for addr in self.inner.sessions.all() {
            addr.do_send(Control::Close(DisconnectReason::ServerShutdown));
        }
    }
}

/// The prefix of a node's Engine.IO session ids: the node id with every
/// character outside `[A-Za-z0-9_-]` replaced by `-`, cut to 32 bytes,
/// then `.` (not in the base64url alphabet of the random part, so the
/// prefix ends at the first dot). Empty when the node id is.
pub fn sid_prefix(node_id: &str) -> String {
    let mut out: String = node_id
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    if !out.is_empty() {
        out.push('.');
    }
    out
}

/// Builds a [`SocketIo`] with its namespaces.
pub struct SocketIoBuilder {
    config: EngineConfig,
    namespaces: HashMap<String, Arc<dyn Namespace>>,
}

impl SocketIoBuilder {
    pub fn ns(mut self, name: &str, namespace: impl Namespace) -> Self {
        self.namespaces
            .insert(name.to_string(), Arc::new(namespace));
        self
    }

    pub fn build(self) -> SocketIo {
        SocketIo::with_mode(self.config, Mode::SocketIo(self.namespaces))
    }
}

const SHARDS: usize = 16;

/// An open Engine.IO connection, as the HTTP side finds it by sid.
#[derive(Clone)]
pub(crate) struct Session {
    pub addr: Addr<Conn>,
    /// Set when the client closed the session (a close packet): a request
    /// that was on its way to the connection as it closed is then answered
    /// as if it had arrived just before (a polling GET gets a noop).
    pub client_closed: Arc<AtomicBool>,
}

/// Every open Engine.IO connection by sid (sharded, so polling requests
/// on different workers rarely meet on a lock).
#[derive(Default)]
pub(crate) struct Sessions {
    shards: [Mutex<HashMap<Arc<str>, Session>>; SHARDS],
}

impl Sessions {
    fn shard(&self, sid: &str) -> &Mutex<HashMap<Arc<str>, Session>> {
        let h = sid
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shards[h % SHARDS]
    }

    pub fn insert(&self, sid: Arc<str>, session: Session) {
        if let Ok(mut m) = self.shard(&sid).lock() {
            m.insert(sid, session);
        }
    }

    pub fn get(&self, sid: &str) -> Option<Session> {
        self.shard(sid).lock().ok()?.get(sid).cloned()
    }

    pub fn remove(&self, sid: &str) {
        if let Ok(mut m) = self.shard(sid).lock() {
            m.remove(sid);
        }
    }

    pub fn all(&self) -> Vec<Addr<Conn>> {
        self.shards
            .iter()
            .filter_map(|s| {
                s.lock()
                    .ok()
                    .map(|m| m.values().map(|s| s.addr.clone()).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::sid_prefix;

    #[test]
    fn sid_prefix_is_url_safe_and_ends_at_the_first_dot() {
        assert_eq!(sid_prefix("node-1"), "node-1.");
        assert_eq!(sid_prefix("hub_a.example.org"), "hub_a-example-org.");
        assert_eq!(sid_prefix(" é/x "), "--x.");
        assert_eq!(sid_prefix(""), "");
        assert_eq!(sid_prefix(&"n".repeat(40)).len(), 33);
    }
}
