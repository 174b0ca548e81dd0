//! Redis transport of the bus: sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`,
//! `SUNSUBSCRIBE`; Redis >= 7) over RESP3, on one Redis or a Redis Cluster.
//!
//! One driver task per node owns the Redis connection. It
//!
//! - keeps the node's Redis subscriptions equal to the topics that have
//!   local subscribers (woken by the [`Registry`] on a topic's first and
//!   last subscriber, it diffs and sends `SSUBSCRIBE` / `SUNSUBSCRIBE`);
//! - sends publishes, batched: everything queued when it wakes goes out in
//!   one pipeline (single Redis) or one burst of concurrent requests over the
//!   multiplexed connections (cluster, where each channel's slot owner gets
//!   its own);
//! - receives `smessage` pushes, drops those whose origin is this node (they
//!   were delivered locally at publish time) and hands the rest to the local
//!   subscribers of the channel;
//! - on a lost connection (a `disconnection` push, or a failed command) marks
//!   the bus disconnected, reconnects with exponential backoff (100 ms to
//!   5 s) and subscribes again to every topic it needs.
//!
//! While disconnected, publishes are delivered locally only: they are not
//! queued for Redis (realtime frames are worth nothing late). The publish
//! queue is bounded ([`PUBLISH_QUEUE`]); when it is full the frame is not
//! sent to Redis and counted in [`RedisBus::dropped`].
//!
//! In a cluster, the redis crate's cluster connection sends `SSUBSCRIBE` for
//! a channel to the master that owns the channel's slot, and delivers the
//! pushes of all its node connections to one push sender (RESP3).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisResult, Value,
};
use bytes::Bytes;
use futures_util::future::try_join_all;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::{
    BusError, BusStatus, LocalBus, Registry, Subscription, check_node_id, decode_envelope,
    encode_envelope,
};

/// Publishes waiting for the driver before new ones are dropped.
pub const PUBLISH_QUEUE: usize = 8192;
/// Most publishes sent in one batch.
const MAX_BATCH: usize = 512;
/// Most subscription commands in flight at once when restoring.
const SUBSCRIBE_CHUNK: usize = 256;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is.
#[derive(Clone, Debug)]
pub enum RedisTarget {
    /// One Redis server, `redis://HOST:PORT`.
    Single(String),
    /// Seed nodes of a Redis Cluster (`redis://HOST:PORT` each).
    Cluster(Vec<String>),
}

/// The bus over Redis. Cheap to clone; the driver task ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    local: LocalBus,
    node_id: Box<str>,
    queue: mpsc::Sender<(Box<str>, Bytes)>,
    connected: Arc<AtomicBool>,
    dropped: AtomicU64,
}

