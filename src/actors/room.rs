//! Rooms: `vehicle:{id}` (live position, status, OBD of one vehicle) and
//! `user:{id}` (events and presence of all of a user's vehicles). A room
//! is an actor holding its members' connections; a published frame is
//! encoded once by the publisher and the same bytes go to every member.
//!
//! Delivery is per worker thread: a room knows, for each worker thread
//! that holds members, that worker's [`WorkerFanout`] actor, and sends it
//! one message per published frame; the fan-out actor hands the frame to
//! its local connections on the same thread. A frame so costs one
//! cross-thread message per worker, not one per recipient.
//!
//! The [`RoomSupervisor`] creates rooms on demand and forgets them when
//! they stop: a room stops as soon as it has neither members nor
//! publishers (a connected device keeps its vehicle's room alive).

use std::collections::HashMap;
use std::fmt;

use actix::prelude::*;

use crate::socketio::Frame;
use crate::socketio::conn::{Conn, Deliver};

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

/// Add a member (an `/app` connection) held by `worker`'s fan-out actor;
/// false if the room is stopping. Use [`join`].
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Join {
    pub member: u64,
    pub worker: Addr<WorkerFanout>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub member: u64,
}

/// Keep the room alive while a publisher (a device session) is attached;
/// false if the room is stopping.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct AttachPublisher;

#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachPublisher;

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
    publishers: usize,
    supervisor: Addr<RoomSupervisor>,
    stopping: bool,
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
    fn forget_worker(&mut self, worker: &Addr<WorkerFanout>) {
        if let Some(i) = self.workers.iter().position(|(w, _)| w == worker) {
            self.workers[i].1 -= 1;
            if self.workers[i].1 == 0 {
                self.workers.swap_remove(i);
            }
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
    type Result = bool;
    fn handle(&mut self, msg: Join, _ctx: &mut Self::Context) -> bool {
        if self.stopping {
            return false;
        }
        if let Some(old) = self.members.insert(msg.member, msg.worker.clone()) {
            self.forget_worker(&old);
        }
        match self.workers.iter_mut().find(|(w, _)| *w == msg.worker) {
            Some((_, n)) => *n += 1,
            None => self.workers.push((msg.worker, 1)),
        }
        true
    }
}

impl Handler<Leave> for Room {
    type Result = ();
    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        if let Some(worker) = self.members.remove(&msg.member) {
            self.forget_worker(&worker);
        }
        self.stop_if_idle(ctx);
    }
}

impl Handler<AttachPublisher> for Room {
    type Result = bool;
    fn handle(&mut self, _: AttachPublisher, _ctx: &mut Self::Context) -> bool {
        if self.stopping {
            return false;
        }
        self.publishers += 1;
        true
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
            publishers: 0,
            supervisor: ctx.address(),
            stopping: false,
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
    worker.do_send(LocalJoin { key, member, conn });
    for _ in 0..8 {
        let Ok(room) = supervisor.send(GetRoom(key)).await else {
            break;
        };
        if let Ok(true) = room
            .send(Join {
                member,
                worker: worker.clone(),
            })
            .await
        {
            return Some(room);
        }
    }
    worker.do_send(LocalLeave { key, member });
    None
}

/// Leave `key`'s room (on the member's worker thread).
pub fn leave(room: &Addr<Room>, key: RoomKey, member: u64) {
    room.do_send(Leave { member });
    WorkerFanout::local().do_send(LocalLeave { key, member });
}

/// Attach a publisher to `key`'s room, retrying like [`join`].
pub async fn attach_publisher(
    supervisor: &Addr<RoomSupervisor>,
    key: RoomKey,
) -> Option<Addr<Room>> {
    for _ in 0..8 {
        let room = supervisor.send(GetRoom(key)).await.ok()?;
        if let Ok(true) = room.send(AttachPublisher).await {
            return Some(room);
        }
    }
    None
}

#[derive(Message)]
#[rtype(result = "()")]
struct LocalJoin {
    key: RoomKey,
    member: u64,
    conn: Addr<Conn>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct LocalLeave {
    key: RoomKey,
    member: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
struct LocalPublish {
    key: RoomKey,
    frame: Frame,
}

/// One per worker thread: the members of every room whose connection
/// lives on this thread. A published frame reaches it once and goes to
/// each local connection without crossing threads.
#[derive(Default)]
pub struct WorkerFanout {
    rooms: HashMap<RoomKey, HashMap<u64, Addr<Conn>>>,
}

thread_local! {
    static LOCAL_FANOUT: std::cell::RefCell<Option<Addr<WorkerFanout>>> = const { std::cell::RefCell::new(None) };
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
                    let addr = WorkerFanout::default().start();
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

impl Handler<LocalJoin> for WorkerFanout {
    type Result = ();
    fn handle(&mut self, msg: LocalJoin, _ctx: &mut Self::Context) {
        self.rooms
            .entry(msg.key)
            .or_default()
            .insert(msg.member, msg.conn);
    }
}

impl Handler<LocalLeave> for WorkerFanout {
    type Result = ();
    fn handle(&mut self, msg: LocalLeave, _ctx: &mut Self::Context) {
        if let Some(members) = self.rooms.get_mut(&msg.key) {
            members.remove(&msg.member);
            if members.is_empty() {
                self.rooms.remove(&msg.key);
            }
        }
    }
}

impl Handler<LocalPublish> for WorkerFanout {
    type Result = ();
    fn handle(&mut self, msg: LocalPublish, _ctx: &mut Self::Context) {
        if let Some(members) = self.rooms.get_mut(&msg.key) {
            // Members whose connection is gone are dropped on the way.
            members.retain(|_, conn| {
                if conn.connected() {
                    conn.do_send(Deliver(msg.frame.clone()));
                    true
                } else {
                    false
                }
            });
        }
    }
}
