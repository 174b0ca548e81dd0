//! RTSP pull: a camera's H.264 (and AAC) stream, fetched with
//! [retina](https://github.com/scottlamb/retina) and turned into the FLV
//! payloads every live output consumes.
//!
//! # Specifications
//!
//! - RTSP 1.0: RFC 2326 (<https://www.rfc-editor.org/rfc/rfc2326>); RTSP 2.0
//!   is RFC 7826. Cameras speak 1.0; retina does `DESCRIBE`, `SETUP`, `PLAY`,
//!   keepalives and `TEARDOWN`, with Basic and Digest authentication.
//! - RTP over the RTSP connection ("interleaved", RFC 2326 section 10.12):
//!   the only transport used here, because it crosses NAT and firewalls the
//!   way a camera behind an LTE router needs.
//! - H.264 over RTP: RFC 6184 (<https://www.rfc-editor.org/rfc/rfc6184>).
//!   The RTP timestamp is the 90 kHz presentation time of the access unit.
//! - AAC over RTP: RFC 3640 (`mpeg4-generic`, AAC-hbr mode)
//!   (<https://www.rfc-editor.org/rfc/rfc3640>); the clock is the sample rate.
//!
//! # What comes out
//!
//! A [`PullHandle`] runs one camera stream until it is stopped (or dropped).
//! Each RTSP session delivers to its [`MediaSink`], in order:
//!
//! 1. [`FlvPayload::VideoConfig`] (an AVC record built by retina from the
//!    SDP's `sprop-parameter-sets` or the in-band SPS/PPS), then
//!    [`FlvPayload::AudioConfig`] when the camera also sends AAC;
//! 2. [`FlvPayload::Frame`]s starting with a video keyframe: video as AVCC
//!    with 4-byte NAL lengths, audio as raw AAC access units. Frames before
//!    the first keyframe are dropped (nobody could decode them).
//!
//! A new `VideoConfig` is sent when the camera changes its parameter sets,
//! and again (with `AudioConfig`) at the start of every new session after a
//! reconnect.
//!
//! # Timestamps
//!
//! Each track's RTP clock (`_ticks`, at the stream's clock rate, as retina
//! extends the 32-bit RTP timestamp) is converted to the millisecond FLV
//! timeline (`_ms`) by [`Timeline`]: the first frame of the pull is at 0,
//! audio and video keep their RTP relation (from the `RTP-Info` of the
//! `PLAY` answer when the camera gives it), each track never goes back, and a
//! reconnect continues the timeline after the wall-clock gap, so consumers
//! see one monotonic stream. The RTP time is the presentation time; `dts_ms`
//! is taken from it with a composition offset of 0, which is exact for the
//! B-frame-free streams cameras send (a reordered frame is clamped to the
//! previous frame's time).
//!
//! # Failure and retry
//!
//! Every step is bounded: TCP connect plus `DESCRIBE` by
//! [`PullOptions::connect_timeout`], each `SETUP` and `PLAY` by
//! [`PullOptions::setup_timeout`], and the flow of frames by
//! [`PullOptions::idle_timeout`]. A failed or ended session is retried after
//! an exponential backoff ([`PullOptions::retry_min`] doubling to
//! [`PullOptions::retry_max`], back to the minimum after a session that
//! played). The [`PullState`] watch tells viewers what is going on, with a
//! stable error code ([`PullError::code`]) such as `rtsp_unreachable`.
//! Camera input never panics this module.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use retina::client::{
    Credentials, Demuxed, Described, InitialTimestampPolicy, PlayOptions, Session, SessionOptions,
    SetupOptions, TcpTransportOptions, Transport,
};
use retina::codec::{
    AudioFrame, CodecItem, FrameFormat, ParametersRef, VideoFrame, VideoParameters,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use url::Url;

use crate::media::flv::FlvPayload;
use crate::media::{AacConfig, AvcConfig, MediaFrame, VideoCodec, VideoConfig};

/// Longest RTSP URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Where the pulled media goes: the live Stream's publisher, or a channel.
///
/// `push` is called from the puller's task for every payload, in order, and
/// must not block: a consumer that cannot keep up applies its own policy
/// (drop to the next keyframe, ...) or makes `ready` wait. `bytes_in` counts the media bytes
/// received (frame payloads), for metering.
pub trait MediaSink: Send + 'static {
    /// One payload, in stream order.
    fn push(&mut self, payload: FlvPayload);
    /// `n` more media bytes were received from the camera.
    fn bytes_in(&mut self, _n: u64) {}
    /// Resolves when the sink takes more: the puller awaits it before
    /// reading on (back-pressure to the camera). At once by default.
    fn ready(&mut self) -> impl std::future::Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// A bounded channel is a sink: payloads that do not fit are dropped (and
/// logged), so a stalled reader never stalls the camera connection.
impl MediaSink for mpsc::Sender<FlvPayload> {
    fn push(&mut self, payload: FlvPayload) {
        if let Err(e) = self.try_send(payload) {
            tracing::debug!(error = %e, "rtsp sink full or closed: payload dropped");
        }
    }
}

/// Why pulling a camera stream failed. Messages name the URL without its
/// credentials; [`PullError::code`] is stable for clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    /// The URL cannot be pulled (not `rtsp://`, no host, too long).
    #[error("invalid RTSP URL: {0}")]
    InvalidUrl(String),
    /// TCP connect failed (refused, no route, name not resolved).
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// The camera refused the credentials (or none were given).
    #[error("{url} refused the credentials (RTSP 401/403)")]
    Unauthorized { url: String },
    /// The camera has nothing at this path.
    #[error("{url} has no such stream (RTSP 404)")]
    NotFound { url: String },
    /// The camera offers no H.264 video.
    #[error("{url} offers no H.264 video (it offers {offered})")]
    UnsupportedCodec { url: String, offered: String },
    /// A step did not finish in time.
    #[error("{url}: {what} timed out after {after:?}")]
    Timeout {
        url: String,
        what: &'static str,
        after: Duration,
    },
    /// The camera ended the session (closed the connection, end of stream).
    #[error("{url} ended the session: {detail}")]
    Ended { url: String, detail: String },
    /// Parameter sets the hub cannot use.
    #[error("{url}: unusable media: {detail}")]
    InvalidMedia { url: String, detail: String },
    /// Any other RTSP or RTP failure.
    #[error("{url}: {detail}")]
    Protocol { url: String, detail: String },
}

