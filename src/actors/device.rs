//! A `DeviceSession` actor per `/device` socket: one connected blackbox.
//!
//! Telemetry (`loc`, `event`, `status`, `obd`) is validated, queued to the
//! group-commit writer, and acknowledged only after its transaction
//! commits. A full writer queue answers `busy` at once (the device resends
//! later) rather than growing memory. Live data is fanned out to the
//! vehicle's room as soon as it is accepted, encoded once.
//!
//! A second connection of the same vehicle replaces the first, on this
//! node or (with a cluster, see `crate::cluster::presence`) on another: the old
//! session is told why (`session_replaced`) and closed. The vehicle is
//! online while a session is registered, and goes offline when the last
//! one ends (disconnect, or missed heartbeats).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::presence::DeviceEntry;
use super::room::{self, DetachPublisher, RoomHandle, RoomKey};
use super::{Hub, session_limiter};
use crate::db::queries::vehicles;
use crate::ingest::validate::{self, Point};
use crate::ingest::{IngestError, Job, Stored, SubmitError};
use crate::socketio::{
    AckError, ConnectResult, DisconnectReason, Frame, IncomingEvent, Namespace, Socket,
    SocketHandler,
};
use crate::util::{now_ms, secure_eq, sha256_hex};

/// The `/device` namespace: authenticates blackboxes by serial and device
/// token.
pub struct DeviceNamespace {
    pub hub: Arc<Hub>,
}

fn unauthorized() -> Value {
    json!({"message": "unauthorized"})
}

impl Namespace for DeviceNamespace {
    fn connect(&self, socket: Socket, auth: Value) -> Pin<Box<dyn Future<Output = ConnectResult>>> {
        let hub = self.hub.clone();
        Box::pin(async move {
            let serial = auth
                .get("serial")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let token = auth.get("token").and_then(Value::as_str).unwrap_or("");
            if serial.is_empty() || token.is_empty() || serial.len() > 64 || token.len() > 256 {
                return Err(unauthorized());
            }
            let hash = sha256_hex(token);
            let found = hub
                .db
                .run(move |conn| vehicles::find_by_token_hash(conn, &hash))
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "device authentication: database error");
                    json!({"message": "unavailable"})
                })?;
            let Some(vehicle) = found.filter(|v| secure_eq(&v.serial, &serial)) else {
                tracing::info!(serial = %serial, remote = ?socket.remote_addr(), "device refused: wrong credentials");
                return Err(unauthorized());
            };
            let Some(vehicle_room) =
                room::attach_publisher(&hub.rooms, RoomKey::Vehicle(vehicle.id)).await
            else {
                return Err(json!({"message": "unavailable"}));
            };
            let Some(user_room) =
                room::attach_publisher(&hub.rooms, RoomKey::User(vehicle.owner_id)).await
            else {
                vehicle_room.addr.do_send(DetachPublisher);
                return Err(json!({"message": "unavailable"}));
            };
            let session = DeviceSession {
                hub,
                socket,
                vehicle_id: vehicle.id,
                owner_id: vehicle.owner_id,
                vehicle_room,
                user_room,
                limiter: None,
                replaced: false,
            }
            .start();
            Ok(Box::new(DeviceSocket { session }) as Box<dyn SocketHandler>)
        })
    }
}

/// Forwards the socket's traffic to the session actor.
struct DeviceSocket {
    session: Addr<DeviceSession>,
}

impl SocketHandler for DeviceSocket {
    fn on_connected(&mut self) {
        self.session.do_send(Connected);
    }

    fn on_event(&mut self, event: IncomingEvent) {
        self.session.do_send(DeviceEvent(event));
    }

    fn on_disconnect(&mut self, reason: DisconnectReason) {
        self.session.do_send(Disconnected(reason));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Connected;

#[derive(Message)]
#[rtype(result = "()")]
struct DeviceEvent(IncomingEvent);

#[derive(Message)]
#[rtype(result = "()")]
struct Disconnected(DisconnectReason);

/// Another connection of the same vehicle took over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replaced;

/// The credentials of the session are no longer valid.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Revoked(pub std::borrow::Cow<'static, str>);

/// The cluster re-created this session's presence key (Redis lost it, or
/// the node was taken for dead): tell the owner's phones it is online.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reasserted;

/// The `presence` frame for the owner's user room:
/// `{"vehicle", "online", "t"}`.
pub fn presence_frame(vehicle: i64, online: bool) -> Frame {
    let json = json!({"vehicle": vehicle, "online": online, "t": now_ms()});
    Frame::event("/app", "presence", json.to_string().as_bytes())
}

/// Relay a command to the device and answer with its ack (or an error
/// object `{"ok": false, "error": "offline" | "timeout"}`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendCommand {
    pub user_id: Option<i64>,
    pub name: String,
    pub args: Value,
    pub reply: oneshot::Sender<Value>,
}

/// One connected blackbox.
pub struct DeviceSession {
    hub: Arc<Hub>,
    socket: Socket,
    vehicle_id: i64,
    owner_id: i64,
    vehicle_room: RoomHandle,
    user_room: RoomHandle,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    replaced: bool,
}

/// The two periodic reports a device sends.
#[derive(Clone, Copy)]
enum ReportKind {
    Status,
    Obd,
}

impl ReportKind {
    /// The event name, on the device and on the app side.
    fn event(self) -> &'static str {
        match self {
            ReportKind::Status => "status",
            ReportKind::Obd => "obd",
        }
    }
}

