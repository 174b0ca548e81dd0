//! Rooms: `vehicle:{id}` (live position, status, OBD of one vehicle) and
//! `user:{id}` (events and presence of all of a user's vehicles). A room
//! is an actor holding its members' connections; a published frame is
//! encoded once by the publisher and the same bytes go to every member.
//!
//! Delivery is per worker thread: a room knows, for each worker thread
//! that holds members, that worker's [`WorkerFanout`] actor, and shares
//! that list with its publishers ([`RoomHandle`]). A publisher delivers a
//! frame itself to the members on its own thread, and sends one message
//! to each other worker's fan-out actor, which delivers to its local
//! members. Delivery puts the frame straight into each connection's
//! outbound queue ([`Outlet`]), waking its writer only if it sleeps. A
//! frame so costs one cross-thread message per other worker, and no
//! message per recipient.
//!
//! Across nodes (`redis.url` set, see `docs/CLUSTER.md`): a publisher
//! also sends the encoded frame on the [`Bus`] under the room key, and a
//! room holds a bus [`Subscription`] exactly while it has members here; a
//! task of the room hands each frame from another node to the worker
//! fan-outs, the same path as a local publish. Without Redis there is no
//! bus at all and nothing of this runs.
//!
//! The [`RoomSupervisor`] creates rooms on demand and forgets them when
//! they stop: a room stops as soon as it has neither members nor
//! publishers (a connected device keeps its vehicle's room alive).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use actix::prelude::*;

use crate::bus::{Bus, Subscription};
use crate::socketio::Frame;
use crate::socketio::conn::{Conn, Deliver, Outlet, local_outlet};
use crate::socketio::frame::FrameClass;

/// Which room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKey {
    Vehicle(i64),
    User(i64),
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::Vehicle(id) => write!(f, "vehicle:{id}"),
            RoomKey::User(id) => write!(f, "user:{id}"),
        }
    }
}

/// Add a member (an `/app` connection) held by `worker`'s fan-out actor.
/// Use [`join`].
#[derive(Message)]
#[rtype(result = "Joined")]
pub struct Join {
    pub member: u64,
    pub worker: Addr<WorkerFanout>,
}

/// What a [`Join`] answers.
pub enum Joined {
    /// The room is stopping: ask the supervisor again.
    Refused,
    /// Joined; frames from every node reach the member.
    Ready,
    /// Joined; frames from other nodes reach the member once this turns
    /// true (the node's Redis subscription to the room is being made).
    Pending(tokio::sync::watch::Receiver<bool>),
}

/// How long [`join`] waits for the room's Redis subscription, so that a
/// `watch` answered is a `watch` receiving other nodes' frames.
const BUS_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub member: u64,
}

/// Keep the room alive while a publisher (a device session) is attached;
/// the room's shared worker list, none if the room is stopping.
#[derive(Message)]
#[rtype(result = "Option<(Workers, Option<Bus>)>")]
pub struct AttachPublisher;

/// The worker fan-outs holding a room's members, shared by the room (which
/// updates it) and its publishers (which read it per frame).
pub type Workers = Arc<RwLock<Vec<Addr<WorkerFanout>>>>;

/// A publisher's handle on a room: its address (membership, detach) and
/// its worker list (delivery without a hop through the room actor).
#[derive(Clone)]
pub struct RoomHandle {
    pub key: RoomKey,
    pub addr: Addr<Room>,
    workers: Workers,
    /// The cluster bus, none on a single node.
    bus: Option<Bus>,
    /// `key` as a bus topic.
    topic: Box<str>,
}

