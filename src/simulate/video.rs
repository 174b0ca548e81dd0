//! `roadhub simulate --video`: simulated blackboxes publishing live video
//! over RTMP and simulated players watching it over HTTP-FLV or
//! WebSocket-FLV: the benchmark driver of the media side.
//!
//! Each of `--devices` vehicles publishes channel `--channel` by replaying a
//! pre-encoded H.264/AAC FLV file (`--video-file`, made once by
//! `scripts/make-video-fixture`; no encoder runs during a benchmark) at
//! real-time pace, looping it with continuous timestamps. `--viewers-per-stream`
//! players per stream read the live FLV and count what arrives.
//!
//! Phases, each bounded in time: setup over REST (as the telemetry
//! simulation), publishers connect and publish, viewers connect,
//! `--warmup`, the measured window of `--duration` (during which
//! `--first-frame-probes` extra viewers join one at a time and measure the
//! time from their request to the first complete video frame), close.
//!
//! Reported: per-viewer media rate as a fraction of real time (media
//! timestamp advance over wall time: >= 0.95 means the viewer keeps up),
//! per-viewer throughput against the publish bitrate, video frames and
//! bytes the viewers missed compared with what the publishers sent in the
//! same window, time to first video frame, the hub's CPU and RSS
//! (`--hub-pid`), and the simulator's own CPU.
//!
//! RTMP publishing uses `rml_rtmp`'s client session (handshake, connect,
//! createStream, publish); the FLV reader is the hub's own
//! ([`crate::media::flv::FileReader`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SimulateOptions;
use super::stats::{CpuSample, Latency, Percentiles, ProcSample, unix_us};
use crate::media::flv::{self, RawTag, tag_type};

/// How viewers play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VideoProtocol {
    /// `GET /live/{key}.flv` (HTTP/1.1, chunked).
    Flv,
    /// The same URL upgraded to a WebSocket; binary messages carry FLV.
    WsFlv,
}

/// The video flags of `roadhub simulate` (used with `--video`).
#[derive(Debug, Clone, clap::Args)]
pub struct VideoOptions {
    /// Video mode: every simulated vehicle publishes --video-file over RTMP
    /// and --viewers-per-stream players watch it; the telemetry flags
    /// (--points, --interval, --phones...) are ignored.
    #[arg(long)]
    pub video: bool,

    /// The FLV file (H.264 + AAC) each publisher replays in a loop at
    /// real-time pace; `scripts/make-video-fixture` makes one.
    #[arg(long, value_name = "FILE")]
    pub video_file: Option<std::path::PathBuf>,

    /// Players per published stream.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub viewers_per_stream: usize,

    /// How players play: flv (HTTP-FLV) or ws-flv (WebSocket-FLV).
    #[arg(long, value_enum, default_value_t = VideoProtocol::Flv)]
    pub video_protocol: VideoProtocol,

    /// RTMP base URL of the hub (`rtmp://HOST:PORT`); default: the host of
    /// --url on port 1935.
    #[arg(long, value_name = "URL")]
    pub rtmp_url: Option<String>,

    /// HTTP base URL the players use (`http://HOST:PORT`), e.g. another
    /// node of a cluster than the one published to; default: --url.
    #[arg(long, value_name = "URL")]
    pub viewer_url: Option<String>,

    /// Camera channel the publishers use (the stream key is
    /// `{vehicle_id}-{channel}`).
    #[arg(long, default_value = "front", value_name = "NAME")]
    pub channel: String,

    /// Extra viewers that join one after another during the measured window
    /// to time their first video frame (request sent to first complete
    /// video frame received).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub first_frame_probes: usize,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            video: false,
            video_file: None,
            viewers_per_stream: 10,
            video_protocol: VideoProtocol::Flv,
            rtmp_url: None,
            viewer_url: None,
            channel: "front".into(),
            first_frame_probes: 20,
        }
    }
}

