//! The pure core of a live stream, apart from the actor that runs it
//! ([`crate::live::stream`]): the output timeline, the GOP cache, the
//! sequence headers, the HLS feed, and each viewer's bounded queue with its
//! lag policy. No I/O and no actor here, so unit tests feed it directly.
//!
//! Tags are FLV tags (Adobe FLV spec v10.1, Annex E; Enhanced RTMP for
//! `hvc1`), each encoded once and shared (`Bytes`) by every viewer.
//!
//! # Timeline
//!
//! Viewers see one continuous, non-decreasing DTS per track whatever the
//! publishers do: each publisher's clock is rebased onto the output clock
//! when it starts ([`Timeline::restart`]), and again when its own clock jumps
//! (back more than 1 s or forward more than 10 s between two messages, the
//! same bounds as the HLS segmenter). Within a track the output never goes
//! back (a late frame is clamped to the track's last DTS).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::media::flv::{self, FlvPayload, Metadata};
use crate::media::{AacConfig, HlsConfig, HlsSegmenter, MediaFrame, VideoConfig};

/// A jump back larger than this (ms) on the publisher's clock rebases it.
const JUMP_BACK_MS: i32 = 1000;
/// A jump forward larger than this (ms) rebases the publisher's clock.
const JUMP_FORWARD_MS: i32 = 10_000;

/// Maps publishers' DTS (ms) onto the stream's output DTS (ms).
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    /// Publisher DTS that maps to `offset_out`; `None` until the next input.
    base_in: Option<u32>,
    offset_out: u32,
    last_in: Option<u32>,
    /// Last output DTS per track: `[video, audio]`.
    last_out: [Option<u32>; 2],
    /// Last output DTS of either track.
    last_any_out: Option<u32>,
}

fn later(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Timeline {
    /// A new publisher (or a new clock): its next DTS continues just after
    /// the last output DTS.
    pub fn restart(&mut self) {
        self.base_in = None;
        self.last_in = None;
    }

    /// The output DTS of a frame at publisher DTS `dts_in`.
    pub fn map(&mut self, dts_in: u32, video: bool) -> u32 {
        if let Some(last) = self.last_in {
            let delta = dts_in.wrapping_sub(last) as i32;
            if !(-JUMP_BACK_MS..=JUMP_FORWARD_MS).contains(&delta) {
                self.base_in = None;
            }
        }
        let base = match self.base_in {
            Some(b) => b,
            None => {
                self.offset_out = self.last_any_out.map_or(0, |l| l.wrapping_add(1));
                self.base_in = Some(dts_in);
                dts_in
            }
        };
        self.last_in = Some(dts_in);
        let mut out = self.offset_out.wrapping_add(dts_in.wrapping_sub(base));
        let track = usize::from(!video);
        if let Some(prev) = self.last_out[track]
            && later(prev, out)
        {
            out = prev;
        }
        self.last_out[track] = Some(out);
        if self.last_any_out.is_none_or(|l| later(out, l)) {
            self.last_any_out = Some(out);
        }
        out
    }

    /// The last output DTS of either track (0 before any).
    pub fn last_out(&self) -> u32 {
        self.last_any_out.unwrap_or(0)
    }
}

/// What a queued tag is, for the lag policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// FLV header, `onMetaData`, a sequence header: never dropped.
    Header,
    /// A frame a player can start at (video keyframe; audio of an
    /// audio-only stream).
    Sync,
    /// Any other frame.
    Frame,
}

/// One FLV tag (or the file header) on its way to viewers.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Bytes,
    pub dts_ms: u32,
    pub kind: ChunkKind,
}

/// The viewer queue limits (from `live.*`).
#[derive(Debug, Clone, Copy)]
pub struct LagPolicy {
    /// Queued media spanning more than this (ms) skips to the next keyframe.
    pub max_lag_ms: u32,
    /// Queued bytes above this skip to the next keyframe.
    pub max_bytes: usize,
    /// Behind (skipping, never drained) for longer than this: closed.
    pub max_behind: Duration,
}

/// What pushing a chunk did to a viewer's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// Dropped: the viewer waits for the next sync point.
    Discarded,
    /// The viewer was too far behind: its queued media was dropped and it
    /// waits for the next keyframe (the chunk itself may have been queued
    /// if it was one).
    Skipped,
    /// The viewer stayed behind too long; the queue is closed.
    TooSlow,
    /// The queue is closed or its reader is gone.
    Closed,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Chunk>,
    bytes: usize,
    /// Waiting for a sync point: media is dropped until one comes.
    skipping: bool,
    behind_since: Option<Instant>,
    /// No more chunks will come; the reader drains what is queued.
    closed: bool,
}