impl RedisBus {
    /// Starts the driver task (on the current tokio runtime) and returns at
    /// once: the bus is usable before Redis answers.
    pub fn new(node_id: &str, target: RedisTarget) -> Result<Self, BusError> {
        check_node_id(node_id)?;
        let origin = Bytes::copy_from_slice(node_id.as_bytes());
        let changed = Arc::new(Notify::new());
        let registry = Registry::new(Some(Arc::clone(&changed)));
        let (queue, queue_rx) = mpsc::channel(PUBLISH_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        let driver = Driver {
            target,
            origin: origin.clone(),
            registry: Arc::clone(&registry),
            changed,
            queue: queue_rx,
            connected: Arc::clone(&connected),
        };
        tokio::spawn(driver.run());
        Ok(Self {
            inner: Arc::new(Inner {
                local: LocalBus::with_registry(origin, registry),
                node_id: node_id.into(),
                queue,
                connected,
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// Delivers to this node's subscribers now, and queues for Redis when
    /// connected.
    pub fn publish(&self, topic: &str, frame: Bytes) {
        let inner = &self.inner;
        if inner.connected.load(Ordering::Relaxed) {
            let envelope = encode_envelope(&inner.node_id, &frame);
            if inner.queue.try_send((topic.into(), envelope)).is_err() {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        inner.local.publish(topic, frame);
    }

    pub fn subscribe(&self, topic: &str) -> Subscription {
        self.inner.local.subscribe(topic)
    }

    pub fn status(&self) -> BusStatus {
        if self.inner.connected.load(Ordering::Relaxed) {
            BusStatus::Connected
        } else {
            BusStatus::Disconnected
        }
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Publishes not sent to Redis because the queue was full.
    pub(crate) fn registry(&self) -> &super::Registry {
        self.inner.local.registry()
    }

    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// Why a connected session ended.
enum End {
    /// Every `RedisBus` handle is gone.
    Closed,
    Lost(String),
}

struct Driver {
    target: RedisTarget,
    origin: Bytes,
    registry: Arc<Registry>,
    changed: Arc<Notify>,
    queue: mpsc::Receiver<(Box<str>, Bytes)>,
    connected: Arc<AtomicBool>,
}

impl Driver {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let (push_tx, push_rx) = mpsc::unbounded_channel();
            match Conn::connect(&self.target, push_tx).await {
                Ok(conn) => {
                    tracing::info!(target = ?self.target, "bus: connected to Redis");
                    backoff = MIN_BACKOFF;
                    let end = self.session(conn, push_rx).await;
                    self.connected.store(false, Ordering::Relaxed);
                    match end {
                        End::Closed => return,
                        End::Lost(why) => tracing::warn!(%why, "bus: lost Redis"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, target = ?self.target, "bus: cannot reach Redis")
                }
            }
            // Wait, throwing away what was queued before the loss.
            let until = Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    m = self.queue.recv() => if m.is_none() { return },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn session(
        &mut self,
        mut conn: Conn,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    ) -> End {
        let mut subscribed = HashSet::new();
        if let Err(e) = self.reconcile(&mut conn, &mut subscribed).await {
            return End::Lost(e.to_string());
        }
        self.connected.store(true, Ordering::Relaxed);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    None => return End::Lost("push channel closed".into()),
                    Some(p) if p.kind == PushKind::Disconnection => {
                        return End::Lost("disconnected".into());
                    }
                    Some(p) => self.on_push(p),
                },
                () = self.changed.notified() => {
                    if let Err(e) = self.reconcile(&mut conn, &mut subscribed).await {
                        return End::Lost(e.to_string());
                    }
                }
                n = self.queue.recv_many(&mut batch, MAX_BATCH) => {
                    if n == 0 {
                        return End::Closed;
                    }
                    let sent = conn.publish(&batch).await;
                    batch.clear();
                    if let Err(e) = sent {
                        return End::Lost(e.to_string());
                    }
                }
            }
        }
    }

    fn on_push(&self, p: PushInfo) {
        if p.kind != PushKind::SMessage {
            return;
        }
        let mut data = p.data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.next(), data.next())
        else {
            return;
        };
        let Ok(topic) = std::str::from_utf8(&channel) else {
            return;
        };
        match decode_envelope(Bytes::from(payload)) {
            // Ours: already delivered locally when published.
            Some(m) if m.origin == self.origin => {}
            Some(m) => self.registry.deliver(topic, m),
            None => tracing::debug!(topic, "bus: malformed envelope dropped"),
        }
    }

    /// Makes the Redis subscriptions of this connection match the topics
    /// with local subscribers.
    async fn reconcile(
        &self,
        conn: &mut Conn,
        subscribed: &mut HashSet<Box<str>>,
    ) -> RedisResult<()> {
        let want: HashSet<Box<str>> = self.registry.topics().into_iter().collect();
        let add: Vec<&Box<str>> = want.difference(subscribed).collect();
        for chunk in add.chunks(SUBSCRIBE_CHUNK) {
            try_join_all(chunk.iter().map(|t| conn.clone().ssubscribe(t))).await?;
        }
        let remove: Vec<&Box<str>> = subscribed.difference(&want).collect();
        for chunk in remove.chunks(SUBSCRIBE_CHUNK) {
            try_join_all(chunk.iter().map(|t| conn.clone().sunsubscribe(t))).await?;
        }
        // Every wanted topic is subscribed now (those added before and those
        // just added): their local subscribers receive other nodes' messages.
        self.registry.mark_ready(&want);
        *subscribed = want;
        Ok(())
    }
}

/// A RESP3 connection whose pushes go to one channel.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn connect(
        target: &RedisTarget,
        push_tx: mpsc::UnboundedSender<PushInfo>,
    ) -> RedisResult<Self> {
        match target {
            RedisTarget::Single(url) => {
                let mut info = url.as_str().into_connection_info()?;
                info.redis.protocol = ProtocolVersion::RESP3;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT)
                    .set_push_sender(push_tx);
                let client = Client::open(info)?;
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Conn::Single(conn))
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(2)
                    .push_sender(push_tx)
                    .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    async fn ssubscribe(mut self, topic: &str) -> RedisResult<()> {
        match &mut self {
            Conn::Single(c) => ::redis::cmd("SSUBSCRIBE").arg(topic).exec_async(c).await,
            Conn::Cluster(c) => c.ssubscribe(topic).await,
        }
    }

    async fn sunsubscribe(mut self, topic: &str) -> RedisResult<()> {
        match &mut self {
            Conn::Single(c) => ::redis::cmd("SUNSUBSCRIBE").arg(topic).exec_async(c).await,
            Conn::Cluster(c) => c.sunsubscribe(topic).await,
        }
    }

    async fn publish(&mut self, batch: &[(Box<str>, Bytes)]) -> RedisResult<()> {
        match self {
            Conn::Single(c) => {
                let mut pipe = ::redis::pipe();
                for (topic, envelope) in batch {
                    pipe.cmd("SPUBLISH")
                        .arg(&**topic)
                        .arg(&envelope[..])
                        .ignore();
                }
                pipe.exec_async(c).await
            }
            // Each channel's slot may live on another master: one request
            // per message, all in flight at once.
            Conn::Cluster(c) => {
                try_join_all(batch.iter().map(|(topic, envelope)| {
                    let mut c = c.clone();
                    async move {
                        ::redis::cmd("SPUBLISH")
                            .arg(&**topic)
                            .arg(&envelope[..])
                            .exec_async(&mut c)
                            .await
                    }
                }))
                .await?;
                Ok(())
            }
        }
    }
}
