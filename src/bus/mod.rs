//! The bus: joins the rooms of many nodes.
//!
//! A room publishes an already-encoded wire frame (`bytes::Bytes`, see
//! `socketio::frame`) on a topic named after its room key
//! (`vehicle:{id}`, `user:{id}`); every node with local members of that room
//! subscribes to the topic and hands each frame to its own members. Frames
//! are encoded once on the publishing node and never re-encoded on the way.
//!
//! Two transports, one API ([`Bus`]):
//!
//! - [`LocalBus`] (single node, `redis.url` unset): in-process, a publish
//!   reaches this node's subscribers and nothing else.
//! - [`RedisBus`] (many nodes): Redis **sharded** pub/sub (`SSUBSCRIBE` /
//!   `SPUBLISH`, Redis >= 7), so the same code runs against one Redis and
//!   against a Redis Cluster, where a sharded channel lives on the master that
//!   owns its hash slot (the pattern Centrifugo's Redis broker uses). A publish
//!   is delivered to this node's subscribers at once, whatever the state of
//!   Redis, and sent to Redis when connected; a message coming back from
//!   Redis whose origin is this node is dropped, so no subscriber sees a
//!   message twice.
//!
//! Subscriptions are reference-counted per topic: the first local
//! [`Subscription`] of a topic subscribes the node in Redis, dropping the last
//! one unsubscribes it, so Redis only sends a node the topics it has members
//! for.
//!
//! ## Envelope
//!
//! What crosses Redis is one binary envelope per message:
//!
//! ```text
//! [1 byte: origin length N (1..=255)][N bytes: origin node id, UTF-8][frame bytes]
//! ```
//!
//! The frame is the room's encoded wire frame, unchanged. Decoding is
//! zero-copy: origin and frame are slices of the payload Redis delivered.

mod local;
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{Notify, broadcast, watch};

pub use local::LocalBus;
pub use redis::{RedisBus, RedisTarget};

/// How many messages a subscription may fall behind before it loses the
/// oldest ones (counted in [`Subscription::lagged`]).
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

/// The bus of this node: in-process, or Redis.
///
/// An enum rather than a trait object: there are exactly two transports,
/// both known here, and an enum keeps `subscribe` a plain method with static
/// dispatch (no boxed futures, no `async-trait`).
#[derive(Clone)]
pub enum Bus {
    Local(LocalBus),
    Redis(RedisBus),
}

/// One message delivered by the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    /// Id of the node that published it (UTF-8 bytes of its `node.id`).
    pub origin: Bytes,
    /// The encoded wire frame, as published.
    pub frame: Bytes,
}

/// What `/readyz` reports about the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusStatus {
    /// In-process bus: always up.
    Local,
    /// Connected to Redis (subscriptions are being restored or are in place).
    Connected,
    /// Redis unreachable: local delivery only, retrying with backoff.
    Disconnected,
}

impl Bus {
    /// Publishes `frame` on `topic`: delivered to this node's subscribers at
    /// once and, on Redis, to every other node subscribed to the topic.
    /// Fire-and-forget: never waits for Redis.
    pub fn publish(&self, topic: &str, frame: Bytes) {
        match self {
            Bus::Local(b) => b.publish(topic, frame),
            Bus::Redis(b) => b.publish(topic, frame),
        }
    }

    /// Subscribes to `topic`; the handle unsubscribes when dropped.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        match self {
            Bus::Local(b) => b.subscribe(topic),
            Bus::Redis(b) => b.subscribe(topic),
        }
    }

    pub fn status(&self) -> BusStatus {
        match self {
            Bus::Local(_) => BusStatus::Local,
            Bus::Redis(b) => b.status(),
        }
    }

    /// Room frames not sent to Redis because its publish queue was full
    /// (0 on the local bus).
    pub fn dropped(&self) -> u64 {
        match self {
            Bus::Local(_) => 0,
            Bus::Redis(b) => b.dropped(),
        }
    }

    /// Messages local subscribers lost by falling behind, all topics.
    pub fn lagged(&self) -> u64 {
        match self {
            Bus::Local(b) => b.registry().lagged(),
            Bus::Redis(b) => b.registry().lagged(),
        }
    }

    /// The node id messages published here carry.
    pub fn node_id(&self) -> &str {
        match self {
            Bus::Local(b) => b.node_id(),
            Bus::Redis(b) => b.node_id(),
        }
    }
}

/// Errors building a bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("node id must be 1 to 255 bytes long for the bus envelope, got {0}")]
    NodeId(usize),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

pub(crate) fn check_node_id(id: &str) -> Result<(), BusError> {
    if id.is_empty() || id.len() > 255 {
        return Err(BusError::NodeId(id.len()));
    }
    Ok(())
}

/// Builds the Redis envelope of a message (see the module docs).
pub fn encode_envelope(origin: &str, frame: &[u8]) -> Bytes {
    debug_assert!(!origin.is_empty() && origin.len() <= 255);
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut b = BytesMut::with_capacity(1 + origin.len() + frame.len());
    b.put_u8(origin.len() as u8);
    b.put_slice(origin);
    b.put_slice(frame);
    b.freeze()
}

