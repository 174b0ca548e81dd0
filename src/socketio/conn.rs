//! One Engine.IO connection as an actor: it owns the transport (HTTP
//! long-polling, WebSocket, or polling upgraded to WebSocket), sends pings
//! and expects pongs, enforces the payload limit, and runs the Socket.IO
//! layer (namespaces, acks both ways, binary attachments) for every
//! namespace multiplexed on the connection.
//!
//! Engine.IO protocol 4: <https://socket.io/docs/v4/engine-io-protocol/>.
//! Socket.IO protocol 5: <https://socket.io/docs/v4/socket-io-protocol/>.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{self, Message};

use super::engine_packet::EnginePacket;
use super::frame::Frame;
use super::packet::{Packet, PacketType};
use super::queue::{Pushed, SharedQueue, Ws, ws_writer};
use super::server::{DisconnectReason, IncomingEvent, Mode, Socket, SocketHandler, SocketIo};

/// Deliver a pre-encoded frame to the client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Frame);

/// Requests to a connection from the application.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Control {
    EmitWithAck {
        nsp: Arc<str>,
        event: String,
        arg: Value,
        reply: oneshot::Sender<Vec<Value>>,
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
    /// The session has moved to WebSocket.
    WrongTransport,
}

/// A long-polling GET: answered with a payload when there is data (or a
/// ping is due).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poll(pub oneshot::Sender<Result<Bytes, PollError>>);

/// A long-polling POST's packets.
#[derive(Message)]
#[rtype(result = "Result<(), PollError>")]
pub struct Posted(pub Vec<EnginePacket>);

/// A WebSocket arrived for this (polling) session: probe, then upgrade.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Upgrade(pub Ws);

