//! Live video across nodes (with Redis configured): the stream registry and
//! the edge pull.
//!
//! - **Registry.** While a stream has an origin publisher on this node
//!   (RTMP, RTSP pull: anything but an edge pull), Redis holds
//!   `rh:stream:{key}` = `{"node": node.id, "url": node.advertise_url}`
//!   with a `PX` TTL of `node.presence_ttl_secs`, refreshed every third of
//!   it. A new publisher takes the key (the newest wins); a refresh only
//!   renews an entry that is still this node's (Lua), so two nodes
//!   publishing one key do not flap. When the publisher ends the key is
//!   deleted only if it still names this node (compare-and-delete in Lua),
//!   so a publisher that moved to another node keeps its entry. One task
//!   per key does all of it, in order.
//! - **Edge pull.** A viewer on a node where the stream is not published
//!   ([`Edge::prepare`], called by on-demand live before anything else
//!   starts a source) looks the key up; when another node is the origin,
//!   one pull per key (`GET {origin}/internal/live/{key}.flv` with the
//!   cluster secret) publishes into the local stream as protocol
//!   [`EDGE_PROTOCOL`]; the viewers wait for its first keyframe (at most
//!   `live.start_timeout_secs`). Every local viewer (FLV, WS-FLV, HLS) is
//!   served from it. It stops when the stream idles (on-demand's idle rule)
//!   or when a local publisher takes the key; when the origin's body ends
//!   or breaks, the edge publisher leaves and the stream's grace period
//!   runs as for any publisher.
//!
//! Edge pulls are not device traffic: their bytes go to
//! `roadhub_live_edge_received_bytes_total`, not to usage (`live_in` and the live
//! seconds are counted once, by the origin).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, SECRET_HEADER};
use crate::error::ApiError;
use crate::media::flv::{FlvPayload, StreamReader};
use crate::media::stream::{EDGE_PROTOCOL, OriginHook, PublisherInfo, StreamKey, Streams};

/// The registry's Redis key of a stream.
pub fn registry_key(key: &StreamKey) -> String {
    format!("rh:stream:{key}")
}

/// A registry entry: the node that publishes a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// `node.id`.
    pub node: String,
    /// `node.advertise_url`.
    pub url: String,
}

/// Refresh `KEYS[1]` = `ARGV[1]` (TTL `ARGV[2]` ms) unless another node
/// took it since: a newer publisher of the key elsewhere keeps its entry.
const REFRESH_IF_OURS: &str = "local v = redis.call('GET', KEYS[1]) if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 else return 0 end";

/// Delete `KEYS[1]` only if it still holds `ARGV[1]`.
const COMPARE_AND_DELETE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// The stream registry: this node's entries, kept while published.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    cluster: Arc<Cluster>,
    /// This node's entry, serialised once.
    value: String,
    /// One task per registered key; `true` while it should be registered.
    keys: Mutex<HashMap<StreamKey, watch::Sender<bool>>>,
}

