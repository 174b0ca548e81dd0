//! FLV: the file/stream header, tags, and the audio and video tag bodies that
//! RTMP carries as its audio and video messages.
//!
//! Specs: Adobe *Video File Format Specification* v10.1, Annex E (E.2 header,
//! E.3 body and `PreviousTagSize`, E.4.1 tag header, E.4.2 audio, E.4.3
//! video, E.4.4 script data, E.5 `onMetaData`); *Enhanced RTMP* v1
//! (<https://veovera.org/docs/enhanced/enhanced-rtmp-v1>) for the `ExHeader`
//! video tags that carry HEVC as FourCC `hvc1`.
//!
//! Muxing: every function answers one complete tag (11-byte header, body,
//! 4-byte `PreviousTagSize`) as [`Bytes`], written once and shared by every
//! viewer. Demuxing: [`parse_video_tag`] and [`parse_audio_tag`] turn a tag
//! body (an RTMP message payload, or a tag from [`FileReader`]) into a
//! [`FlvPayload`]; frame data is a slice of the body, never a copy.
//!
//! HEVC is written in the Enhanced RTMP form. It is also read in the legacy
//! form with codec id 12, which many Chinese encoders and dashcams send.

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::Value;
use super::frame::{
    AacConfig, AvcConfig, FrameKind, HevcConfig, MediaFrame, VideoCodec, VideoConfig,
};
use super::{MediaError, Result};

/// `TagType` values (E.4.1).
pub mod tag_type {
    /// Audio tag.
    pub const AUDIO: u8 = 8;
    /// Video tag.
    pub const VIDEO: u8 = 9;
    /// Script data tag (AMF0).
    pub const SCRIPT: u8 = 18;
}

/// Length of the FLV file header plus `PreviousTagSize0`.
pub const FILE_HEADER_LEN: usize = 13;
/// Length of a tag header.
pub const TAG_HEADER_LEN: usize = 11;

/// `CodecID` of AVC in a legacy video tag.
const CODEC_AVC: u8 = 7;
/// The de-facto legacy `CodecID` for HEVC (not in the Adobe spec).
const CODEC_HEVC_LEGACY: u8 = 12;
/// `SoundFormat` of AAC.
const SOUND_AAC: u8 = 10;
/// `SoundFormat` 9 announces an Enhanced RTMP v2 audio `ExHeader`.
const SOUND_EX_HEADER: u8 = 9;
/// `VideoFrameType` values.
const FRAME_KEY: u8 = 1;
const FRAME_INTER: u8 = 2;
const FRAME_COMMAND: u8 = 5;
/// Enhanced RTMP `VideoPacketType` values.
const PACKET_SEQUENCE_START: u8 = 0;
const PACKET_CODED_FRAMES: u8 = 1;
const PACKET_SEQUENCE_END: u8 = 2;
const PACKET_CODED_FRAMES_X: u8 = 3;
const PACKET_METADATA: u8 = 4;
/// Enhanced RTMP FourCCs.
const FOURCC_HEVC: [u8; 4] = *b"hvc1";
const FOURCC_AVC: [u8; 4] = *b"avc1";