enum Transport {
    Polling {
        waiter: Option<oneshot::Sender<Result<Bytes, PollError>>>,
    },
    WebSocket,
}

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
    /// The WebSocket being probed during an upgrade.
    probe: Option<SharedQueue>,
    pong_seen: bool,
    closed: bool,
    sockets: HashMap<Arc<str>, Slot>,
    connecting: HashSet<Arc<str>>,
    pending: Option<PendingBinary>,
    next_ack: u64,
    acks: HashMap<u64, oneshot::Sender<Vec<Value>>>,
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
        let open = open_packet(&server, &sid);
        let is_ws = ws.is_some();
        let conn = Conn {
            id: server.next_conn_id(),
            sid: sid.clone(),
            server: server.clone(),
            remote,
            transport: if is_ws {
                Transport::WebSocket
            } else {
                Transport::Polling { waiter: None }
            },
            out: out.clone(),
            probe: None,
            pong_seen: true,
            closed: false,
            sockets: HashMap::new(),
            connecting: HashSet::new(),
            pending: None,
            next_ack: 0,
            acks: HashMap::new(),
        };
        let addr = Conn::create(move |ctx| {
            if let Some(ws) = ws {
                let (sink, stream) = ws.split();
                out.push(Frame::engine_text(open), &conn.server.inner.config);
                actix_rt::spawn(ws_writer(sink, out));
                ctx.add_stream(stream);
            }
            conn
        });
        server.inner.sessions.insert(sid, addr.clone());
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

    /// Queue a frame on the active transport.
    fn push(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        self.server
            .inner
            .stats
            .frames_out
            .fetch_add(1, Ordering::Relaxed);
        match self.out.push(frame, &self.server.inner.config) {
            Pushed::Queued => {}
            Pushed::Coalesced => {
                self.server
                    .inner
                    .stats
                    .coalesced
                    .fetch_add(1, Ordering::Relaxed);
            }
            Pushed::TooSlow => {
                self.server
                    .inner
                    .stats
                    .slow_closed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(conn = self.id, sid = %self.sid, "client too slow: disconnecting");
                self.close(DisconnectReason::SlowClient, ctx);
                return;
            }
        }
        self.answer_poll();
    }

    /// Answer a waiting GET with everything queued.
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

    fn close(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        self.closed = true;
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
            let _ = tx.send(Ok(Bytes::from_static(b"1")));
        }
        self.out.close();
        if let Some(probe) = self.probe.take() {
            probe.close();
        }
        ctx.stop();
    }

    fn on_engine_packet(
        &mut self,
        packet: EnginePacket,
        from_probe: bool,
        ctx: &mut Context<Self>,
    ) {
        self.server
            .inner
            .stats
            .frames_in
            .fetch_add(1, Ordering::Relaxed);
        match packet {
            EnginePacket::Ping(data) => {
                if from_probe && data.as_ref() == b"probe" {
                    if let Some(probe) = &self.probe {
                        probe.push(Frame::engine_text("3probe"), &self.server.inner.config);
                    }
                    // Release the pending GET so the client can pause polling.
                    if let Transport::Polling { waiter } = &mut self.transport
                        && let Some(tx) = waiter.take()
                    {
                        let frames = self.out.queue.borrow_mut().take();
                        let mut body = encode_polling(frames);
                        if body.is_empty() {
                            body = Bytes::from_static(b"6");
                        }
                        let _ = tx.send(Ok(body));
                    }
                } else {
                    let mut text = BytesMut::with_capacity(1 + data.len());
                    text.put_u8(b'3');
                    text.extend_from_slice(&data);
                    self.push(Frame::engine_text(text.freeze()), ctx);
                }
            }
            EnginePacket::Pong(_) => self.pong_seen = true,
            EnginePacket::Message(text) => self.on_message(text, ctx),
            EnginePacket::Binary(data) => self.on_binary(data, ctx),
            EnginePacket::Close => self.close(DisconnectReason::ClientClose, ctx),
            EnginePacket::Upgrade => {
                if from_probe && let Some(probe) = self.probe.take() {
                    // Move what polling had queued onto the WebSocket.
                    let queued = self.out.queue.borrow_mut().take();
                    if let Transport::Polling { waiter } = &mut self.transport
                        && let Some(tx) = waiter.take()
                    {
                        let _ = tx.send(Ok(Bytes::from_static(b"6")));
                    }
                    self.out.close();
                    self.out = probe;
                    self.transport = Transport::WebSocket;
                    for frame in queued {
                        self.push(frame, ctx);
                    }
                } else {
                    self.close(DisconnectReason::ProtocolError, ctx);
                }
            }
            EnginePacket::Noop => {}
            EnginePacket::Open(_) => self.close(DisconnectReason::ProtocolError, ctx),
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
        let Ok(text) = std::str::from_utf8(&text) else {
            return self.close(DisconnectReason::ProtocolError, ctx);
        };
        let packet = match Packet::decode(text, self.config().max_attachments) {
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
            PacketType::Event | PacketType::Ack if packet.attachments == 0 => {
                self.dispatch(packet, Vec::new(), ctx);
            }
            PacketType::BinaryEvent
            | PacketType::BinaryAck
            | PacketType::Event
            | PacketType::Ack => {
                if packet.attachments == 0 {
                    self.dispatch(packet, Vec::new(), ctx);
                } else {
                    let parts = Vec::with_capacity(packet.attachments);
                    self.pending = Some(PendingBinary { packet, parts });
                }
            }
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
                    let _ = tx.send(args);
                }
            }
            _ => {
                let Some(slot) = self.sockets.get_mut(packet.nsp.as_str()) else {
                    // Not connected to that namespace (yet): ignored, as
                    // the reference server does.
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
        let auth = packet.data.unwrap_or(Value::Null);
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

    fn ping(&mut self, ctx: &mut Context<Self>) {
        if !self.pong_seen {
            return self.close(DisconnectReason::PingTimeout, ctx);
        }
        self.pong_seen = false;
        self.push(Frame::engine_text("2"), ctx);
        let timeout = self.config().ping_timeout;
        ctx.run_later(timeout, |act, ctx| {
            if !act.pong_seen {
                act.close(DisconnectReason::PingTimeout, ctx);
            }
        });
        // Forget acks whose callers stopped waiting.
        self.acks.retain(|_, tx| !tx.is_closed());
    }
}

impl Actor for Conn {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Socket.IO traffic may come in bursts: a larger mailbox before
        // back-pressure applies to `try_send` callers.
        ctx.set_mailbox_capacity(1024);
        let interval = self.config().ping_interval;
        ctx.run_interval(interval, |act, ctx| act.ping(ctx));
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

impl Handler<Control> for Conn {
    type Result = ();
    fn handle(&mut self, msg: Control, ctx: &mut Self::Context) {
        match msg {
            Control::EmitWithAck {
                nsp,
                event,
                arg,
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
                let frame = Frame::packet(
                    &Packet {
                        kind: PacketType::Event,
                        nsp: nsp.to_string(),
                        id: Some(id),
                        data: Some(Value::Array(vec![Value::String(event), arg])),
                        attachments: 0,
                    },
                    Vec::new(),
                );
                self.push(frame, ctx);
            }
            Control::DisconnectSocket { nsp } => {
                if let Some(mut slot) = self.sockets.remove(&nsp) {
                    let frame = Frame::packet(
                        &Packet {
                            kind: PacketType::Disconnect,
                            nsp: nsp.to_string(),
                            id: None,
                            data: None,
                            attachments: 0,
                        },
                        Vec::new(),
                    );
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
        match &mut self.transport {
            Transport::WebSocket => {
                let _ = msg.0.send(Err(PollError::WrongTransport));
            }
            Transport::Polling { waiter } => {
                if waiter.is_some() {
                    let _ = msg.0.send(Err(PollError::Concurrent));
                    self.close(DisconnectReason::ProtocolError, ctx);
                    return;
                }
                *waiter = Some(msg.0);
                self.answer_poll();
            }
        }
    }
}

impl Handler<Posted> for Conn {
    type Result = Result<(), PollError>;
    fn handle(&mut self, msg: Posted, ctx: &mut Self::Context) -> Self::Result {
        if matches!(self.transport, Transport::WebSocket) {
            return Err(PollError::WrongTransport);
        }
        for packet in msg.0 {
            if self.closed {
                break;
            }
            self.on_engine_packet(packet, false, ctx);
        }
        Ok(())
    }
}

impl Handler<Upgrade> for Conn {
    type Result = ();
    fn handle(&mut self, msg: Upgrade, ctx: &mut Self::Context) {
        if self.closed || self.probe.is_some() || matches!(self.transport, Transport::WebSocket) {
            return; // dropping the WebSocket closes it
        }
        let probe = SharedQueue::default();
        let (sink, stream) = msg.0.split();
        actix_rt::spawn(ws_writer(sink, probe.clone()));
        ctx.add_stream(stream);
        self.probe = Some(probe);
    }
}

impl StreamHandler<Result<Message, tungstenite::Error>> for Conn {
    fn handle(&mut self, item: Result<Message, tungstenite::Error>, ctx: &mut Self::Context) {
        let from_probe = self.probe.is_some();
        let packet = match item {
            Ok(Message::Text(text)) => EnginePacket::decode_text(Bytes::from(text)),
            Ok(Message::Binary(data)) => Ok(EnginePacket::Binary(data)),
            Ok(Message::Close(_)) => return self.close(DisconnectReason::TransportClose, ctx),
            Ok(_) => return, // WebSocket ping/pong: answered by tungstenite
            Err(e) => {
                tracing::debug!(conn = self.id, error = %e, "websocket read failed");
                let reason = match e {
                    tungstenite::Error::Capacity(_) => DisconnectReason::ProtocolError,
                    _ => DisconnectReason::TransportClose,
                };
                return self.close(reason, ctx);
            }
        };
        match packet {
            Ok(packet) => self.on_engine_packet(packet, from_probe, ctx),
            Err(e) => {
                tracing::debug!(conn = self.id, error = %e, "invalid engine.io packet");
                self.close(DisconnectReason::ProtocolError, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.close(DisconnectReason::TransportClose, ctx);
    }
}

/// The handshake packet text `0{...}`.
pub(crate) fn open_packet(server: &SocketIo, sid: &str) -> Bytes {
    let c = &server.inner.config;
    let json = super::engine_packet::open_payload(
        sid,
        &["websocket"],
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