impl Registry {
    pub fn new(cluster: Arc<Cluster>) -> Registry {
        let value = serde_json::to_string(&Origin {
            node: cluster.node_id.clone(),
            url: cluster.advertise_url.clone(),
        })
        .unwrap_or_default();
        Registry {
            inner: Arc::new(RegistryInner {
                cluster,
                value,
                keys: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The node publishing `key`, per Redis.
    pub async fn lookup(&self, key: &StreamKey) -> redis::RedisResult<Option<Origin>> {
        let raw: Option<String> = self
            .inner
            .cluster
            .redis
            .query(redis::cmd("GET").arg(registry_key(key)))
            .await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    fn want(&self, key: &StreamKey, wanted: bool) {
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
        keys.insert(key.clone(), tx);
        tokio::spawn(self.inner.clone().keep(key.clone(), rx));
    }
}

impl RegistryInner {
    fn refresh_every(&self) -> Duration {
        (self.cluster.presence_ttl / 3).max(Duration::from_millis(500))
    }

    /// Register `key` while wanted (refreshing it), compare-and-delete it
    /// when not; ends once unregistered and still unwanted.
    async fn keep(self: Arc<Self>, key: StreamKey, mut wanted: watch::Receiver<bool>) {
        let rkey = registry_key(&key);
        let ttl_ms = u64::try_from(self.cluster.presence_ttl.as_millis()).unwrap_or(30_000);
        // A new publisher takes the key (the newest wins, e.g. a device
        // that moved to this node); refreshes do not take it back.
        let mut taken = false;
        // Warn once per streak of failures, not every retry.
        let mut failing = false;
        loop {
            let want = *wanted.borrow_and_update();
            if want {
                let set = if taken {
                    self.cluster
                        .redis
                        .query::<i64>(
                            redis::cmd("EVAL")
                                .arg(REFRESH_IF_OURS)
                                .arg(1)
                                .arg(&rkey)
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
                                .arg(&rkey)
                                .arg(&self.value)
                                .arg("PX")
                                .arg(ttl_ms),
                        )
                        .await
                };
                if set.is_ok() {
                    taken = true;
                }
                let wait = match set {
                    Ok(()) => {
                        if failing {
                            tracing::info!(stream = %key, "stream registry: written again");
                        }
                        failing = false;
                        self.refresh_every()
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(stream = %key, error = %e, "stream registry: write failed; retrying every second");
                        }
                        failing = true;
                        Duration::from_secs(1)
                    }
                };
                tokio::select! {
                    _ = wanted.changed() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            } else {
                let del = self
                    .cluster
                    .redis
                    .query::<i64>(
                        redis::cmd("EVAL")
                            .arg(COMPARE_AND_DELETE)
                            .arg(1)
                            .arg(&rkey)
                            .arg(&self.value),
                    )
                    .await;
                if let Err(e) = del {
                    // The entry expires with its TTL.
                    tracing::warn!(stream = %key, error = %e, "stream registry: delete failed");
                }
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
}

impl OriginHook for Registry {
    fn origin_started(&self, key: &StreamKey) {
        self.want(key, true);
    }

    fn origin_ended(&self, key: &StreamKey) {
        self.want(key, false);
    }
}

/// Where an edge pull is.
/// How often a quiet pull, or one looking for its stream's next origin,
/// asks the registry (half the quiet check).
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// How one pull ended.
struct PullEnd {
    /// Why (for the log).
    why: String,
    /// Whether it delivered a keyframe: only such a pull is followed.
    played: bool,
    /// The stream's new origin, when the pull saw it move.
    next: Option<Origin>,
}

impl PullEnd {
    fn after(played: bool, why: String, next: Option<Origin>) -> Self {
        Self { why, played, next }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PullState {
    /// Asking the origin.
    Connecting,
    /// The first keyframe went to the stream.
    Playing,
    /// The origin does not publish the key (a stale entry).
    NotThere,
    /// The origin could not be pulled.
    Failed(String),
    /// Stopped or ended.
    Ended,
}

struct Pull {
    id: u64,
    state: watch::Receiver<PullState>,
    cancel: CancellationToken,
}

/// Edge pulls of this node, one per stream key.
pub struct Edge {
    registry: Registry,
    streams: Streams,
    client: reqwest::Client,
    pulls: Mutex<HashMap<StreamKey, Pull>>,
    next_id: AtomicU64,
}

impl Edge {
    pub fn new(registry: Registry, streams: Streams) -> Arc<Edge> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // A pull is one long response; nothing to pool.
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .unwrap_or_default();
        Arc::new(Edge {
            registry,
            streams,
            client,
            pulls: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.streams.config().start_timeout_secs.max(1))
    }

    /// Whether an edge pull of `key` is running.
    pub fn pulling(&self, key: &StreamKey) -> bool {
        self.pulls.lock().is_ok_and(|p| p.contains_key(key))
    }

    /// Before a viewer plays `key`, which this node does not publish: if
    /// another node is its origin, start (or join) the edge pull and wait
    /// for its first keyframe. `Ok(true)`: the stream plays here now;
    /// `Ok(false)`: no other node publishes it (try the local sources).
    pub async fn prepare(self: &Arc<Self>, key: &StreamKey) -> Result<bool, ApiError> {
        let running = self
            .pulls
            .lock()
            .ok()
            .and_then(|p| p.get(key).map(|p| p.state.clone()));
        let state = match running {
            Some(state) => state,
            None => {
                let origin = match self.registry.lookup(key).await {
                    Ok(Some(origin)) => origin,
                    Ok(None) => return Ok(false),
                    Err(e) => {
                        tracing::warn!(stream = %key, error = %e, "stream registry lookup failed");
                        return Ok(false);
                    }
                };
                if origin.node == self.registry.inner.cluster.node_id {
                    // Our own entry, stale or about to go: not a source.
                    return Ok(false);
                }
                self.start(key, origin)
            }
        };
        self.wait(key, state).await
    }

    /// Start the pull of `key` from `origin`, unless one started meanwhile.
    fn start(self: &Arc<Self>, key: &StreamKey, origin: Origin) -> watch::Receiver<PullState> {
        let Ok(mut pulls) = self.pulls.lock() else {
            let (_, rx) = watch::channel(PullState::Ended);
            return rx;
        };
        if let Some(p) = pulls.get(key) {
            return p.state.clone();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(PullState::Connecting);
        let cancel = CancellationToken::new();
        pulls.insert(
            key.clone(),
            Pull {
                id,
                state: rx.clone(),
                cancel: cancel.clone(),
            },
        );
        tracing::info!(stream = %key, origin = %origin.node, url = %origin.url, "edge pull started");
        let edge = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let metrics = edge.streams.metrics().clone();
            metrics.edge_pulls.inc();
            metrics.edge_pulls_active.inc();
            let end = tokio::select! {
                () = cancel.cancelled() => "stopped".to_owned(),
                end = edge.follow(&key, origin.clone(), &tx) => end,
            };
            metrics.edge_pulls_active.dec();
            if let Ok(mut pulls) = edge.pulls.lock()
                && pulls.get(&key).is_some_and(|p| p.id == id)
            {
                pulls.remove(&key);
            }
            tx.send_if_modified(|s| {
                if matches!(s, PullState::Connecting | PullState::Playing) {
                    *s = PullState::Ended;
                    true
                } else {
                    false
                }
            });
            tracing::info!(stream = %key, origin = %origin.node, end, "edge pull ended");
        });
        rx
    }

    /// Wait for the pull's first keyframe (or its failure).
    async fn wait(
        &self,
        key: &StreamKey,
        mut state: watch::Receiver<PullState>,
    ) -> Result<bool, ApiError> {
        let deadline = tokio::time::Instant::now() + self.start_timeout();
        loop {
            let now = state.borrow_and_update().clone();
            match now {
                PullState::Playing => return Ok(true),
                PullState::NotThere => return Ok(false),
                PullState::Failed(why) => {
                    // A stale entry of a node that is gone, or a broken
                    // link: the local sources may still start the stream.
                    tracing::warn!(stream = %key, error = %why, "edge pull failed; trying local sources");
                    return Ok(false);
                }
                PullState::Ended => {
                    // Ended before playing: the stream may have a local
                    // publisher now, or be gone.
                    return Ok(self.streams.is_published(key).await);
                }
                PullState::Connecting => {}
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(self.streams.is_published(key).await),
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "live_start_timeout",
                        "the stream's origin node did not send video in time",
                    ));
                }
            }
        }
    }

    /// Pull `key` from `origin`, and when a pull that played ends (the
    /// origin's publisher left, its node died, or the stream went quiet
    /// there), follow the stream to the node that publishes it next, if one
    /// does within the publisher grace period: the local stream's viewers
    /// are held meanwhile and go on with the same timeline. Answers why
    /// the last pull ended (for the log).
    async fn follow(
        &self,
        key: &StreamKey,
        mut origin: Origin,
        state: &watch::Sender<PullState>,
    ) -> String {
        loop {
            let end = self.run(key, &origin, state).await;
            if !end.played {
                return end.why;
            }
            let next = match end.next {
                Some(next) => Some(next),
                None => self.next_origin(key).await,
            };
            let Some(next) = next else {
                return end.why;
            };
            tracing::info!(
                stream = %key,
                from = %origin.node,
                to = %next.node,
                why = %end.why,
                "edge pull follows the stream to its new origin"
            );
            origin = next;
        }
    }

    /// The node publishing `key` now, other than this one, looked up for at
    /// most the publisher grace period.
    async fn next_origin(&self, key: &StreamKey) -> Option<Origin> {
        let own = &self.registry.inner.cluster.node_id;
        let grace = Duration::from_secs(self.streams.config().publisher_grace_secs.max(1));
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if let Ok(Some(origin)) = self.registry.lookup(key).await
                && origin.node != *own
            {
                return Some(origin);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    /// One pull, from the request to the end of the origin's body.
    async fn run(
        &self,
        key: &StreamKey,
        origin: &Origin,
        state: &watch::Sender<PullState>,
    ) -> PullEnd {
        let end = |why: String| PullEnd {
            why,
            played: false,
            next: None,
        };
        let cluster = &self.registry.inner.cluster;
        let url = format!(
            "{}/internal/live/{key}.flv",
            origin.url.trim_end_matches('/')
        );
        let request = self
            .client
            .get(&url)
            .header(SECRET_HEADER, cluster.secret())
            .send();
        let mut response = match tokio::time::timeout(self.start_timeout(), request).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let why = e.without_url().to_string();
                state.send_replace(PullState::Failed(why.clone()));
                return end(why);
            }
            Err(_) => {
                state.send_replace(PullState::Failed("no answer in time".into()));
                return end("no answer in time".into());
            }
        };
        match response.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::NOT_FOUND => {
                state.send_replace(PullState::NotThere);
                return end("not published at the origin".into());
            }
            other => {
                let why = format!("the origin answered {other}");
                state.send_replace(PullState::Failed(why.clone()));
                return end(why);
            }
        }
        let publisher = match self
            .streams
            .publish(
                key.clone(),
                PublisherInfo {
                    protocol: EDGE_PROTOCOL,
                    remote: None,
                },
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                state.send_replace(PullState::Failed(e.to_string()));
                return end(e.to_string());
            }
        };
        let mut publisher = publisher;
        let bytes_in = self.streams.metrics().edge_bytes_in.clone();
        // The origin's stream sends nothing while in its grace period.
        let quiet = Duration::from_secs(self.streams.config().publisher_grace_secs + 5)
            .max(Duration::from_secs(15));
        let mut reader = StreamReader::new();
        let mut playing = false;
        let mut silent = Duration::ZERO;
        let own = &cluster.node_id;
        loop {
            let chunk = tokio::select! {
                // Not followed: this node publishes the stream itself now.
                () = publisher.replaced() => return end("a local publisher took the stream".into()),
                chunk = tokio::time::timeout(FOLLOW_POLL * 2, response.chunk()) => chunk,
            };
            let bytes = match chunk {
                Ok(Ok(Some(b))) => {
                    silent = Duration::ZERO;
                    b
                }
                Ok(Ok(None)) => {
                    return PullEnd::after(playing, "the origin ended the stream".into(), None);
                }
                Ok(Err(e)) => {
                    return PullEnd::after(
                        playing,
                        format!("the origin's body broke: {}", e.without_url()),
                        None,
                    );
                }
                Err(_) => {
                    // Quiet: the origin's publisher may be gone (its grace
                    // period) and the device publishing on another node.
                    silent += FOLLOW_POLL * 2;
                    if playing
                        && let Ok(Some(next)) = self.registry.lookup(key).await
                        && next.node != origin.node
                        && next.node != *own
                    {
                        return PullEnd::after(
                            playing,
                            format!("the stream moved to {}", next.node),
                            Some(next),
                        );
                    }
                    if silent >= quiet {
                        return PullEnd::after(
                            playing,
                            "the origin sent nothing in time".into(),
                            None,
                        );
                    }
                    continue;
                }
            };
            bytes_in.inc_by(bytes.len() as u64);
            reader.feed(&bytes);
            loop {
                let tag = match reader.next_tag() {
                    Ok(Some(tag)) => tag,
                    Ok(None) => break,
                    Err(e) => {
                        return PullEnd::after(
                            playing,
                            format!("the origin sent bad FLV: {e}"),
                            None,
                        );
                    }
                };
                let payload = match tag.parse() {
                    Ok(Some(p)) => p,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(stream = %key, error = %e, "edge pull: tag skipped");
                        continue;
                    }
                };
                let sync_point = match &payload {
                    FlvPayload::Frame(f) => {
                        f.is_keyframe()
                            || (!f.is_video() && reader.header().is_some_and(|h| !h.has_video))
                    }
                    _ => false,
                };
                publisher.push(payload);
                publisher.ready().await;
                if sync_point && !playing {
                    playing = true;
                    state.send_replace(PullState::Playing);
                }
            }
        }
    }

    /// The stream idled (no viewer for `live.idle_timeout_secs`): stop its
    /// edge pull. False when `key` has none.
    pub fn idle(&self, key: &StreamKey) -> bool {
        let pull = self.pulls.lock().ok().and_then(|mut p| p.remove(key));
        match pull {
            Some(pull) => {
                tracing::info!(stream = %key, "no viewers: edge pull stopped");
                pull.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Stop every pull (node shutdown).
    pub fn stop_all(&self) {
        if let Ok(mut pulls) = self.pulls.lock() {
            for (_, pull) in pulls.drain() {
                pull.cancel.cancel();
            }
        }
    }
}
