//! One Engine.IO connection as an actor: it owns the transport (HTTP
//! long-polling, WebSocket, or polling upgraded to WebSocket), sends pings
//! and expects pongs, enforces the payload limit, and runs the Socket.IO
//! layer (namespaces, acks both ways, binary attachments) for every
//! namespace multiplexed on the connection.
//!
//! Engine.IO protocol 4: <https://socket.io/docs/v4/engine-io-protocol/>.
//! Socket.IO protocol 5: <https://socket.io/docs/v4/socket-io-protocol/>.
//!
//! # Lifecycle, as the reference server behaves
//!
//! - Heartbeat: `pingInterval` after the handshake (and after each pong) the
//!   server sends `2`; without a `3` within `pingTimeout` the session is
//!   closed. A request that arrives past that deadline finds the session
//!   closed even if the timer has not fired yet.
//! - Polling: one GET may be pending at a time. A second GET closes the
//!   session (the first is answered `1`, the second gets HTTP 400); a GET the
//!   client abandons (connection closed before the answer) closes it too.
//! - Close: a client close packet (`1`) answers a pending GET with a noop
//!   (`6`); a close decided by the server answers it with `1`.
//! - Upgrade: a WebSocket with the session's sid is a probe. `2probe` is
//!   answered `3probe` on it and from then on a GET is answered shortly
//!   (queued packets, or `6`) so the client can pause polling; `5` makes the
//!   probe the transport and moves queued packets onto it (a GET still
//!   pending then is refused). Anything else on the probe, or its loss,
//!   drops the probe and the session goes on polling. A WebSocket for a
//!   session already upgraded or probing is closed after its handshake.
//! - Socket.IO: a CONNECT without payload gives the namespace an empty auth
//!   object; a malformed packet, a binary part nobody announced, or a text
//!   packet while attachments are due closes the connection. Packets for a
//!   namespace the client is not connected to are ignored.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::engine_packet::EnginePacket;
use super::frame::Frame;
use super::packet::{Packet, PacketType};
use super::queue::{Pushed, SharedQueue, Ws, ws_writer};
use super::server::{
    Acked, DisconnectReason, IncomingEvent, Mode, Session, Socket, SocketHandler, SocketIo,
};

/// Deliver a pre-encoded frame to the client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Frame);

/// Where code on a connection's own thread (the per-worker fan-out, the
/// session actors) puts frames for it: straight into the WebSocket
/// writer's queue when the connection is on WebSocket (no mailbox message,
/// the writer is woken only if it sleeps), else through the actor
/// ([`Deliver`]). Registered per thread by connection id, see
/// [`local_outlet`].
pub struct Outlet {
    conn: Addr<Conn>,
    server: SocketIo,
    /// The WebSocket queue, while the transport is a WebSocket.
    direct: RefCell<Option<SharedQueue>>,
    closed: Cell<bool>,
    /// [`Ordered`] messages sent from this thread and not yet handled:
    /// while there are any, frames follow them through the mailbox, so
    /// that what this thread sends arrives in the order it was sent.
    in_mailbox: Cell<usize>,
}

/// A frame or a request sent from the connection's thread through its
/// mailbox (see [`Outlet::in_mailbox`]).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum Ordered {
    Frame(Frame),
    Control(Control),
}

impl Outlet {
    /// Send a request through the mailbox, in order with frames sent
    /// through this outlet.
    pub(crate) fn control(&self, control: Control) {
        self.in_mailbox.set(self.in_mailbox.get() + 1);
        self.conn.do_send(Ordered::Control(control));
    }

    /// Queue `frame` for the client; false if the connection is gone.
    pub fn deliver(&self, frame: Frame) -> bool {
        if self.closed.get() {
            return false;
        }
        if self.in_mailbox.get() > 0 {
            self.in_mailbox.set(self.in_mailbox.get() + 1);
            self.conn.do_send(Ordered::Frame(frame));
            return true;
        }
        let too_slow = match &*self.direct.borrow() {
            Some(queue) => self
                .server
                .inner
                .stats
                .count_pushed(queue.push(frame, &self.server.inner.config)),
            None => {
                if !self.conn.connected() {
                    return false;
                }
                self.conn.do_send(Deliver(frame));
                return true;
            }
        };
        if too_slow {
            // Later frames go through the actor, which closes.
            self.direct.replace(None);
            self.conn
                .do_send(Control::Close(DisconnectReason::SlowClient));
        }
        true
    }
}

