//! Live streams as actors: one [`Stream`] per stream key
//! (`{vehicle_id}-{channel}`), created on demand by the [`StreamSupervisor`]
//! when a publisher arrives and stopped when it has had no publisher for
//! `live.publisher_grace_secs`.
//!
//! The public face is [`Streams`] (cheap to clone):
//!
//! - publishers (the RTMP ingest, later the RTSP pull or anything else)
//!   call [`Streams::publish`] and get a [`Publisher`]: `push` FLV payloads
//!   ([`FlvPayload`]), `metadata`, `bytes_in`; dropping it unpublishes. A
//!   second publisher of the same key replaces the first, whose
//!   [`Publisher::replaced`] resolves;
//! - viewers call [`Streams::play`] (HTTP-FLV, WebSocket-FLV) and get a
//!   [`Viewer`] yielding FLV bytes, or [`Streams::hls_playlist`] /
//!   [`Streams::hls_segment`];
//! - a [`StreamActivator`] is told when a viewer waits for a stream that has
//!   no publisher and when a published stream has had no viewer for
//!   `live.idle_timeout_secs`: on-demand live and the RTSP pull plug in
//!   there.
//!
//! The media state (headers, GOP cache, timeline, HLS, viewer queues) is in
//! [`crate::live::core`]; this module is the concurrency around it. Stream
//! actors run on the media arbiter; a viewer's connection pops its queue on
//! its own worker thread.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::config::LiveConfig;
use crate::live::core::{Chunk, HlsRefusal, LagPolicy, PushOutcome, StreamCore, ViewerQueue};
use crate::live::usage::{self, Usage};
use crate::media::HlsConfig;
use crate::media::flv::{FlvPayload, Metadata};
use crate::media::hls::variant::Variant;
use crate::metrics::LiveMetrics;

/// A live stream's key: `{vehicle_id}-{channel}`, with `channel` matching
/// `[a-z0-9_]{1,16}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub vehicle_id: i64,
    pub channel: String,
}

impl StreamKey {
    /// Parses `{vehicle_id}-{channel}`; `None` if malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let (id, channel) = s.split_once('-')?;
        if id.is_empty() || id.len() > 18 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let vehicle_id: i64 = id.parse().ok().filter(|&v| v > 0)?;
        Self::new(vehicle_id, channel)
    }

    /// A key from its parts; `None` if the channel is not a short name.
    pub fn new(vehicle_id: i64, channel: &str) -> Option<Self> {
        let ok = (1..=16).contains(&channel.len())
            && channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        ok.then(|| Self {
            vehicle_id,
            channel: channel.to_owned(),
        })
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.vehicle_id, self.channel)
    }
}

/// The protocol of an edge pull: a stream published on another node of the
/// cluster, relayed here ([`crate::live::edge`]). Such a publisher is not
/// an origin: it is not registered, not counted as device traffic or live
/// time, and not served to other nodes.
pub const EDGE_PROTOCOL: &str = "edge";

/// Who publishes (for logs).
#[derive(Debug, Clone)]
pub struct PublisherInfo {
    /// `rtmp`, `rtsp`, ...
    pub protocol: &'static str,
    pub remote: Option<SocketAddr>,
}

/// How a viewer plays (the metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerKind {
    Flv,
    WsFlv,
    Hls,
    /// Another node's edge pull (`GET /internal/live/{key}.flv`).
    Internal,
}

impl ViewerKind {
    pub fn label(self) -> &'static str {
        match self {
            ViewerKind::Flv => "flv",
            ViewerKind::WsFlv => "ws-flv",
            ViewerKind::Hls => "hls",
            ViewerKind::Internal => "internal",
        }
    }
}

/// Hook points for sources started on demand (device `live.start`, RTSP
/// pull). Both methods default to doing nothing; they are called on the
/// media arbiter or a request's worker and must not block: start work with
/// `actix_rt::spawn` and return.
pub trait StreamActivator: Send + Sync + 'static {
    /// A viewer asked for `key`, which has no publisher. Answer true if a
    /// publisher is being started: the viewer then waits up to
    /// `live.start_timeout_secs` (then 504 `live_start_timeout`). False
    /// answers 404 `stream_not_found` at once.
    fn viewer_waiting(&self, key: &StreamKey) -> bool {
        let _ = key;
        false
    }

    /// `key` is published but has had no viewer (FLV, WS-FLV or HLS) for
    /// `live.idle_timeout_secs`: a source started on demand can stop. Called
    /// once per idle period.
    fn idle(&self, key: &StreamKey) {
        let _ = key;
    }
}

/// Told when a stream gets its first origin publisher on this node (RTMP,
/// RTSP pull: anything but [`EDGE_PROTOCOL`]) and when it has none any more
/// (the publisher left, was replaced by an edge pull, or the stream ended).
/// Called on the media arbiter; must not block. The cluster's stream
/// registry plugs in here.
pub trait OriginHook: Send + Sync + 'static {
    fn origin_started(&self, key: &StreamKey);
    fn origin_ended(&self, key: &StreamKey);
}

/// The default activator: streams exist only while something publishes.
#[derive(Debug, Default)]
pub struct NoActivator;

impl StreamActivator for NoActivator {}

/// Why a live request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("no such live stream")]
    NotFound,
    #[error("the stream did not start in time")]
    StartTimeout,
    #[error("HLS is not ready yet")]
    HlsNotReady,
    #[error("HLS is not available for this codec")]
    HlsUnsupported,
    #[error("the live service is stopping")]
    Unavailable,
}