/// Splits an envelope into (origin, frame) without copying; `None` when it
/// is malformed.
pub fn decode_envelope(payload: Bytes) -> Option<BusMessage> {
    let n = usize::from(*payload.first()?);
    if n == 0 || payload.len() < 1 + n {
        return None;
    }
    Some(BusMessage {
        origin: payload.slice(1..1 + n),
        frame: payload.slice(1 + n..),
    })
}

/// A node's local subscribers, per topic. Shared by both transports.
pub(crate) struct Registry {
    topics: Mutex<HashMap<Box<str>, Topic>>,
    /// Woken when a topic gains its first or loses its last subscriber.
    changed: Option<Arc<Notify>>,
    /// Messages lost by subscribers that fell behind, all topics.
    lagged: std::sync::atomic::AtomicU64,
}

struct Topic {
    tx: broadcast::Sender<BusMessage>,
    refs: usize,
    /// True once the node receives the topic's messages from other nodes
    /// (its `SSUBSCRIBE` answered; at once on the local bus).
    ready: watch::Sender<bool>,
}

impl Registry {
    pub(crate) fn new(changed: Option<Arc<Notify>>) -> Arc<Self> {
        Arc::new(Self {
            topics: Mutex::new(HashMap::new()),
            changed,
            lagged: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Topic>> {
        // A panic while holding this lock leaves the map consistent.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn subscribe(self: &Arc<Self>, topic: &str) -> Subscription {
        let (rx, ready, first) = {
            let mut topics = self.lock();
            match topics.get_mut(topic) {
                Some(t) => {
                    t.refs += 1;
                    (t.tx.subscribe(), t.ready.subscribe(), false)
                }
                None => {
                    let (tx, rx) = broadcast::channel(SUBSCRIPTION_CAPACITY);
                    // In-process only: nothing to wait for.
                    let (ready, ready_rx) = watch::channel(self.changed.is_none());
                    topics.insert(topic.into(), Topic { tx, refs: 1, ready });
                    (rx, ready_rx, true)
                }
            }
        };
        if first && let Some(n) = &self.changed {
            n.notify_one();
        }
        Subscription {
            topic: topic.into(),
            rx,
            ready,
            registry: Arc::clone(self),
            lagged: 0,
        }
    }

    /// Marks `topics` (those still with local subscribers) as received from
    /// other nodes: their subscription is in place in Redis.
    pub(crate) fn mark_ready<'a>(&self, topics: impl IntoIterator<Item = &'a Box<str>>) {
        let map = self.lock();
        for topic in topics {
            if let Some(t) = map.get(topic) {
                t.ready.send_if_modified(|r| !std::mem::replace(r, true));
            }
        }
    }

    /// Hands a message to this node's subscribers of `topic`, if any.
    pub(crate) fn deliver(&self, topic: &str, msg: BusMessage) {
        if let Some(t) = self.lock().get(topic) {
            let _ = t.tx.send(msg);
        }
    }

    pub(crate) fn lagged(&self) -> u64 {
        self.lagged.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Topics with at least one local subscriber.
    pub(crate) fn topics(&self) -> Vec<Box<str>> {
        self.lock().keys().cloned().collect()
    }

    fn release(&self, topic: &str) {
        let last = {
            let mut topics = self.lock();
            match topics.get_mut(topic) {
                Some(t) if t.refs > 1 => {
                    t.refs -= 1;
                    false
                }
                Some(_) => {
                    topics.remove(topic);
                    true
                }
                None => false,
            }
        };
        if last && let Some(n) = &self.changed {
            n.notify_one();
        }
    }
}

/// One local subscriber of a topic. Dropping it unsubscribes; dropping the
/// node's last subscriber of a topic unsubscribes the node in Redis.
pub struct Subscription {
    topic: Box<str>,
    rx: broadcast::Receiver<BusMessage>,
    ready: watch::Receiver<bool>,
    registry: Arc<Registry>,
    lagged: u64,
}

impl Subscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next message; a subscriber that fell more than
    /// [`SUBSCRIPTION_CAPACITY`] behind loses the oldest ones and goes on.
    /// `None` only if the bus is gone.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        loop {
            match self.rx.recv().await {
                Ok(m) => return Some(m),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.lagged += n;
                    self.registry
                        .lagged
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Becomes true once this node receives the topic's messages published
    /// on other nodes (its Redis subscription answered); true at once on the
    /// local bus. Before that, other nodes' messages may be missed.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// Messages this subscriber lost by falling behind.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.registry.release(&self.topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let env = encode_envelope("node-a", b"42[\"x\"]");
        assert_eq!(&env[..7], b"\x06node-a");
        let m = decode_envelope(env).unwrap_or_else(|| panic!("decodes"));
        assert_eq!(&m.origin[..], b"node-a");
        assert_eq!(&m.frame[..], b"42[\"x\"]");
        assert_eq!(decode_envelope(Bytes::new()), None);
        assert_eq!(decode_envelope(Bytes::from_static(b"\x00abc")), None);
        assert_eq!(decode_envelope(Bytes::from_static(b"\x09abc")), None);
        let empty = decode_envelope(Bytes::from_static(b"\x01a"));
        assert_eq!(empty.map(|m| m.frame.len()), Some(0));
    }
}
