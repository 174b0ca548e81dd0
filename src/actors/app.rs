//! An `AppSession` actor per `/app` socket: one phone or browser of a
//! logged-in user. It watches the user's own vehicles (joining their
//! rooms), relays commands to their devices, and is a member of the
//! user's room (events and presence of all their vehicles).
//!
//! Another user's vehicle is `forbidden`, whether it exists or not.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::{Value, json};

use super::room::{self, Room, RoomKey};
use super::{DeviceNode, Hub, session_limiter};
use crate::db::queries::vehicles;
use crate::socketio::{
    ConnectResult, DisconnectReason, IncomingEvent, Namespace, Socket, SocketHandler,
};

/// The `/app` namespace: authenticates users by access token.
pub struct AppNamespace {
    pub hub: Arc<Hub>,
}

impl Namespace for AppNamespace {
    fn connect(&self, socket: Socket, auth: Value) -> Pin<Box<dyn Future<Output = ConnectResult>>> {
        let hub = self.hub.clone();
        Box::pin(async move {
            let token = auth.get("token").and_then(Value::as_str).unwrap_or("");
            let Some(user_id) = hub.jwt.verify(token) else {
                return Err(json!({"message": "unauthorized"}));
            };
            if !hub.acquire_app_session(user_id) {
                return Err(json!({"message": "too_many_sessions"}));
            }
            let user_room = match room::join(
                &hub.rooms,
                RoomKey::User(user_id),
                socket.conn_id(),
                socket.conn().clone(),
            )
            .await
            {
                Some(r) => r,
                None => {
                    hub.release_app_session(user_id);
                    return Err(json!({"message": "unavailable"}));
                }
            };
            let session = AppSession {
                hub,
                socket,
                user_id,
                user_room,
                watching: HashMap::new(),
                owned: HashSet::new(),
                limiter: None,
            }
            .start();
            Ok(Box::new(AppSocket { session }) as Box<dyn SocketHandler>)
        })
    }
}

struct AppSocket {
    session: Addr<AppSession>,
}

impl SocketHandler for AppSocket {
    fn on_event(&mut self, event: IncomingEvent) {
        self.session.do_send(AppEvent(event));
    }

