//! Live video across nodes: reporting this node's origin publishers to
//! the stream registry, and the edge pull.
//!
//! - **Registry.** While a stream has an origin publisher on this node
//!   (RTMP, RTSP pull: anything but an edge pull), [`OriginReporter`] tells
//!   the [`StreamRegistry`] (in-process on a single node, where it records
//!   nothing; Redis in a cluster, see [`crate::cluster::streams`]).
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
//!   runs as for any publisher. On a single node the registry never names
//!   another node, so no pull starts.
//!
//! Edge pulls are not device traffic: their bytes go to
//! `roadhub_live_edge_received_bytes_total`, not to usage (`live_in` and the live
//! seconds are counted once, by the origin).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::SECRET_HEADER;
use crate::cluster::streams::{Origin, StreamRegistry};
use crate::live::stream::{
    EDGE_PROTOCOL, OriginHook, Publisher, PublisherInfo, StreamKey, Streams,
};
use crate::media::flv::{FlvPayload, StreamReader};

/// Reports a node's origin publishers to the stream registry: the
/// [`OriginHook`] of its [`Streams`].
pub struct OriginReporter(pub Arc<dyn StreamRegistry>);

impl OriginHook for OriginReporter {
    fn origin_started(&self, key: &StreamKey) {
        self.0.origin_started(&key.to_string());
    }

    fn origin_ended(&self, key: &StreamKey) {
        self.0.origin_ended(&key.to_string());
    }
}

/// Why a viewer could not be served from another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// The origin was found but sent no keyframe within
    /// `live.start_timeout_secs`.
    #[error("the stream's origin node did not send video in time")]
    OriginTimeout,
}

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
    registry: Arc<dyn StreamRegistry>,
    streams: Streams,
    /// Presented to origins (`node.cluster_secret`).
    cluster_secret: String,
    client: reqwest::Client,
    pulls: Mutex<HashMap<StreamKey, Pull>>,
    next_id: AtomicU64,
}