impl PullError {
    /// The stable snake_case code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            PullError::InvalidUrl(_) => "rtsp_invalid_url",
            PullError::Unreachable { .. } => "rtsp_unreachable",
            PullError::Unauthorized { .. } => "rtsp_unauthorized",
            PullError::NotFound { .. } => "rtsp_not_found",
            PullError::UnsupportedCodec { .. } => "rtsp_unsupported_codec",
            PullError::Timeout { .. } => "rtsp_timeout",
            PullError::Ended { .. } => "rtsp_ended",
            PullError::InvalidMedia { .. } => "rtsp_invalid_media",
            PullError::Protocol { .. } => "rtsp_error",
        }
    }

    /// Maps a retina error. `playing`: the session was already streaming
    /// (a read failure then means the camera went away).
    fn from_retina(url: &str, err: &retina::Error, playing: bool) -> PullError {
        let url = url.to_string();
        let text = err.to_string();
        // retina's messages carry connection details after a blank line.
        let detail = text.lines().next().unwrap_or("").trim().to_string();
        match err.status_code() {
            Some(401 | 403) => return PullError::Unauthorized { url },
            Some(404) => return PullError::NotFound { url },
            _ => {}
        }
        if let Some(rest) = detail.strip_prefix("Unable to connect to RTSP server: ") {
            return PullError::Unreachable {
                url,
                detail: rest.to_string(),
            };
        }
        if playing && detail.starts_with("Error reading from RTSP peer") {
            return PullError::Ended { url, detail };
        }
        PullError::Protocol { url, detail }
    }
}

/// An `rtsp://` URL split into what retina connects to and the credentials
/// of its userinfo. `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct RtspSource {
    url: Url,
    creds: Option<Credentials>,
}

impl std::fmt::Debug for RtspSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspSource")
            .field("url", &self.url.as_str())
            .field("has_credentials", &self.creds.is_some())
            .finish()
    }
}

impl std::fmt::Display for RtspSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str())
    }
}