impl VideoOptions {
    /// Check the video flags (only called in video mode).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.video_file.is_some(),
            "--video needs --video-file (make one with scripts/make-video-fixture)"
        );
        anyhow::ensure!(
            !self.channel.is_empty()
                && self.channel.len() <= 16
                && self
                    .channel
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "--channel must be 1 to 16 of a-z, 0-9, _"
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The file to replay

/// The tags of the fixture, split into the sequence headers (sent once per
/// publish) and the media tags (looped).
struct Fixture {
    headers: Vec<RawTag>,
    media: Vec<RawTag>,
    /// Timestamp distance from one loop to the next, ms.
    loop_ms: u32,
    /// Media bytes (tag bodies) per loop and the file's bitrate.
    bits_per_second: f64,
    /// The video frame interval (median DTS step), ms.
    frame_ms: u32,
    /// Mean size of a video frame's tag body, bytes.
    video_frame_bytes: f64,
}

impl Fixture {
    fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let reader = flv::FileReader::new(Bytes::from(data))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut headers = Vec::new();
        let mut media = Vec::new();
        for tag in reader {
            let tag = tag.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            match tag.tag_type {
                tag_type::VIDEO | tag_type::AUDIO if is_sequence_header(&tag) => headers.push(tag),
                tag_type::VIDEO | tag_type::AUDIO => media.push(tag),
                _ => {}
            }
        }
        anyhow::ensure!(
            media.iter().any(|t| t.tag_type == tag_type::VIDEO),
            "{}: no video frames",
            path.display()
        );
        let first = media.first().map_or(0, |t| t.timestamp_ms);
        let last = media.last().map_or(0, |t| t.timestamp_ms);
        // One video frame interval after the last tag (median gap of video).
        let mut gaps: Vec<u32> = media
            .iter()
            .filter(|t| t.tag_type == tag_type::VIDEO)
            .map(|t| t.timestamp_ms)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1].wrapping_sub(w[0]))
            .collect();
        gaps.sort_unstable();
        let frame = gaps.get(gaps.len() / 2).copied().unwrap_or(33).max(1);
        let loop_ms = last.wrapping_sub(first) + frame;
        let bytes: usize = media.iter().map(|t| t.body.len()).sum();
        let (video_count, video_bytes) = media
            .iter()
            .filter(|t| t.tag_type == tag_type::VIDEO)
            .fold((0usize, 0usize), |(n, b), t| (n + 1, b + t.body.len()));
        let media = media
            .into_iter()
            .map(|mut t| {
                t.timestamp_ms = t.timestamp_ms.wrapping_sub(first);
                t
            })
            .collect();
        Ok(Self {
            headers,
            media,
            loop_ms,
            bits_per_second: bytes as f64 * 8.0 / (f64::from(loop_ms) / 1000.0),
            frame_ms: frame,
            video_frame_bytes: video_bytes as f64 / video_count.max(1) as f64,
        })
    }
}

