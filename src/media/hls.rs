//! HLS: an in-memory MPEG-TS segmenter and its live media playlist.
//!
//! Spec: RFC 8216 (HTTP Live Streaming): 4.3.2.1 `EXTINF`, 4.3.3.1
//! `EXT-X-TARGETDURATION`, 4.3.3.2 `EXT-X-MEDIA-SEQUENCE`, 4.3.3.3
//! `EXT-X-DISCONTINUITY-SEQUENCE`, 4.3.2.3 `EXT-X-DISCONTINUITY`, 4.3.3.4
//! `EXT-X-ENDLIST`, 6.2.2 (live playlists: the sliding window).
//!
//! Fed [`MediaFrame`]s in decode order, the [`HlsSegmenter`] cuts a segment
//! at the first keyframe once the target duration is reached, keeps the last
//! `window` segments as [`Bytes`], and renders the playlist on demand.
//!
//! Timeline: output timestamps continue across a [`discontinuity`]
//! (publisher restart) or a timestamp jump: the first keyframe after it is
//! placed where the previous segment ended, so players see one continuous
//! clock and `EXTINF` durations add up; the segment still carries
//! `EXT-X-DISCONTINUITY` because encoder parameters may have changed.
//!
//! Low-latency HLS: every segment is already built from parts (about
//! [`HlsConfig::part_duration_ms`] each, the independent ones starting at a
//! keyframe). A completed segment's parts are slices of its one buffer. LL-HLS
//! adds `EXT-X-PART` lines and blocking playlist reloads on top; see
//! [`HlsSegmenter::building_parts`].
//!
//! The multivariant playlist that points at the media playlist is
//! [`variant`]'s.
//!
//! [`discontinuity`]: HlsSegmenter::discontinuity

pub mod variant;

use std::collections::VecDeque;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use super::frame::{AacConfig, AvcConfig, FrameKind, MediaFrame, VideoCodec};
use super::ts::TsMuxer;
use super::{MediaError, Result};

/// Segmenter settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsConfig {
    /// Cut at the first keyframe once a segment is this long (ms).
    pub target_duration_ms: u32,
    /// Segments kept and listed in the playlist.
    pub window: usize,
    /// Length of the parts a segment is built from (ms), for LL-HLS.
    pub part_duration_ms: u32,
    /// A segment is cut even without a keyframe past this duration (ms)...
    pub max_segment_ms: u32,
    /// ... or this many bytes: memory stays bounded if keyframes stop.
    pub max_segment_bytes: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            target_duration_ms: 2_000,
            window: 6,
            part_duration_ms: 500,
            max_segment_ms: 20_000,
            max_segment_bytes: 16 << 20,
        }
    }
}

/// A timestamp moving more than this on one track is a jump (ms).
const JUMP_BACK_MS: i32 = 1_000;
const JUMP_FORWARD_MS: i32 = 10_000;

/// A piece of a segment: for LL-HLS `EXT-X-PART`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Duration in ms.
    pub duration_ms: u32,
    /// Starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// The TS packets.
    pub data: Bytes,
}

/// A completed media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its media sequence number.
    pub sequence: u64,
    /// Real duration in ms: from its first frame to the next segment's.
    pub duration_ms: u32,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Starts with a keyframe (always, unless cut by a limit).
    pub independent: bool,
    /// Decode time of its first frame, ms on the output timeline.
    pub start_ms: u32,
    data: Bytes,
    parts: Vec<Part>,
}

impl Segment {
    /// The whole segment: PAT, PMT, then the frames (`video/mp2t`).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Its parts, slices of [`Segment::data`].
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }
}

/// The segment being written.
#[derive(Debug)]
struct Building {
    sequence: u64,
    start_ms: u32,
    discontinuity: bool,
    independent: bool,
    parts: Vec<Part>,
    part: BytesMut,
    part_start_ms: u32,
    part_independent: bool,
    bytes: usize,
}