thread_local! {
    /// The outlets of the connections living on this thread.
    static OUTLETS: RefCell<HashMap<u64, Rc<Outlet>>> = RefCell::new(HashMap::new());
}

/// The outlet of connection `conn_id` if it lives on this thread.
pub fn local_outlet(conn_id: u64) -> Option<Rc<Outlet>> {
    OUTLETS.with(|o| o.borrow().get(&conn_id).cloned())
}

/// Requests to a connection from the application.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Control {
    EmitWithAck {
        nsp: Arc<str>,
        event: String,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
        reply: oneshot::Sender<Acked>,
    },
    DisconnectSocket {
        nsp: Arc<str>,
    },
    Close(DisconnectReason),
}

/// Why a polling request could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    /// A GET arrived while another was pending: the session is closed.
    Concurrent,
    /// The session has moved to WebSocket (the request is refused, the
    /// session goes on).
    WrongTransport,
    /// The session is closed (or just closed: ping timeout, abandoned GET).
    Closed,
}

/// A long-polling GET: answered with a payload when there is data (or a
/// ping is due).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poll(pub oneshot::Sender<Result<Bytes, PollError>>);

/// The HTTP request of a pending GET went away before its answer: the
/// client abandoned it, and the session is closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PollAborted;

/// A long-polling POST's packets.
#[derive(Message)]
#[rtype(result = "Result<(), PollError>")]
pub struct Posted(pub Vec<EnginePacket>);

/// May a WebSocket with this session's sid start an upgrade? Only a
/// polling session that is not already probing may.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CanUpgrade;

/// A WebSocket arrived for this (polling) session: probe, then upgrade.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Upgrade(pub Ws);

/// One item of a WebSocket read half, tagged with the stream it came from
/// (the transport, or a probe); `None` when that stream ended.
type WsItem = (u64, Option<Result<Message, tungstenite::Error>>);

type Waiter = oneshot::Sender<Result<Bytes, PollError>>;

enum Transport {
    Polling { waiter: Option<Waiter> },
    WebSocket { stream: u64 },
}

/// A WebSocket being probed for an upgrade.
struct Probe {
    queue: SharedQueue,
    stream: u64,
    /// `2probe` was answered: polling is being paused.
    probed: bool,
    /// When set, the pending GET is answered (queued packets or a noop).
    release: Option<SpawnHandle>,
}

/// Once a probe is answered, how long a GET is held before its answer (a
/// noop if nothing is queued) lets the client pause polling. The reference
/// server checks every 100 ms. The delay keeps requests in the client's
/// order: a GET sent right after `5` but handled before it is refused
/// like one handled after it, instead of getting a noop.
const UPGRADE_RELEASE_DELAY: Duration = Duration::from_millis(50);

struct Slot {
    handler: Box<dyn SocketHandler>,
}

struct PendingBinary {
    packet: Packet,
    parts: Vec<Bytes>,
}

/// The Engine.IO connection actor.
pub struct Conn {
    id: u64,
    sid: Arc<str>,
    server: SocketIo,
    remote: Option<std::net::SocketAddr>,
    transport: Transport,
    out: SharedQueue,
    /// Shared with same-thread senders (see [`Outlet`]).
    outlet: Rc<Outlet>,
    probe: Option<Probe>,
    next_stream: u64,
    /// When the next ping is due (set when it is scheduled).
    next_ping: Instant,
    /// A ping is out: the pong is due by then.
    pong_deadline: Option<Instant>,
    /// The next ping, or the ping timeout.
    heartbeat: Option<SpawnHandle>,
    closed: bool,
    /// Shared with the session table: set when the client closed.
    client_closed: Arc<AtomicBool>,
    sockets: HashMap<Arc<str>, Slot>,
    connecting: HashSet<Arc<str>>,
    pending: Option<PendingBinary>,
    next_ack: u64,
    acks: HashMap<u64, oneshot::Sender<Acked>>,
}

/// The longest an ack may stay outstanding is bounded by the caller's
/// timeout; this bounds how many may be outstanding at once.
const MAX_PENDING_ACKS: usize = 1024;