#[derive(Serialize)]
struct LocOut<'a> {
    vehicle: i64,
    points: &'a [Point],
}

impl DeviceSession {
    fn ack(&self, id: Option<u64>, value: &Value) {
        if let Some(id) = id {
            self.socket.ack(id, value);
        }
    }

    fn ack_error(&self, id: Option<u64>, code: &str) {
        self.ack(id, &json!({"ok": false, "error": code}));
    }

    fn presence_frame(&self, online: bool) -> Frame {
        presence_frame(self.vehicle_id, online)
    }

    /// Queue a job; on `busy`/`unavailable` ack the error now.
    fn submit(&self, job: Job, ack: Option<u64>) -> Option<crate::ingest::writer::Ack> {
        match self.hub.ingest.submit(job) {
            Ok(rx) => Some(rx),
            Err(SubmitError::Busy) => {
                self.hub
                    .stats
                    .busy
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.ack_error(ack, "busy");
                None
            }
            Err(SubmitError::Closed) => {
                self.ack_error(ack, "unavailable");
                None
            }
        }
    }

    /// Await the commit, then ack with `ok` (built from what was stored).
    fn ack_after_commit(
        &self,
        rx: crate::ingest::writer::Ack,
        ack: Option<u64>,
        ctx: &mut Context<Self>,
        ok: impl FnOnce(&mut Self, Stored) -> Value + 'static,
    ) {
        let received = std::time::Instant::now();
        ctx.spawn(
            async move {
                match rx.await {
                    Ok(Ok(stored)) => Ok(stored),
                    Ok(Err(e)) => Err(IngestError::Write(e)),
                    Err(_) => Err(IngestError::Closed),
                }
            }
            .into_actor(self)
            .map(move |result, act, _ctx| {
                match result {
                    Ok(stored) => {
                        let value = ok(act, stored);
                        act.ack(ack, &value);
                    }
                    Err(e) => act.ack_error(ack, e.code()),
                }
                if ack.is_some() {
                    act.hub.stats.device_ack.observe(received.elapsed());
                }
            }),
        );
    }

    fn on_event(&mut self, event: IncomingEvent, ctx: &mut Context<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.hub.stats.device_messages.fetch_add(1, Relaxed);
        if let Some(limiter) = &self.limiter
            && limiter.check().is_err()
        {
            self.hub.stats.rate_limited.fetch_add(1, Relaxed);
            return self.ack_error(event.ack, "rate_limited");
        }
        let arg = event.args.first().unwrap_or(&Value::Null);
        match event.name.as_str() {
            "loc" => self.on_loc(arg, event.ack, ctx),
            "event" => self.on_device_event(arg, event.ack, ctx),
            "status" => self.on_report(ReportKind::Status, arg, event.ack, ctx),
            "obd" => self.on_report(ReportKind::Obd, arg, event.ack, ctx),
            _ => self.ack_error(event.ack, "unknown_event"),
        }
    }

    /// Answer a payload that failed validation.
    fn reject(&self, ack: Option<u64>, e: validate::ValidationError) {
        self.hub
            .stats
            .rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ack(ack, &e.ack());
    }