/// AVC/AAC sequence header (packet type 0), legacy or Enhanced RTMP.
fn is_sequence_header(tag: &RawTag) -> bool {
    let b = &tag.body;
    match tag.tag_type {
        tag_type::VIDEO if b.first().is_some_and(|b0| b0 & 0x80 != 0) => b[0] & 0x0F == 0,
        tag_type::VIDEO | tag_type::AUDIO => b.get(1) == Some(&0),
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Counters

/// What one publisher has sent so far.
#[derive(Default)]
struct PublisherStats {
    bytes: AtomicU64,
    video_frames: AtomicU64,
    publishing: AtomicBool,
}

/// What one viewer has received so far.
#[derive(Default)]
struct ViewerStats {
    bytes: AtomicU64,
    video_frames: AtomicU64,
    /// Newest media timestamp received, ms.
    last_ts_ms: AtomicU64,
    /// Wall time of the first complete video frame, unix us (0 = none yet).
    first_video_us: AtomicU64,
    ended: AtomicBool,
    /// DTS + 1 of the last video frame (0 = none yet).
    last_video_ts: AtomicU64,
    /// Video frames missing from the timeline: DTS steps longer than 1.5
    /// frame intervals count the frames that would fill them.
    gap_frames: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct ViewerSnapshot {
    bytes: u64,
    last_ts_ms: u64,
    gap_frames: u64,
}

impl ViewerStats {
    fn snapshot(&self) -> ViewerSnapshot {
        ViewerSnapshot {
            bytes: self.bytes.load(Ordering::Relaxed),
            last_ts_ms: self.last_ts_ms.load(Ordering::Relaxed),
            gap_frames: self.gap_frames.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------
// Report

/// The result of a video run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct VideoReport {
    /// Always `video`.
    pub mode: &'static str,
    pub url: String,
    pub protocol: Option<VideoProtocol>,
    pub streams: usize,
    pub streams_publishing: usize,
    pub viewers_attempted: usize,
    pub viewers_connected: usize,
    /// Bitrate of the replayed file, kbit/s.
    pub publish_kbps: f64,
    pub window_s: f64,
    /// Per viewer, media time received over wall time in the window.
    pub realtime_ratio_min: f64,
    pub realtime_ratio_p1: f64,
    pub realtime_ratio_median: f64,
    /// Viewers below 0.95 of real time (or that ended).
    pub viewers_behind: usize,
    /// Per viewer, kbit/s received in the window (min and median).
    pub viewer_kbps_min: f64,
    pub viewer_kbps_median: f64,
    /// All viewers together, Mbit/s received in the window.
    pub total_mbps: f64,
    /// Video frames missing from the viewers' timelines in the window (a
    /// DTS step longer than 1.5 frame intervals counts the frames that
    /// would fill it: keyframe skips, losses), summed over viewers; bytes:
    /// those frames at the file's mean video frame size.
    pub video_frames_lost: u64,
    pub bytes_lost: u64,
    /// Viewers whose connection ended before the run did.
    pub viewers_dropped: usize,
    /// Request sent to first complete video frame, for the probes.
    pub first_frame: Percentiles,
    pub errors: std::collections::BTreeMap<String, u64>,
    pub sim_cpu_percent_of_core: f64,
    pub hub_cpu_percent_of_core: Option<f64>,
    pub hub_rss_kb: Option<u64>,
    pub hub_rss_before_kb: Option<u64>,
    pub timed_out: bool,
}

impl VideoReport {
    /// One JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for VideoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Some(VideoProtocol::WsFlv) => "WS-FLV",
            _ => "HTTP-FLV",
        };
        writeln!(f, "roadhub simulate --video against {}", self.url)?;
        writeln!(
            f,
            "streams          {} publishing of {} at {:.0} kbit/s",
            self.streams_publishing, self.streams, self.publish_kbps
        )?;
        writeln!(
            f,
            "viewers          {} {proto} connected of {}, {} dropped",
            self.viewers_connected, self.viewers_attempted, self.viewers_dropped
        )?;
        writeln!(
            f,
            "real time        min {:.3}  p1 {:.3}  median {:.3}  ({} viewers below 0.95) over {:.1} s",
            self.realtime_ratio_min,
            self.realtime_ratio_p1,
            self.realtime_ratio_median,
            self.viewers_behind,
            self.window_s
        )?;
        writeln!(
            f,
            "throughput       per viewer min {:.0} / median {:.0} kbit/s; all viewers {:.1} Mbit/s",
            self.viewer_kbps_min, self.viewer_kbps_median, self.total_mbps
        )?;
        writeln!(
            f,
            "lost             {} video frames, {} bytes",
            self.video_frames_lost, self.bytes_lost
        )?;
        let p = &self.first_frame;
        writeln!(
            f,
            "first frame      n={} p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            p.count, p.p50_ms, p.p99_ms, p.max_ms
        )?;
        write!(
            f,
            "cpu              simulator {:.1}% of a core",
            self.sim_cpu_percent_of_core
        )?;
        if let Some(hub) = self.hub_cpu_percent_of_core {
            write!(f, ", hub {hub:.1}% of a core")?;
        }
        writeln!(f)?;
        if let (Some(rss), Some(before)) = (self.hub_rss_kb, self.hub_rss_before_kb) {
            writeln!(
                f,
                "hub rss          {} kB (before viewers {} kB)",
                rss, before
            )?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "errors           {:?}", self.errors)?;
        }
        if self.timed_out {
            writeln!(f, "TIMED OUT: the figures are partial")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The run

struct Run {
    opts: SimulateOptions,
    http: SocketAddr,
    http_authority: String,
    rtmp: SocketAddr,
    rtmp_base: String,
    close: CancellationToken,
    errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// The fixture's video frame interval, ms.
    frame_ms: u32,
}

impl Run {
    fn error(&self, kind: impl Into<String>) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind.into()).or_insert(0) += 1;
        }
    }

    fn source_for(&self, index: usize) -> Option<SocketAddr> {
        let n = self.opts.source_addrs.unwrap_or(0);
        if n == 0 || !self.http.ip().is_loopback() || !self.http.is_ipv4() {
            return None;
        }
        let last = 2 + (index % n as usize) as u8;
        Some(SocketAddr::from(([127, 0, 0, last], 0)))
    }
}

/// Run one video simulation. Runs on the caller's tokio runtime.
pub async fn run(opts: SimulateOptions) -> anyhow::Result<VideoReport> {
    opts.video.validate()?;
    anyhow::ensure!(opts.devices >= 1, "--devices must be at least 1");
    let began = Instant::now();
    let deadline = began + opts.hard_timeout();
    let path = opts.video.video_file.clone().unwrap_or_default();
    let fixture = Arc::new(Fixture::load(&path)?);
    let super::client::Target {
        addr: http,
        authority: http_authority,
        ..
    } = super::client::Target::resolve(&opts.url).await?;
    let rtmp_base = opts
        .video
        .rtmp_url
        .clone()
        .unwrap_or_else(|| format!("rtmp://{}:1935", http.ip()));
    let rtmp = resolve_rtmp(&rtmp_base).await?;
    // Players may watch another node than the one publishers and setup use.
    let (http, http_authority) = match &opts.video.viewer_url {
        Some(url) => {
            let t = super::client::Target::resolve(url)
                .await
                .context("--viewer-url")?;
            (t.addr, t.authority)
        }
        None => (http, http_authority),
    };
    let mut setup_opts = opts.clone();
    setup_opts.phones = Some(1); // one access token per owner is needed
    let fleet = tokio::time::timeout_at(
        deadline,
        super::setup::prepare(&setup_opts, &format!("{:x}", unix_us())),
    )
    .await
    .context("setup timed out")??;
    let run = Arc::new(Run {
        http,
        http_authority,
        rtmp,
        rtmp_base: rtmp_base.trim_end_matches('/').to_string(),
        close: CancellationToken::new(),
        errors: std::sync::Mutex::new(Default::default()),
        frame_ms: fixture.frame_ms,
        opts,
    });
    let result = tokio::time::timeout_at(deadline, phases(run.clone(), fixture, fleet)).await;
    run.close.cancel();
    match result {
        Ok(report) => report,
        Err(_) => Ok(VideoReport {
            mode: "video",
            url: run.opts.url.clone(),
            timed_out: true,
            errors: run.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            ..Default::default()
        }),
    }
}

async fn resolve_rtmp(base: &str) -> anyhow::Result<SocketAddr> {
    let rest = base
        .strip_prefix("rtmp://")
        .with_context(|| format!("--rtmp-url {base:?}: must start with rtmp://"))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:1935")
    };
    tokio::net::lookup_host(&host_port)
        .await
        .with_context(|| format!("resolving {host_port}"))?
        .next()
        .with_context(|| format!("{host_port} resolves to no address"))
}

async fn phases(
    run: Arc<Run>,
    fixture: Arc<Fixture>,
    fleet: super::setup::Fleet,
) -> anyhow::Result<VideoReport> {
    let opts = &run.opts;
    let hub_before = opts.hub_pid.and_then(ProcSample::of);
    // 1. Publishers.
    let streams: Vec<(String, Arc<str>, Arc<PublisherStats>)> = fleet
        .credentials
        .vehicles
        .iter()
        .take(opts.devices)
        .map(|v| {
            let token = fleet
                .tokens
                .get(v.owner)
                .and_then(Clone::clone)
                .unwrap_or_else(|| Arc::from(""));
            (
                format!("{}-{}", v.id, opts.video.channel),
                token,
                Arc::new(PublisherStats::default()),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for ((key, _, stats), v) in streams.iter().zip(&fleet.credentials.vehicles) {
        let url = format!(
            "{}/live/{key}?token={}",
            run.rtmp_base,
            v.device_token.as_str()
        );
        tasks.push(tokio::spawn(publish(
            run.clone(),
            fixture.clone(),
            url,
            stats.clone(),
        )));
    }
    // Wait (bounded) until every publisher is publishing.
    let publish_deadline = Instant::now() + opts.connect_timeout;
    while Instant::now() < publish_deadline
        && !streams
            .iter()
            .all(|(_, _, s)| s.publishing.load(Ordering::Relaxed))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let streams_publishing = streams
        .iter()
        .filter(|(_, _, s)| s.publishing.load(Ordering::Relaxed))
        .count();
    // 2. Viewers.
    let per_stream = opts.video.viewers_per_stream;
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.connect_concurrency.max(1)));
    let mut viewers: Vec<(usize, Arc<ViewerStats>)> = Vec::new();
    for i in 0..streams.len() * per_stream {
        let s = i % streams.len();
        let stats = Arc::new(ViewerStats::default());
        viewers.push((s, stats.clone()));
        let (key, token, _) = &streams[s];
        tasks.push(tokio::spawn(view(
            run.clone(),
            i,
            format!("/live/{key}.flv?token={token}"),
            stats,
            Some(slots.clone()),
            None,
        )));
    }
    let connect_deadline = Instant::now() + opts.connect_timeout;
    while Instant::now() < connect_deadline
        && viewers.iter().any(|(_, v)| {
            v.first_video_us.load(Ordering::Relaxed) == 0 && !v.ended.load(Ordering::Relaxed)
        })
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let viewers_connected = viewers
        .iter()
        .filter(|(_, v)| v.first_video_us.load(Ordering::Relaxed) != 0)
        .count();
    tokio::time::sleep(opts.warmup).await;
    // 3. Measured window.
    let cpu0 = CpuSample::now();
    let hub0 = opts.hub_pid.and_then(ProcSample::of);
    let t0 = Instant::now();
    let view0: Vec<ViewerSnapshot> = viewers.iter().map(|(_, v)| v.snapshot()).collect();
    let first_frame = Latency::new()?;
    let probes = opts.video.first_frame_probes;
    let window_end = t0 + opts.duration;
    if probes > 0 {
        let gap = opts.duration / (probes as u32 + 1);
        for p in 0..probes {
            tokio::time::sleep_until(t0 + gap * (p as u32 + 1)).await;
            let s = p % streams.len();
            let (key, token, _) = &streams[s];
            let stats = Arc::new(ViewerStats::default());
            let probe_close = CancellationToken::new();
            let sent_us = unix_us();
            let task = tokio::spawn(view(
                run.clone(),
                viewers.len() + p,
                format!("/live/{key}.flv?token={token}"),
                stats.clone(),
                None,
                Some(probe_close.clone()),
            ));
            let wait_until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < wait_until
                && stats.first_video_us.load(Ordering::Relaxed) == 0
                && !stats.ended.load(Ordering::Relaxed)
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let first = stats.first_video_us.load(Ordering::Relaxed);
            if first == 0 {
                run.error("probe:no_video");
            } else {
                first_frame.record(p, first.saturating_sub(sent_us));
            }
            probe_close.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
    tokio::time::sleep_until(window_end).await;
    let window_s = t0.elapsed().as_secs_f64();
    let cpu1 = CpuSample::now();
    let hub1 = opts.hub_pid.and_then(ProcSample::of);
    let view1: Vec<ViewerSnapshot> = viewers.iter().map(|(_, v)| v.snapshot()).collect();
    // 4. Close.
    run.close.cancel();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }

    let mut ratios = Vec::with_capacity(viewers.len());
    let mut kbps = Vec::with_capacity(viewers.len());
    let mut total_bytes = 0u64;
    let mut frames_lost = 0u64;
    let mut dropped = 0;
    for (i, (_, v)) in viewers.iter().enumerate() {
        let (a, b) = (view0[i], view1[i]);
        let media_ms = b.last_ts_ms.saturating_sub(a.last_ts_ms);
        let ended = v.ended.load(Ordering::Relaxed);
        if ended {
            dropped += 1;
        }
        ratios.push(if a.last_ts_ms == 0 {
            0.0
        } else {
            media_ms as f64 / 1000.0 / window_s
        });
        let got = b.bytes - a.bytes;
        total_bytes += got;
        kbps.push(got as f64 * 8.0 / 1000.0 / window_s);
        frames_lost += b.gap_frames - a.gap_frames;
    }
    ratios.sort_by(f64::total_cmp);
    kbps.sort_by(f64::total_cmp);
    let pick = |v: &[f64], q: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        (v[i.min(v.len() - 1)] * 1000.0).round() / 1000.0
    };
    let cpu_pct = |s: f64| (s / window_s * 1000.0).round() / 10.0;
    Ok(VideoReport {
        mode: "video",
        url: opts.url.clone(),
        protocol: Some(opts.video.video_protocol),
        streams: streams.len(),
        streams_publishing,
        viewers_attempted: viewers.len(),
        viewers_connected,
        publish_kbps: (fixture.bits_per_second / 100.0).round() / 10.0,
        window_s: (window_s * 100.0).round() / 100.0,
        realtime_ratio_min: pick(&ratios, 0.0),
        realtime_ratio_p1: pick(&ratios, 0.01),
        realtime_ratio_median: pick(&ratios, 0.5),
        viewers_behind: ratios.iter().filter(|r| **r < 0.95).count(),
        viewer_kbps_min: pick(&kbps, 0.0).round(),
        viewer_kbps_median: pick(&kbps, 0.5).round(),
        total_mbps: (total_bytes as f64 * 8.0 / 1e6 / window_s * 10.0).round() / 10.0,
        video_frames_lost: frames_lost,
        bytes_lost: (frames_lost as f64 * fixture.video_frame_bytes).round() as u64,
        viewers_dropped: dropped,
        first_frame: first_frame.summary(),
        errors: run.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        sim_cpu_percent_of_core: cpu_pct(cpu1.total() - cpu0.total()),
        hub_cpu_percent_of_core: hub0.zip(hub1).map(|(a, b)| cpu_pct(b.cpu_s - a.cpu_s)),
        hub_rss_kb: hub1.map(|h| h.rss_kb),
        hub_rss_before_kb: hub_before.map(|h| h.rss_kb),
        timed_out: false,
    })
}

// ---------------------------------------------------------------------------
// Publisher: RTMP

/// Write every packet an rml_rtmp call produced; raise the events.
async fn flush_results(
    stream: &mut TcpStream,
    results: Vec<ClientSessionResult>,
    events: &mut Vec<ClientSessionEvent>,
) -> anyhow::Result<()> {
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => stream.write_all(&p.bytes).await?,
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    Ok(())
}

/// One publisher: connect, publish, replay the fixture until closed.
async fn publish(run: Arc<Run>, fixture: Arc<Fixture>, url: String, stats: Arc<PublisherStats>) {
    if let Err(e) = publish_inner(&run, &fixture, &url, &stats).await
        && !run.close.is_cancelled()
    {
        tracing::warn!(error = %e, "publisher failed");
        run.error(format!("publish:{}", short_kind(&e)));
    }
    stats.publishing.store(false, Ordering::Relaxed);
}

fn short_kind(e: &anyhow::Error) -> String {
    let text = e.to_string();
    text.split(':')
        .next()
        .unwrap_or("error")
        .trim()
        .replace(' ', "_")
}

async fn publish_inner(
    run: &Run,
    fixture: &Fixture,
    url: &str,
    stats: &PublisherStats,
) -> anyhow::Result<()> {
    // rtmp://host:port/live/KEY?token=T -> app "live", stream name "KEY?token=T".
    let after_host = url
        .strip_prefix("rtmp://")
        .and_then(|r| r.split_once('/'))
        .map(|(_, path)| path)
        .context("bad rtmp url")?;
    let (app, stream_name) = after_host.split_once('/').context("bad rtmp url")?;
    let tc_url = format!("rtmp://{}/{app}", run.rtmp);
    let mut stream = tokio::time::timeout(run.opts.connect_timeout, TcpStream::connect(run.rtmp))
        .await
        .context("connect: timeout")?
        .context("connect")?;
    stream.set_nodelay(true)?;
    // Handshake.
    let mut handshake = Handshake::new(PeerType::Client);
    let c0c1 = handshake
        .generate_outbound_p0_and_p1()
        .map_err(|e| anyhow::anyhow!("handshake: {e:?}"))?;
    stream.write_all(&c0c1).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let remaining = loop {
        let n = tokio::time::timeout(run.opts.connect_timeout, stream.read(&mut buf))
            .await
            .context("handshake: timeout")??;
        anyhow::ensure!(n > 0, "handshake: closed");
        match handshake
            .process_bytes(&buf[..n])
            .map_err(|e| anyhow::anyhow!("handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(tc_url);
    config.chunk_size = 60_000;
    let (mut session, results) =
        ClientSession::new(config).map_err(|e| anyhow::anyhow!("session: {e:?}"))?;
    let mut events = Vec::new();
    flush_results(&mut stream, results, &mut events).await?;
    let r = session
        .request_connection(app.to_string())
        .map_err(|e| anyhow::anyhow!("connect: {e:?}"))?;
    flush_results(&mut stream, vec![r], &mut events).await?;
    if !remaining.is_empty() {
        let r = session
            .handle_input(&remaining)
            .map_err(|e| anyhow::anyhow!("rtmp: {e:?}"))?;
        flush_results(&mut stream, r, &mut events).await?;
    }
    // Until publishing is accepted.
    let accept_deadline = Instant::now() + run.opts.connect_timeout;
    let mut publishing = false;
    while !publishing {
        for e in std::mem::take(&mut events) {
            match e {
                ClientSessionEvent::ConnectionRequestAccepted => {
                    let r = session
                        .request_publishing(stream_name.to_string(), PublishRequestType::Live)
                        .map_err(|e| anyhow::anyhow!("publish: {e:?}"))?;
                    flush_results(&mut stream, vec![r], &mut events).await?;
                }
                ClientSessionEvent::ConnectionRequestRejected { description } => {
                    anyhow::bail!("connect_rejected: {description}")
                }
                ClientSessionEvent::PublishRequestAccepted => publishing = true,
                _ => {}
            }
        }
        if publishing {
            break;
        }
        let n = tokio::time::timeout_at(accept_deadline, stream.read(&mut buf))
            .await
            .context("publish_refused: no answer")??;
        anyhow::ensure!(n > 0, "publish_refused: connection closed");
        let r = session
            .handle_input(&buf[..n])
            .map_err(|e| anyhow::anyhow!("rtmp: {e:?}"))?;
        flush_results(&mut stream, r, &mut events).await?;
    }
    stats.publishing.store(true, Ordering::Relaxed);
    // Replay: headers once, then the media tags in a loop, paced by their
    // timestamps.
    let send = |session: &mut ClientSession, tag: &RawTag, ts: u32| {
        let t = RtmpTimestamp::new(ts);
        if tag.tag_type == tag_type::VIDEO {
            session.publish_video_data(tag.body.clone(), t, false)
        } else {
            session.publish_audio_data(tag.body.clone(), t, false)
        }
        .map_err(|e| anyhow::anyhow!("rtmp: {e:?}"))
    };
    for tag in &fixture.headers {
        let r = send(&mut session, tag, 0)?;
        flush_results(&mut stream, vec![r], &mut events).await?;
    }
    let start = Instant::now();
    let mut base: u32 = 0;
    'replay: loop {
        for tag in &fixture.media {
            let ts = base.wrapping_add(tag.timestamp_ms);
            let due = start + Duration::from_millis(u64::from(ts));
            // Read (acks, pings) until the tag is due.
            loop {
                tokio::select! {
                    () = run.close.cancelled() => break 'replay,
                    () = tokio::time::sleep_until(due) => break,
                    read = stream.read(&mut buf) => {
                        let n = read?;
                        anyhow::ensure!(n > 0, "closed: by the hub");
                        let r = session
                            .handle_input(&buf[..n])
                            .map_err(|e| anyhow::anyhow!("rtmp: {e:?}"))?;
                        flush_results(&mut stream, r, &mut events).await?;
                        events.clear();
                    }
                }
            }
            let r = send(&mut session, tag, ts)?;
            flush_results(&mut stream, vec![r], &mut events).await?;
            stats
                .bytes
                .fetch_add(tag.body.len() as u64, Ordering::Relaxed);
            if tag.tag_type == tag_type::VIDEO {
                stats.video_frames.fetch_add(1, Ordering::Relaxed);
            }
        }
        base = base.wrapping_add(fixture.loop_ms);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Viewer: HTTP-FLV or WS-FLV

/// Counts FLV tags in a byte stream without copying their bodies.
struct FlvScan {
    /// Bytes of the file header still to skip.
    header_left: usize,
    tag_header: [u8; 11],
    have: usize,
    /// Body bytes (+ the 4-byte PreviousTagSize) of the current tag to skip.
    body_left: usize,
    /// The current tag is video; its first two body bytes decide whether it
    /// is a frame (not a sequence header).
    video: bool,
    peek: [u8; 2],
    peeked: usize,
    body_len: usize,
    ts_ms: u32,
}

/// A complete tag seen by [`FlvScan`].
struct TagSeen {
    video_frame: bool,
    ts_ms: u32,
    body_len: usize,
}

impl FlvScan {
    fn new() -> Self {
        Self {
            header_left: flv::FILE_HEADER_LEN,
            tag_header: [0; 11],
            have: 0,
            body_left: 0,
            video: false,
            peek: [0; 2],
            peeked: 0,
            body_len: 0,
            ts_ms: 0,
        }
    }

    /// Feed bytes; `seen` is called for each tag whose body is complete.
    fn feed(&mut self, mut data: &[u8], mut seen: impl FnMut(TagSeen)) {
        while !data.is_empty() {
            if self.header_left > 0 {
                let n = self.header_left.min(data.len());
                self.header_left -= n;
                data = &data[n..];
                continue;
            }
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                let body_pos = self.body_len + 4 - self.body_left;
                let mut i = 0;
                while self.peeked < 2 && body_pos + i < self.body_len.min(2) && i < n {
                    self.peek[self.peeked] = data[i];
                    self.peeked += 1;
                    i += 1;
                }
                self.body_left -= n;
                data = &data[n..];
                if self.body_left == 0 {
                    let video_frame = self.video && !is_video_config(&self.peek[..self.peeked]);
                    seen(TagSeen {
                        video_frame,
                        ts_ms: self.ts_ms,
                        body_len: self.body_len,
                    });
                }
                continue;
            }
            let n = (11 - self.have).min(data.len());
            self.tag_header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 11 {
                let h = self.tag_header;
                self.have = 0;
                self.video = h[0] & 0x1F == tag_type::VIDEO;
                self.body_len =
                    (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
                self.ts_ms = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
                self.body_left = self.body_len + 4;
                self.peeked = 0;
            }
        }
    }
}

/// A video tag body starting with these bytes is a sequence header (or a
/// command), not a frame.
fn is_video_config(head: &[u8]) -> bool {
    match head {
        [b0, ..] if b0 & 0x80 != 0 => b0 & 0x0F != 1 && b0 & 0x0F != 3, // ExHeader: CodedFrames(X)
        [b0, _] if (b0 >> 4) == 5 => true,                              // command frame
        [_, pt] => *pt != 1,
        _ => true,
    }
}

/// One viewer: request the stream and count what arrives until closed.
async fn view(
    run: Arc<Run>,
    index: usize,
    path: String,
    stats: Arc<ViewerStats>,
    slots: Option<Arc<tokio::sync::Semaphore>>,
    close: Option<CancellationToken>,
) {
    let close = close.unwrap_or_else(|| run.close.clone());
    // At most --connect-concurrency handshakes at once: the permit is let
    // go once the response head (or the upgrade) is in.
    let permit = match slots {
        Some(s) => s.acquire_owned().await.ok(),
        None => None,
    };
    let result = match run.opts.video.video_protocol {
        VideoProtocol::Flv => view_http(&run, index, &path, &stats, permit, &close).await,
        VideoProtocol::WsFlv => view_ws(&run, index, &path, &stats, permit, &close).await,
    };
    if let Err(e) = result
        && !close.is_cancelled()
        && !run.close.is_cancelled()
    {
        run.error(format!("view:{}", short_kind(&e)));
    }
    if !close.is_cancelled() && !run.close.is_cancelled() {
        stats.ended.store(true, Ordering::Relaxed);
    }
}

async fn connect_viewer(run: &Run, index: usize) -> anyhow::Result<TcpStream> {
    let socket = if run.http.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(source) = run.source_for(index) {
        socket.bind(source).context("bind")?;
    }
    let stream = tokio::time::timeout(run.opts.connect_timeout, socket.connect(run.http))
        .await
        .context("connect: timeout")?
        .context("connect")?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn record(stats: &ViewerStats, tag: &TagSeen, frame_ms: u32) {
    stats
        .bytes
        .fetch_add(tag.body_len as u64 + 15, Ordering::Relaxed);
    if tag.video_frame {
        stats.video_frames.fetch_add(1, Ordering::Relaxed);
        let ts = u64::from(tag.ts_ms);
        let previous = stats.last_video_ts.swap(ts + 1, Ordering::Relaxed);
        let frame = u64::from(frame_ms.max(1));
        if previous != 0 {
            let step = ts.saturating_sub(previous - 1);
            if step * 2 > frame * 3 {
                let missing = (step + frame / 2) / frame - 1;
                stats.gap_frames.fetch_add(missing, Ordering::Relaxed);
            }
        }
        if stats.first_video_us.load(Ordering::Relaxed) == 0 {
            stats.first_video_us.store(unix_us(), Ordering::Relaxed);
        }
    }
    if tag.body_len > 0 {
        stats
            .last_ts_ms
            .fetch_max(u64::from(tag.ts_ms), Ordering::Relaxed);
    }
}

async fn view_http(
    run: &Run,
    index: usize,
    path: &str,
    stats: &ViewerStats,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    close: &CancellationToken,
) -> anyhow::Result<()> {
    let mut stream = connect_viewer(run, index).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: roadhub-simulate\r\nAccept: */*\r\n\r\n",
        run.http_authority
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    // Response head.
    let body_start = loop {
        let n = tokio::select! {
            () = close.cancelled() => return Ok(()),
            r = tokio::time::timeout(run.opts.connect_timeout, stream.read(&mut buf)) => {
                r.context("response: timeout")??
            }
        };
        anyhow::ensure!(n > 0, "response: closed before headers");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") {
            break end + 4;
        }
        anyhow::ensure!(head.len() < 16 * 1024, "response: headers too long");
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
    let status = text.split_whitespace().nth(1).unwrap_or("");
    anyhow::ensure!(
        status == "200",
        "status {status}: {}",
        status_detail(&head[body_start..])
    );
    let chunked = text.contains("transfer-encoding: chunked");
    drop(permit);
    let mut scan = FlvScan::new();
    let mut dechunk = Dechunk::default();
    let mut feed = |data: &[u8]| {
        if chunked {
            dechunk.feed(data, |body| {
                scan.feed(body, |t| record(stats, &t, run.frame_ms))
            });
        } else {
            scan.feed(data, |t| record(stats, &t, run.frame_ms));
        }
    };
    feed(&head[body_start..]);
    loop {
        let n = tokio::select! {
            () = close.cancelled() => return Ok(()),
            r = stream.read(&mut buf) => r?,
        };
        if n == 0 {
            anyhow::bail!("ended: the hub closed the stream");
        }
        feed(&buf[..n]);
    }
}

fn status_detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split("\"code\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string()
}

/// Decodes HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1).
#[derive(Default)]
struct Dechunk {
    /// Data bytes left in the current chunk.
    left: usize,
    /// Reading a size line (digits so far).
    size_line: Vec<u8>,
    /// CRLF bytes to skip after a chunk's data.
    crlf_left: usize,
    in_data: bool,
}

impl Dechunk {
    fn feed(&mut self, mut data: &[u8], mut out: impl FnMut(&[u8])) {
        while !data.is_empty() {
            if self.crlf_left > 0 {
                let n = self.crlf_left.min(data.len());
                self.crlf_left -= n;
                data = &data[n..];
                continue;
            }
            if self.in_data {
                let n = self.left.min(data.len());
                out(&data[..n]);
                self.left -= n;
                data = &data[n..];
                if self.left == 0 {
                    self.in_data = false;
                    self.crlf_left = 2;
                }
                continue;
            }
            match memchr::memchr(b'\n', data) {
                None => {
                    self.size_line.extend_from_slice(data);
                    return;
                }
                Some(i) => {
                    self.size_line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    let line = String::from_utf8_lossy(&self.size_line).to_string();
                    self.size_line.clear();
                    let hex = line.trim().split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16).unwrap_or(0);
                    if size > 0 {
                        self.left = size;
                        self.in_data = true;
                    }
                }
            }
        }
    }
}

async fn view_ws(
    run: &Run,
    index: usize,
    path: &str,
    stats: &ViewerStats,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    close: &CancellationToken,
) -> anyhow::Result<()> {
    let stream = connect_viewer(run, index).await?;
    let url = format!("ws://{}{path}", run.http_authority);
    let (mut ws, _) = tokio::time::timeout(
        run.opts.connect_timeout,
        tokio_tungstenite::client_async(url.as_str(), stream),
    )
    .await
    .context("upgrade: timeout")?
    .map_err(|e| anyhow::anyhow!("upgrade: {e}"))?;
    drop(permit);
    let mut scan = FlvScan::new();
    loop {
        let msg = tokio::select! {
            () = close.cancelled() => return Ok(()),
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(data))) => {
                scan.feed(&data, |t| record(stats, &t, run.frame_ms));
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None => {
                anyhow::bail!("ended: the hub closed the stream")
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => anyhow::bail!("ws: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::encode_tag;

    #[test]
    fn scan_counts_tags_across_any_split() {
        let mut stream = flv::file_header(true, true).to_vec();
        // AVC sequence header, a keyframe, an audio frame, an inter frame.
        stream.extend_from_slice(&encode_tag(tag_type::VIDEO, 0, &[0x17, 0, 0, 0, 0, 1, 2]));
        stream.extend_from_slice(&encode_tag(
            tag_type::VIDEO,
            0,
            &[0x17, 1, 0, 0, 0, 9, 9, 9],
        ));
        stream.extend_from_slice(&encode_tag(tag_type::AUDIO, 20, &[0xAF, 1, 5, 5]));
        stream.extend_from_slice(&encode_tag(tag_type::VIDEO, 33, &[0x27, 1, 0, 0, 0, 7]));
        for split in 1..stream.len() {
            let mut scan = FlvScan::new();
            let mut seen = Vec::new();
            let (a, b) = stream.split_at(split);
            for part in [a, b] {
                scan.feed(part, |t| seen.push((t.video_frame, t.ts_ms, t.body_len)));
            }
            assert_eq!(
                seen,
                vec![(false, 0, 7), (true, 0, 8), (false, 20, 4), (true, 33, 6)],
                "split at {split}"
            );
        }
    }

    #[test]
    fn dechunk_reassembles_the_body() {
        let body = b"hello chunked world";
        let wire = b"5\r\nhello\r\n8;ext=1\r\n chunked\r\n6\r\n world\r\n0\r\n\r\n";
        for split in 1..wire.len() {
            let mut d = Dechunk::default();
            let mut out = Vec::new();
            let (a, b) = wire.split_at(split);
            d.feed(a, |x| out.extend_from_slice(x));
            d.feed(b, |x| out.extend_from_slice(x));
            assert_eq!(out, body, "split at {split}");
        }
    }

    #[test]
    fn sequence_headers_are_recognised() {
        let tag = |t, body: &[u8]| RawTag {
            tag_type: t,
            timestamp_ms: 0,
            body: Bytes::copy_from_slice(body),
        };
        assert!(is_sequence_header(&tag(
            tag_type::VIDEO,
            &[0x17, 0, 0, 0, 0]
        )));
        assert!(!is_sequence_header(&tag(
            tag_type::VIDEO,
            &[0x17, 1, 0, 0, 0]
        )));
        assert!(is_sequence_header(&tag(
            tag_type::AUDIO,
            &[0xAF, 0, 0x12, 0x10]
        )));
        assert!(!is_sequence_header(&tag(tag_type::AUDIO, &[0xAF, 1, 1])));
        // Enhanced RTMP: SequenceStart (0) vs CodedFrames (1).
        assert!(is_sequence_header(&tag(
            tag_type::VIDEO,
            &[0x90, b'h', b'v', b'c', b'1']
        )));
        assert!(!is_sequence_header(&tag(
            tag_type::VIDEO,
            &[0x91, b'h', b'v', b'c', b'1']
        )));
    }
}