pub(crate) fn new_sid() -> Arc<str> {
    Arc::from(crate::util::random_token("", 15))
}

impl Conn {
    /// Start a connection on the current arbiter. `ws` set: WebSocket
    /// from the start (the open packet goes first on it); else polling.
    pub(crate) fn start(
        server: SocketIo,
        sid: Arc<str>,
        remote: Option<std::net::SocketAddr>,
        ws: Option<Ws>,
    ) -> Addr<Conn> {
        let out = SharedQueue::default();
        let client_closed = Arc::new(AtomicBool::new(false));
        let id = server.next_conn_id();
        let closed_flag = client_closed.clone();
        let srv = server.clone();
        let sid2 = sid.clone();
        let addr = Conn::create(move |ctx| {
            let (server, sid, client_closed) = (srv, sid2, closed_flag);
            let outlet = Rc::new(Outlet {
                conn: ctx.address(),
                server: server.clone(),
                direct: RefCell::new(None),
                closed: Cell::new(false),
                in_mailbox: Cell::new(0),
            });
            OUTLETS.with(|o| o.borrow_mut().insert(id, outlet.clone()));
            let mut conn = Conn {
                id,
                sid: sid.clone(),
                server: server.clone(),
                remote,
                transport: Transport::Polling { waiter: None },
                out: out.clone(),
                outlet,
                probe: None,
                next_stream: 0,
                // The heartbeat counts from the handshake, which the client
                // may get before the actor first runs.
                next_ping: Instant::now() + server.inner.config.ping_interval,
                pong_deadline: None,
                heartbeat: None,
                closed: false,
                client_closed: client_closed.clone(),
                sockets: HashMap::new(),
                connecting: HashSet::new(),
                pending: None,
                next_ack: 0,
                acks: HashMap::new(),
            };
            if let Some(ws) = ws {
                // A WebSocket session offers no upgrade.
                let open = open_packet(&conn.server, &conn.sid, &[]);
                out.push(Frame::engine_text(open), &conn.server.inner.config);
                conn.outlet.direct.replace(Some(out.clone()));
                let stream = conn.attach_ws(ws, out, ctx);
                conn.transport = Transport::WebSocket { stream };
            }
            conn
        });
        server.inner.sessions.insert(
            sid,
            Session {
                addr: addr.clone(),
                client_closed,
            },
        );
        server
            .inner
            .stats
            .connections
            .fetch_add(1, Ordering::Relaxed);
        server.inner.stats.opened.fetch_add(1, Ordering::Relaxed);
        addr
    }

    fn config(&self) -> &super::server::EngineConfig {
        &self.server.inner.config
    }

    /// Run `ws`: its writer drains `queue`, its reads come to this actor
    /// tagged with the returned stream id.
    fn attach_ws(&mut self, ws: Ws, queue: SharedQueue, ctx: &mut Context<Self>) -> u64 {
        let id = self.next_stream;
        self.next_stream += 1;
        let (sink, stream) = ws.split();
        actix_rt::spawn(ws_writer(sink, queue));
        ctx.add_stream(
            stream
                .map(move |item| (id, Some(item)))
                .chain(futures_util::stream::once(async move { (id, None) })),
        );
        id
    }

    /// Queue a frame on the active transport.
    fn push(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        let pushed = self.out.push(frame, &self.server.inner.config);
        if self.server.inner.stats.count_pushed(pushed) {
            tracing::info!(conn = self.id, sid = %self.sid, "client too slow: disconnecting");
            self.close(DisconnectReason::SlowClient, ctx);
            return;
        }
        self.poll_ready(ctx);
    }

    /// After a frame was queued or a GET arrived: answer the GET if there
    /// is data, or, during an upgrade, have it answered shortly.
    fn poll_ready(&mut self, ctx: &mut Context<Self>) {
        match &mut self.probe {
            Some(probe) if probe.probed => {
                let waiting = matches!(&self.transport, Transport::Polling { waiter: Some(_) });
                if waiting && probe.release.is_none() {
                    probe.release = Some(ctx.run_later(UPGRADE_RELEASE_DELAY, |act, _| {
                        if let Some(probe) = &mut act.probe {
                            probe.release = None;
                        }
                        act.release_poll();
                    }));
                }
            }
            _ => self.answer_poll(),
        }
    }