    /// `loc`: a batch of points, fanned out to the vehicle's room at once,
    /// acked with the number stored after the commit.
    fn on_loc(&mut self, arg: &Value, ack: Option<u64>, ctx: &mut Context<Self>) {
        let vehicle_id = self.vehicle_id;
        let points = match validate::parse_loc(arg) {
            Ok(p) => p,
            Err(e) => return self.reject(ack, e),
        };
        // Encode the fan-out frame once, before the points move.
        let json = serde_json::to_vec(&LocOut {
            vehicle: vehicle_id,
            points: &points,
        })
        .unwrap_or_default();
        let newest = points.iter().copied().max_by_key(|p| p.t);
        let Some(rx) = self.submit(Job::Locations { vehicle_id, points }, ack) else {
            return;
        };
        if let Some(newest) = newest {
            self.hub.presence.set_location(vehicle_id, newest);
        }
        self.hub
            .stats
            .fanout_frames
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.vehicle_room
            .publish(Frame::event("/app", "loc", &json).coalesce(vehicle_id as u64));
        self.ack_after_commit(rx, ack, ctx, |_, stored| match stored {
            Stored::Locations { stored } => json!({"ok": true, "stored": stored}),
            _ => json!({"ok": true}),
        });
    }

    /// `event`: stored first, then fanned out with its id to every app
    /// session of the owner, and acked with the id.
    fn on_device_event(&mut self, arg: &Value, ack: Option<u64>, ctx: &mut Context<Self>) {
        let ev = match validate::parse_event(arg) {
            Ok(e) => e,
            Err(e) => return self.reject(ack, e),
        };
        let job = Job::Event {
            vehicle_id: self.vehicle_id,
            event: ev.clone(),
        };
        let Some(rx) = self.submit(job, ack) else {
            return;
        };
        self.ack_after_commit(rx, ack, ctx, move |act, stored| {
            // A resent event keeps its first id (`resent`) and goes to the
            // phones again: the first send's fan-out may have died with its
            // session; phones dedupe by id.
            let Stored::Event { id, .. } = stored else {
                return json!({"ok": true});
            };
            let mut out = serde_json::to_value(&ev).unwrap_or_else(|_| json!({}));
            if let Value::Object(map) = &mut out {
                map.insert("vehicle".into(), json!(act.vehicle_id));
                map.insert("id".into(), json!(id));
            }
            let frame = Frame::event("/app", "event", out.to_string().as_bytes());
            act.user_room.publish(frame);
            json!({"ok": true, "id": id})
        });
    }

    /// `status` and `obd`: stored, fanned out to the vehicle's room (with
    /// the hub's vehicle id, whatever the device sent), acked after commit.
    fn on_report(
        &mut self,
        kind: ReportKind,
        arg: &Value,
        ack: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        let vehicle_id = self.vehicle_id;
        let parsed = match kind {
            ReportKind::Status => validate::parse_status(arg),
            ReportKind::Obd => validate::parse_obd(arg),
        };
        let report = match parsed {
            Ok(r) => r,
            Err(e) => return self.reject(ack, e),
        };
        let (t, data) = (report.t, report.data);
        let job = match kind {
            ReportKind::Status => Job::Status {
                vehicle_id,
                t,
                data,
            },
            ReportKind::Obd => Job::Obd {
                vehicle_id,
                t,
                data,
            },
        };
        let Some(rx) = self.submit(job, ack) else {
            return;
        };
        let mut out = arg.clone();
        if let Value::Object(map) = &mut out {
            map.insert("vehicle".into(), json!(vehicle_id));
        }
        let frame = Frame::event("/app", kind.event(), out.to_string().as_bytes());
        self.vehicle_room.publish(frame);
        self.ack_after_commit(rx, ack, ctx, |_, _| json!({"ok": true}));
    }

    fn log_connection(&self, kind: &'static str, reason: Option<String>) {
        let job = Job::Connection {
            vehicle_id: self.vehicle_id,
            node_id: self.hub.config.node.id.clone(),
            remote_addr: self.socket.remote_addr().map(|a| a.to_string()),
            kind,
            reason,
            t: now_ms(),
        };
        if let Err(e) = self.hub.ingest.submit(job) {
            tracing::warn!(vehicle_id = self.vehicle_id, error = %e, "connection log not written");
        }
        let _ = self.hub.ingest.submit(Job::LastSeen {
            vehicle_id: self.vehicle_id,
            t: now_ms(),
        });
    }
}