    fn on_disconnect(&mut self, _reason: DisconnectReason) {
        self.session.do_send(Gone);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct AppEvent(IncomingEvent);

#[derive(Message)]
#[rtype(result = "()")]
struct Gone;

/// One phone or browser.
pub struct AppSession {
    hub: Arc<Hub>,
    socket: Socket,
    user_id: i64,
    user_room: Addr<Room>,
    watching: HashMap<i64, Addr<Room>>,
    /// Vehicles this user was found to own (checked once each).
    owned: HashSet<i64>,
    limiter: Option<governor::DefaultDirectRateLimiter>,
}

/// Most vehicles one session may watch at once.
const MAX_WATCHES: usize = 256;

fn vehicle_arg(event: &IncomingEvent) -> Option<i64> {
    event
        .args
        .first()?
        .get("vehicle")?
        .as_i64()
        .filter(|v| *v > 0)
}

impl AppSession {
    fn ack(&self, id: Option<u64>, value: &Value) {
        if let Some(id) = id {
            self.socket.ack(id, value);
        }
    }

    fn ack_error(&self, id: Option<u64>, code: &str) {
        self.ack(id, &json!({"ok": false, "error": code}));
    }

    /// Does the user own `vehicle`? Checked in the database once, then
    /// remembered for the session.
    fn check_owner(&self, vehicle: i64) -> impl Future<Output = bool> + 'static {
        let known = self.owned.contains(&vehicle);
        let db = self.hub.db.clone();
        let user = self.user_id;
        async move {
            if known {
                return true;
            }
            db.run(move |conn| vehicles::find_owned(conn, user, vehicle))
                .await
                .ok()
                .flatten()
                .is_some()
        }
    }

    fn on_event(&mut self, event: IncomingEvent, ctx: &mut Context<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.hub.stats.app_messages.fetch_add(1, Relaxed);
        if let Some(limiter) = &self.limiter
            && limiter.check().is_err()
        {
            self.hub.stats.rate_limited.fetch_add(1, Relaxed);
            return self.ack_error(event.ack, "rate_limited");
        }
        match event.name.as_str() {
            "watch" => self.on_watch(&event, ctx),
            "unwatch" => self.on_unwatch(&event),
            "command" => self.on_command(&event, ctx),
            _ => self.ack_error(event.ack, "unknown_event"),
        }
    }

    /// `watch {vehicle}`: join the vehicle's room (own vehicles only) and
    /// answer with its presence and newest point.
    fn on_watch(&mut self, event: &IncomingEvent, ctx: &mut Context<Self>) {
        let ack = event.ack;
        let Some(vehicle) = vehicle_arg(event) else {
            return self.ack_error(ack, "invalid_payload");
        };
        if self.watching.contains_key(&vehicle) {
            let hub = self.hub.clone();
            ctx.spawn(
                async move { watch_answer(&hub, vehicle).await }
                    .into_actor(self)
                    .map(move |answer, act, _ctx| act.ack(ack, &answer)),
            );
            return;
        }
        if self.watching.len() >= MAX_WATCHES {
            return self.ack_error(ack, "too_many_watches");
        }
        let owner = self.check_owner(vehicle);
        let rooms = self.hub.rooms.clone();
        let member = self.socket.conn_id();
        let conn = self.socket.conn().clone();
        let hub = self.hub.clone();
        ctx.spawn(
            async move {
                if !owner.await {
                    return Err("forbidden");
                }
                let room = room::join(&rooms, RoomKey::Vehicle(vehicle), member, conn)
                    .await
                    .ok_or("unavailable")?;
                Ok((room, watch_answer(&hub, vehicle).await))
            }
            .into_actor(self)
            .map(move |result, act, _ctx| match result {
                Ok((room, answer)) => {
                    act.owned.insert(vehicle);
                    act.watching.insert(vehicle, room);
                    act.ack(ack, &answer);
                }
                Err(code) => act.ack_error(ack, code),
            }),
        );
    }

    /// `unwatch {vehicle}`: leave the vehicle's room.
    fn on_unwatch(&mut self, event: &IncomingEvent) {
        let Some(vehicle) = vehicle_arg(event) else {
            return self.ack_error(event.ack, "invalid_payload");
        };
        if let Some(room) = self.watching.remove(&vehicle) {
            room::leave(&room, RoomKey::Vehicle(vehicle), self.socket.conn_id());
        }
        self.ack(event.ack, &json!({"ok": true}));
    }

    /// `command {vehicle, name, args}`: relay to the device wherever it is
    /// connected (own vehicles only) and answer with its ack.
    fn on_command(&mut self, event: &IncomingEvent, ctx: &mut Context<Self>) {
        let ack = event.ack;
        let arg = event.args.first().cloned().unwrap_or(Value::Null);
        let (Some(vehicle), Some(name)) = (
            vehicle_arg(event),
            arg.get("name").and_then(Value::as_str).map(str::to_owned),
        ) else {
            return self.ack_error(ack, "invalid_payload");
        };
        if name.is_empty() || name.len() > 64 {
            return self.ack_error(ack, "invalid_payload");
        }
        let args = arg.get("args").cloned().unwrap_or(Value::Null);
        if args.to_string().len() > 16 * 1024 {
            return self.ack_error(ack, "too_large");
        }
        let owner = self.check_owner(vehicle);
        let hub = self.hub.clone();
        let user_id = self.user_id;
        let received = std::time::Instant::now();
        ctx.spawn(
            async move {
                if !owner.await {
                    return json!({"ok": false, "error": "forbidden"});
                }
                let answer = relay_command(&hub, vehicle, user_id, name, args).await;
                if !matches!(answer["error"].as_str(), Some("timeout" | "offline")) {
                    hub.stats.command_round_trip.observe(received.elapsed());
                }
                answer
            }
            .into_actor(self)
            .map(move |answer, act, _ctx| act.ack(ack, &answer)),
        );
    }
}

/// A user's command to `vehicle`'s device, wherever it is (`live.start`
/// gets its publish URL filled in).
async fn relay_command(hub: &Hub, vehicle: i64, user_id: i64, name: String, args: Value) -> Value {
    let at = hub.device_node(vehicle).await;
    if !at.is_online() {
        return json!({"ok": false, "error": "offline"});
    }
    let args = if name == "live.start" {
        match live_start_args(hub, vehicle, args).await {
            Ok(args) => args,
            Err(code) => return json!({"ok": false, "error": code}),
        }
    } else {
        args
    };
    hub.command(at, vehicle, Some(user_id), name, args).await
}

/// The `watch` ack: `online` wherever the device is connected; `last`
/// the newest known point: this node's memory, or the database when
/// nothing is in memory or the device is on another node (whose points
/// reach this node's memory only through its own devices).
async fn watch_answer(hub: &Hub, vehicle: i64) -> Value {
    let at = hub.device_node(vehicle).await;
    let remote = matches!(at, DeviceNode::Remote { .. });
    if (remote || hub.presence.latest_location(vehicle).is_none())
        && let Ok(mut stored) = hub
            .db
            .run(move |c| vehicles::latest_locations(c, &[vehicle]))
            .await
        && let Some(l) = stored.remove(&vehicle)
    {
        hub.presence.set_location(vehicle, (&l).into());
    }
    json!({
        "ok": true,
        "online": at.is_online(),
        "last": hub.presence.latest_location(vehicle),
    })
}

impl Actor for AppSession {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.limiter = session_limiter(self.hub.config.limits.app_messages_per_second);
        tracing::debug!(
            user_id = self.user_id,
            conn = self.socket.conn_id(),
            "app session started"
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        let member = self.socket.conn_id();
        for (vehicle, room) in self.watching.drain() {
            room::leave(&room, RoomKey::Vehicle(vehicle), member);
        }
        room::leave(&self.user_room, RoomKey::User(self.user_id), member);
        self.hub.release_app_session(self.user_id);
    }
}

impl Handler<AppEvent> for AppSession {
    type Result = ();
    fn handle(&mut self, msg: AppEvent, ctx: &mut Self::Context) {
        self.on_event(msg.0, ctx);
    }
}

impl Handler<Gone> for AppSession {
    type Result = ();
    fn handle(&mut self, _: Gone, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// `live.start` from an app: the plan's live minutes are checked and the
/// hub fills in `url`, the RTMP publish URL with a publish token for this
/// stream only (the app never sees the device token). `channel` defaults
/// to `front`; other arguments pass through.
async fn live_start_args(hub: &Hub, vehicle: i64, args: Value) -> Result<Value, &'static str> {
    let mut args = match args {
        Value::Object(map) => map,
        Value::Null => serde_json::Map::new(),
        _ => return Err("invalid_payload"),
    };
    let channel = match args.get("channel") {
        None => "front".to_string(),
        Some(Value::String(c)) => c.clone(),
        Some(_) => return Err("invalid_payload"),
    };
    let live = hub.live().ok_or("unavailable")?;
    let url = live.publish_url(vehicle, channel.clone()).await?;
    args.insert("channel".into(), Value::String(channel));
    args.insert("url".into(), Value::String(url));
    Ok(Value::Object(args))
}