    /// Answer a waiting GET with everything queued, if anything is.
    fn answer_poll(&mut self) {
        if let Transport::Polling { waiter } = &mut self.transport
            && waiter.is_some()
            && !self.out.queue.borrow().is_empty()
            && let Some(tx) = waiter.take()
        {
            let frames = self.out.queue.borrow_mut().take();
            let _ = tx.send(Ok(encode_polling(frames)));
        }
    }

    /// Answer a waiting GET now: with what is queued, else a noop (during
    /// an upgrade, so the client can pause polling).
    fn release_poll(&mut self) {
        if let Transport::Polling { waiter } = &mut self.transport
            && let Some(tx) = waiter.take()
        {
            let frames = self.out.queue.borrow_mut().take();
            let body = if frames.is_empty() {
                Bytes::from_static(b"6")
            } else {
                encode_polling(frames)
            };
            let _ = tx.send(Ok(body));
        }
    }

    fn close(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        self.close_with(reason, None, ctx);
    }

    /// Close the connection; on WebSocket, with `code` in the close frame.
    fn close_with(
        &mut self,
        reason: DisconnectReason,
        code: Option<CloseCode>,
        ctx: &mut Context<Self>,
    ) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.outlet.closed.set(true);
        self.outlet.direct.replace(None);
        let id = self.id;
        OUTLETS.with(|o| o.borrow_mut().remove(&id));
        if reason == DisconnectReason::ClientClose {
            self.client_closed.store(true, Ordering::Relaxed);
        }
        tracing::debug!(conn = self.id, sid = %self.sid, reason = reason.as_str(), "engine.io connection closed");
        for (_, mut slot) in self.sockets.drain() {
            slot.handler.on_disconnect(reason);
        }
        self.acks.clear();
        self.server.inner.sessions.remove(&self.sid);
        self.server
            .inner
            .stats
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        if let Transport::Polling { waiter } = &mut self.transport
            && let Some(tx) = waiter.take()
        {
            // The client asked to close: end its pending GET cleanly.
            // Otherwise tell it the session is over.
            let body: &'static [u8] = if reason == DisconnectReason::ClientClose {
                b"6"
            } else {
                b"1"
            };
            let _ = tx.send(Ok(Bytes::from_static(body)));
        }
        self.out.close(code);
        if let Some(probe) = self.probe.take() {
            probe.queue.close(None);
        }
        ctx.stop();
    }

    /// Closes the session if its pong is overdue (the timer may not have
    /// fired yet); true if the session is closed.
    fn check_closed(&mut self, ctx: &mut Context<Self>) -> bool {
        if !self.closed
            && let Some(deadline) = self.pong_deadline
            && Instant::now() >= deadline
        {
            self.close(DisconnectReason::PingTimeout, ctx);
        }
        self.closed
    }

    /// Arm the timer for the ping due at `self.next_ping`.
    fn schedule_ping(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.heartbeat.take() {
            ctx.cancel_future(handle);
        }
        let wait = self.next_ping.saturating_duration_since(Instant::now());
        self.heartbeat = Some(ctx.run_later(wait, |act, ctx| act.ping(ctx)));
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        self.push(Frame::engine_text("2"), ctx);
        // Counted from when the ping was due, not from when the timer
        // fired: a late timer must not extend the client's time.
        let deadline = self.next_ping + self.config().ping_timeout;
        self.pong_deadline = Some(deadline);
        let wait = deadline.saturating_duration_since(Instant::now());
        self.heartbeat = Some(ctx.run_later(wait, |act, ctx| {
            act.close(DisconnectReason::PingTimeout, ctx);
        }));
        // Forget acks whose callers stopped waiting.
        self.acks.retain(|_, tx| !tx.is_closed());
    }

    fn on_pong(&mut self, ctx: &mut Context<Self>) {
        // An unsolicited pong changes nothing.
        if self.pong_deadline.take().is_some() {
            self.next_ping = Instant::now() + self.config().ping_interval;
            self.schedule_ping(ctx);
        }
    }

    fn on_engine_packet(&mut self, packet: EnginePacket, ctx: &mut Context<Self>) {
        self.server
            .inner
            .stats
            .frames_in
            .fetch_add(1, Ordering::Relaxed);
        match packet {
            EnginePacket::Ping(data) => {
                let mut text = BytesMut::with_capacity(1 + data.len());
                text.put_u8(b'3');
                text.extend_from_slice(&data);
                self.push(Frame::engine_text(text.freeze()), ctx);
            }
            EnginePacket::Pong(_) => self.on_pong(ctx),
            EnginePacket::Message(text) => self.on_message(text, ctx),
            EnginePacket::Binary(data) => self.on_binary(data, ctx),
            EnginePacket::Close => self.close(DisconnectReason::ClientClose, ctx),
            EnginePacket::Noop => {}
            // An upgrade outside a probe, or a second handshake.
            EnginePacket::Upgrade | EnginePacket::Open(_) => {
                self.close(DisconnectReason::ProtocolError, ctx);
            }
        }
    }

    /// A frame from the WebSocket being probed.
    fn on_probe_item(
        &mut self,
        item: Option<Result<Message, tungstenite::Error>>,
        ctx: &mut Context<Self>,
    ) {
        let packet = match item {
            Some(Ok(Message::Text(text))) => EnginePacket::decode_text(Bytes::from(text)).ok(),
            // WebSocket-level ping/pong: answered by tungstenite.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return,
            _ => None,
        };
        let Some(probe) = &mut self.probe else {
            return;
        };
        match packet {
            Some(EnginePacket::Ping(data)) if data.as_ref() == b"probe" && !probe.probed => {
                probe.probed = true;
                probe
                    .queue
                    .push(Frame::engine_text("3probe"), &self.server.inner.config);
                // Have the pending GET answered so the client can pause
                // polling.
                self.poll_ready(ctx);
            }
            Some(EnginePacket::Upgrade) if probe.probed => self.finish_upgrade(ctx),
            _ => {
                tracing::debug!(conn = self.id, "upgrade abandoned");
                if let Some(probe) = self.probe.take() {
                    if let Some(handle) = probe.release {
                        ctx.cancel_future(handle);
                    }
                    probe.queue.close(None);
                }
                self.answer_poll();
            }
        }
    }

    /// The probe becomes the transport; what polling had queued moves
    /// onto it, in order.
    fn finish_upgrade(&mut self, ctx: &mut Context<Self>) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        if let Some(handle) = probe.release {
            ctx.cancel_future(handle);
        }
        let queued = self.out.queue.borrow_mut().take();
        // A GET still pending was sent after `5` (a client pauses polling
        // before it upgrades): refused, as if it came after the upgrade.
        if let Transport::Polling { waiter } = &mut self.transport
            && let Some(tx) = waiter.take()
        {
            let _ = tx.send(Err(PollError::WrongTransport));
        }
        self.out.close(None);
        self.out = probe.queue;
        self.outlet.direct.replace(Some(self.out.clone()));
        self.transport = Transport::WebSocket {
            stream: probe.stream,
        };
        let mut too_slow = false;
        for frame in queued {
            too_slow |= self.out.push(frame, &self.server.inner.config) == Pushed::TooSlow;
        }
        if too_slow {
            self.close(DisconnectReason::SlowClient, ctx);
        }
    }

    fn on_message(&mut self, text: Bytes, ctx: &mut Context<Self>) {
        if matches!(self.server.inner.mode, Mode::EngineEcho) {
            let mut out = BytesMut::with_capacity(text.len() + 1);
            out.put_u8(b'4');
            out.extend_from_slice(&text);
            self.push(Frame::engine_text(out.freeze()), ctx);
            return;
        }
        if self.pending.is_some() {
            tracing::debug!(
                conn = self.id,
                "text packet while binary attachments were expected"
            );
            return self.close(DisconnectReason::ProtocolError, ctx);
        }
        let packet = match Packet::decode_bytes(&text, self.config().max_attachments) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(conn = self.id, error = %e, "invalid socket.io packet");
                return self.close(DisconnectReason::ProtocolError, ctx);
            }
        };
        match packet.kind {
            PacketType::Connect => self.on_connect(packet, ctx),
            PacketType::Disconnect => {
                if let Some(mut slot) = self.sockets.remove(packet.nsp.as_str()) {
                    slot.handler
                        .on_disconnect(DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            PacketType::Event
            | PacketType::Ack
            | PacketType::BinaryEvent
            | PacketType::BinaryAck => {
                if packet.attachments == 0 {
                    self.dispatch(packet, Vec::new(), ctx);
                } else {
                    let parts = Vec::with_capacity(packet.attachments);
                    self.pending = Some(PendingBinary { packet, parts });
                }
            }
            // Only a server sends CONNECT_ERROR.
            PacketType::ConnectError => self.close(DisconnectReason::ProtocolError, ctx),
        }
    }

    fn on_binary(&mut self, data: Bytes, ctx: &mut Context<Self>) {
        if matches!(self.server.inner.mode, Mode::EngineEcho) {
            self.push(
                Frame {
                    text: Default::default(),
                    binary: vec![data],
                    class: super::frame::FrameClass::Keep,
                },
                ctx,
            );
            return;
        }
        let Some(pending) = &mut self.pending else {
            tracing::debug!(conn = self.id, "binary packet without a binary event");
            return self.close(DisconnectReason::ProtocolError, ctx);
        };
        pending.parts.push(data);
        if pending.parts.len() == pending.packet.attachments
            && let Some(done) = self.pending.take()
        {
            self.dispatch(done.packet, done.parts, ctx);
        }
    }

    fn dispatch(&mut self, packet: Packet, attachments: Vec<Bytes>, ctx: &mut Context<Self>) {
        let args = match packet.data {
            Some(Value::Array(args)) => args,
            _ => Vec::new(),
        };
        match packet.kind {
            PacketType::Ack | PacketType::BinaryAck => {
                if let Some(id) = packet.id
                    && let Some(tx) = self.acks.remove(&id)
                {
                    let _ = tx.send(Acked { args, attachments });
                }
            }
            _ => {
                let Some(slot) = self.sockets.get_mut(packet.nsp.as_str()) else {
                    // Not connected to that namespace: the reference server
                    // closes the connection; it is ignored here, as it may
                    // cross a DISCONNECT the server just sent.
                    tracing::debug!(conn = self.id, nsp = %packet.nsp, "event for a namespace not connected");
                    return;
                };
                let mut args = args.into_iter();
                let Some(Value::String(name)) = args.next() else {
                    return self.close(DisconnectReason::ProtocolError, ctx);
                };
                slot.handler.on_event(IncomingEvent {
                    name,
                    args: args.collect(),
                    attachments,
                    ack: packet.id,
                });
            }
        }
    }

    fn on_connect(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        let nsp: Arc<str> = Arc::from(packet.nsp.as_str());
        let Mode::SocketIo(namespaces) = &self.server.inner.mode else {
            return;
        };
        if self.sockets.contains_key(&nsp) || self.connecting.contains(&nsp) {
            return;
        }
        let Some(namespace) = namespaces.get(packet.nsp.as_str()).cloned() else {
            let frame = Frame::packet(
                &Packet {
                    kind: PacketType::ConnectError,
                    nsp: packet.nsp,
                    id: None,
                    data: Some(serde_json::json!({"message": "Invalid namespace"})),
                    attachments: 0,
                },
                Vec::new(),
            );
            return self.push(frame, ctx);
        };
        let sid = new_sid();
        let socket = Socket {
            conn: ctx.address(),
            nsp: nsp.clone(),
            sid: sid.clone(),
            conn_id: self.id,
            remote: self.remote,
        };
        self.connecting.insert(nsp.clone());
        // No payload: an empty auth object, as the reference server has it.
        let auth = packet
            .data
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
        let fut = namespace.connect(socket, auth);
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            act.connecting.remove(&nsp);
            if act.closed {
                if let Ok(mut handler) = result {
                    handler.on_disconnect(DisconnectReason::TransportClose);
                }
                return;
            }
            let (kind, data) = match &result {
                Ok(_) => (PacketType::Connect, serde_json::json!({"sid": &*sid})),
                Err(data) => (PacketType::ConnectError, data.clone()),
            };
            let frame = Frame::packet(
                &Packet {
                    kind,
                    nsp: nsp.to_string(),
                    id: None,
                    data: Some(data),
                    attachments: 0,
                },
                Vec::new(),
            );
            act.push(frame, ctx);
            if let Ok(mut handler) = result {
                handler.on_connected();
                act.sockets.insert(nsp, Slot { handler });
            }
        }));
    }
}