impl RtspSource {
    /// Parses and checks an `rtsp://[user[:password]@]host[:port]/path` URL.
    /// The userinfo is percent-decoded into credentials and removed.
    pub fn parse(raw: &str) -> Result<RtspSource, PullError> {
        let raw = raw.trim();
        if raw.len() > MAX_URL_LEN {
            return Err(PullError::InvalidUrl(format!(
                "longer than {MAX_URL_LEN} bytes"
            )));
        }
        let mut url = Url::parse(raw).map_err(|e| PullError::InvalidUrl(e.to_string()))?;
        if url.scheme() != "rtsp" {
            return Err(PullError::InvalidUrl(format!(
                "the scheme must be rtsp, not {}",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(PullError::InvalidUrl("no host".into()));
        }
        if url.fragment().is_some() {
            return Err(PullError::InvalidUrl(
                "a fragment (#...) is not allowed".into(),
            ));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| PullError::InvalidUrl("the credentials are not UTF-8".into()))
        };
        let creds = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let username = decode(url.username())?;
            let password = decode(url.password().unwrap_or(""))?;
            url.set_username("")
                .and_then(|()| url.set_password(None))
                .map_err(|()| PullError::InvalidUrl("cannot remove the credentials".into()))?;
            Some(Credentials { username, password })
        };
        Ok(RtspSource { url, creds })
    }

    /// The URL retina connects to: no credentials.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Does the URL carry credentials?
    pub fn has_credentials(&self) -> bool {
        self.creds.is_some()
    }

    /// The URL to show a user: credentials replaced by `***`
    /// (`rtsp://***@host/path`), or the URL itself when it has none.
    pub fn masked(&self) -> String {
        if self.creds.is_none() {
            return self.url.to_string();
        }
        let mut shown = self.url.clone();
        match shown.set_username("***") {
            Ok(()) => shown.to_string(),
            Err(()) => self.url.to_string(),
        }
    }
}

/// Masks the credentials of an RTSP URL as stored: `rtsp://***@host/path`.
/// A URL that does not parse is shown as `rtsp://***` rather than risk
/// echoing a password.
pub fn mask_url(raw: &str) -> String {
    match RtspSource::parse(raw) {
        Ok(source) => source.masked(),
        Err(_) => "rtsp://***".to_string(),
    }
}

/// Timeouts and retry policy of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOptions {
    /// TCP connect and the `DESCRIBE` answer.
    pub connect_timeout: Duration,
    /// Each `SETUP` and the `PLAY` answer.
    pub setup_timeout: Duration,
    /// Longest wait for the next media frame (the first after `PLAY` too).
    pub idle_timeout: Duration,
    /// First wait before a retry.
    pub retry_min: Duration,
    /// Longest wait between retries (the wait doubles up to it).
    pub retry_max: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            connect_timeout: Duration::from_secs(5),
            setup_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(10),
        }
    }
}

impl PullOptions {
    /// The options of the `[rtsp]` configuration section.
    pub fn from_config(config: &crate::config::RtspConfig) -> PullOptions {
        let ms = Duration::from_millis;
        PullOptions {
            connect_timeout: ms(config.connect_timeout_ms),
            setup_timeout: ms(config.setup_timeout_ms),
            idle_timeout: ms(config.idle_timeout_ms),
            retry_min: ms(config.retry_min_ms),
            retry_max: ms(config.retry_max_ms),
        }
    }
}

/// What a pull is doing, published on a [`watch`] channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullState {
    /// Connecting, or waiting for the first keyframe; `attempt` counts the
    /// attempts since the last session that played (1 = the first).
    Connecting { attempt: u32 },
    /// Frames are flowing to the sink (the first keyframe went out).
    Playing,
    /// The last attempt failed; the next starts after `retry_in`.
    Failed {
        error: PullError,
        attempt: u32,
        retry_in: Duration,
    },
    /// Stopped by its owner; terminal.
    Stopped,
}

impl PullState {
    /// The error code of a failed state.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            PullState::Failed { error, .. } => Some(error.code()),
            _ => None,
        }
    }
}

/// Exponential backoff: `min`, doubling up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; the one after is twice as long.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// Back to the minimum (after a session that worked).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A track of the pulled stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video = 0,
    Audio = 1,
}

/// RTP clock ticks to milliseconds, rounded to the nearest (never
/// overflows: the product is computed in 128 bits).
pub fn ticks_to_ms(ticks: i64, clock_rate: u32) -> i64 {
    let rate = i128::from(clock_rate.max(1));
    let ms = (i128::from(ticks) * 1000 + rate / 2).div_euclid(rate);
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// One millisecond timeline for the whole life of a pull, over sessions.
///
/// Within a session the first frame sets the origin; every track keeps its
/// RTP offset to it, but never goes below the session's start or back in
/// time. A new session continues after the last frame plus the gap.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Where the current session starts on the output timeline.
    base_ms: i64,
    /// The session-relative time (ms) of the session's first frame.
    origin_ms: Option<i64>,
    /// The last output time of each track in this session.
    last_ms: [Option<i64>; 2],
    /// The latest output time so far, over every session.
    end_ms: Option<i64>,
}