/// The HLS segmenter of one stream. Not thread-safe by itself: owned by the
/// stream's actor; segments are [`Bytes`], cheap to hand out.
#[derive(Debug)]
pub struct HlsSegmenter {
    config: HlsConfig,
    muxer: TsMuxer,
    has_video: bool,
    segments: VecDeque<Segment>,
    building: Option<Building>,
    next_sequence: u64,
    discontinuity_sequence: u64,
    /// Longest segment so far: the target duration never shrinks (6.2.1).
    longest_ms: u32,
    /// The next segment gets `EXT-X-DISCONTINUITY` and a rebased clock.
    pending_discontinuity: bool,
    /// Output = input + offset (wrapping ms).
    offset_ms: u32,
    /// Input dts of the last video and audio frames, for jump detection.
    last_in_ms: [Option<u32>; 2],
    /// Output dts of the last video and audio frames, and the gap before.
    last_out_ms: [Option<u32>; 2],
    last_gap_ms: [u32; 2],
    /// Where the output clock continues after a discontinuity: the end of
    /// the last frame of either track.
    end_ms: Option<u32>,
    ended: bool,
}

impl HlsSegmenter {
    /// A segmenter with no streams yet.
    pub fn new(config: HlsConfig) -> Self {
        HlsSegmenter {
            config,
            muxer: TsMuxer::new(),
            has_video: false,
            segments: VecDeque::new(),
            building: None,
            next_sequence: 0,
            discontinuity_sequence: 0,
            longest_ms: 0,
            pending_discontinuity: false,
            offset_ms: 0,
            last_in_ms: [None, None],
            last_out_ms: [None, None],
            last_gap_ms: [0, 0],
            end_ms: None,
            ended: false,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    /// Sets the H.264 configuration. A different one mid-stream (new
    /// resolution) starts a new segment after a discontinuity.
    pub fn set_video_config(&mut self, config: AvcConfig) {
        if self.has_video && self.building.is_some() && self.video_record() != Some(&config.record)
        {
            self.discontinuity();
        }
        self.has_video = true;
        self.muxer.set_video_config(Some(config));
    }

    /// Sets the AAC configuration; a change mid-stream is a discontinuity.
    pub fn set_audio_config(&mut self, config: AacConfig) {
        if self.building.is_some() && self.audio_record() != Some(&config.record) {
            self.discontinuity();
        }
        self.muxer.set_audio_config(Some(config));
    }

    /// The H.264 configuration, once known.
    pub fn video_config(&self) -> Option<&AvcConfig> {
        self.muxer.video_config()
    }

    /// The AAC configuration, once known.
    pub fn audio_config(&self) -> Option<&AacConfig> {
        self.muxer.audio_config()
    }

    fn video_record(&self) -> Option<&Bytes> {
        self.muxer.video_config().map(|c| &c.record)
    }

    fn audio_record(&self) -> Option<&Bytes> {
        self.muxer.audio_config().map(|c| &c.record)
    }

    /// Feeds one frame. Answers the sequence number of the segment this
    /// frame completed, if any (where LL-HLS would wake blocked requests).
    ///
    /// Frames before the first keyframe (of the stream, or after a
    /// discontinuity) and audio without a configuration are dropped.
    pub fn push(&mut self, frame: &MediaFrame) -> Result<Option<u64>> {
        let track = usize::from(!frame.is_video());
        if !frame.is_video() && self.muxer.audio_config().is_none() {
            return Ok(None);
        }
        if let FrameKind::Video {
            codec: VideoCodec::H265,
            ..
        } = frame.kind
        {
            return Err(MediaError::Unsupported("H.265 in MPEG-TS segments".into()));
        }
        if frame.is_video() && !self.has_video {
            return Err(MediaError::MissingConfig("H.264"));
        }
        if let Some(last) = self.last_in_ms[track] {
            let delta = frame.dts_ms.wrapping_sub(last) as i32;
            if !(-JUMP_BACK_MS..=JUMP_FORWARD_MS).contains(&delta) {
                self.discontinuity();
            }
        }
        // Does this frame time segments? Video if there is video.
        let timing = frame.is_video() || !self.has_video;
        let can_start = frame.is_keyframe() || !self.has_video;

        if self.building.is_none() && !can_start {
            return Ok(None);
        }
        self.last_in_ms[track] = Some(frame.dts_ms);
        if self.building.is_none()
            && self.pending_discontinuity
            && let Some(end) = self.end_ms
        {
            self.offset_ms = end.wrapping_sub(frame.dts_ms);
        }
        let out = MediaFrame {
            dts_ms: frame.dts_ms.wrapping_add(self.offset_ms),
            ..frame.clone()
        };

        let mut completed = None;
        if let Some(b) = &self.building {
            let elapsed = out.dts_ms.wrapping_sub(b.start_ms) as i32;
            let over_limit = elapsed >= self.config.max_segment_ms as i32
                || b.bytes >= self.config.max_segment_bytes;
            let cut = timing
                && ((can_start && elapsed >= self.config.target_duration_ms as i32) || over_limit);
            if cut {
                completed = self.close(out.dts_ms);
            }
        }
        if let Some(last) = self.last_out_ms[track] {
            let gap = out.dts_ms.wrapping_sub(last) as i32;
            if gap > 0 {
                self.last_gap_ms[track] = gap as u32;
            }
        }
        self.last_out_ms[track] = Some(out.dts_ms);

        if self.building.is_none() {
            let mut part = BytesMut::with_capacity(64 * 1024);
            self.muxer.write_tables(&mut part);
            self.ended = false;
            self.next_sequence += 1;
            self.building = Some(Building {
                sequence: self.next_sequence - 1,
                start_ms: out.dts_ms,
                discontinuity: std::mem::take(&mut self.pending_discontinuity),
                independent: can_start,
                parts: Vec::new(),
                part,
                part_start_ms: out.dts_ms,
                part_independent: can_start,
                bytes: 0,
            });
        }
        let Some(b) = self.building.as_mut() else {
            return Ok(completed);
        };
        // Parts are cut at timing frames once long enough.
        let part_elapsed = out.dts_ms.wrapping_sub(b.part_start_ms) as i32;
        if timing && part_elapsed >= self.config.part_duration_ms as i32 {
            let data = b.part.split().freeze();
            b.parts.push(Part {
                duration_ms: part_elapsed as u32,
                independent: b.part_independent,
                data,
            });
            b.part_start_ms = out.dts_ms;
            b.part_independent = frame.is_keyframe();
        }
        let before = b.part.len();
        let written = self.muxer.write_frame(&out, &mut b.part);
        b.bytes += b.part.len() - before;
        written?;
        Ok(completed)
    }

    /// Closes the segment being written at `end_ms` (output timeline) and
    /// slides the window. Answers its sequence number.
    fn close(&mut self, end_ms: u32) -> Option<u64> {
        let b = self.building.take()?;
        let duration_ms = (end_ms.wrapping_sub(b.start_ms) as i32).max(0) as u32;
        let mut data = BytesMut::with_capacity(b.bytes + 2 * 188 + b.part.len());
        let mut spans = Vec::with_capacity(b.parts.len() + 1);
        let mut part_total = 0;
        for part in &b.parts {
            spans.push((
                data.len(),
                part.data.len(),
                part.duration_ms,
                part.independent,
            ));
            data.extend_from_slice(&part.data);
            part_total += part.duration_ms;
        }
        if !b.part.is_empty() {
            spans.push((
                data.len(),
                b.part.len(),
                duration_ms.saturating_sub(part_total),
                b.part_independent,
            ));
            data.extend_from_slice(&b.part);
        }
        let data = data.freeze();
        let parts = spans
            .into_iter()
            .map(|(at, len, duration_ms, independent)| Part {
                duration_ms,
                independent,
                data: data.slice(at..at + len),
            })
            .collect();
        self.longest_ms = self.longest_ms.max(duration_ms);
        self.segments.push_back(Segment {
            sequence: b.sequence,
            duration_ms,
            discontinuity: b.discontinuity,
            independent: b.independent,
            start_ms: b.start_ms,
            data,
            parts,
        });
        while self.segments.len() > self.config.window.max(1) {
            if self
                .segments
                .pop_front()
                .is_some_and(|gone| gone.discontinuity)
            {
                self.discontinuity_sequence += 1;
            }
        }
        Some(b.sequence)
    }

    /// Where a track would end if it stopped now: its last frame plus one
    /// frame interval.
    fn estimated_end(&self, track: usize) -> Option<u32> {
        let last = self.last_out_ms[track]?;
        Some(last.wrapping_add(self.last_gap_ms[track]))
    }

    /// The publisher restarted (or the stream's parameters changed): the
    /// segment being written is closed, the next one starts at a keyframe
    /// after `EXT-X-DISCONTINUITY`, its clock continuing the previous one.
    /// Answers the sequence number of the segment it closed.
    pub fn discontinuity(&mut self) -> Option<u64> {
        let closed = self.finish_building();
        if self.next_sequence > 0 {
            self.pending_discontinuity = true;
        }
        self.last_in_ms = [None, None];
        closed
    }

    /// The stream ended: closes the segment being written and adds
    /// `EXT-X-ENDLIST` to the playlist. Frames pushed later start a new
    /// segment after a discontinuity.
    pub fn end(&mut self) -> Option<u64> {
        let closed = self.discontinuity();
        self.ended = self.next_sequence > 0;
        closed
    }

    fn finish_building(&mut self) -> Option<u64> {
        // The timing track ends the segment; the later of both tracks is
        // where the clock continues, so audio never overlaps.
        let timing = usize::from(!self.has_video);
        let end = self.estimated_end(timing)?;
        let closed = self.close(end);
        let other = self.estimated_end(1 - timing).unwrap_or(end);
        self.end_ms = Some(if (other.wrapping_sub(end) as i32) > 0 {
            other
        } else {
            end
        });
        self.last_out_ms = [None, None];
        closed
    }

    /// The segment with this media sequence number, while in the window.
    pub fn segment(&self, sequence: u64) -> Option<&Segment> {
        let first = self.segments.front()?.sequence;
        let index = usize::try_from(sequence.checked_sub(first)?).ok()?;
        self.segments.get(index)
    }

    /// The segments in the window, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// The parts of the segment being written, and its sequence number:
    /// what LL-HLS lists after the last complete segment.
    pub fn building_parts(&self) -> Option<(u64, &[Part])> {
        self.building
            .as_ref()
            .map(|b| (b.sequence, b.parts.as_slice()))
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the first segment's sequence number.
    pub fn media_sequence(&self) -> u64 {
        self.segments
            .front()
            .map_or(self.next_sequence, |s| s.sequence)
    }

    /// `EXT-X-TARGETDURATION` in seconds: the configured target or the
    /// longest segment so far, rounded half up; it never decreases.
    pub fn target_duration_secs(&self) -> u32 {
        // RFC 8216 4.3.3.1: every EXTINF, rounded to the nearest integer,
        // must be <= the target; rounding half up keeps that for any
        // segment up to the longest.
        ((self.config.target_duration_ms.max(self.longest_ms) + 500) / 1000).max(1)
    }

    /// Whether the playlist has a segment to list.
    pub fn is_ready(&self) -> bool {
        !self.segments.is_empty()
    }

    /// Whether [`HlsSegmenter::end`] was called and nothing came after.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Renders the media playlist; `uri` names a segment from its sequence
    /// number (relative or absolute, with a `?token=` if the caller wants).
    pub fn playlist(&self, uri: impl Fn(u64) -> String) -> String {
        let mut m3u8 = String::with_capacity(128 + 64 * self.segments.len());
        m3u8.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        // Writing to a String cannot fail.
        let _ = writeln!(
            m3u8,
            "#EXT-X-TARGETDURATION:{}",
            self.target_duration_secs()
        );
        let _ = writeln!(m3u8, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence());
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                m3u8,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        for s in &self.segments {
            if s.discontinuity {
                m3u8.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(
                m3u8,
                "#EXTINF:{}.{:03},",
                s.duration_ms / 1000,
                s.duration_ms % 1000
            );
            m3u8.push_str(&uri(s.sequence));
            m3u8.push('\n');
        }
        if self.ended {
            m3u8.push_str("#EXT-X-ENDLIST\n");
        }
        m3u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avc() -> AvcConfig {
        AvcConfig::parse(crate::media::frame::tests::avcc_320x240()).unwrap()
    }

    fn aac() -> AacConfig {
        AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap()
    }

    fn video(dts_ms: u32, key: bool) -> MediaFrame {
        let nal = if key { 0x65 } else { 0x41 };
        MediaFrame::video(
            VideoCodec::H264,
            key,
            dts_ms,
            0,
            Bytes::from(vec![0, 0, 0, 2, nal, 0x80]),
        )
    }

    fn segmenter(target_ms: u32, window: usize) -> HlsSegmenter {
        let mut s = HlsSegmenter::new(HlsConfig {
            target_duration_ms: target_ms,
            window,
            ..HlsConfig::default()
        });
        s.set_video_config(avc());
        s.set_audio_config(aac());
        s
    }

    /// 25 fps video with a keyframe every `gop` frames, from `from_ms`.
    fn feed(s: &mut HlsSegmenter, from_ms: u32, frames: u32, gop: u32) -> Vec<u64> {
        let mut done = Vec::new();
        for i in 0..frames {
            let t = from_ms + i * 40;
            done.extend(s.push(&video(t, i % gop == 0)).unwrap());
            done.extend(
                s.push(&MediaFrame::audio(t + 5, Bytes::from_static(&[0x21; 8])))
                    .unwrap(),
            );
        }
        done
    }

    #[test]
    fn cuts_at_keyframes_after_the_target() {
        let mut s = segmenter(2_000, 6);
        // Keyframes every 0.6 s: cuts at 2.4 s, 4.8 s, ...
        let done = feed(&mut s, 0, 150, 15);
        assert_eq!(done, [0, 1]);
        let durations: Vec<u32> = s.segments().map(|s| s.duration_ms).collect();
        assert_eq!(durations, [2_400, 2_400]);
        // 2.4 s rounds to 2 (RFC 8216 4.3.3.1 rounds to the nearest).
        assert_eq!(s.target_duration_secs(), 2);
        let seg = s.segment(1).unwrap();
        assert_eq!(seg.start_ms, 2_400);
        assert!(seg.independent && !seg.discontinuity);
        assert_eq!(seg.data().len() % 188, 0);
        assert_eq!(seg.data()[..4], [0x47, 0x40, 0x00, 0x10 | 1]); // PAT, CC 1
        // Parts: about 500 ms each, slices of the segment.
        let parts = seg.parts();
        assert_eq!(parts.iter().map(|p| p.duration_ms).sum::<u32>(), 2_400);
        assert!(parts.iter().all(|p| p.data.len() % 188 == 0));
        assert_eq!(
            parts.iter().map(|p| p.data.len()).sum::<usize>(),
            seg.data().len()
        );
        assert!(parts[0].independent);
        assert!(s.segment(2).is_none());
        assert_eq!(s.building_parts().map(|(seq, _)| seq), Some(2));
    }

    #[test]
    fn waits_for_the_first_keyframe() {
        let mut s = segmenter(1_000, 6);
        assert_eq!(s.push(&video(0, false)).unwrap(), None);
        assert_eq!(
            s.push(&MediaFrame::audio(0, Bytes::from_static(&[1])))
                .unwrap(),
            None
        );
        assert!(s.building_parts().is_none());
        s.push(&video(40, true)).unwrap();
        assert_eq!(s.building_parts().map(|(seq, _)| seq), Some(0));
    }

    #[test]
    fn sliding_window_and_playlist() {
        let mut s = segmenter(1_000, 3);
        feed(&mut s, 0, 250, 25); // 10 s: 9 segments closed, 1 building
        assert_eq!(s.media_sequence(), 6);
        assert!(s.segment(5).is_none() && s.segment(8).is_some());
        let playlist = s.playlist(|n| format!("seg-{n}.ts?token=abc"));
        assert_eq!(
            playlist,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:6\n\
             #EXTINF:1.000,\nseg-6.ts?token=abc\n#EXTINF:1.000,\nseg-7.ts?token=abc\n\
             #EXTINF:1.000,\nseg-8.ts?token=abc\n"
        );
        s.end();
        assert!(s.is_ended());
        let playlist = s.playlist(|n| format!("{n}.ts"));
        assert!(
            playlist.ends_with("#EXTINF:1.000,\n9.ts\n#EXT-X-ENDLIST\n"),
            "{playlist}"
        );
    }

    #[test]
    fn discontinuity_rebases_the_clock_and_is_counted_when_it_slides_out() {
        let mut s = segmenter(1_000, 3);
        feed(&mut s, 0, 50, 25); // 2 s: one closed, one building
        assert_eq!(s.discontinuity(), Some(1));
        assert_eq!(s.segment(1).unwrap().duration_ms, 1_000);
        // The publisher comes back with its clock at 0.
        feed(&mut s, 0, 50, 25);
        s.end();
        let seg = s.segment(2).unwrap();
        assert!(seg.discontinuity);
        assert_eq!(
            seg.start_ms, 2_005,
            "after the audio, which ends 5 ms after the video"
        );
        let playlist = s.playlist(|n| format!("{n}.ts"));
        assert!(
            playlist.contains("#EXTINF:1.000,\n1.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\n2.ts\n")
        );
        assert!(!playlist.contains("DISCONTINUITY-SEQUENCE"));
        // Two more segments push segment 2 (with the tag) out.
        s.discontinuity();
        feed(&mut s, 0, 75, 25);
        let playlist = s.playlist(|n| format!("{n}.ts"));
        assert!(
            playlist.contains("#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"),
            "{playlist}"
        );
        assert!(!s.is_ended());
    }

    #[test]
    fn timestamp_jump_is_a_discontinuity() {
        let mut s = segmenter(1_000, 6);
        feed(&mut s, 0, 30, 25);
        feed(&mut s, 60_000, 30, 25);
        let segs: Vec<(u32, bool)> = s
            .segments()
            .map(|s| (s.start_ms, s.discontinuity))
            .collect();
        assert_eq!(segs, [(0, false), (1_000, false), (1_205, true)]);
    }

    #[test]
    fn config_change_cuts_with_a_discontinuity() {
        let mut s = segmenter(1_000, 6);
        feed(&mut s, 0, 10, 25);
        s.set_video_config(avc()); // same record: nothing happens
        assert!(s.segments().next().is_none());
        let mut other = avc();
        other.record = Bytes::from(other.record[..other.record.len() - 4].to_vec());
        s.set_video_config(other);
        assert_eq!(s.segments().count(), 1);
        feed(&mut s, 400, 10, 25);
        assert!(s.building.as_ref().unwrap().discontinuity);
    }

    #[test]
    fn limits_cut_without_keyframes() {
        let mut s = HlsSegmenter::new(HlsConfig {
            max_segment_ms: 3_000,
            ..HlsConfig::default()
        });
        s.set_video_config(avc());
        feed(&mut s, 0, 200, 1_000); // 8 s, one keyframe
        let segs: Vec<(u32, bool)> = s
            .segments()
            .map(|s| (s.duration_ms, s.independent))
            .collect();
        assert_eq!(segs, [(3_000, true), (3_000, false)]);
    }

    #[test]
    fn audio_only() {
        let mut s = HlsSegmenter::new(HlsConfig::default());
        s.set_audio_config(aac());
        for i in 0..200u32 {
            s.push(&MediaFrame::audio(i * 23, Bytes::from_static(&[0x21; 8])))
                .unwrap();
        }
        let durations: Vec<u32> = s.segments().map(|s| s.duration_ms).collect();
        assert_eq!(durations, [2_001, 2_001]);
        assert!(matches!(
            s.push(&video(0, true)),
            Err(MediaError::MissingConfig(_))
        ));
        let hevc = MediaFrame::video(VideoCodec::H265, true, 0, 0, Bytes::new());
        assert!(matches!(s.push(&hevc), Err(MediaError::Unsupported(_))));
    }
}