impl RoomHandle {
    /// Deliver `frame` to every member: those on this thread now, the
    /// others through their worker's fan-out actor. Frames published from
    /// one thread reach each member in order.
    pub fn publish(&self, frame: Frame) {
        if let Some(bus) = &self.bus {
            bus_publish(bus, &self.topic, &frame);
        }
        let local = LOCAL_FANOUT.with(|cell| cell.borrow().clone());
        let Ok(workers) = self.workers.read() else {
            return;
        };
        for worker in workers.iter() {
            if local.as_ref() == Some(worker) {
                deliver_local(self.key, &frame);
            } else {
                worker.do_send(LocalPublish {
                    key: self.key,
                    frame: frame.clone(),
                });
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachPublisher;

/// Send `frame` to the other nodes' members of `topic`. Room frames are
/// text only; a frame with binary attachments stays on this node.
fn bus_publish(bus: &Bus, topic: &str, frame: &Frame) {
    debug_assert!(frame.binary.is_empty(), "room frames are text only");
    if frame.binary.is_empty() {
        bus.publish(topic, bytes::Bytes::from(frame.text.clone()));
    }
}

/// Deliver a frame to every member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Frame);

/// One room.
pub struct Room {
    key: RoomKey,
    /// Member → the worker fan-out holding its connection.
    members: HashMap<u64, Addr<WorkerFanout>>,
    /// Worker fan-outs with members here, and how many each holds.
    workers: Vec<(Addr<WorkerFanout>, usize)>,
    /// `workers` without the counts, for publishers.
    shared: Workers,
    publishers: usize,
    supervisor: Addr<RoomSupervisor>,
    stopping: bool,
    /// The cluster bus, none on a single node.
    bus: Option<Bus>,
    /// The task relaying the bus subscription while there are members.
    relay: Option<SpawnHandle>,
    /// Whether that subscription is in place in Redis.
    bus_ready: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Room {
    fn stop_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.members.is_empty() && self.publishers == 0 && !self.stopping {
            self.stopping = true;
            self.supervisor.do_send(RoomStopped {
                key: self.key,
                room: ctx.address(),
            });
            ctx.stop();
        }
    }
}

impl Room {
    /// Hold a bus subscription exactly while the room has members here.
    fn sync_relay(&mut self, ctx: &mut Context<Self>) {
        let Some(bus) = &self.bus else {
            return;
        };
        match (self.members.is_empty(), self.relay) {
            (false, None) => {
                let sub = bus.subscribe(&self.key.to_string());
                self.bus_ready = Some(sub.ready());
                let own = bytes::Bytes::copy_from_slice(bus.node_id().as_bytes());
                let fut = relay(self.key, sub, own, self.shared.clone());
                self.relay = Some(ctx.spawn(fut.into_actor(self)));
            }
            (true, Some(handle)) => {
                ctx.cancel_future(handle);
                self.relay = None;
                self.bus_ready = None;
            }
            _ => {}
        }
    }

    fn forget_worker(&mut self, worker: &Addr<WorkerFanout>) {
        if let Some(i) = self.workers.iter().position(|(w, _)| w == worker) {
            self.workers[i].1 -= 1;
            if self.workers[i].1 == 0 {
                self.workers.swap_remove(i);
                self.share_workers();
            }
        }
    }

    fn share_workers(&self) {
        if let Ok(mut shared) = self.shared.write() {
            *shared = self.workers.iter().map(|(w, _)| w.clone()).collect();
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Join> for Room {
    type Result = MessageResult<Join>;
    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return MessageResult(Joined::Refused);
        }
        if let Some(old) = self.members.insert(msg.member, msg.worker.clone()) {
            self.forget_worker(&old);
        }
        match self.workers.iter_mut().find(|(w, _)| *w == msg.worker) {
            Some((_, n)) => *n += 1,
            None => {
                self.workers.push((msg.worker, 1));
                self.share_workers();
            }
        }
        self.sync_relay(ctx);
        // While Redis is down there is nothing to wait for.
        let up = self
            .bus
            .as_ref()
            .is_some_and(|b| b.status() != crate::bus::BusStatus::Disconnected);
        MessageResult(match &self.bus_ready {
            Some(ready) if up && !*ready.borrow() => Joined::Pending(ready.clone()),
            _ => Joined::Ready,
        })
    }
}

impl Handler<Leave> for Room {
    type Result = ();
    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        if let Some(worker) = self.members.remove(&msg.member) {
            self.forget_worker(&worker);
        }
        self.sync_relay(ctx);
        self.stop_if_idle(ctx);
    }
}

impl Handler<AttachPublisher> for Room {
    type Result = Option<(Workers, Option<Bus>)>;
    fn handle(&mut self, _: AttachPublisher, _ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return None;
        }
        self.publishers += 1;
        Some((self.shared.clone(), self.bus.clone()))
    }
}

impl Handler<DetachPublisher> for Room {
    type Result = ();
    fn handle(&mut self, _: DetachPublisher, ctx: &mut Self::Context) {
        self.publishers = self.publishers.saturating_sub(1);
        self.stop_if_idle(ctx);
    }
}

impl Handler<Publish> for Room {
    type Result = ();
    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) {
        if let Some(bus) = &self.bus {
            bus_publish(bus, &self.key.to_string(), &msg.0);
        }
        for (worker, _) in &self.workers {
            worker.do_send(LocalPublish {
                key: self.key,
                frame: msg.0.clone(),
            });
        }
    }
}

/// Get (or create) the room for a key.
#[derive(Message)]
#[rtype(result = "Addr<Room>")]
pub struct GetRoom(pub RoomKey);

#[derive(Message)]
#[rtype(result = "()")]
struct RoomStopped {
    key: RoomKey,
    room: Addr<Room>,
}

/// Creates rooms on demand, forgets stopped ones.
#[derive(Default)]
pub struct RoomSupervisor {
    rooms: HashMap<RoomKey, Addr<Room>>,
    /// The cluster bus (`redis.url` set), none on a single node.
    bus: Option<Bus>,
}

impl RoomSupervisor {
    /// A supervisor whose rooms reach the other nodes through `bus`.
    pub fn with_bus(bus: Option<Bus>) -> Self {
        Self {
            rooms: HashMap::new(),
            bus,
        }
    }
}

/// Relay `sub` (another node's frames for `key`) to the worker fan-outs
/// holding the room's members; frames this node published are skipped
/// (its members had them already).
async fn relay(key: RoomKey, mut sub: Subscription, own: bytes::Bytes, workers: Workers) {
    while let Some(msg) = sub.recv().await {
        if msg.origin == own {
            continue;
        }
        let frame = remote_frame(key, msg.frame);
        let Ok(workers) = workers.read() else {
            return;
        };
        for worker in workers.iter() {
            worker.do_send(LocalPublish {
                key,
                frame: frame.clone(),
            });
        }
    }
}

/// A frame from the bus, with the queue class the publisher gave it: a
/// vehicle's `loc` coalesces under the vehicle id (see `device.rs`).
fn remote_frame(key: RoomKey, bytes: bytes::Bytes) -> Frame {
    const LOC: &[u8] = b"42/app,[\"loc\",";
    let frame = Frame::engine_text(bytes);
    match key {
        RoomKey::Vehicle(id) if frame.text.as_str().as_bytes().starts_with(LOC) => Frame {
            class: FrameClass::Coalesce(id as u64),
            ..frame
        },
        _ => frame,
    }
}

impl Actor for RoomSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<GetRoom> for RoomSupervisor {
    type Result = MessageResult<GetRoom>;
    fn handle(&mut self, msg: GetRoom, ctx: &mut Self::Context) -> Self::Result {
        if let Some(room) = self.rooms.get(&msg.0)
            && room.connected()
        {
            return MessageResult(room.clone());
        }
        let room = Room {
            key: msg.0,
            members: HashMap::new(),
            workers: Vec::new(),
            shared: Workers::default(),
            publishers: 0,
            supervisor: ctx.address(),
            stopping: false,
            bus: self.bus.clone(),
            relay: None,
            bus_ready: None,
        }
        .start();
        self.rooms.insert(msg.0, room.clone());
        MessageResult(room)
    }
}

impl Handler<RoomStopped> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: RoomStopped, _ctx: &mut Self::Context) {
        if self.rooms.get(&msg.key) == Some(&msg.room) {
            self.rooms.remove(&msg.key);
        }
    }
}