struct Shared {
    config: LiveConfig,
    activator: RwLock<Arc<dyn StreamActivator>>,
    metrics: LiveMetrics,
    /// Data usage (bytes in, live seconds) per vehicle, when accounted.
    usage: RwLock<Option<Arc<Usage>>>,
    /// The stream registry, in a cluster.
    origin_hook: RwLock<Option<Arc<dyn OriginHook>>>,
}

/// The node's live streams. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    supervisor: Addr<StreamSupervisor>,
    shared: Arc<Shared>,
}

impl Streams {
    /// Start the supervisor (and so every stream) on `arbiter`.
    pub fn start(arbiter: &ArbiterHandle, config: LiveConfig, metrics: LiveMetrics) -> Self {
        let shared = Arc::new(Shared {
            config,
            activator: RwLock::new(Arc::new(NoActivator)),
            metrics,
            usage: RwLock::new(None),
            origin_hook: RwLock::new(None),
        });
        let sup_shared = shared.clone();
        let supervisor = StreamSupervisor::start_in_arbiter(arbiter, move |_| StreamSupervisor {
            streams: HashMap::new(),
            shared: sup_shared,
        });
        Self { supervisor, shared }
    }

    /// Replace the activator (on-demand live, RTSP pull).
    pub fn set_activator(&self, activator: Arc<dyn StreamActivator>) {
        if let Ok(mut a) = self.shared.activator.write() {
            *a = activator;
        }
    }

    /// Account data usage: publishers' bytes in (`live_in`, `rtsp_in`)
    /// and seconds of live video per vehicle.
    pub fn set_usage(&self, usage: Arc<Usage>) {
        if let Ok(mut u) = self.shared.usage.write() {
            *u = Some(usage);
        }
    }

    /// Report origin publishers (not edge pulls) to `hook`.
    pub fn set_origin_hook(&self, hook: Arc<dyn OriginHook>) {
        if let Ok(mut h) = self.shared.origin_hook.write() {
            *h = Some(hook);
        }
    }

    fn activator(&self) -> Arc<dyn StreamActivator> {
        match self.shared.activator.read() {
            Ok(a) => a.clone(),
            Err(_) => Arc::new(NoActivator),
        }
    }

    pub fn config(&self) -> &LiveConfig {
        &self.shared.config
    }

    pub fn metrics(&self) -> &LiveMetrics {
        &self.shared.metrics
    }

    async fn get(&self, key: &StreamKey, create: bool) -> Result<Option<Addr<Stream>>, LiveError> {
        self.supervisor
            .send(GetStream {
                key: key.clone(),
                create,
            })
            .await
            .map_err(|_| LiveError::Unavailable)
    }

    /// Publish `key`: the stream is created if needed; a current publisher
    /// is replaced (its [`Publisher::replaced`] resolves).
    pub async fn publish(
        &self,
        key: StreamKey,
        info: PublisherInfo,
    ) -> Result<Publisher, LiveError> {
        for _ in 0..8 {
            let Some(stream) = self.get(&key, true).await? else {
                return Err(LiveError::Unavailable);
            };
            if let Ok(Some((id, kicked))) =
                stream.send(AttachPublisher { info: info.clone() }).await
            {
                return Ok(Publisher {
                    stream,
                    id,
                    backlog: Arc::new(Backlog::default()),
                    key,
                    kicked: Some(kicked),
                    bytes_in: self.shared.metrics.bytes_in.clone(),
                    // An edge pull's bytes are the origin's to count.
                    usage: if info.protocol == EDGE_PROTOCOL {
                        None
                    } else {
                        self.shared.usage.read().ok().and_then(|u| u.clone())
                    },
                    usage_kind: if info.protocol == "rtsp" {
                        usage::kind::RTSP_IN
                    } else {
                        usage::kind::LIVE_IN
                    },
                });
            }
        }
        Err(LiveError::Unavailable)
    }

    async fn try_play(
        &self,
        key: &StreamKey,
        kind: ViewerKind,
        started: std::time::Instant,
    ) -> Result<Option<Viewer>, LiveError> {
        for _ in 0..8 {
            let Some(stream) = self.get(key, false).await? else {
                return Ok(None);
            };
            if let Ok(Some((id, queue))) = stream.send(AddViewer).await {
                let gauge = self
                    .shared
                    .metrics
                    .viewers
                    .with_label_values(&[kind.label()]);
                gauge.inc();
                return Ok(Some(Viewer {
                    queue,
                    stream,
                    id,
                    bytes_out: self
                        .shared
                        .metrics
                        .bytes_out
                        .with_label_values(&[kind.label()]),
                    gauge,
                    started,
                    first_frame: self.shared.metrics.first_frame.clone(),
                    first_sent: std::sync::atomic::AtomicBool::new(false),
                }));
            }
        }
        Ok(None)
    }