impl Timeline {
    /// The `dts_ms` of a frame at `ticks` of its track's `clock_rate`
    /// (retina's elapsed time since the stream start).
    pub fn dts_ms(&mut self, track: Track, ticks: i64, clock_rate: u32) -> u32 {
        let ms = ticks_to_ms(ticks, clock_rate);
        let origin = *self.origin_ms.get_or_insert(ms);
        let mut out = self
            .base_ms
            .saturating_add(ms.saturating_sub(origin))
            .max(self.base_ms);
        if let Some(last) = self.last_ms[track as usize] {
            out = out.max(last);
        }
        self.last_ms[track as usize] = Some(out);
        self.end_ms = Some(self.end_ms.map_or(out, |end| end.max(out)));
        // The FLV clock is u32 milliseconds that wrap (after ~49.7 days).
        (out.rem_euclid(1 << 32)) as u32
    }

    /// A new session starts: its first frame comes `gap` after the last
    /// frame so far (the wall-clock time between them).
    pub fn restart(&mut self, gap: Duration) {
        if let Some(end) = self.end_ms {
            let gap_ms = i64::try_from(gap.as_millis()).unwrap_or(i64::MAX).max(1);
            self.base_ms = end.saturating_add(gap_ms);
        }
        self.origin_ms = None;
        self.last_ms = [None, None];
    }
}

/// A camera stream to pull: which vehicle channel it feeds, from where,
/// with which options.
#[derive(Debug, Clone)]
pub struct RtspPuller {
    pub vehicle_id: i64,
    pub channel: String,
    pub source: RtspSource,
    pub options: PullOptions,
}