/// Join `key`'s room with `conn`, retrying if the room stopped in between.
/// Must run on the connection's worker thread (its actors do). Returns
/// the room joined.
pub async fn join(
    supervisor: &Addr<RoomSupervisor>,
    key: RoomKey,
    member: u64,
    conn: Addr<Conn>,
) -> Option<Addr<Room>> {
    let worker = WorkerFanout::local();
    let target = match local_outlet(member) {
        Some(outlet) => Member::Outlet(outlet),
        None => Member::Conn(conn),
    };
    local_join(key, member, target);
    for _ in 0..8 {
        let Ok(room) = supervisor.send(GetRoom(key)).await else {
            break;
        };
        match room
            .send(Join {
                member,
                worker: worker.clone(),
            })
            .await
        {
            Ok(Joined::Ready) => return Some(room),
            Ok(Joined::Pending(mut ready)) => {
                // Bounded: a slow Redis delays the answer, never blocks it.
                let _ = tokio::time::timeout(BUS_READY_WAIT, ready.wait_for(|r| *r)).await;
                return Some(room);
            }
            Ok(Joined::Refused) | Err(_) => {}
        }
    }
    local_leave(key, member);
    None
}

/// Leave `key`'s room (on the member's worker thread).
pub fn leave(room: &Addr<Room>, key: RoomKey, member: u64) {
    room.do_send(Leave { member });
    local_leave(key, member);
}