/// One viewer's bounded queue: the Stream pushes, the viewer's connection
/// (on its own worker thread) pops. See [`LagPolicy`] for the bounds.
#[derive(Debug, Default)]
pub struct ViewerQueue {
    state: Mutex<QueueState>,
    notify: Notify,
    gone: AtomicBool,
}

impl ViewerQueue {
    /// A queue whose viewer waits for a sync point (`skipping`) or not.
    pub fn new(waiting_for_sync: bool) -> Self {
        let q = Self::default();
        if let Ok(mut s) = q.state.lock() {
            s.skipping = waiting_for_sync;
        }
        q
    }

    /// Queue `chunk` under `policy` at time `now`.
    pub fn push(&self, chunk: Chunk, policy: &LagPolicy, now: Instant) -> PushOutcome {
        if self.gone.load(Ordering::Relaxed) {
            return PushOutcome::Closed;
        }
        let Ok(mut s) = self.state.lock() else {
            return PushOutcome::Closed;
        };
        if s.closed {
            return PushOutcome::Closed;
        }
        let mut outcome = PushOutcome::Queued;
        if chunk.kind != ChunkKind::Header {
            let oldest = s
                .items
                .iter()
                .find(|c| c.kind != ChunkKind::Header)
                .map(|c| c.dts_ms);
            let lag = oldest.map_or(0, |o| chunk.dts_ms.wrapping_sub(o) as i32);
            if !s.skipping && (lag > policy.max_lag_ms as i32 || s.bytes > policy.max_bytes) {
                s.items.retain(|c| c.kind == ChunkKind::Header);
                s.bytes = s.items.iter().map(|c| c.data.len()).sum();
                s.skipping = true;
                s.behind_since.get_or_insert(now);
                outcome = PushOutcome::Skipped;
            }
            if let Some(since) = s.behind_since
                && now.duration_since(since) > policy.max_behind
            {
                s.items.clear();
                s.bytes = 0;
                s.closed = true;
                drop(s);
                self.notify.notify_one();
                return PushOutcome::TooSlow;
            }
            if s.skipping {
                if chunk.kind == ChunkKind::Sync {
                    s.skipping = false;
                } else {
                    return if outcome == PushOutcome::Skipped {
                        outcome
                    } else {
                        PushOutcome::Discarded
                    };
                }
            }
        }
        s.bytes += chunk.data.len();
        s.items.push_back(chunk);
        drop(s);
        self.notify.notify_one();
        outcome
    }

    /// Queue what a new viewer gets at once (headers and the GOP cache),
    /// without the lag policy: the burst is expected.
    pub fn push_initial(&self, chunks: Vec<Chunk>) {
        if let Ok(mut s) = self.state.lock() {
            for chunk in chunks {
                s.bytes += chunk.data.len();
                s.items.push_back(chunk);
            }
        }
        self.notify.notify_one();
    }

    /// Take the next chunk, if one is queued. `Err(())` once the queue is
    /// closed and drained.
    #[allow(clippy::result_unit_err)]
    pub fn try_pop(&self) -> Result<Option<Bytes>, ()> {
        let Ok(mut s) = self.state.lock() else {
            return Err(());
        };
        let popped = s.items.pop_front();
        if s.items.is_empty() {
            // The reader took everything it had: it is not behind.
            s.behind_since = None;
        }
        match popped {
            Some(c) => {
                s.bytes -= c.data.len();
                Ok(Some(c.data))
            }
            None if s.closed => Err(()),
            None => Ok(None),
        }
    }

    /// The next chunk, waiting for one; `None` at the end.
    pub async fn pop(&self) -> Option<Bytes> {
        loop {
            match self.try_pop() {
                Ok(Some(b)) => return Some(b),
                Err(()) => return None,
                Ok(None) => self.notify.notified().await,
            }
        }
    }

    /// No more chunks: the reader gets what is queued, then the end.
    pub fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
        }
        self.notify.notify_one();
    }

    /// The reader went away (its connection closed).
    pub fn set_gone(&self) {
        self.gone.store(true, Ordering::Relaxed);
    }

    /// Bytes queued (for tests and metrics).
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().map_or(0, |s| s.bytes)
    }
}