impl Actor for Conn {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Socket.IO traffic may come in bursts: a larger mailbox before
        // back-pressure applies to `try_send` callers.
        ctx.set_mailbox_capacity(1024);
        self.schedule_ping(ctx);
        if matches!(self.server.inner.mode, Mode::SocketIo(_)) {
            let timeout = self.config().connect_timeout;
            ctx.run_later(timeout, |act, ctx| {
                if act.sockets.is_empty() && act.connecting.is_empty() {
                    act.close(DisconnectReason::ProtocolError, ctx);
                }
            });
        }
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        if !self.closed {
            self.close(DisconnectReason::TransportClose, ctx);
        }
    }
}

impl Handler<Deliver> for Conn {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.push(msg.0, ctx);
    }
}

impl Handler<Ordered> for Conn {
    type Result = ();
    fn handle(&mut self, msg: Ordered, ctx: &mut Self::Context) {
        let n = self.outlet.in_mailbox.get();
        self.outlet.in_mailbox.set(n.saturating_sub(1));
        match msg {
            Ordered::Frame(frame) => self.push(frame, ctx),
            Ordered::Control(control) => Handler::<Control>::handle(self, control, ctx),
        }
    }
}

impl Handler<Control> for Conn {
    type Result = ();
    fn handle(&mut self, msg: Control, ctx: &mut Self::Context) {
        match msg {
            Control::EmitWithAck {
                nsp,
                event,
                args,
                attachments,
                reply,
            } => {
                if self.closed
                    || !self.sockets.contains_key(&nsp)
                    || self.acks.len() >= MAX_PENDING_ACKS
                {
                    return; // `reply` dropped: the caller sees Disconnected.
                }
                let id = self.next_ack;
                self.next_ack = self.next_ack.wrapping_add(1);
                self.acks.insert(id, reply);
                let mut data = Vec::with_capacity(args.len() + 1);
                data.push(Value::String(event));
                data.extend(args);
                let frame = Frame::packet(
                    &Packet {
                        kind: PacketType::Event,
                        nsp: nsp.to_string(),
                        id: Some(id),
                        data: Some(Value::Array(data)),
                        attachments: attachments.len(),
                    },
                    attachments,
                );
                self.push(frame, ctx);
            }
            Control::DisconnectSocket { nsp } => {
                if let Some(mut slot) = self.sockets.remove(&nsp) {
                    let frame =
                        Frame::packet(&Packet::new(PacketType::Disconnect, &*nsp), Vec::new());
                    self.push(frame, ctx);
                    slot.handler
                        .on_disconnect(DisconnectReason::ServerNamespaceDisconnect);
                }
            }
            Control::Close(reason) => self.close(reason, ctx),
        }
    }
}