/// Attach a publisher to `key`'s room, retrying like [`join`].
pub async fn attach_publisher(
    supervisor: &Addr<RoomSupervisor>,
    key: RoomKey,
) -> Option<RoomHandle> {
    for _ in 0..8 {
        let room = supervisor.send(GetRoom(key)).await.ok()?;
        if let Ok(Some((workers, bus))) = room.send(AttachPublisher).await {
            return Some(RoomHandle {
                key,
                addr: room,
                workers,
                bus,
                topic: key.to_string().into(),
            });
        }
    }
    None
}

/// A member as its worker thread reaches it.
enum Member {
    /// Its connection's outlet (the usual case: the member joined on its
    /// connection's thread).
    Outlet(Rc<Outlet>),
    /// Its connection actor's mailbox.
    Conn(Addr<Conn>),
}

impl Member {
    /// False if the connection is gone.
    fn deliver(&self, frame: &Frame) -> bool {
        match self {
            Member::Outlet(outlet) => outlet.deliver(frame.clone()),
            Member::Conn(conn) => {
                if conn.connected() {
                    conn.do_send(Deliver(frame.clone()));
                    true
                } else {
                    false
                }
            }
        }
    }
}

thread_local! {
    /// The members of every room whose connection lives on this thread.
    static LOCAL_MEMBERS: RefCell<HashMap<RoomKey, HashMap<u64, Member>>> =
        RefCell::new(HashMap::new());
}

fn local_join(key: RoomKey, member: u64, target: Member) {
    LOCAL_MEMBERS.with(|rooms| {
        rooms
            .borrow_mut()
            .entry(key)
            .or_default()
            .insert(member, target);
    });
}

fn local_leave(key: RoomKey, member: u64) {
    LOCAL_MEMBERS.with(|rooms| {
        let mut rooms = rooms.borrow_mut();
        if let Some(members) = rooms.get_mut(&key) {
            members.remove(&member);
            if members.is_empty() {
                rooms.remove(&key);
            }
        }
    });
}

/// Deliver `frame` to `key`'s members on this thread; members whose
/// connection is gone are dropped on the way.
fn deliver_local(key: RoomKey, frame: &Frame) {
    LOCAL_MEMBERS.with(|rooms| {
        if let Some(members) = rooms.borrow_mut().get_mut(&key) {
            members.retain(|_, member| member.deliver(frame));
        }
    });
}

#[derive(Message)]
#[rtype(result = "()")]
struct LocalPublish {
    key: RoomKey,
    frame: Frame,
}

/// One per worker thread: receives frames published on other threads
/// for the members on its own thread.
#[derive(Default)]
pub struct WorkerFanout;

thread_local! {
    static LOCAL_FANOUT: RefCell<Option<Addr<WorkerFanout>>> = const { RefCell::new(None) };
}

impl WorkerFanout {
    /// This thread's fan-out actor (started on first use). Call inside an
    /// actix arbiter.
    pub fn local() -> Addr<WorkerFanout> {
        LOCAL_FANOUT.with(|cell| {
            let mut cell = cell.borrow_mut();
            match &*cell {
                Some(addr) if addr.connected() => addr.clone(),
                _ => {
                    let addr = WorkerFanout.start();
                    *cell = Some(addr.clone());
                    addr
                }
            }
        })
    }
}

impl Actor for WorkerFanout {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<LocalPublish> for WorkerFanout {
    type Result = ();
    fn handle(&mut self, msg: LocalPublish, _ctx: &mut Self::Context) {
        deliver_local(msg.key, &msg.frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_loc_frame_coalesces_like_a_local_one() {
        let loc = Frame::event("/app", "loc", b"{}");
        let remote = remote_frame(RoomKey::Vehicle(7), bytes::Bytes::from(loc.text));
        assert_eq!(remote.class, FrameClass::Coalesce(7));
        let status = Frame::event("/app", "status", b"{}");
        let remote = remote_frame(RoomKey::Vehicle(7), bytes::Bytes::from(status.text));
        assert_eq!(remote.class, FrameClass::Keep);
        let loc = Frame::event("/app", "loc", b"{}");
        let remote = remote_frame(RoomKey::User(7), bytes::Bytes::from(loc.text));
        assert_eq!(remote.class, FrameClass::Keep);
    }
}