/// The frames from the latest video keyframe on (or, for an audio-only
/// stream, nothing: audio frames are sync points themselves), bounded in
/// bytes: past the bound the cache empties until the next keyframe.
#[derive(Debug, Default)]
pub struct GopCache {
    entries: Vec<(Chunk, MediaFrame)>,
    bytes: usize,
    max_bytes: usize,
    /// Collecting (a keyframe opened it and the bound was not hit).
    open: bool,
}

impl GopCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            ..Self::default()
        }
    }

    /// Add a frame (already rebased) and its tag.
    pub fn push(&mut self, chunk: &Chunk, frame: &MediaFrame) {
        if frame.is_video() && frame.is_keyframe() {
            self.clear();
            self.open = true;
        }
        if !self.open {
            return;
        }
        if self.bytes + chunk.data.len() > self.max_bytes {
            self.clear();
            return;
        }
        self.bytes += chunk.data.len();
        self.entries.push((chunk.clone(), frame.clone()));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.open = false;
    }

    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.entries.iter().map(|(c, _)| c)
    }

    pub fn frames(&self) -> impl Iterator<Item = &MediaFrame> {
        self.entries.iter().map(|(_, f)| f)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why HLS cannot be served for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsRefusal {
    /// The video codec has no MPEG-TS mapping here (H.265).
    UnsupportedCodec,
}

/// A stream's media state: sequence headers, metadata, GOP cache, output
/// timeline, and the HLS segmenter once enabled.
#[derive(Debug)]
pub struct StreamCore {
    video: Option<(VideoConfig, Bytes)>,
    audio: Option<(AacConfig, Bytes)>,
    publisher_meta: Option<Metadata>,
    metadata_tag: Option<Bytes>,
    gop: GopCache,
    timeline: Timeline,
    hls: Option<HlsSegmenter>,
}

impl StreamCore {
    pub fn new(gop_cache_max_bytes: usize) -> Self {
        Self {
            video: None,
            audio: None,
            publisher_meta: None,
            metadata_tag: None,
            gop: GopCache::new(gop_cache_max_bytes),
            timeline: Timeline::default(),
            hls: None,
        }
    }

    /// A new publisher starts: rebase its clock, mark an HLS discontinuity.
    /// The sequence headers stay until the new ones arrive (sent to viewers
    /// again only if they differ).
    pub fn new_publisher(&mut self) {
        self.timeline.restart();
        self.gop.clear();
        if let Some(hls) = &mut self.hls {
            hls.discontinuity();
        }
    }

    /// The publisher's own `onMetaData`: fills what the configurations do
    /// not tell (e.g. an HEVC picture size). Answers a new metadata tag for
    /// viewers if it changed.
    pub fn set_publisher_metadata(&mut self, meta: Metadata) -> Option<Chunk> {
        self.publisher_meta = Some(meta);
        self.refresh_metadata()
    }

    fn metadata(&self) -> Metadata {
        let mut m = Metadata::from_configs(
            self.video.as_ref().map(|(c, _)| c),
            self.audio.as_ref().map(|(c, _)| c),
        );
        if let Some(p) = &self.publisher_meta {
            m.width = m.width.or(p.width);
            m.height = m.height.or(p.height);
            m.frame_rate = m.frame_rate.or(p.frame_rate);
            m.video_data_rate_kbps = m.video_data_rate_kbps.or(p.video_data_rate_kbps);
        }
        m
    }

    fn refresh_metadata(&mut self) -> Option<Chunk> {
        let tag = flv::metadata_tag(&self.metadata());
        if self.metadata_tag.as_ref() == Some(&tag) {
            return None;
        }
        self.metadata_tag = Some(tag.clone());
        Some(Chunk {
            data: tag,
            dts_ms: self.timeline.last_out(),
            kind: ChunkKind::Header,
        })
    }

    /// Take one payload from the publisher; answers the chunks to send to
    /// every viewer, in order.
    pub fn push(&mut self, payload: FlvPayload) -> Vec<Chunk> {
        let mut out = Vec::new();
        match payload {
            FlvPayload::VideoConfig(config) => {
                if self.video.as_ref().is_some_and(|(c, _)| c == &config) {
                    return out;
                }
                let tag = flv::video_config_tag(&config, self.timeline.last_out());
                if let (Some(hls), VideoConfig::Avc(avc)) = (&mut self.hls, &config) {
                    hls.set_video_config(avc.clone());
                }
                self.video = Some((config, tag.clone()));
                self.gop.clear();
                out.extend(self.refresh_metadata());
                out.push(Chunk {
                    data: tag,
                    dts_ms: self.timeline.last_out(),
                    kind: ChunkKind::Header,
                });
            }
            FlvPayload::AudioConfig(config) => {
                if self.audio.as_ref().is_some_and(|(c, _)| c == &config) {
                    return out;
                }
                let tag = flv::audio_config_tag(&config, self.timeline.last_out());
                if let Some(hls) = &mut self.hls {
                    hls.set_audio_config(config.clone());
                }
                self.audio = Some((config, tag.clone()));
                self.gop.clear();
                out.extend(self.refresh_metadata());
                out.push(Chunk {
                    data: tag,
                    dts_ms: self.timeline.last_out(),
                    kind: ChunkKind::Header,
                });
            }
            FlvPayload::Frame(mut frame) => {
                let video = frame.is_video();
                if (video && self.video.is_none()) || (!video && self.audio.is_none()) {
                    // A frame before its configuration: no player can use it.
                    return out;
                }
                frame.dts_ms = self.timeline.map(frame.dts_ms, video);
                let sync = (video && frame.is_keyframe()) || (!video && self.video.is_none());
                let chunk = Chunk {
                    data: flv::frame_tag(&frame),
                    dts_ms: frame.dts_ms,
                    kind: if sync {
                        ChunkKind::Sync
                    } else {
                        ChunkKind::Frame
                    },
                };
                self.gop.push(&chunk, &frame);
                if let Some(hls) = &mut self.hls
                    && let Err(e) = hls.push(&frame)
                {
                    tracing::debug!(error = %e, "HLS segmenter refused a frame");
                }
                out.push(chunk);
            }
            // Forwarding it would make players stop; a restart or the
            // grace period's end says more.
            FlvPayload::EndOfSequence(_) => {}
        }
        out
    }

    /// What a new viewer gets at once: the FLV header, metadata, sequence
    /// headers and the GOP cache; and whether it must then wait for a sync
    /// point (no GOP cached).
    pub fn initial(&self) -> (Vec<Chunk>, bool) {
        let has_video = self.video.is_some() || self.audio.is_none();
        let has_audio = self.audio.is_some() || self.video.is_none();
        let start = self.gop.chunks().next().map_or(0, |c| c.dts_ms);
        let header = |data: Bytes| Chunk {
            data,
            dts_ms: start,
            kind: ChunkKind::Header,
        };
        let mut out = vec![header(flv::file_header(has_audio, has_video))];
        if self.video.is_some() || self.audio.is_some() {
            out.push(header(flv::metadata_tag(&self.metadata())));
        }
        if let Some((config, _)) = &self.video {
            out.push(header(flv::video_config_tag(config, start)));
        }
        if let Some((config, _)) = &self.audio {
            out.push(header(flv::audio_config_tag(config, start)));
        }
        out.extend(self.gop.chunks().cloned());
        let audio_only = self.video.is_none() && self.audio.is_some();
        (out, self.gop.is_empty() && !audio_only)
    }

    /// Start segmenting for HLS (fed from the GOP cache, so a first segment
    /// is ready at the next keyframe cut).
    pub fn enable_hls(&mut self, config: HlsConfig) -> Result<(), HlsRefusal> {
        if self.hls.is_some() {
            return Ok(());
        }
        if matches!(self.video, Some((VideoConfig::Hevc(_), _))) {
            return Err(HlsRefusal::UnsupportedCodec);
        }
        let mut hls = HlsSegmenter::new(config);
        if let Some((VideoConfig::Avc(avc), _)) = &self.video {
            hls.set_video_config(avc.clone());
        }
        if let Some((aac, _)) = &self.audio {
            hls.set_audio_config(aac.clone());
        }
        for frame in self.gop.frames() {
            let _ = hls.push(frame);
        }
        self.hls = Some(hls);
        Ok(())
    }

    pub fn hls(&self) -> Option<&HlsSegmenter> {
        self.hls.as_ref()
    }

    /// The stream is over: close the last HLS segment (`#EXT-X-ENDLIST`).
    pub fn end(&mut self) {
        if let Some(hls) = &mut self.hls {
            hls.end();
        }
    }

    pub fn gop(&self) -> &GopCache {
        &self.gop
    }

    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::media::VideoCodec;

    #[test]
    fn timeline_continues_across_publishers_and_jumps() {
        let mut t = Timeline::default();
        assert_eq!(t.map(5000, true), 0);
        assert_eq!(t.map(5033, true), 33);
        assert_eq!(t.map(5020, false), 20);
        // A new publisher whose clock starts at 0: continues after 33.
        t.restart();
        assert_eq!(t.map(0, true), 34);
        assert_eq!(t.map(33, true), 67);
        // Its clock jumps back 60 s: rebased.
        assert_eq!(t.map(33u32.wrapping_sub(60_000), true), 68);
        // Forward 1 h: rebased too.
        let now = 33u32.wrapping_sub(60_000);
        assert_eq!(t.map(now.wrapping_add(3_600_000), true), 69);
        // A small step back on one track is clamped, never decreasing.
        let a = t.map(now.wrapping_add(3_600_100), false);
        let b = t.map(now.wrapping_add(3_600_050), false);
        assert!(b >= a);
    }

    #[test]
    fn timeline_wraps_without_a_jump() {
        let mut t = Timeline::default();
        assert_eq!(t.map(u32::MAX - 10, true), 0);
        assert_eq!(t.map(20, true), 31);
    }

    fn chunk(dts: u32, kind: ChunkKind, len: usize) -> Chunk {
        Chunk {
            data: Bytes::from(vec![0u8; len]),
            dts_ms: dts,
            kind,
        }
    }

    fn policy() -> LagPolicy {
        LagPolicy {
            max_lag_ms: 2000,
            max_bytes: 1 << 20,
            max_behind: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_lagging_viewer_skips_to_the_next_keyframe() {
        let q = ViewerQueue::new(false);
        let t0 = Instant::now();
        let p = policy();
        assert_eq!(
            q.push(chunk(0, ChunkKind::Header, 13), &p, t0),
            PushOutcome::Queued
        );
        assert_eq!(
            q.push(chunk(0, ChunkKind::Sync, 100), &p, t0),
            PushOutcome::Queued
        );
        for i in 1..=60 {
            assert_eq!(
                q.push(chunk(i * 33, ChunkKind::Frame, 10), &p, t0),
                PushOutcome::Queued
            );
        }
        // 2001 ms of media queued: the next frame skips.
        assert_eq!(
            q.push(chunk(2001, ChunkKind::Frame, 10), &p, t0),
            PushOutcome::Skipped
        );
        assert_eq!(q.queued_bytes(), 13, "only the header is left");
        assert_eq!(
            q.push(chunk(2034, ChunkKind::Frame, 10), &p, t0),
            PushOutcome::Discarded
        );
        assert_eq!(
            q.push(chunk(2067, ChunkKind::Sync, 100), &p, t0),
            PushOutcome::Queued
        );
        assert_eq!(q.try_pop().unwrap().unwrap().len(), 13);
        assert_eq!(q.try_pop().unwrap().unwrap().len(), 100);
        assert_eq!(q.try_pop().unwrap(), None);
    }

    #[test]
    fn a_viewer_behind_too_long_is_closed_and_one_that_catches_up_is_not() {
        let p = policy();
        let t0 = Instant::now();
        // Never reads: skips, then is closed once behind > 10 s.
        let q = ViewerQueue::new(false);
        let mut dts = 0;
        let mut outcome = PushOutcome::Queued;
        let mut elapsed = Duration::ZERO;
        while outcome != PushOutcome::TooSlow && elapsed < Duration::from_secs(30) {
            let kind = if dts % 1000 == 0 {
                ChunkKind::Sync
            } else {
                ChunkKind::Frame
            };
            outcome = q.push(chunk(dts, kind, 10), &p, t0 + elapsed);
            dts += 100;
            elapsed += Duration::from_millis(100);
        }
        assert_eq!(outcome, PushOutcome::TooSlow);
        assert!(elapsed > Duration::from_secs(10) && elapsed < Duration::from_secs(13));
        assert_eq!(q.try_pop(), Err(()));
        // Skips once, then drains its queue: no longer behind.
        let q = ViewerQueue::new(false);
        for i in 0..=21 {
            q.push(chunk(i * 100, ChunkKind::Frame, 10), &p, t0);
        }
        while let Ok(Some(_)) = q.try_pop() {}
        let later = t0 + Duration::from_secs(20);
        assert_eq!(
            q.push(chunk(3000, ChunkKind::Sync, 10), &p, later),
            PushOutcome::Queued
        );
        while let Ok(Some(_)) = q.try_pop() {}
        assert_eq!(
            q.push(
                chunk(3100, ChunkKind::Frame, 10),
                &p,
                later + Duration::from_secs(5)
            ),
            PushOutcome::Queued
        );
    }

    #[test]
    fn a_viewer_over_the_byte_bound_skips() {
        let mut p = policy();
        p.max_bytes = 1000;
        let q = ViewerQueue::new(false);
        let t0 = Instant::now();
        q.push(chunk(0, ChunkKind::Sync, 600), &p, t0);
        q.push(chunk(10, ChunkKind::Frame, 600), &p, t0);
        assert_eq!(
            q.push(chunk(20, ChunkKind::Frame, 600), &p, t0),
            PushOutcome::Skipped
        );
        assert_eq!(q.queued_bytes(), 0);
    }

    #[test]
    fn a_closed_queue_drains_then_ends() {
        let q = ViewerQueue::new(false);
        let p = policy();
        q.push(chunk(0, ChunkKind::Header, 5), &p, Instant::now());
        q.close();
        assert_eq!(q.try_pop().unwrap().unwrap().len(), 5);
        assert_eq!(q.try_pop(), Err(()));
        assert_eq!(
            q.push(chunk(0, ChunkKind::Header, 5), &p, Instant::now()),
            PushOutcome::Closed
        );
    }

    fn avc_config() -> VideoConfig {
        let record = crate::media::frame::tests::avcc_320x240();
        VideoConfig::Avc(crate::media::AvcConfig::parse(record).unwrap())
    }

    fn video(keyframe: bool, dts: u32, len: usize) -> FlvPayload {
        FlvPayload::Frame(MediaFrame::video(
            VideoCodec::H264,
            keyframe,
            dts,
            0,
            Bytes::from(vec![0u8; len]),
        ))
    }

    #[test]
    fn the_gop_cache_starts_at_the_latest_keyframe_and_is_bounded() {
        let mut core = StreamCore::new(10_000);
        assert!(core.push(video(true, 0, 100)).is_empty(), "no config yet");
        assert_eq!(core.push(FlvPayload::VideoConfig(avc_config())).len(), 2);
        assert!(
            core.push(FlvPayload::VideoConfig(avc_config())).is_empty(),
            "the same config is not sent again"
        );
        core.push(video(false, 0, 100));
        assert!(core.gop().is_empty(), "nothing before the first keyframe");
        core.push(video(true, 33, 100));
        core.push(video(false, 66, 100));
        assert_eq!(core.gop().chunks().count(), 2);
        let (initial, wait) = core.initial();
        assert!(!wait);
        // header, metadata, avc config, keyframe, frame
        assert_eq!(initial.len(), 5);
        assert_eq!(&initial[0].data[..3], b"FLV");
        assert_eq!(initial[3].kind, ChunkKind::Sync);
        core.push(video(true, 99, 100));
        assert_eq!(
            core.gop().chunks().count(),
            1,
            "a keyframe restarts the cache"
        );
        // Past the bound: the cache empties until the next keyframe.
        for i in 0..100 {
            core.push(video(false, 132 + i * 33, 200));
        }
        assert!(core.gop().is_empty());
        assert!(core.gop().bytes() <= 10_000);
        let (_, wait) = core.initial();
        assert!(wait, "a new viewer waits for the next keyframe");
        core.push(video(true, 5000, 100));
        assert_eq!(core.gop().chunks().count(), 1);
    }

    #[test]
    fn a_new_publisher_continues_the_timeline() {
        let mut core = StreamCore::new(1 << 20);
        core.push(FlvPayload::VideoConfig(avc_config()));
        let a = core.push(video(true, 10_000, 10));
        let b = core.push(video(false, 10_033, 10));
        assert_eq!((a[0].dts_ms, b[0].dts_ms), (0, 33));
        core.new_publisher();
        assert!(core.gop().is_empty());
        assert!(core.push(FlvPayload::VideoConfig(avc_config())).is_empty());
        let c = core.push(video(true, 0, 10));
        assert_eq!(c[0].dts_ms, 34);
    }
}