/// The FLV file header (E.2) followed by `PreviousTagSize0`: what an
/// HTTP-FLV or WebSocket-FLV viewer receives first.
pub fn file_header(has_audio: bool, has_video: bool) -> Bytes {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    Bytes::copy_from_slice(&[b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// One complete tag: header, `body`, `PreviousTagSize`. Timestamps past
/// 24 bits go to `TimestampExtended` (the RTMP clock wraps at 32 bits).
pub fn encode_tag(tag_type: u8, timestamp_ms: u32, body: &[u8]) -> Bytes {
    let mut out = tag_buffer(tag_type, timestamp_ms, body.len());
    out.put_slice(body);
    finish_tag(out)
}

/// A tag buffer with room for the body and the trailer, header written.
fn tag_buffer(tag_type: u8, timestamp_ms: u32, body_len: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(TAG_HEADER_LEN + body_len + 4);
    out.put_u8(tag_type);
    // DataSize is 24 bits: RTMP messages are at most 16 MiB - 1 as well.
    out.put_uint(body_len.min(0xFF_FFFF) as u64, 3);
    out.put_uint(u64::from(timestamp_ms & 0xFF_FFFF), 3);
    out.put_u8((timestamp_ms >> 24) as u8);
    out.put_uint(0, 3); // StreamID
    out
}

/// Appends `PreviousTagSize` (header + body) and freezes the tag.
fn finish_tag(mut out: BytesMut) -> Bytes {
    let size = out.len() as u32;
    out.put_u32(size);
    out.freeze()
}

/// The video sequence header tag: an AVC sequence header
/// (`AVCPacketType` 0) or an Enhanced RTMP HEVC `SequenceStart`.
pub fn video_config_tag(config: &VideoConfig, timestamp_ms: u32) -> Bytes {
    let record = config.record();
    match config {
        VideoConfig::Avc(_) => {
            let mut out = tag_buffer(tag_type::VIDEO, timestamp_ms, 5 + record.len());
            out.put_slice(&[(FRAME_KEY << 4) | CODEC_AVC, 0, 0, 0, 0]);
            out.put_slice(record);
            finish_tag(out)
        }
        VideoConfig::Hevc(_) => {
            let mut out = tag_buffer(tag_type::VIDEO, timestamp_ms, 5 + record.len());
            out.put_u8(0x80 | (FRAME_KEY << 4) | PACKET_SEQUENCE_START);
            out.put_slice(&FOURCC_HEVC);
            out.put_slice(record);
            finish_tag(out)
        }
    }
}

/// The end-of-sequence tag (`AVCPacketType` 2, or Enhanced RTMP
/// `SequenceEnd`) that tells a player the stream is over.
pub fn end_of_sequence_tag(codec: VideoCodec, timestamp_ms: u32) -> Bytes {
    match codec {
        VideoCodec::H264 => encode_tag(
            tag_type::VIDEO,
            timestamp_ms,
            &[(FRAME_KEY << 4) | CODEC_AVC, 2, 0, 0, 0],
        ),
        VideoCodec::H265 => {
            let mut body = [0x80 | (FRAME_KEY << 4) | PACKET_SEQUENCE_END, 0, 0, 0, 0];
            body[1..].copy_from_slice(&FOURCC_HEVC);
            encode_tag(tag_type::VIDEO, timestamp_ms, &body)
        }
    }
}

/// The AAC sequence header tag (`AACPacketType` 0).
pub fn audio_config_tag(config: &AacConfig, timestamp_ms: u32) -> Bytes {
    let mut out = tag_buffer(tag_type::AUDIO, timestamp_ms, 2 + config.record.len());
    out.put_slice(&[aac_tag_byte(), 0]);
    out.put_slice(&config.record);
    finish_tag(out)
}

/// The first byte of every AAC audio tag: format 10, and the rate, size and
/// type fields set to 44 kHz, 16 bits, stereo as E.4.2.1 requires for AAC.
fn aac_tag_byte() -> u8 {
    (SOUND_AAC << 4) | (3 << 2) | (1 << 1) | 1
}

/// The tag of one frame: an AVC NALU tag with its composition time, an
/// Enhanced RTMP HEVC `CodedFrames` tag, or an AAC raw tag.
pub fn frame_tag(frame: &MediaFrame) -> Bytes {
    let data = &frame.data;
    match frame.kind {
        FrameKind::Video {
            codec,
            keyframe,
            cts_ms,
        } => {
            let frame_type = if keyframe { FRAME_KEY } else { FRAME_INTER };
            let cts = (cts_ms.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0xFF_FFFF;
            match codec {
                VideoCodec::H264 => {
                    let mut out = tag_buffer(tag_type::VIDEO, frame.dts_ms, 5 + data.len());
                    out.put_u8((frame_type << 4) | CODEC_AVC);
                    out.put_u8(1);
                    out.put_uint(u64::from(cts), 3);
                    out.put_slice(data);
                    finish_tag(out)
                }
                VideoCodec::H265 => {
                    let mut out = tag_buffer(tag_type::VIDEO, frame.dts_ms, 8 + data.len());
                    out.put_u8(0x80 | (frame_type << 4) | PACKET_CODED_FRAMES);
                    out.put_slice(&FOURCC_HEVC);
                    out.put_uint(u64::from(cts), 3);
                    out.put_slice(data);
                    finish_tag(out)
                }
            }
        }
        FrameKind::Audio { .. } => {
            let mut out = tag_buffer(tag_type::AUDIO, frame.dts_ms, 2 + data.len());
            out.put_slice(&[aac_tag_byte(), 1]);
            out.put_slice(data);
            finish_tag(out)
        }
    }
}

/// What `onMetaData` tells a player (E.5), from the codec configurations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    /// Video width in pixels, if known.
    pub width: Option<u32>,
    /// Video height in pixels, if known.
    pub height: Option<u32>,
    /// Frames per second, if known.
    pub frame_rate: Option<f64>,
    /// The video codec, if the stream has video.
    pub video_codec: Option<VideoCodec>,
    /// Video bit rate in kbit/s, if known.
    pub video_data_rate_kbps: Option<f64>,
    /// Audio sample rate in Hz, if the stream has audio.
    pub audio_sample_rate: Option<u32>,
    /// Audio channel count, if known.
    pub audio_channels: Option<u8>,
}

impl Metadata {
    /// What the configurations tell.
    pub fn from_configs(video: Option<&VideoConfig>, audio: Option<&AacConfig>) -> Metadata {
        let mut m = Metadata::default();
        if let Some(video) = video {
            m.video_codec = Some(video.codec());
            if let VideoConfig::Avc(avc) = video {
                m.width = Some(avc.width);
                m.height = Some(avc.height);
                m.frame_rate = avc.frame_rate;
            }
        }
        if let Some(aac) = audio {
            m.audio_sample_rate = Some(aac.sbr_sample_rate.unwrap_or(aac.sample_rate));
            m.audio_channels = aac.channels();
        }
        m
    }

    /// The AMF0 ECMA array of `onMetaData`.
    pub fn to_amf0(&self) -> Value {
        let mut props: Vec<(String, Value)> = Vec::with_capacity(10);
        let mut put = |k: &str, v: Value| props.push((k.to_owned(), v));
        if let Some(w) = self.width {
            put("width", Value::Number(f64::from(w)));
        }
        if let Some(h) = self.height {
            put("height", Value::Number(f64::from(h)));
        }
        if let Some(fps) = self.frame_rate {
            put("framerate", Value::Number(fps));
        }
        if let Some(rate) = self.video_data_rate_kbps {
            put("videodatarate", Value::Number(rate));
        }
        match self.video_codec {
            Some(VideoCodec::H264) => put("videocodecid", Value::Number(f64::from(CODEC_AVC))),
            // Enhanced RTMP: the FourCC as a number.
            Some(VideoCodec::H265) => put(
                "videocodecid",
                Value::Number(f64::from(u32::from_be_bytes(FOURCC_HEVC))),
            ),
            None => {}
        }
        if let Some(rate) = self.audio_sample_rate {
            put("audiocodecid", Value::Number(f64::from(SOUND_AAC)));
            put("audiosamplerate", Value::Number(f64::from(rate)));
            put("audiosamplesize", Value::Number(16.0));
            if let Some(ch) = self.audio_channels {
                put("stereo", Value::Boolean(ch >= 2));
                put("audiochannels", Value::Number(f64::from(ch)));
            }
        }
        put("encoder", Value::String("roadhub".to_owned()));
        Value::EcmaArray(props)
    }
}

/// The `onMetaData` script tag, timestamp 0.
pub fn metadata_tag(metadata: &Metadata) -> Bytes {
    let mut body = BytesMut::with_capacity(256);
    Value::String("onMetaData".to_owned()).encode(&mut body);
    metadata.to_amf0().encode(&mut body);
    encode_tag(tag_type::SCRIPT, 0, &body)
}

/// What a tag body carries.
#[derive(Debug, Clone, PartialEq)]
pub enum FlvPayload {
    /// A video sequence header.
    VideoConfig(VideoConfig),
    /// An AAC sequence header.
    AudioConfig(AacConfig),
    /// One audio or video frame.
    Frame(MediaFrame),
    /// The publisher ended the video sequence.
    EndOfSequence(VideoCodec),
}

fn si24(b: &[u8]) -> i32 {
    let v = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    (v << 8) >> 8
}

/// Parses a video tag body (E.4.3.1, or an Enhanced RTMP `ExHeader`).
/// `Ok(None)` for what a player does not need: command frames, Enhanced
/// RTMP metadata packets, empty frames.
pub fn parse_video_tag(timestamp_ms: u32, body: Bytes) -> Result<Option<FlvPayload>> {
    let &b0 = body.first().ok_or(MediaError::Truncated("FLV video tag"))?;
    let (frame_type, codec, packet_type, cts_ms, data_at) = if b0 & 0x80 != 0 {
        // Enhanced RTMP: IsExHeader | FrameType (3 bits) | PacketType (4 bits).
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0F;
        let fourcc = body
            .get(1..5)
            .ok_or(MediaError::Truncated("FLV video FourCC"))?;
        let codec = match <[u8; 4]>::try_from(fourcc) {
            Ok(FOURCC_HEVC) => VideoCodec::H265,
            Ok(FOURCC_AVC) => VideoCodec::H264,
            _ => {
                return Err(MediaError::Unsupported(format!(
                    "video FourCC {}",
                    String::from_utf8_lossy(fourcc)
                )));
            }
        };
        if frame_type == FRAME_COMMAND || packet_type == PACKET_METADATA {
            return Ok(None);
        }
        match packet_type {
            PACKET_CODED_FRAMES => {
                let cts = body
                    .get(5..8)
                    .ok_or(MediaError::Truncated("FLV composition time"))?;
                (frame_type, codec, 1, si24(cts), 8)
            }
            PACKET_CODED_FRAMES_X => (frame_type, codec, 1, 0, 5),
            PACKET_SEQUENCE_START | PACKET_SEQUENCE_END => (frame_type, codec, packet_type, 0, 5),
            other => {
                return Err(MediaError::Unsupported(format!(
                    "Enhanced RTMP video packet type {other}"
                )));
            }
        }
    } else {
        let frame_type = b0 >> 4;
        let codec = match b0 & 0x0F {
            CODEC_AVC => VideoCodec::H264,
            CODEC_HEVC_LEGACY => VideoCodec::H265,
            other => {
                return Err(MediaError::Unsupported(format!(
                    "FLV video codec id {other}"
                )));
            }
        };
        if frame_type == FRAME_COMMAND {
            return Ok(None);
        }
        let head = body
            .get(1..5)
            .ok_or(MediaError::Truncated("FLV AVC packet header"))?;
        (frame_type, codec, head[0], si24(&head[1..]), 5)
    };
    if !(1..=5).contains(&frame_type) {
        return Err(MediaError::Invalid("FLV video frame type"));
    }
    let data = body.slice(data_at..);
    match packet_type {
        0 => Ok(Some(FlvPayload::VideoConfig(match codec {
            VideoCodec::H264 => VideoConfig::Avc(AvcConfig::parse(data)?),
            VideoCodec::H265 => VideoConfig::Hevc(HevcConfig::parse(data)?),
        }))),
        1 if data.is_empty() => Ok(None),
        1 => Ok(Some(FlvPayload::Frame(MediaFrame::video(
            codec,
            frame_type == FRAME_KEY,
            timestamp_ms,
            cts_ms,
            data,
        )))),
        2 => Ok(Some(FlvPayload::EndOfSequence(codec))),
        _ => Err(MediaError::Invalid("FLV AVC packet type")),
    }
}

/// Parses an audio tag body (E.4.2.1). Only AAC is carried.
pub fn parse_audio_tag(timestamp_ms: u32, body: Bytes) -> Result<Option<FlvPayload>> {
    let &b0 = body.first().ok_or(MediaError::Truncated("FLV audio tag"))?;
    match b0 >> 4 {
        SOUND_AAC => {}
        SOUND_EX_HEADER => return Err(MediaError::Unsupported("Enhanced RTMP audio".into())),
        other => return Err(MediaError::Unsupported(format!("FLV sound format {other}"))),
    }
    let &packet_type = body
        .get(1)
        .ok_or(MediaError::Truncated("FLV AAC packet type"))?;
    let data = body.slice(2..);
    match packet_type {
        0 => Ok(Some(FlvPayload::AudioConfig(AacConfig::parse(data)?))),
        1 if data.is_empty() => Ok(None),
        1 => Ok(Some(FlvPayload::Frame(MediaFrame::audio(
            timestamp_ms,
            data,
        )))),
        _ => Err(MediaError::Invalid("FLV AAC packet type")),
    }
}

/// One tag as stored in an FLV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTag {
    /// [`tag_type`].
    pub tag_type: u8,
    /// Timestamp in ms (with `TimestampExtended`).
    pub timestamp_ms: u32,
    /// The tag body.
    pub body: Bytes,
}

impl RawTag {
    /// Parses the body of an audio or video tag; `Ok(None)` for script tags
    /// and other tag types.
    pub fn parse(&self) -> Result<Option<FlvPayload>> {
        match self.tag_type {
            tag_type::VIDEO => parse_video_tag(self.timestamp_ms, self.body.clone()),
            tag_type::AUDIO => parse_audio_tag(self.timestamp_ms, self.body.clone()),
            _ => Ok(None),
        }
    }
}

/// What the FLV file header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// `TypeFlagsAudio`.
    pub has_audio: bool,
    /// `TypeFlagsVideo`.
    pub has_video: bool,
}

/// Reads the tags of a complete FLV file held in memory (for tests and the
/// simulator's publisher, which replays a pre-encoded file).
#[derive(Debug)]
pub struct FileReader {
    header: FileHeader,
    data: Bytes,
    pos: usize,
}

impl FileReader {
    /// Checks the file header; the tags follow through the iterator.
    pub fn new(data: Bytes) -> Result<FileReader> {
        if data.len() < 9 {
            return Err(MediaError::Truncated("FLV header"));
        }
        if &data[..3] != b"FLV" || data[3] != 1 {
            return Err(MediaError::Invalid("FLV signature"));
        }
        let offset = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
        if offset < 9 {
            return Err(MediaError::Invalid("FLV DataOffset"));
        }
        Ok(FileReader {
            header: FileHeader {
                has_audio: data[4] & 0x04 != 0,
                has_video: data[4] & 0x01 != 0,
            },
            pos: offset + 4, // past PreviousTagSize0
            data,
        })
    }

    /// The file header.
    pub fn header(&self) -> FileHeader {
        self.header
    }
}

impl Iterator for FileReader {
    type Item = Result<RawTag>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..).filter(|r| !r.is_empty())?;
        let Some(h) = rest.get(..TAG_HEADER_LEN) else {
            self.pos = self.data.len();
            return Some(Err(MediaError::Truncated("FLV tag header")));
        };
        if h[0] & 0x20 != 0 {
            self.pos = self.data.len();
            return Some(Err(MediaError::Unsupported("encrypted FLV tag".into())));
        }
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let timestamp_ms = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let start = self.pos + TAG_HEADER_LEN;
        if start + size > self.data.len() {
            self.pos = self.data.len();
            return Some(Err(MediaError::Truncated("FLV tag body")));
        }
        self.pos = start + size + 4;
        Some(Ok(RawTag {
            tag_type: h[0] & 0x1F,
            timestamp_ms,
            body: self.data.slice(start..start + size),
        }))
    }
}