/// The running pull. Stops it when dropped.
#[derive(Debug)]
pub struct PullHandle {
    state: watch::Receiver<PullState>,
    cancel: CancellationToken,
    bytes: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl PullHandle {
    /// The state, to wait on (`changed()`, `wait_for`) or read.
    pub fn state(&self) -> watch::Receiver<PullState> {
        self.state.clone()
    }

    /// Media bytes received so far (frame payloads), over all sessions.
    pub fn bytes_received(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Asks the pull to stop (the RTSP session is torn down); returns at once.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Stops the pull and waits until its task has ended (and the sink is
    /// dropped).
    pub async fn stop_and_wait(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PullHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl RtspPuller {
    /// A pull with the default options.
    pub fn new(vehicle_id: i64, channel: impl Into<String>, source: RtspSource) -> RtspPuller {
        RtspPuller {
            vehicle_id,
            channel: channel.into(),
            source,
            options: PullOptions::default(),
        }
    }

    /// With these options.
    pub fn with_options(mut self, options: PullOptions) -> RtspPuller {
        self.options = options;
        self
    }

    /// Starts the pull on the current tokio runtime. It runs until the
    /// handle is stopped or dropped, delivering to `sink`.
    pub fn spawn(self, sink: impl MediaSink) -> PullHandle {
        let (state_tx, state_rx) = watch::channel(PullState::Connecting { attempt: 1 });
        let cancel = CancellationToken::new();
        let bytes = Arc::new(AtomicU64::new(0));
        let span = tracing::info_span!(
            "rtsp_pull",
            vehicle_id = self.vehicle_id,
            channel = %self.channel,
            url = %self.source,
        );
        let task = tokio::spawn(
            self.run(sink, state_tx, cancel.clone(), bytes.clone())
                .instrument(span),
        );
        PullHandle {
            state: state_rx,
            cancel,
            bytes,
            task: Some(task),
        }
    }

    async fn run(
        self,
        mut sink: impl MediaSink,
        state: watch::Sender<PullState>,
        cancel: CancellationToken,
        bytes: Arc<AtomicU64>,
    ) {
        let mut backoff = Backoff::new(self.options.retry_min, self.options.retry_max);
        let mut timeline = Timeline::default();
        let mut last_frame_at: Option<Instant> = None;
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            state.send_replace(PullState::Connecting { attempt });
            if let Some(at) = last_frame_at {
                timeline.restart(at.elapsed());
            }
            let mut run = SessionRun {
                puller: &self,
                sink: &mut sink,
                timeline: &mut timeline,
                state: &state,
                bytes: &bytes,
                last_frame_at: &mut last_frame_at,
                played: false,
            };
            let error = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                error = run.session() => error,
            };
            if run.played {
                backoff.reset();
                attempt = 1;
            }
            let retry_in = backoff.next_wait();
            tracing::warn!(
                code = error.code(),
                error = %error,
                attempt,
                retry_in_ms = retry_in.as_millis() as u64,
                "rtsp pull failed; retrying"
            );
            state.send_replace(PullState::Failed {
                error,
                attempt,
                retry_in,
            });
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(retry_in) => {}
            }
        }
        tracing::info!("rtsp pull stopped");
        state.send_replace(PullState::Stopped);
    }
}

/// One RTSP session: connect, describe, set up, play, forward frames.
struct SessionRun<'a, S> {
    puller: &'a RtspPuller,
    sink: &'a mut S,
    timeline: &'a mut Timeline,
    state: &'a watch::Sender<PullState>,
    bytes: &'a AtomicU64,
    last_frame_at: &'a mut Option<Instant>,
    /// The first keyframe went out in this session.
    played: bool,
}

async fn bounded<T>(
    url: &str,
    what: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, retina::Error>>,
) -> Result<T, PullError> {
    match tokio::time::timeout(after, fut).await {
        Err(_) => Err(PullError::Timeout {
            url: url.to_string(),
            what,
            after,
        }),
        Ok(Err(e)) => Err(PullError::from_retina(url, &e, false)),
        Ok(Ok(v)) => Ok(v),
    }
}

/// The AVC record retina built (4-byte NAL lengths, as set up).
fn avc_config(url: &str, params: &VideoParameters) -> Result<AvcConfig, PullError> {
    AvcConfig::parse(Bytes::copy_from_slice(params.extra_data())).map_err(|e| {
        PullError::InvalidMedia {
            url: url.to_string(),
            detail: e.to_string(),
        }
    })
}

/// The session's tracks the hub carries: the first H.264 video (required)
/// and the first AAC audio.
#[derive(Debug, Clone, Copy)]
struct Tracks {
    video: usize,
    audio: Option<usize>,
}

/// Choose the tracks of a described session; an error naming what the
/// camera offers when it has no H.264 video.
fn pick_tracks(session: &Session<Described>, url: &str) -> Result<Tracks, PullError> {
    let mut video = None;
    let mut audio = None;
    let mut offered = Vec::new();
    for (i, stream) in session.streams().iter().enumerate() {
        let kind = format!("{}/{}", stream.media(), stream.encoding_name());
        match (stream.media(), stream.encoding_name()) {
            ("video", "h264") if video.is_none() => video = Some(i),
            ("audio", "mpeg4-generic")
                if audio.is_none()
                    && matches!(stream.parameters(), Some(ParametersRef::Audio(_))) =>
            {
                audio = Some(i)
            }
            _ => {
                tracing::info!(stream = i, codec = %kind, "skipping a stream the hub does not carry")
            }
        }
        offered.push(kind);
    }
    let Some(video) = video else {
        return Err(PullError::UnsupportedCodec {
            url: url.to_owned(),
            offered: if offered.is_empty() {
                "nothing".into()
            } else {
                offered.join(", ")
            },
        });
    };
    Ok(Tracks { video, audio })
}

/// `SETUP` each track (RTP interleaved over the RTSP connection), `PLAY`,
/// and demux the frames.
async fn play(
    mut session: Session<Described>,
    url: &str,
    options: &PullOptions,
    tracks: Tracks,
) -> Result<Demuxed, PullError> {
    for i in std::iter::once(tracks.video).chain(tracks.audio) {
        let setup = SetupOptions::default()
            .transport(Transport::Tcp(TcpTransportOptions::default()))
            .frame_format(FrameFormat::MP4);
        bounded(url, "SETUP", options.setup_timeout, session.setup(i, setup)).await?;
    }
    let playing = bounded(
        url,
        "PLAY",
        options.setup_timeout,
        session.play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive)),
    )
    .await?;
    playing
        .demuxed()
        .map_err(|e| PullError::from_retina(url, &e, false))
}