impl Handler<Poll> for Conn {
    type Result = ();
    fn handle(&mut self, msg: Poll, ctx: &mut Self::Context) {
        if self.check_closed(ctx) {
            let _ = msg.0.send(Err(PollError::Closed));
            return;
        }
        let Transport::Polling { waiter } = &mut self.transport else {
            let _ = msg.0.send(Err(PollError::WrongTransport));
            return;
        };
        if let Some(previous) = waiter {
            if previous.is_closed() {
                // The previous GET was abandoned (its `PollAborted` is on
                // the way): the session is over.
                self.close(DisconnectReason::TransportClose, ctx);
                let _ = msg.0.send(Err(PollError::Closed));
            } else {
                let _ = msg.0.send(Err(PollError::Concurrent));
                self.close(DisconnectReason::ProtocolError, ctx);
            }
            return;
        }
        *waiter = Some(msg.0);
        self.poll_ready(ctx);
    }
}

impl Handler<PollAborted> for Conn {
    type Result = ();
    fn handle(&mut self, _: PollAborted, ctx: &mut Self::Context) {
        if let Transport::Polling {
            waiter: Some(waiter),
        } = &self.transport
            && waiter.is_closed()
        {
            tracing::debug!(conn = self.id, "polling request abandoned by the client");
            self.close(DisconnectReason::TransportClose, ctx);
        }
    }
}

