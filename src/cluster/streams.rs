//! The stream registry: which node is a live stream's origin (where its
//! publisher is). One interface, [`StreamRegistry`], two backends:
//!
//! - [`LocalStreams`], the default on a single node: every stream is
//!   local, so there is nothing to record and nothing to look up.
//! - [`RedisStreams`], in a cluster: while a stream has an origin
//!   publisher on this node (RTMP, RTSP pull: anything but an edge pull),
//!   Redis holds `rh:stream:{key}` = `{"node": node.id, "url":
//!   node.advertise_url}` with a `PX` TTL of `node.presence_ttl_secs`,
//!   refreshed every third of it. A new publisher takes the key (the newest
//!   wins); a refresh only renews an entry that is still this node's (Lua),
//!   so two nodes publishing one key do not flap. When the publisher ends
//!   the key is deleted only if it still names this node
//!   (compare-and-delete in Lua), so a publisher that moved to another node
//!   keeps its entry. One task per key does all of it, in order.
//!
//! Keys are stream keys as text (`{vehicle_id}-{channel}`); the live
//! runtime above owns their meaning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::Cluster;

/// A registry entry: the node that publishes a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// `node.id`.
    pub node: String,
    /// `node.advertise_url`.
    pub url: String,
}

/// The registry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Which node is each stream's origin. Reports are called on the media
/// arbiter and must not block: a backend does its I/O on its own tasks.
pub trait StreamRegistry: Send + Sync + 'static {
    /// This node's id: an entry naming it is not another node's stream.
    fn node_id(&self) -> &str;

    /// `key` got an origin publisher on this node.
    fn origin_started(&self, key: &str);

    /// `key` has no origin publisher on this node any more.
    fn origin_ended(&self, key: &str);

    /// The node publishing `key`, if any node does.
    fn lookup(&self, key: &str) -> BoxFuture<'_, Result<Option<Origin>, RegistryError>>;
}

/// The single-node registry: every stream is published here or nowhere.
/// Nothing is recorded; a lookup never names another node.
pub struct LocalStreams {
    node_id: String,
}

impl LocalStreams {
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
        }
    }
}

impl StreamRegistry for LocalStreams {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn origin_started(&self, _key: &str) {}

    fn origin_ended(&self, _key: &str) {}