impl Edge {
    /// Edge pulls found through `registry`, presenting `cluster_secret`
    /// to the origins.
    pub fn new(
        registry: Arc<dyn StreamRegistry>,
        streams: Streams,
        cluster_secret: String,
    ) -> Arc<Edge> {
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
            cluster_secret,
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
    pub async fn prepare(self: &Arc<Self>, key: &StreamKey) -> Result<bool, EdgeError> {
        let running = self
            .pulls
            .lock()
            .ok()
            .and_then(|p| p.get(key).map(|p| p.state.clone()));
        let state = match running {
            Some(state) => state,
            None => {
                let origin = match self.registry.lookup(&key.to_string()).await {
                    Ok(Some(origin)) => origin,
                    Ok(None) => return Ok(false),
                    Err(e) => {
                        tracing::warn!(stream = %key, error = %e, "stream registry lookup failed");
                        return Ok(false);
                    }
                };
                if origin.node == self.registry.node_id() {
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
    ) -> Result<bool, EdgeError> {
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
                Err(_) => return Err(EdgeError::OriginTimeout),
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
        let own = self.registry.node_id();
        let grace = Duration::from_secs(self.streams.config().publisher_grace_secs.max(1));
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if let Ok(Some(origin)) = self.registry.lookup(&key.to_string()).await
                && origin.node != own
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
        let mut response = match self.request(key, origin).await {
            Ok(response) => response,
            Err((now, why)) => {
                state.send_replace(now);
                return PullEnd::after(false, why, None);
            }
        };
        let info = PublisherInfo {
            protocol: EDGE_PROTOCOL,
            remote: None,
        };
        let mut publisher = match self.streams.publish(key.clone(), info).await {
            Ok(p) => p,
            Err(e) => {
                state.send_replace(PullState::Failed(e.to_string()));
                return PullEnd::after(false, e.to_string(), None);
            }
        };
        self.relay(key, origin, state, &mut response, &mut publisher)
            .await
    }

    /// Ask `origin` for `key`'s FLV: the response once it answers 200, or
    /// the pull's state and why not.
    async fn request(
        &self,
        key: &StreamKey,
        origin: &Origin,
    ) -> Result<reqwest::Response, (PullState, String)> {
        let url = format!(
            "{}/internal/live/{key}.flv",
            origin.url.trim_end_matches('/')
        );
        let request = self
            .client
            .get(&url)
            .header(SECRET_HEADER, &self.cluster_secret)
            .send();
        let response = match tokio::time::timeout(self.start_timeout(), request).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let why = e.without_url().to_string();
                return Err((PullState::Failed(why.clone()), why));
            }
            Err(_) => {
                let why = "no answer in time".to_owned();
                return Err((PullState::Failed(why.clone()), why));
            }
        };
        match response.status() {
            reqwest::StatusCode::OK => Ok(response),
            reqwest::StatusCode::NOT_FOUND => {
                Err((PullState::NotThere, "not published at the origin".into()))
            }
            other => {
                let why = format!("the origin answered {other}");
                Err((PullState::Failed(why.clone()), why))
            }
        }
    }

    /// Relay the origin's body into the local stream until it ends, breaks,
    /// goes quiet, or a local publisher takes the stream.
    async fn relay(
        &self,
        key: &StreamKey,
        origin: &Origin,
        state: &watch::Sender<PullState>,
        response: &mut reqwest::Response,
        publisher: &mut Publisher,
    ) -> PullEnd {
        let bytes_in = self.streams.metrics().edge_bytes_in.clone();
        // The origin's stream sends nothing while in its grace period.
        let quiet = Duration::from_secs(self.streams.config().publisher_grace_secs + 5)
            .max(Duration::from_secs(15));
        let mut reader = StreamReader::new();
        let mut playing = false;
        let mut silent = Duration::ZERO;
        loop {
            let chunk = tokio::select! {
                // Not followed: this node publishes the stream itself now.
                () = publisher.replaced() => {
                    return PullEnd::after(false, "a local publisher took the stream".into(), None);
                }
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
                    let why = format!("the origin's body broke: {}", e.without_url());
                    return PullEnd::after(playing, why, None);
                }
                Err(_) => {
                    silent += FOLLOW_POLL * 2;
                    if let Some(end) = self.quiet(key, origin, playing, silent >= quiet).await {
                        return end;
                    }
                    continue;
                }
            };
            bytes_in.inc_by(bytes.len() as u64);
            reader.feed(&bytes);
            if let Err(why) = forward(key, &mut reader, publisher, &mut playing, state).await {
                return PullEnd::after(playing, why, None);
            }
        }
    }

    /// The origin sent nothing for a while: its publisher may be gone (its
    /// grace period) and the device publishing on another node. How the
    /// pull ends, or `None` to go on waiting.
    async fn quiet(
        &self,
        key: &StreamKey,
        origin: &Origin,
        playing: bool,
        too_long: bool,
    ) -> Option<PullEnd> {
        if playing
            && let Ok(Some(next)) = self.registry.lookup(&key.to_string()).await
            && next.node != origin.node
            && next.node != self.registry.node_id()
        {
            let why = format!("the stream moved to {}", next.node);
            return Some(PullEnd::after(playing, why, Some(next)));
        }
        too_long.then(|| PullEnd::after(playing, "the origin sent nothing in time".into(), None))
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

/// Push every complete tag `reader` holds to `publisher`; the first sync
/// point (a video keyframe, or any frame of an audio-only stream) marks the
/// pull playing. `Err` tells why the origin's FLV is unusable.
async fn forward(
    key: &StreamKey,
    reader: &mut StreamReader,
    publisher: &mut Publisher,
    playing: &mut bool,
    state: &watch::Sender<PullState>,
) -> Result<(), String> {
    loop {
        let tag = match reader.next_tag() {
            Ok(Some(tag)) => tag,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("the origin sent bad FLV: {e}")),
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
                f.is_keyframe() || (!f.is_video() && reader.header().is_some_and(|h| !h.has_video))
            }
            _ => false,
        };
        publisher.push(payload);
        publisher.ready().await;
        if sync_point && !*playing {
            *playing = true;
            state.send_replace(PullState::Playing);
        }
    }
}