impl Handler<Posted> for Conn {
    type Result = Result<(), PollError>;
    fn handle(&mut self, msg: Posted, ctx: &mut Self::Context) -> Self::Result {
        if self.check_closed(ctx) {
            return Err(PollError::Closed);
        }
        if matches!(self.transport, Transport::WebSocket { .. }) {
            return Err(PollError::WrongTransport);
        }
        for packet in msg.0 {
            if self.closed {
                break;
            }
            self.on_engine_packet(packet, ctx);
        }
        Ok(())
    }
}

impl Handler<CanUpgrade> for Conn {
    type Result = bool;
    fn handle(&mut self, _: CanUpgrade, ctx: &mut Self::Context) -> bool {
        !self.check_closed(ctx)
            && self.probe.is_none()
            && matches!(self.transport, Transport::Polling { .. })
    }
}

impl Handler<Upgrade> for Conn {
    type Result = ();
    fn handle(&mut self, msg: Upgrade, ctx: &mut Self::Context) {
        if self.closed
            || self.probe.is_some()
            || matches!(self.transport, Transport::WebSocket { .. })
        {
            return; // dropping the WebSocket closes it
        }
        let queue = SharedQueue::default();
        let stream = self.attach_ws(msg.0, queue.clone(), ctx);
        self.probe = Some(Probe {
            queue,
            stream,
            probed: false,
            release: None,
        });
    }
}