    fn lookup(&self, _key: &str) -> BoxFuture<'_, Result<Option<Origin>, RegistryError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// The registry's Redis key of a stream.
pub fn registry_key(key: &str) -> String {
    format!("rh:stream:{key}")
}

/// Refresh `KEYS[1]` = `ARGV[1]` (TTL `ARGV[2]` ms) unless another node
/// took it since: a newer publisher of the key elsewhere keeps its entry.
const REFRESH_IF_OURS: &str = "local v = redis.call('GET', KEYS[1]) if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 else return 0 end";

/// Delete `KEYS[1]` only if it still holds `ARGV[1]`.
const COMPARE_AND_DELETE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// The cluster's registry in Redis: this node's entries, kept while
/// published.
#[derive(Clone)]
pub struct RedisStreams {
    inner: Arc<RedisInner>,
}

struct RedisInner {
    cluster: Arc<Cluster>,
    /// This node's entry, serialised once.
    value: String,
    /// One task per registered key; `true` while it should be registered.
    keys: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl RedisStreams {
    pub fn new(cluster: Arc<Cluster>) -> RedisStreams {
        let value = serde_json::to_string(&Origin {
            node: cluster.node_id.clone(),
            url: cluster.advertise_url.clone(),
        })
        .unwrap_or_default();
        RedisStreams {
            inner: Arc::new(RedisInner {
                cluster,
                value,
                keys: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn want(&self, key: &str, wanted: bool) {
        let Ok(mut keys) = self.inner.keys.lock() else {
            return;
        };
        if let Some(tx) = keys.get(key) {
            tx.send_replace(wanted);
            return;
        }
        if !wanted {
            return;
        }
        let (tx, rx) = watch::channel(true);
        keys.insert(key.to_owned(), tx);
        tokio::spawn(self.inner.clone().keep(key.to_owned(), rx));
    }
}

impl StreamRegistry for RedisStreams {
    fn node_id(&self) -> &str {
        &self.inner.cluster.node_id
    }

    fn origin_started(&self, key: &str) {
        self.want(key, true);
    }

    fn origin_ended(&self, key: &str) {
        self.want(key, false);
    }

    fn lookup(&self, key: &str) -> BoxFuture<'_, Result<Option<Origin>, RegistryError>> {
        let rkey = registry_key(key);
        Box::pin(async move {
            let raw: Option<String> = self
                .inner
                .cluster
                .redis
                .query(redis::cmd("GET").arg(rkey))
                .await?;
            Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
        })
    }
}

impl RedisInner {
    fn refresh_every(&self) -> Duration {
        (self.cluster.presence_ttl / 3).max(Duration::from_millis(500))
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.cluster.presence_ttl.as_millis()).unwrap_or(30_000)
    }

    /// Register `key` while wanted (refreshing it), compare-and-delete it
    /// when not; ends once unregistered and still unwanted.
    async fn keep(self: Arc<Self>, key: String, mut wanted: watch::Receiver<bool>) {
        let rkey = registry_key(&key);
        // A new publisher takes the key (the newest wins, e.g. a device
        // that moved to this node); refreshes do not take it back.
        let mut taken = false;
        // Warn once per streak of failures, not every retry.
        let mut failing = false;
        loop {
            if *wanted.borrow_and_update() {
                let set = self.write(&rkey, taken).await;
                taken |= set.is_ok();
                let wait = self.after_write(&key, set, &mut failing);
                tokio::select! {
                    _ = wanted.changed() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            } else {
                self.delete(&key, &rkey).await;
                taken = false;
                let Ok(mut keys) = self.keys.lock() else {
                    return;
                };
                if !*wanted.borrow() {
                    keys.remove(&key);
                    return;
                }
            }
        }
    }

    /// Take `rkey` (a first write) or refresh it if it is still ours.
    async fn write(&self, rkey: &str, taken: bool) -> redis::RedisResult<()> {
        let ttl_ms = self.ttl_ms();
        if taken {
            self.cluster
                .redis
                .query::<i64>(
                    redis::cmd("EVAL")
                        .arg(REFRESH_IF_OURS)
                        .arg(1)
                        .arg(rkey)
                        .arg(&self.value)
                        .arg(ttl_ms),
                )
                .await
                .map(|_| ())
        } else {
            self.cluster
                .redis
                .query::<()>(
                    redis::cmd("SET")
                        .arg(rkey)
                        .arg(&self.value)
                        .arg("PX")
                        .arg(ttl_ms),
                )
                .await
        }
    }

    /// Log a write's outcome (once per streak of failures) and answer when
    /// to write next.
    fn after_write(&self, key: &str, set: redis::RedisResult<()>, failing: &mut bool) -> Duration {
        match set {
            Ok(()) => {
                if *failing {
                    tracing::info!(stream = %key, "stream registry: written again");
                }
                *failing = false;
                self.refresh_every()
            }
            Err(e) => {
                if !*failing {
                    tracing::warn!(stream = %key, error = %e, "stream registry: write failed; retrying every second");
                }
                *failing = true;
                Duration::from_secs(1)
            }
        }
    }

    /// Delete `rkey` if it still names this node.
    async fn delete(&self, key: &str, rkey: &str) {
        let del = self
            .cluster
            .redis
            .query::<i64>(
                redis::cmd("EVAL")
                    .arg(COMPARE_AND_DELETE)
                    .arg(1)
                    .arg(rkey)
                    .arg(&self.value),
            )
            .await;
        if let Err(e) = del {
            // The entry expires with its TTL.
            tracing::warn!(stream = %key, error = %e, "stream registry: delete failed");
        }
    }
}