/// The AAC configuration of audio track `i`; `None` (audio skipped) when
/// unusable.
fn aac_config(demuxed: &Demuxed, i: usize) -> Option<AacConfig> {
    match demuxed.streams().get(i).and_then(|s| s.parameters()) {
        Some(ParametersRef::Audio(p)) => {
            match AacConfig::parse(Bytes::copy_from_slice(p.extra_data())) {
                Ok(config) => Some(config),
                Err(e) => {
                    tracing::info!(error = %e, "AAC configuration unusable: audio skipped");
                    None
                }
            }
        }
        _ => None,
    }
}

impl<S: MediaSink> SessionRun<'_, S> {
    /// Runs the session until it fails; answers why.
    async fn session(&mut self) -> PullError {
        match self.try_session().await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    /// Connect, describe, set up, play, then forward frames until the
    /// session fails.
    async fn try_session(&mut self) -> Result<std::convert::Infallible, PullError> {
        let options = &self.puller.options;
        let source = &self.puller.source;
        let url = source.url().as_str().to_string();
        let session_options = SessionOptions::default()
            .creds(source.creds.clone())
            .user_agent(format!("roadhub/{}", env!("CARGO_PKG_VERSION")));
        let session = bounded(
            &url,
            "connect and DESCRIBE",
            options.connect_timeout,
            Session::describe(source.url().clone(), session_options),
        )
        .await?;
        let tracks = pick_tracks(&session, &url)?;
        let mut demuxed = play(session, &url, options, tracks).await?;
        tracing::info!(audio = tracks.audio.is_some(), "rtsp session playing");
        let audio_config = tracks.audio.and_then(|i| aac_config(&demuxed, i));
        let mut video_config: Option<AvcConfig> = None;
        let mut deadline = Instant::now() + options.idle_timeout;
        loop {
            // Time spent waiting for the sink is not the camera's.
            let waiting = Instant::now();
            self.sink.ready().await;
            deadline += waiting.elapsed();
            let item = match tokio::time::timeout_at(deadline, demuxed.next()).await {
                Err(_) => {
                    return Err(PullError::Timeout {
                        url,
                        what: "waiting for media",
                        after: options.idle_timeout,
                    });
                }
                Ok(None) => {
                    return Err(PullError::Ended {
                        url,
                        detail: "end of stream".into(),
                    });
                }
                Ok(Some(Err(e))) => return Err(PullError::from_retina(&url, &e, true)),
                Ok(Some(Ok(item))) => item,
            };
            match item {
                CodecItem::VideoFrame(frame) if frame.stream_id() == tracks.video => {
                    deadline = Instant::now() + options.idle_timeout;
                    let config = demuxed
                        .streams()
                        .get(tracks.video)
                        .and_then(|s| s.parameters());
                    let audio = audio_config.as_ref();
                    self.video(frame, config, &mut video_config, audio, &url)?;
                }
                CodecItem::AudioFrame(frame) if Some(frame.stream_id()) == tracks.audio => {
                    self.audio(&frame, audio_config.is_some());
                }
                _ => {}
            }
        }
    }

    /// A video frame: a new configuration first when it changed, then the
    /// frame, from the session's first keyframe on.
    fn video(
        &mut self,
        frame: VideoFrame,
        params: Option<ParametersRef<'_>>,
        video_config: &mut Option<AvcConfig>,
        audio_config: Option<&AacConfig>,
        url: &str,
    ) -> Result<(), PullError> {
        self.count(frame.data().len());
        if frame.has_new_parameters() || video_config.is_none() {
            let Some(ParametersRef::Video(params)) = params else {
                return Ok(()); // no SPS/PPS yet: nothing decodable
            };
            let config = avc_config(url, params)?;
            if video_config.as_ref() != Some(&config) {
                tracing::info!(
                    width = config.width,
                    height = config.height,
                    codec = %config.codec_string(),
                    "video configuration"
                );
                self.sink
                    .push(FlvPayload::VideoConfig(VideoConfig::Avc(config.clone())));
                if !self.played
                    && let Some(aac) = audio_config
                {
                    self.sink.push(FlvPayload::AudioConfig(aac.clone()));
                }
                *video_config = Some(config);
            }
        }
        let keyframe = frame.is_random_access_point();
        if !self.played {
            if !keyframe {
                return Ok(());
            }
            self.played = true;
            self.state.send_replace(PullState::Playing);
        }
        let ts = frame.timestamp();
        let dts_ms = self
            .timeline
            .dts_ms(Track::Video, ts.elapsed(), ts.clock_rate().get());
        *self.last_frame_at = Some(Instant::now());
        self.sink.push(FlvPayload::Frame(MediaFrame::video(
            VideoCodec::H264,
            keyframe,
            dts_ms,
            0,
            Bytes::from(frame.into_data()),
        )));
        Ok(())
    }

    /// An audio frame: forwarded once video plays, if AAC is usable.
    fn audio(&mut self, frame: &AudioFrame, usable: bool) {
        self.count(frame.data().len());
        if !self.played || !usable {
            return;
        }
        let ts = frame.timestamp();
        let dts_ms = self
            .timeline
            .dts_ms(Track::Audio, ts.elapsed(), ts.clock_rate().get());
        self.sink.push(FlvPayload::Frame(MediaFrame::audio(
            dts_ms,
            Bytes::copy_from_slice(frame.data()),
        )));
    }

    fn count(&mut self, n: usize) {
        let n = n as u64;
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.sink.bytes_in(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_become_milliseconds() {
        assert_eq!(ticks_to_ms(0, 90_000), 0);
        assert_eq!(ticks_to_ms(3_600, 90_000), 40);
        assert_eq!(ticks_to_ms(90_000, 90_000), 1000);
        // Rounded to the nearest: 1024 samples at 44.1 kHz are 23.2 ms.
        assert_eq!(ticks_to_ms(1024, 44_100), 23);
        assert_eq!(ticks_to_ms(3 * 1024, 44_100), 70);
        assert_eq!(ticks_to_ms(-90, 90_000), -1);
        // A day of 90 kHz ticks, and the extremes, do not overflow.
        assert_eq!(ticks_to_ms(90_000 * 86_400, 90_000), 86_400_000);
        assert_eq!(ticks_to_ms(i64::MAX, 1), i64::MAX);
        assert_eq!(ticks_to_ms(i64::MIN, 1), i64::MIN);
        assert_eq!(ticks_to_ms(5, 0), 5000);
    }

    #[test]
    fn the_timeline_starts_at_zero_and_keeps_tracks_in_step() {
        let mut t = Timeline::default();
        // The camera's RTP start is far from 0; the first frame is at 0.
        let v0 = 90_000 * 1000;
        assert_eq!(t.dts_ms(Track::Video, v0, 90_000), 0);
        assert_eq!(t.dts_ms(Track::Video, v0 + 3600, 90_000), 40);
        // Audio 20 ms after the first video frame, on its own clock.
        let a0 = 48_000 * 1000 + 960;
        assert_eq!(t.dts_ms(Track::Audio, a0, 48_000), 20);
        assert_eq!(t.dts_ms(Track::Audio, a0 + 1024, 48_000), 41);
        assert_eq!(t.dts_ms(Track::Video, v0 + 7200, 90_000), 80);
    }

    #[test]
    fn the_timeline_never_goes_back() {
        let mut t = Timeline::default();
        assert_eq!(t.dts_ms(Track::Video, 9_000, 90_000), 0);
        assert_eq!(t.dts_ms(Track::Video, 18_000, 90_000), 100);
        // A reordered (B) frame or a camera clock step back: clamped.
        assert_eq!(t.dts_ms(Track::Video, 12_600, 90_000), 100);
        assert_eq!(t.dts_ms(Track::Video, 21_600, 90_000), 140);
        // A track starting before the session origin starts at the origin.
        assert_eq!(t.dts_ms(Track::Audio, 0, 48_000), 0);
        assert_eq!(t.dts_ms(Track::Audio, 4_800, 48_000), 0);
        assert_eq!(t.dts_ms(Track::Audio, 9_600, 48_000), 100);
    }

    #[test]
    fn a_new_session_continues_after_the_gap() {
        let mut t = Timeline::default();
        t.dts_ms(Track::Video, 0, 90_000);
        assert_eq!(t.dts_ms(Track::Video, 90_000 * 5, 90_000), 5000);
        t.restart(Duration::from_millis(1500));
        // The new session's clock starts anywhere; output continues.
        assert_eq!(t.dts_ms(Track::Video, 123_456_789, 90_000), 6500);
        assert_eq!(t.dts_ms(Track::Video, 123_456_789 + 3600, 90_000), 6540);
        assert_eq!(t.dts_ms(Track::Audio, 0, 8_000), 6500);
        // Never a zero gap: the next frame is strictly later.
        t.restart(Duration::ZERO);
        assert_eq!(t.dts_ms(Track::Video, 0, 90_000), 6541);
        // Restarting before any frame keeps 0.
        let mut fresh = Timeline::default();
        fresh.restart(Duration::from_secs(3));
        assert_eq!(fresh.dts_ms(Track::Video, 777, 90_000), 0);
    }

    #[test]
    fn the_timeline_wraps_like_the_flv_clock() {
        let mut t = Timeline::default();
        t.dts_ms(Track::Video, 0, 1000);
        assert_eq!(t.dts_ms(Track::Video, (1 << 32) + 5, 1000), 5);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(500));
        // A maximum below the minimum is the minimum.
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.next_wait(), Duration::from_secs(2));
        assert_eq!(b.next_wait(), Duration::from_secs(2));
    }

    #[test]
    fn urls_are_checked_and_credentials_taken_out() {
        let s =
            RtspSource::parse("rtsp://admin:p%40ss:word@192.0.2.7:8554/Streaming/101?x=1").unwrap();
        assert_eq!(s.url().as_str(), "rtsp://192.0.2.7:8554/Streaming/101?x=1");
        let creds = s.creds.as_ref().unwrap();
        assert_eq!(creds.username, "admin");
        assert_eq!(creds.password, "p@ss:word");
        assert_eq!(s.masked(), "rtsp://***@192.0.2.7:8554/Streaming/101?x=1");
        assert!(!format!("{s:?} {s}").contains("word"));

        let plain = RtspSource::parse(" rtsp://cam.local/live ").unwrap();
        assert!(!plain.has_credentials());
        assert_eq!(plain.masked(), "rtsp://cam.local/live");
        let user_only = RtspSource::parse("rtsp://viewer@cam.local/live").unwrap();
        assert_eq!(user_only.creds.as_ref().unwrap().password, "");
        assert_eq!(user_only.masked(), "rtsp://***@cam.local/live");

        for bad in [
            "",
            "cam.local/live",
            "http://cam.local/live",
            "rtsps://cam.local/live",
            "rtsp://",
            "rtsp:///path",
            "rtsp://cam.local/live#frag",
            "rtsp://cam local/",
            "rtsp://a:%ff@cam/",
        ] {
            assert!(
                matches!(RtspSource::parse(bad), Err(PullError::InvalidUrl(_))),
                "{bad:?}"
            );
        }
        let long = format!("rtsp://cam/{}", "a".repeat(MAX_URL_LEN));
        assert!(RtspSource::parse(&long).is_err());

        assert_eq!(mask_url("rtsp://u:p@h/x"), "rtsp://***@h/x");
        assert_eq!(mask_url("rtsp://h/x"), "rtsp://h/x");
        assert_eq!(mask_url("garbage u:p@"), "rtsp://***");
    }

    #[test]
    fn the_configured_options_are_the_defaults() {
        let config = crate::config::Config::default();
        assert_eq!(
            PullOptions::from_config(&config.rtsp),
            PullOptions::default()
        );
    }

    #[test]
    fn error_codes_are_stable() {
        let url = || "rtsp://h/x".to_string();
        let cases = [
            (PullError::InvalidUrl("x".into()), "rtsp_invalid_url"),
            (
                PullError::Unreachable {
                    url: url(),
                    detail: "refused".into(),
                },
                "rtsp_unreachable",
            ),
            (PullError::Unauthorized { url: url() }, "rtsp_unauthorized"),
            (PullError::NotFound { url: url() }, "rtsp_not_found"),
            (
                PullError::UnsupportedCodec {
                    url: url(),
                    offered: "video/h265".into(),
                },
                "rtsp_unsupported_codec",
            ),
            (
                PullError::Timeout {
                    url: url(),
                    what: "PLAY",
                    after: Duration::from_secs(5),
                },
                "rtsp_timeout",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
            assert!(error.to_string().contains("rtsp://h/x") || code == "rtsp_invalid_url");
        }
        let failed = PullState::Failed {
            error: PullError::NotFound { url: url() },
            attempt: 2,
            retry_in: Duration::from_secs(1),
        };
        assert_eq!(failed.error_code(), Some("rtsp_not_found"));
        assert_eq!(PullState::Playing.error_code(), None);
    }
}