impl StreamHandler<WsItem> for Conn {
    fn handle(&mut self, (stream, item): WsItem, ctx: &mut Self::Context) {
        if self.closed {
            return;
        }
        if self.probe.as_ref().is_some_and(|p| p.stream == stream) {
            return self.on_probe_item(item, ctx);
        }
        if !matches!(self.transport, Transport::WebSocket { stream: s } if s == stream) {
            return; // a probe that was dropped
        }
        let packet = match item {
            Some(Ok(Message::Text(text))) => EnginePacket::decode_text(Bytes::from(text)),
            Some(Ok(Message::Binary(data))) => Ok(EnginePacket::Binary(data)),
            // WebSocket ping/pong: answered by tungstenite.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return,
            Some(Ok(Message::Close(_))) | None => {
                return self.close(DisconnectReason::TransportClose, ctx);
            }
            Some(Err(tungstenite::Error::Capacity(e))) => {
                tracing::debug!(conn = self.id, error = %e, "websocket message over maxPayload");
                return self.close_with(
                    DisconnectReason::ProtocolError,
                    Some(CloseCode::Size),
                    ctx,
                );
            }
            Some(Err(e)) => {
                tracing::debug!(conn = self.id, error = %e, "websocket read failed");
                return self.close(DisconnectReason::TransportClose, ctx);
            }
        };
        match packet {
            Ok(packet) => self.on_engine_packet(packet, ctx),
            Err(e) => {
                tracing::debug!(conn = self.id, error = %e, "invalid engine.io packet");
                self.close(DisconnectReason::ProtocolError, ctx);
            }
        }
    }

    // Each stream ends with its own `(id, None)` item: the end of a probe
    // must not end the connection, so the default (stop) is not wanted.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

/// The handshake packet text `0{...}`; `upgrades` is what the client may
/// upgrade to (`["websocket"]` on polling, none on WebSocket).
pub(crate) fn open_packet(server: &SocketIo, sid: &str, upgrades: &[&str]) -> Bytes {
    let c = &server.inner.config;
    let json = super::engine_packet::open_payload(
        sid,
        upgrades,
        u64::try_from(c.ping_interval.as_millis()).unwrap_or(u64::MAX),
        u64::try_from(c.ping_timeout.as_millis()).unwrap_or(u64::MAX),
        c.max_payload,
    );
    let mut out = BytesMut::with_capacity(json.len() + 1);
    out.put_u8(b'0');
    out.extend_from_slice(&json);
    out.freeze()
}

/// Frames as one long-polling payload: texts and `b`+base64 binary parts
/// separated by 0x1e.
fn encode_polling(frames: std::collections::VecDeque<Frame>) -> Bytes {
    let mut out = BytesMut::new();
    let mut first = true;
    let mut sep = |out: &mut BytesMut| {
        if !first {
            out.put_u8(0x1e);
        }
        first = false;
    };
    for frame in frames {
        if !frame.text.is_empty() {
            sep(&mut out);
            out.extend_from_slice(frame.text.as_bytes());
        }
        for part in frame.binary {
            sep(&mut out);
            out.put_u8(b'b');
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&part)
                    .as_bytes(),
            );
        }
    }
    out.freeze()
}