impl Actor for DeviceSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.limiter = session_limiter(self.hub.config.limits.device_messages_per_second);
        let previous = self.hub.presence.register(
            self.vehicle_id,
            DeviceEntry {
                session: ctx.address(),
                conn_id: self.socket.conn_id(),
                owner_id: self.owner_id,
                since: now_ms(),
            },
        );
        if let Some(old) = previous {
            old.session.do_send(Replaced);
        }
        self.hub
            .backends
            .presence
            .connected(self.vehicle_id, self.socket.conn_id(), self.owner_id);
        tracing::info!(
            vehicle_id = self.vehicle_id,
            owner_id = self.owner_id,
            conn = self.socket.conn_id(),
            remote = ?self.socket.remote_addr(),
            "device online"
        );
        self.log_connection("connect", None);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.vehicle_room.addr.do_send(DetachPublisher);
        let was_current = self
            .hub
            .presence
            .unregister(self.vehicle_id, self.socket.conn_id());
        // A session replaced by one on another node is not the last one.
        let offline = was_current && !self.replaced;
        // The presence backend may announce the offline itself (with a
        // cluster, once it knows no other node holds the device).
        let announced = self.hub.backends.presence.disconnected(
            self.vehicle_id,
            self.socket.conn_id(),
            self.owner_id,
            offline,
        );
        if offline && !announced {
            self.user_room.publish(self.presence_frame(false));
        }
        self.user_room.addr.do_send(DetachPublisher);
        tracing::info!(
            vehicle_id = self.vehicle_id,
            conn = self.socket.conn_id(),
            "device session ended"
        );
    }
}

impl Handler<Connected> for DeviceSession {
    type Result = ();
    fn handle(&mut self, _: Connected, _ctx: &mut Self::Context) {
        self.user_room.publish(self.presence_frame(true));
    }
}

impl Handler<DeviceEvent> for DeviceSession {
    type Result = ();
    fn handle(&mut self, msg: DeviceEvent, ctx: &mut Self::Context) {
        if !self.replaced {
            self.on_event(msg.0, ctx);
        }
    }
}

impl Handler<Disconnected> for DeviceSession {
    type Result = ();
    fn handle(&mut self, msg: Disconnected, ctx: &mut Self::Context) {
        let reason = if self.replaced {
            "replaced"
        } else {
            msg.0.as_str()
        };
        self.log_connection("disconnect", Some(reason.to_string()));
        ctx.stop();
    }
}

impl Handler<Replaced> for DeviceSession {
    type Result = ();
    fn handle(&mut self, _: Replaced, _ctx: &mut Self::Context) {
        if self.replaced {
            return;
        }
        self.replaced = true;
        tracing::info!(
            vehicle_id = self.vehicle_id,
            conn = self.socket.conn_id(),
            "device session replaced by a new connection"
        );
        self.socket.emit(
            "session_replaced",
            &json!({"reason": "another connection of this device took over"}),
        );
        self.socket.disconnect();
        self.socket.close();
    }
}

impl Handler<Revoked> for DeviceSession {
    type Result = ();
    fn handle(&mut self, msg: Revoked, _ctx: &mut Self::Context) {
        tracing::info!(
            vehicle_id = self.vehicle_id,
            reason = %msg.0,
            "device session revoked"
        );
        self.socket
            .emit("session_revoked", &json!({"reason": &*msg.0}));
        self.socket.disconnect();
        self.socket.close();
    }
}

impl Handler<Reasserted> for DeviceSession {
    type Result = ();
    fn handle(&mut self, _: Reasserted, _ctx: &mut Self::Context) {
        if !self.replaced {
            self.user_room.publish(self.presence_frame(true));
        }
    }
}

impl Handler<SendCommand> for DeviceSession {
    type Result = ();
    fn handle(&mut self, msg: SendCommand, ctx: &mut Self::Context) {
        self.hub
            .stats
            .commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = self.hub.next_command_id();
        let payload = json!({"id": id, "name": msg.name, "args": msg.args});
        let socket = self.socket.clone();
        let timeout = self.hub.command_timeout();
        let created_at = now_ms();
        let vehicle_id = self.vehicle_id;
        ctx.spawn(
            async move { socket.emit_with_ack("command", payload, timeout).await }
                .into_actor(self)
                .map(move |result, act, _ctx| {
                    let (status, answer) = match result {
                        Ok(mut values) => {
                            let v = if values.is_empty() {
                                json!({"ok": true})
                            } else {
                                values.swap_remove(0)
                            };
                            ("answered", v)
                        }
                        Err(AckError::Timeout) => {
                            ("timeout", json!({"ok": false, "error": "timeout"}))
                        }
                        Err(AckError::Disconnected) => {
                            ("offline", json!({"ok": false, "error": "offline"}))
                        }
                    };
                    let job = Job::Command {
                        vehicle_id,
                        user_id: msg.user_id,
                        name: msg.name,
                        args: msg.args.to_string(),
                        status: status.to_string(),
                        result: Some(answer.to_string()),
                        created_at,
                        completed_at: Some(now_ms()),
                    };
                    if let Err(e) = act.hub.ingest.submit(job) {
                        tracing::warn!(vehicle_id, error = %e, "command log not written");
                    }
                    let _ = msg.reply.send(answer);
                }),
        );
    }
}