/// Reads FLV tags from a byte stream arriving in pieces (an HTTP-FLV body):
/// [`feed`](StreamReader::feed) bytes, then take complete tags with
/// [`next_tag`](StreamReader::next_tag). The file header is checked first;
/// a tag body is bounded by the format (16 MiB - 1).
#[derive(Debug, Default)]
pub struct StreamReader {
    buf: BytesMut,
    header: Option<FileHeader>,
}

impl StreamReader {
    pub fn new() -> StreamReader {
        StreamReader::default()
    }

    /// Append received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The file header, once read.
    pub fn header(&self) -> Option<FileHeader> {
        self.header
    }

    /// Bytes received and not yet taken as a tag.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete tag; `Ok(None)` until more bytes arrive; an error
    /// for a stream that is not FLV (the reader is then of no further use).
    pub fn next_tag(&mut self) -> Result<Option<RawTag>> {
        if self.header.is_none() {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" || self.buf[3] != 1 {
                return Err(MediaError::Invalid("FLV signature"));
            }
            let offset =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if !(9..=1024).contains(&offset) {
                return Err(MediaError::Invalid("FLV DataOffset"));
            }
            // The header, anything up to the offset, and PreviousTagSize0.
            if self.buf.len() < offset + 4 {
                return Ok(None);
            }
            let flags = self.buf[4];
            self.header = Some(FileHeader {
                has_audio: flags & 0x04 != 0,
                has_video: flags & 0x01 != 0,
            });
            let _ = self.buf.split_to(offset + 4);
        }
        let Some(h) = self.buf.get(..TAG_HEADER_LEN) else {
            return Ok(None);
        };
        if h[0] & 0x20 != 0 {
            return Err(MediaError::Unsupported("encrypted FLV tag".into()));
        }
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let timestamp_ms = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let tag_type = h[0] & 0x1F;
        let total = TAG_HEADER_LEN + size + 4;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut tag = self.buf.split_to(total).freeze();
        let body = tag.split_off(TAG_HEADER_LEN).slice(..size);
        Ok(Some(RawTag {
            tag_type,
            timestamp_ms,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_reader_takes_tags_fed_in_pieces() {
        let mut file = BytesMut::new();
        file.extend_from_slice(&file_header(true, true));
        file.extend_from_slice(&encode_tag(tag_type::VIDEO, 0x0100_0002, &[1, 2, 3]));
        file.extend_from_slice(&encode_tag(tag_type::AUDIO, 40, &[]));
        file.extend_from_slice(&encode_tag(tag_type::SCRIPT, 0, &[9; 300]));
        let file = file.freeze();
        for step in [1, 2, 7, 11, 64, file.len()] {
            let mut r = StreamReader::new();
            let mut tags = Vec::new();
            for piece in file.chunks(step) {
                r.feed(piece);
                while let Some(tag) = r.next_tag().unwrap() {
                    tags.push(tag);
                }
            }
            assert_eq!(r.buffered(), 0, "step {step}");
            assert_eq!(
                r.header(),
                Some(FileHeader {
                    has_audio: true,
                    has_video: true
                })
            );
            assert_eq!(tags.len(), 3, "step {step}");
            assert_eq!(tags[0].tag_type, tag_type::VIDEO);
            assert_eq!(tags[0].timestamp_ms, 0x0100_0002);
            assert_eq!(&tags[0].body[..], &[1, 2, 3]);
            assert_eq!(tags[1].timestamp_ms, 40);
            assert!(tags[1].body.is_empty());
            assert_eq!(tags[2].body.len(), 300);
        }
        let mut r = StreamReader::new();
        r.feed(b"HTTP/1.1 200 OK\r\n");
        assert!(r.next_tag().is_err());
    }

    fn avc_config() -> VideoConfig {
        VideoConfig::Avc(AvcConfig::parse(crate::media::frame::tests::avcc_320x240()).unwrap())
    }

    #[test]
    fn file_header_bit_exact() {
        assert_eq!(
            file_header(true, true)[..],
            *b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
        );
        assert_eq!(file_header(false, true)[4], 0x01);
        assert_eq!(file_header(true, false)[4], 0x04);
    }

    #[test]
    fn tag_header_extended_timestamp_and_previous_tag_size() {
        let tag = encode_tag(tag_type::AUDIO, 0x1234_5678, &[0xAA, 0xBB]);
        assert_eq!(
            tag[..],
            [
                8, 0, 0, 2, 0x34, 0x56, 0x78, 0x12, 0, 0, 0, 0xAA, 0xBB, 0, 0, 0, 13
            ]
        );
    }

    #[test]
    fn avc_tags_bit_exact() {
        let config = avc_config();
        let tag = video_config_tag(&config, 0);
        let n = config.record().len();
        assert_eq!(
            tag[..16],
            [9, 0, 0, 5 + n as u8, 0, 0, 0, 0, 0, 0, 0, 0x17, 0, 0, 0, 0]
        );
        assert_eq!(tag[16..16 + n], config.record()[..]);
        assert_eq!(tag[16 + n..], (16 + n as u32).to_be_bytes());

        let frame = MediaFrame::video(
            VideoCodec::H264,
            false,
            40,
            -2,
            Bytes::from_static(&[0, 0, 0, 1, 0x41]),
        );
        let tag = frame_tag(&frame);
        assert_eq!(
            tag[..],
            [
                9, 0, 0, 10, 0, 0, 40, 0, 0, 0, 0, 0x27, 1, 0xFF, 0xFF, 0xFE, 0, 0, 0, 1, 0x41, 0,
                0, 0, 21
            ]
        );
        assert_eq!(
            end_of_sequence_tag(VideoCodec::H264, 7)[11..16],
            [0x17, 2, 0, 0, 0]
        );
    }

    #[test]
    fn aac_tags_bit_exact() {
        let aac = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        let tag = audio_config_tag(&aac, 0);
        assert_eq!(
            tag[..],
            [
                8, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0xAF, 0, 0x12, 0x10, 0, 0, 0, 15
            ]
        );
        let tag = frame_tag(&MediaFrame::audio(23, Bytes::from_static(&[0x21])));
        assert_eq!(tag[11..14], [0xAF, 1, 0x21]);
    }

    #[test]
    fn hevc_enhanced_rtmp_round_trip() {
        let mut record = vec![0u8; 23];
        record[0] = 1;
        record[21] = 3;
        let config = VideoConfig::Hevc(HevcConfig::parse(Bytes::from(record)).unwrap());
        let tag = video_config_tag(&config, 0);
        assert_eq!(tag[11..16], [0x90, b'h', b'v', b'c', b'1']);
        let parsed = parse_video_tag(0, tag.slice(11..tag.len() - 4)).unwrap();
        assert_eq!(parsed, Some(FlvPayload::VideoConfig(config)));

        let frame = MediaFrame::video(
            VideoCodec::H265,
            true,
            1000,
            33,
            Bytes::from_static(&[0, 0, 0, 1, 0x26]),
        );
        let tag = frame_tag(&frame);
        assert_eq!(tag[11..19], [0x91, b'h', b'v', b'c', b'1', 0, 0, 33]);
        let parsed = parse_video_tag(1000, tag.slice(11..tag.len() - 4)).unwrap();
        assert_eq!(parsed, Some(FlvPayload::Frame(frame)));

        // CodedFramesX: no composition time.
        let body = Bytes::from_static(&[0xA3, b'h', b'v', b'c', b'1', 0, 0, 0, 1, 0x02]);
        let Some(FlvPayload::Frame(f)) = parse_video_tag(5, body).unwrap() else {
            panic!()
        };
        assert_eq!((f.is_keyframe(), f.cts_ms(), f.data.len()), (false, 0, 5));

        let end = end_of_sequence_tag(VideoCodec::H265, 0);
        assert_eq!(
            parse_video_tag(0, end.slice(11..end.len() - 4)).unwrap(),
            Some(FlvPayload::EndOfSequence(VideoCodec::H265))
        );
        // Legacy codec id 12.
        let body = Bytes::from_static(&[0x1C, 1, 0, 0, 0, 0, 0, 0, 1, 0x26]);
        let Some(FlvPayload::Frame(f)) = parse_video_tag(5, body).unwrap() else {
            panic!()
        };
        assert!(f.is_keyframe());
        assert_eq!(
            f.kind,
            FrameKind::Video {
                codec: VideoCodec::H265,
                keyframe: true,
                cts_ms: 0
            }
        );
    }

    #[test]
    fn parse_round_trips_avc_and_aac() {
        let config = avc_config();
        let tag = video_config_tag(&config, 0);
        let tags = [tag];
        let frame = MediaFrame::video(
            VideoCodec::H264,
            true,
            0x0100_0000,
            80,
            Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        );
        let audio = MediaFrame::audio(3, Bytes::from_static(&[1, 2, 3]));
        let mut file = BytesMut::new();
        file.put_slice(&file_header(true, true));
        file.put_slice(&metadata_tag(&Metadata::from_configs(Some(&config), None)));
        for t in tags.iter().chain([&frame_tag(&frame), &frame_tag(&audio)]) {
            file.put_slice(t);
        }
        let reader = FileReader::new(file.freeze()).unwrap();
        assert_eq!(
            reader.header(),
            FileHeader {
                has_audio: true,
                has_video: true
            }
        );
        let parsed: Vec<_> = reader.map(|t| t.unwrap().parse().unwrap()).collect();
        assert_eq!(
            parsed,
            [
                None,
                Some(FlvPayload::VideoConfig(config)),
                Some(FlvPayload::Frame(frame)),
                Some(FlvPayload::Frame(audio))
            ]
        );
    }

    #[test]
    fn metadata_amf0() {
        let aac = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        let m = Metadata::from_configs(Some(&avc_config()), Some(&aac));
        let tag = metadata_tag(&m);
        assert_eq!(tag[0], tag_type::SCRIPT);
        let body = &tag[11..tag.len() - 4];
        assert_eq!(body[..13], *b"\x02\x00\x0aonMetaData");
        let values = Value::decode_all(body).unwrap();
        let meta = &values[1];
        assert!(matches!(meta, Value::EcmaArray(_)));
        let num = |k| meta.get(k).and_then(Value::as_f64);
        assert_eq!(num("width"), Some(320.0));
        assert_eq!(num("height"), Some(240.0));
        assert_eq!(num("framerate"), Some(25.0));
        assert_eq!(num("videocodecid"), Some(7.0));
        assert_eq!(num("audiocodecid"), Some(10.0));
        assert_eq!(num("audiosamplerate"), Some(44_100.0));
        assert_eq!(meta.get("stereo"), Some(&Value::Boolean(true)));
        // "width": 320 exactly as AMF0 writes it.
        let at = body.windows(5).position(|w| w == b"width").unwrap();
        assert_eq!(
            body[at - 2..at + 14],
            *b"\x00\x05width\x00\x40\x74\x00\x00\x00\x00\x00\x00"
        );
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(parse_video_tag(0, Bytes::new()).is_err());
        assert!(parse_video_tag(0, Bytes::from_static(&[0x17, 1])).is_err());
        assert!(parse_video_tag(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])).is_err());
        assert!(parse_video_tag(0, Bytes::from_static(&[0x17, 9, 0, 0, 0, 1])).is_err());
        assert!(matches!(
            parse_video_tag(0, Bytes::from_static(&[0x12, 0])),
            Err(MediaError::Unsupported(_))
        ));
        assert!(matches!(
            parse_video_tag(0, Bytes::from_static(&[0x90, b'a', b'v', b'0', b'1'])),
            Err(MediaError::Unsupported(_))
        ));
        assert!(parse_video_tag(0, Bytes::from_static(&[0x97, 1, 0, 0, 0])).is_err());
        assert_eq!(parse_video_tag(0, Bytes::from_static(&[0x57, 0])), Ok(None));
        assert_eq!(
            parse_video_tag(0, Bytes::from_static(&[0x27, 1, 0, 0, 0])),
            Ok(None)
        );
        assert!(parse_audio_tag(0, Bytes::new()).is_err());
        assert!(parse_audio_tag(0, Bytes::from_static(&[0xAF])).is_err());
        assert!(parse_audio_tag(0, Bytes::from_static(&[0xAF, 0, 0x12])).is_err());
        assert!(matches!(
            parse_audio_tag(0, Bytes::from_static(&[0x2F, 1, 0])),
            Err(MediaError::Unsupported(_))
        ));
        assert!(FileReader::new(Bytes::from_static(b"FLX\x01\x05\0\0\0\x09")).is_err());
        let mut truncated = FileReader::new(Bytes::from_static(
            b"FLV\x01\x05\0\0\0\x09\0\0\0\0\x09\0\0\x10",
        ))
        .unwrap();
        assert!(matches!(truncated.next(), Some(Err(_))));
        assert!(truncated.next().is_none());
    }

    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let record = crate::media::frame::tests::avcc_320x240();
        for i in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && !body.is_empty() {
                // Keep the headers plausible so the inner parsers are reached.
                body[0] = [0x17, 0x27, 0xAF, 0x90, 0x91, 0x1C][i % 6];
                if body.len() > 1 && i % 4 == 0 {
                    body[1] = 0;
                }
            }
            let body = Bytes::from(body);
            let _ = parse_video_tag(0, body.clone());
            let _ = parse_audio_tag(0, body.clone());
            let _ = crate::media::h264::Sps::parse(&body);
            let _ = Value::decode_all(&body);
            let mut flv = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
            flv.extend_from_slice(&body);
            if let Ok(reader) = FileReader::new(Bytes::from(flv)) {
                reader.for_each(|t| {
                    let _ = t.map(|t| t.parse());
                });
            }
            // A real record with one byte changed.
            let mut bad = record.to_vec();
            let at = (next() as usize) % bad.len();
            bad[at] = next() as u8;
            let _ = AvcConfig::parse(Bytes::from(bad));
        }
    }
}