    /// Wait (bounded) for `key` to exist, asking the activator first.
    async fn wait_for<T, F, Fut>(&self, key: &StreamKey, mut attempt: F) -> Result<T, LiveError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, LiveError>>,
    {
        if let Some(v) = attempt().await? {
            return Ok(v);
        }
        if !self.activator().viewer_waiting(key) {
            return Err(LiveError::NotFound);
        }
        let deadline = Instant::now() + Duration::from_secs(self.shared.config.start_timeout_secs);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(v) = attempt().await? {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(LiveError::StartTimeout);
            }
        }
    }

    /// Play `key` as FLV: the viewer gets the FLV header, metadata,
    /// sequence headers and GOP cache at once, then the live tags.
    pub async fn play(&self, key: &StreamKey, kind: ViewerKind) -> Result<Viewer, LiveError> {
        let started = std::time::Instant::now();
        self.wait_for(key, || self.try_play(key, kind, started))
            .await
    }

    /// Play `key` only if it exists now: no activator, no wait (the
    /// internal endpoint serving other nodes' edge pulls).
    pub async fn play_now(&self, key: &StreamKey, kind: ViewerKind) -> Result<Viewer, LiveError> {
        let started = std::time::Instant::now();
        self.try_play(key, kind, started)
            .await?
            .ok_or(LiveError::NotFound)
    }

    /// The protocol of `key`'s publisher now (`rtmp`, `rtsp`,
    /// [`EDGE_PROTOCOL`], ...); `None` without one.
    pub async fn publisher_protocol(&self, key: &StreamKey) -> Option<&'static str> {
        match self.get(key, false).await {
            Ok(Some(stream)) => stream.send(PublisherProtocol).await.ok().flatten(),
            _ => None,
        }
    }

    /// Whether `key` has a stream (published or in its grace period).
    pub async fn exists(&self, key: &StreamKey) -> bool {
        matches!(self.get(key, false).await, Ok(Some(_)))
    }

    /// Whether `key` has a publisher now (a stream in its grace period
    /// has none).
    pub async fn is_published(&self, key: &StreamKey) -> bool {
        match self.get(key, false).await {
            Ok(Some(stream)) => stream.send(IsPublished).await.unwrap_or(false),
            _ => false,
        }
    }

    /// The HLS media playlist of `key`, segment URIs `{seq}.ts{query}`
    /// (relative to the playlist). The first request starts segmenting and
    /// waits (up to `live.start_timeout_secs`) for a first segment.
    /// `client` identifies the HLS viewer (e.g. a hash of its session).
    pub async fn hls_playlist(
        &self,
        key: &StreamKey,
        client: u64,
        query: &str,
    ) -> Result<String, LiveError> {
        let render = HlsRender::Media {
            query: query.to_owned(),
        };
        self.hls_render(key, client, render).await
    }

    /// The HLS multivariant playlist of `key`: one variant at `media_uri`
    /// (its bandwidth, codecs and resolution from the stream). Waits for a
    /// first segment like [`Streams::hls_playlist`].
    pub async fn hls_multivariant(
        &self,
        key: &StreamKey,
        client: u64,
        media_uri: &str,
    ) -> Result<String, LiveError> {
        let render = HlsRender::Multivariant {
            uri: media_uri.to_owned(),
        };
        self.hls_render(key, client, render).await
    }

    async fn hls_render(
        &self,
        key: &StreamKey,
        client: u64,
        render: HlsRender,
    ) -> Result<String, LiveError> {
        let stream = self
            .wait_for(key, || async { self.get(key, false).await })
            .await?;
        let deadline =
            Instant::now() + Duration::from_secs(self.shared.config.start_timeout_secs.max(1));
        loop {
            let answer = stream
                .send(HlsPlaylist {
                    client,
                    render: render.clone(),
                })
                .await
                .map_err(|_| LiveError::NotFound)?;
            match answer {
                Ok(Some(playlist)) => return Ok(playlist),
                Ok(None) => {}
                Err(HlsRefusal::UnsupportedCodec) => return Err(LiveError::HlsUnsupported),
            }
            if Instant::now() >= deadline {
                return Err(LiveError::HlsNotReady);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// HLS segment `sequence` of `key`, while it is in the window.
    pub async fn hls_segment(
        &self,
        key: &StreamKey,
        client: u64,
        sequence: u64,
    ) -> Result<Bytes, LiveError> {
        let stream = self.get(key, false).await?.ok_or(LiveError::NotFound)?;
        let data = stream
            .send(HlsSegment { client, sequence })
            .await
            .map_err(|_| LiveError::NotFound)?
            .ok_or(LiveError::NotFound)?;
        self.shared
            .metrics
            .bytes_out
            .with_label_values(&[ViewerKind::Hls.label()])
            .inc_by(data.len() as u64);
        Ok(data)
    }

    /// End every stream (node shutdown): viewers get a clean end,
    /// publishers are closed.
    pub async fn end_all(&self) {
        let _ = self.supervisor.send(EndAll).await;
    }
}

/// The publishing side of a stream. Dropping it unpublishes (the stream
/// holds its viewers for `live.publisher_grace_secs`).
pub struct Publisher {
    stream: Addr<Stream>,
    id: u64,
    backlog: Arc<Backlog>,
    key: StreamKey,
    kicked: Option<oneshot::Receiver<()>>,
    bytes_in: prometheus::IntCounter,
    usage: Option<Arc<Usage>>,
    usage_kind: &'static str,
}

impl Publisher {
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// One FLV payload (sequence header or frame, the publisher's clock).
    /// Never blocks; the source awaits [`Publisher::ready`] before reading
    /// more, so what the stream has not handled yet stays bounded.
    pub fn push(&self, payload: FlvPayload) {
        self.backlog.queued.fetch_add(1, Ordering::AcqRel);
        self.stream.do_send(Media {
            publisher: self.id,
            payload,
            _slot: BacklogSlot(self.backlog.clone()),
        });
    }

    /// Resolves once the stream has at most [`PUBLISH_BACKLOG`] of this
    /// publisher's payloads left to handle (at once, normally). A source
    /// awaits it before reading on: a stream that falls behind (a busy
    /// media thread) slows the camera's connection down through TCP
    /// instead of queueing without bound.
    pub async fn ready(&self) {
        self.backlog.ready().await;
    }

    /// Payloads pushed and not yet handled by the stream.
    pub fn backlog(&self) -> usize {
        self.backlog.queued.load(Ordering::Acquire)
    }

    /// The publisher's `onMetaData`.
    pub fn metadata(&self, metadata: Metadata) {
        self.stream.do_send(Meta {
            publisher: self.id,
            metadata,
        });
    }

    /// Count `n` bytes received from the source.
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
        if let Some(usage) = &self.usage {
            usage.add_bytes(self.key.vehicle_id, self.usage_kind, n);
        }
    }

    /// Resolves when this publisher is no longer the stream's: another one
    /// took the key, or the stream stopped. The source should close.
    pub async fn replaced(&mut self) {
        if let Some(rx) = &mut self.kicked {
            let _ = rx.await;
            self.kicked = None;
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stream.do_send(DetachPublisher { publisher: self.id });
    }
}

/// One FLV viewer: yields the bytes to send, in order; `None` at the end
/// of the stream (or when it was dropped for being too slow).
pub struct Viewer {
    queue: Arc<ViewerQueue>,
    stream: Addr<Stream>,
    id: u64,
    bytes_out: prometheus::IntCounter,
    gauge: prometheus::IntGauge,
    /// When the viewer asked to play (for the time to first frame).
    started: std::time::Instant,
    /// Observed once, at the first media bytes (`first_sent`).
    first_frame: crate::metrics::Latency,
    first_sent: std::sync::atomic::AtomicBool,
}

impl Viewer {
    /// The next bytes, waiting for them.
    pub async fn next(&self) -> Option<Bytes> {
        let b = self.queue.pop().await?;
        if !self.first_sent.load(Ordering::Relaxed)
            && !self.first_sent.swap(true, Ordering::Relaxed)
        {
            self.first_frame.observe(self.started.elapsed());
        }
        self.bytes_out.inc_by(b.len() as u64);
        Some(b)
    }

    /// Everything queued as one buffer (several tags, up to about
    /// `max_bytes`), waiting for at least one tag; `None` at the end.
    ///
    /// With `pace`, a batch is not taken before `pace` has passed since the
    /// previous one (`last`): a viewer then wakes and writes about
    /// 1 / `pace` times a second whatever the frame rate, instead of once
    /// per audio and video tag. The first batch (headers and GOP cache) is
    /// never delayed.
    pub async fn next_batch(
        &self,
        max_bytes: usize,
        pace: Duration,
        last: &mut Option<tokio::time::Instant>,
    ) -> Option<Bytes> {
        if let Some(at) = *last
            && !pace.is_zero()
        {
            tokio::time::sleep_until(at + pace).await;
        }
        let first = self.next().await?;
        *last = Some(tokio::time::Instant::now());
        let mut total = first.len();
        let mut more = Vec::new();
        while total < max_bytes {
            match self.try_next() {
                Ok(Some(b)) => {
                    total += b.len();
                    more.push(b);
                }
                _ => break,
            }
        }
        if more.is_empty() {
            return Some(first);
        }
        let mut buf = bytes::BytesMut::with_capacity(total);
        buf.extend_from_slice(&first);
        for b in more {
            buf.extend_from_slice(&b);
        }
        Some(buf.freeze())
    }

    /// The next bytes if queued now; `Err(())` at the end.
    #[allow(clippy::result_unit_err)]
    pub fn try_next(&self) -> Result<Option<Bytes>, ()> {
        let b = self.queue.try_pop()?;
        if let Some(b) = &b {
            self.bytes_out.inc_by(b.len() as u64);
        }
        Ok(b)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.queue.set_gone();
        self.stream.do_send(RemoveViewer { id: self.id });
        self.gauge.dec();
    }
}

// ---- the actors ----

#[derive(Message)]
#[rtype(result = "Option<Addr<Stream>>")]
struct GetStream {
    key: StreamKey,
    create: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct StreamStopped {
    key: StreamKey,
    stream: Addr<Stream>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct EndAll;

#[derive(Message)]
#[rtype(result = "Option<(u64, oneshot::Receiver<()>)>")]
struct AttachPublisher {
    info: PublisherInfo,
}

#[derive(Message)]
#[rtype(result = "()")]
struct DetachPublisher {
    publisher: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Media {
    publisher: u64,
    payload: FlvPayload,
    /// Leaves the publisher's backlog when the message is handled or
    /// dropped (a stopped stream).
    _slot: BacklogSlot,
}

/// Payloads a publisher may have in its stream's mailbox before its
/// source stops reading (about two seconds of 30 fps video with audio).
pub const PUBLISH_BACKLOG: usize = 128;

/// A publisher's payloads in flight to its stream.
#[derive(Default)]
struct Backlog {
    queued: AtomicUsize,
    /// Signalled when `queued` falls back to [`PUBLISH_BACKLOG`].
    drained: tokio::sync::Notify,
}

impl Backlog {
    async fn ready(&self) {
        // Only the source's task pushes and waits, so nothing is added
        // while it waits; `notify_one` keeps a permit if the drain comes
        // between the check and the wait.
        while self.queued.load(Ordering::Acquire) > PUBLISH_BACKLOG {
            self.drained.notified().await;
        }
    }
}

struct BacklogSlot(Arc<Backlog>);

impl Drop for BacklogSlot {
    fn drop(&mut self) {
        if self.0.queued.fetch_sub(1, Ordering::AcqRel) == PUBLISH_BACKLOG + 1 {
            self.0.drained.notify_one();
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Meta {
    publisher: u64,
    metadata: Metadata,
}

#[derive(Message)]
#[rtype(result = "Option<(u64, Arc<ViewerQueue>)>")]
struct AddViewer;

#[derive(Message)]
#[rtype(result = "()")]
struct RemoveViewer {
    id: u64,
}

#[derive(Message)]
#[rtype(result = "Result<Option<String>, HlsRefusal>")]
struct HlsPlaylist {
    client: u64,
    render: HlsRender,
}

/// Which HLS playlist to render.
#[derive(Debug, Clone)]
enum HlsRender {
    /// The media playlist, segment URIs `{seq}.ts{query}`.
    Media { query: String },
    /// The multivariant playlist, its one variant at `uri`.
    Multivariant { uri: String },
}

#[derive(Message)]
#[rtype(result = "Option<Bytes>")]
struct HlsSegment {
    client: u64,
    sequence: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
struct End;

/// Creates streams on demand and forgets them when they stop.
pub struct StreamSupervisor {
    streams: HashMap<StreamKey, Addr<Stream>>,
    shared: Arc<Shared>,
}

impl Actor for StreamSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<GetStream> for StreamSupervisor {
    type Result = Option<Addr<Stream>>;
    fn handle(&mut self, msg: GetStream, ctx: &mut Self::Context) -> Self::Result {
        if let Some(stream) = self.streams.get(&msg.key)
            && stream.connected()
        {
            return Some(stream.clone());
        }
        if !msg.create {
            return None;
        }
        let config = &self.shared.config;
        let stream = Stream {
            key: msg.key.clone(),
            core: StreamCore::new(config.gop_cache_max_bytes),
            policy: LagPolicy {
                max_lag_ms: config.max_viewer_lag_ms,
                max_bytes: config.max_viewer_queue_bytes,
                max_behind: Duration::from_secs(config.max_viewer_behind_secs),
            },
            shared: self.shared.clone(),
            supervisor: ctx.address(),
            viewers: HashMap::new(),
            next_id: 0,
            publisher: None,
            grace: None,
            last_watched: Instant::now(),
            idle_notified: false,
            hls_clients: HashMap::new(),
            stopping: false,
            live_tick: Instant::now(),
            origin: false,
        }
        .start();
        self.streams.insert(msg.key, stream.clone());
        Some(stream)
    }
}

impl Handler<StreamStopped> for StreamSupervisor {
    type Result = ();
    fn handle(&mut self, msg: StreamStopped, _ctx: &mut Self::Context) {
        if self.streams.get(&msg.key) == Some(&msg.stream) {
            self.streams.remove(&msg.key);
        }
    }
}

impl Handler<EndAll> for StreamSupervisor {
    type Result = ();
    fn handle(&mut self, _: EndAll, _ctx: &mut Self::Context) {
        for stream in self.streams.values() {
            stream.do_send(End);
        }
    }
}

struct PublisherSlot {
    id: u64,
    protocol: &'static str,
    /// Dropped (or fired) when this publisher is replaced or the stream
    /// stops.
    _kick: oneshot::Sender<()>,
}

/// One live stream. See the module doc.
pub struct Stream {
    key: StreamKey,
    core: StreamCore,
    policy: LagPolicy,
    shared: Arc<Shared>,
    supervisor: Addr<StreamSupervisor>,
    viewers: HashMap<u64, Arc<ViewerQueue>>,
    next_id: u64,
    publisher: Option<PublisherSlot>,
    grace: Option<SpawnHandle>,
    /// Last time the stream had a viewer (or started being published).
    last_watched: Instant,
    idle_notified: bool,
    /// HLS clients seen recently, by client id.
    hls_clients: HashMap<u64, Instant>,
    stopping: bool,
    /// The previous tick: live time is counted tick to tick while published.
    live_tick: Instant,
    /// Whether the origin hook was told this node publishes the stream.
    origin: bool,
}

impl Stream {
    /// Tell the origin hook whether this node now has an origin publisher.
    fn set_origin(&mut self, origin: bool) {
        if self.origin == origin {
            return;
        }
        self.origin = origin;
        let hook = self.shared.origin_hook.read().ok().and_then(|h| h.clone());
        if let Some(hook) = hook {
            if origin {
                hook.origin_started(&self.key);
            } else {
                hook.origin_ended(&self.key);
            }
        }
    }

    fn fan_out(&mut self, chunks: Vec<Chunk>) {
        if chunks.is_empty() || self.viewers.is_empty() {
            return;
        }
        let now = Instant::now();
        let metrics = &self.shared.metrics;
        let key = &self.key;
        let policy = self.policy;
        self.viewers.retain(|id, queue| {
            for chunk in &chunks {
                match queue.push(chunk.clone(), &policy, now) {
                    PushOutcome::Queued | PushOutcome::Discarded => {}
                    PushOutcome::Skipped => metrics.keyframe_skips.inc(),
                    PushOutcome::TooSlow => {
                        metrics.dropped_viewers.inc();
                        tracing::info!(stream = %key, viewer = id, "viewer too slow: disconnected");
                        return false;
                    }
                    PushOutcome::Closed => return false,
                }
            }
            true
        });
    }

    fn hls_window(&self) -> Duration {
        Duration::from_secs((u64::from(self.shared.config.hls_segment_secs) * 3).max(10))
    }

    fn touch_hls(&mut self, client: u64) {
        if self.hls_clients.insert(client, Instant::now()).is_none() {
            self.shared
                .metrics
                .viewers
                .with_label_values(&[ViewerKind::Hls.label()])
                .inc();
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        // An edge pull's live time is counted by its origin.
        if self
            .publisher
            .as_ref()
            .is_some_and(|p| p.protocol != EDGE_PROTOCOL)
            && let Ok(usage) = self.shared.usage.read()
            && let Some(usage) = usage.as_ref()
        {
            usage.add_live(self.key.vehicle_id, now.duration_since(self.live_tick));
        }
        self.live_tick = now;
        let window = self.hls_window();
        let before = self.hls_clients.len();
        self.hls_clients
            .retain(|_, seen| now.duration_since(*seen) < window);
        let gone = before - self.hls_clients.len();
        if gone > 0 {
            self.shared
                .metrics
                .viewers
                .with_label_values(&[ViewerKind::Hls.label()])
                .sub(gone as i64);
        }
        if !self.viewers.is_empty() || !self.hls_clients.is_empty() {
            self.last_watched = now;
            self.idle_notified = false;
        } else if self.publisher.is_some()
            && !self.idle_notified
            && now.duration_since(self.last_watched)
                >= Duration::from_secs(self.shared.config.idle_timeout_secs)
        {
            self.idle_notified = true;
            tracing::debug!(stream = %self.key, "no viewer: idle");
            let activator = match self.shared.activator.read() {
                Ok(a) => a.clone(),
                Err(_) => return,
            };
            activator.idle(&self.key);
        }
    }

    /// The end: viewers drain what is queued and get a clean end; the
    /// publisher (if any) is let go; the stream stops.
    fn end(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.core.end();
        for (_, queue) in self.viewers.drain() {
            queue.close();
        }
        if self.publisher.take().is_some() {
            self.shared.metrics.publishers.dec();
        }
        self.set_origin(false);
        self.supervisor.do_send(StreamStopped {
            key: self.key.clone(),
            stream: ctx.address(),
        });
        ctx.stop();
    }
}

impl Actor for Stream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.shared.metrics.streams.inc();
        ctx.run_interval(Duration::from_secs(1), |act, _| act.tick());
        tracing::info!(stream = %self.key, vehicle = self.key.vehicle_id, "stream started");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.shared.metrics.streams.dec();
        if !self.hls_clients.is_empty() {
            self.shared
                .metrics
                .viewers
                .with_label_values(&[ViewerKind::Hls.label()])
                .sub(self.hls_clients.len() as i64);
        }
        for (_, queue) in self.viewers.drain() {
            queue.close();
        }
        if self.publisher.take().is_some() {
            self.shared.metrics.publishers.dec();
        }
        self.set_origin(false);
        tracing::info!(stream = %self.key, "stream stopped");
    }
}

impl Handler<AttachPublisher> for Stream {
    type Result = Option<(u64, oneshot::Receiver<()>)>;
    fn handle(&mut self, msg: AttachPublisher, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return None;
        }
        if let Some(handle) = self.grace.take() {
            ctx.cancel_future(handle);
        }
        self.next_id += 1;
        let id = self.next_id;
        let (kick, kicked) = oneshot::channel();
        let protocol = msg.info.protocol;
        match self.publisher.replace(PublisherSlot {
            id,
            protocol,
            _kick: kick,
        }) {
            Some(_) => {
                tracing::info!(stream = %self.key, protocol = msg.info.protocol, remote = ?msg.info.remote, "publisher replaced by a new one");
            }
            None => {
                self.shared.metrics.publishers.inc();
                tracing::info!(stream = %self.key, protocol = msg.info.protocol, remote = ?msg.info.remote, "publisher attached");
            }
        }
        self.set_origin(protocol != EDGE_PROTOCOL);
        self.core.new_publisher();
        self.last_watched = Instant::now();
        self.idle_notified = false;
        Some((id, kicked))
    }
}

impl Handler<DetachPublisher> for Stream {
    type Result = ();
    fn handle(&mut self, msg: DetachPublisher, ctx: &mut Self::Context) {
        if self
            .publisher
            .as_ref()
            .is_none_or(|p| p.id != msg.publisher)
        {
            return;
        }
        self.publisher = None;
        self.shared.metrics.publishers.dec();
        self.set_origin(false);
        let grace = Duration::from_secs(self.shared.config.publisher_grace_secs);
        tracing::info!(stream = %self.key, grace_secs = grace.as_secs(), "publisher left");
        self.grace = Some(ctx.run_later(grace, |act, ctx| {
            act.grace = None;
            if act.publisher.is_none() {
                tracing::info!(stream = %act.key, "no publisher after the grace period: ending");
                act.end(ctx);
            }
        }));
    }
}

impl Handler<Media> for Stream {
    type Result = ();
    fn handle(&mut self, msg: Media, _ctx: &mut Self::Context) {
        if self
            .publisher
            .as_ref()
            .is_none_or(|p| p.id != msg.publisher)
        {
            return;
        }
        let chunks = self.core.push(msg.payload);
        self.fan_out(chunks);
    }
}

impl Handler<Meta> for Stream {
    type Result = ();
    fn handle(&mut self, msg: Meta, _ctx: &mut Self::Context) {
        if self
            .publisher
            .as_ref()
            .is_none_or(|p| p.id != msg.publisher)
        {
            return;
        }
        if let Some(chunk) = self.core.set_publisher_metadata(msg.metadata) {
            self.fan_out(vec![chunk]);
        }
    }
}

impl Handler<AddViewer> for Stream {
    type Result = Option<(u64, Arc<ViewerQueue>)>;
    fn handle(&mut self, _: AddViewer, _ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return None;
        }
        let (initial, wait) = self.core.initial();
        let queue = Arc::new(ViewerQueue::new(wait));
        queue.push_initial(initial);
        self.next_id += 1;
        let id = self.next_id;
        self.viewers.insert(id, queue.clone());
        self.last_watched = Instant::now();
        tracing::debug!(stream = %self.key, viewer = id, "viewer joined");
        Some((id, queue))
    }
}

#[derive(Message)]
#[rtype(result = "Option<&'static str>")]
struct PublisherProtocol;

impl Handler<PublisherProtocol> for Stream {
    type Result = Option<&'static str>;
    fn handle(&mut self, _: PublisherProtocol, _ctx: &mut Self::Context) -> Self::Result {
        self.publisher.as_ref().map(|p| p.protocol)
    }
}

#[derive(Message)]
#[rtype(result = "bool")]
struct IsPublished;

impl Handler<IsPublished> for Stream {
    type Result = bool;
    fn handle(&mut self, _: IsPublished, _ctx: &mut Self::Context) -> bool {
        self.publisher.is_some()
    }
}

impl Handler<RemoveViewer> for Stream {
    type Result = ();
    fn handle(&mut self, msg: RemoveViewer, _ctx: &mut Self::Context) {
        if self.viewers.remove(&msg.id).is_some() {
            tracing::debug!(stream = %self.key, viewer = msg.id, "viewer left");
            if self.viewers.is_empty() {
                self.last_watched = Instant::now();
            }
        }
    }
}

impl Handler<HlsPlaylist> for Stream {
    type Result = Result<Option<String>, HlsRefusal>;
    fn handle(&mut self, msg: HlsPlaylist, _ctx: &mut Self::Context) -> Self::Result {
        let config = &self.shared.config;
        self.core.enable_hls(HlsConfig {
            target_duration_ms: config.hls_segment_secs.max(1) * 1000,
            window: config.hls_window.max(2),
            ..HlsConfig::default()
        })?;
        self.touch_hls(msg.client);
        let Some(hls) = self.core.hls() else {
            return Ok(None);
        };
        if !hls.is_ready() {
            return Ok(None);
        }
        Ok(Some(match msg.render {
            HlsRender::Media { query } => hls.playlist(|seq| format!("{seq}.ts{query}")),
            HlsRender::Multivariant { uri } => Variant::of(hls).playlist(&uri),
        }))
    }
}

impl Handler<HlsSegment> for Stream {
    type Result = Option<Bytes>;
    fn handle(&mut self, msg: HlsSegment, _ctx: &mut Self::Context) -> Self::Result {
        let data = self
            .core
            .hls()?
            .segment(msg.sequence)
            .map(|s| s.data().clone())?;
        self.touch_hls(msg.client);
        Some(data)
    }
}

impl Handler<End> for Stream {
    type Result = ();
    fn handle(&mut self, _: End, ctx: &mut Self::Context) {
        self.end(ctx);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counting {
        start: bool,
        waiting: AtomicUsize,
        idle: AtomicUsize,
    }

    impl StreamActivator for Counting {
        fn viewer_waiting(&self, _key: &StreamKey) -> bool {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            self.start
        }
        fn idle(&self, _key: &StreamKey) {
            self.idle.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn streams(config: LiveConfig) -> Streams {
        let metrics = crate::metrics::Metrics::new().unwrap();
        Streams::start(&actix_rt::Arbiter::current(), config, metrics.live.clone())
    }

    fn info() -> PublisherInfo {
        PublisherInfo {
            protocol: "test",
            remote: None,
        }
    }

    #[test]
    fn the_activator_is_asked_and_the_viewer_waits_for_the_publisher() {
        actix_rt::System::new().block_on(async {
            let config = LiveConfig {
                start_timeout_secs: 2,
                ..LiveConfig::default()
            };
            let key = StreamKey::parse("7-front").unwrap();
            // Without an activator: 404 at once.
            let s = streams(config.clone());
            assert_eq!(
                s.play(&key, ViewerKind::Flv).await.err(),
                Some(LiveError::NotFound)
            );
            // An activator that starts nothing in time: 504 after the wait.
            let activator = Arc::new(Counting {
                start: true,
                ..Counting::default()
            });
            s.set_activator(activator.clone());
            let started = Instant::now();
            assert_eq!(
                s.play(&key, ViewerKind::Flv).await.err(),
                Some(LiveError::StartTimeout)
            );
            assert!(started.elapsed() >= Duration::from_secs(2));
            assert_eq!(activator.waiting.load(Ordering::SeqCst), 1);
            // A publisher arriving during the wait: the viewer plays.
            let publisher = {
                let s = s.clone();
                let key = key.clone();
                actix_rt::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    s.publish(key, info()).await.unwrap()
                })
            };
            let viewer = s.play(&key, ViewerKind::Flv).await.unwrap();
            let header = viewer.next().await.unwrap();
            assert_eq!(&header[..3], b"FLV");
            let publisher = publisher.await.unwrap();
            drop(viewer);
            drop(publisher);
        });
    }

    #[test]
    fn a_stream_that_falls_behind_holds_its_publisher_back() {
        actix_rt::System::new().block_on(async {
            let media = actix_rt::Arbiter::new();
            let metrics = crate::metrics::Metrics::new().unwrap();
            let s = Streams::start(&media.handle(), LiveConfig::default(), metrics.live.clone());
            let key = StreamKey::parse("7-front").unwrap();
            let publisher = s.publish(key, info()).await.unwrap();
            // The media thread stalls for a while.
            media.spawn(async { std::thread::sleep(Duration::from_millis(1500)) });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut pushed = 0;
            for i in 0..PUBLISH_BACKLOG * 3 {
                let frame = crate::media::MediaFrame::audio(i as u32, Bytes::from_static(b"\x21"));
                publisher.push(FlvPayload::Frame(frame));
                pushed += 1;
                let ready = tokio::time::timeout(Duration::from_millis(200), publisher.ready());
                if ready.await.is_err() {
                    break;
                }
            }
            assert_eq!(
                pushed,
                PUBLISH_BACKLOG + 1,
                "the source waits once the backlog is full"
            );
            assert_eq!(publisher.backlog(), PUBLISH_BACKLOG + 1);
            // The stream catches up: the source reads on.
            tokio::time::timeout(Duration::from_secs(5), publisher.ready())
                .await
                .expect("the backlog drains");
            assert!(publisher.backlog() <= PUBLISH_BACKLOG);
            drop(publisher);
            media.stop();
        });
    }

    #[test]
    fn idle_is_called_once_when_nobody_watches() {
        actix_rt::System::new().block_on(async {
            let config = LiveConfig {
                idle_timeout_secs: 1,
                ..LiveConfig::default()
            };
            let s = streams(config);
            let activator = Arc::new(Counting::default());
            s.set_activator(activator.clone());
            let key = StreamKey::parse("7-rear").unwrap();
            let _publisher = s.publish(key.clone(), info()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(3500)).await;
            assert_eq!(activator.idle.load(Ordering::SeqCst), 1);
            // A viewer resets it.
            let viewer = s.play(&key, ViewerKind::WsFlv).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            drop(viewer);
            assert_eq!(activator.idle.load(Ordering::SeqCst), 1);
            tokio::time::sleep(Duration::from_millis(3000)).await;
            assert_eq!(activator.idle.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn a_second_publisher_replaces_the_first_and_the_grace_period_ends_viewers() {
        actix_rt::System::new().block_on(async {
            let config = LiveConfig {
                publisher_grace_secs: 1,
                ..LiveConfig::default()
            };
            let s = streams(config);
            let key = StreamKey::parse("7-cabin").unwrap();
            let mut first = s.publish(key.clone(), info()).await.unwrap();
            let viewer = s.play(&key, ViewerKind::Flv).await.unwrap();
            let second = s.publish(key.clone(), info()).await.unwrap();
            tokio::time::timeout(Duration::from_secs(2), first.replaced())
                .await
                .expect("the first publisher is told");
            drop(first);
            drop(second);
            let ended = tokio::time::timeout(Duration::from_secs(3), async {
                while viewer.next().await.is_some() {}
            })
            .await;
            assert!(ended.is_ok(), "the viewer ends after the grace period");
            assert!(!s.exists(&key).await);
        });
    }

    #[derive(Default)]
    struct Origins {
        started: AtomicUsize,
        ended: AtomicUsize,
    }

    impl OriginHook for Origins {
        fn origin_started(&self, _key: &StreamKey) {
            self.started.fetch_add(1, Ordering::SeqCst);
        }
        fn origin_ended(&self, _key: &StreamKey) {
            self.ended.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_origin_hook_follows_origin_publishers_not_edge_pulls() {
        actix_rt::System::new().block_on(async {
            let s = streams(LiveConfig::default());
            let hook = Arc::new(Origins::default());
            s.set_origin_hook(hook.clone());
            let count = || {
                (
                    hook.started.load(Ordering::SeqCst),
                    hook.ended.load(Ordering::SeqCst),
                )
            };
            let key = StreamKey::parse("7-front").unwrap();
            let edge = PublisherInfo {
                protocol: EDGE_PROTOCOL,
                remote: None,
            };
            let pulled = s.publish(key.clone(), edge.clone()).await.unwrap();
            assert_eq!(count(), (0, 0), "an edge pull is not an origin");
            assert_eq!(s.publisher_protocol(&key).await, Some(EDGE_PROTOCOL));
            let first = s.publish(key.clone(), info()).await.unwrap();
            assert_eq!(count(), (1, 0));
            let second = s.publish(key.clone(), info()).await.unwrap();
            assert_eq!(count(), (1, 0), "one origin replacing another");
            let pulled_again = s.publish(key.clone(), edge).await.unwrap();
            assert_eq!(count(), (1, 1), "replaced by an edge pull");
            let third = s.publish(key.clone(), info()).await.unwrap();
            assert_eq!(count(), (2, 1));
            drop((pulled, first, second, pulled_again));
            drop(third);
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(count(), (2, 2), "the publisher left");
            assert_eq!(s.publisher_protocol(&key).await, None);
        });
    }

    #[test]
    fn stream_keys() {
        let k = StreamKey::parse("12-front").unwrap_or_else(|| panic!("valid"));
        assert_eq!((k.vehicle_id, k.channel.as_str()), (12, "front"));
        assert_eq!(k.to_string(), "12-front");
        assert!(StreamKey::parse("12-rear_2").is_some());
        for bad in [
            "",
            "12",
            "-front",
            "12-",
            "x-front",
            "0-front",
            "12-Front",
            "12-fr-nt",
            "12-abcdefghijklmnopq",
            "12-front?x",
            "+12-front",
            "99999999999999999999-a",
        ] {
            assert!(StreamKey::parse(bad).is_none(), "{bad}");
        }
    }
}
