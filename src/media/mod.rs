//! Live video: the transport-independent media core.
//!
//! Everything here is pure: bytes in, bytes out, no I/O and no clocks, so the
//! live runtime ([`crate::live`]: the RTMP ingest, the RTSP pull, the Stream
//! actors) and the HTTP/WebSocket players build on it and tests can feed it
//! directly.
//!
//! # Specifications
//!
//! - FLV and its tag bodies: Adobe *Video File Format Specification* v10.1,
//!   Annex E (<https://rtmp.veriskope.com/pdf/video_file_format_spec_v10_1.pdf>),
//!   and *Enhanced RTMP* (<https://github.com/veovera/enhanced-rtmp>) for HEVC
//!   (FourCC `hvc1`).
//! - AMF0: Adobe *Action Message Format -- AMF 0*
//!   (<https://rtmp.veriskope.com/pdf/amf0-file-format-specification.pdf>).
//! - H.264: ITU-T H.264 / ISO/IEC 14496-10 (SPS, section 7.3.2.1; Annex B byte
//!   stream), and the `AVCDecoderConfigurationRecord` of ISO/IEC 14496-15
//!   section 5.3.3.1.
//! - AAC: ISO/IEC 14496-3 (`AudioSpecificConfig`, section 1.6.2.1; ADTS,
//!   section 1.A.2).
//! - MPEG-TS: ISO/IEC 13818-1 (ITU-T H.222.0): PAT, PMT, PES, PCR.
//! - HLS: RFC 8216 (<https://www.rfc-editor.org/rfc/rfc8216>).
//!
//! # Timestamps
//!
//! Every timestamp names its clock in its name: `_ms` is milliseconds on the
//! RTMP/FLV timeline (a `u32` that wraps after ~49.7 days, compared with
//! wrapping arithmetic), `_90k` is the 90 kHz MPEG clock (33 bits in the
//! stream), `_27m` the 27 MHz PCR clock.
//!
//! # Layout
//!
//! - [`frame`]: the common model: [`MediaFrame`], codec configurations
//!   ([`AvcConfig`], [`HevcConfig`], [`AacConfig`]).
//! - [`h264`]: the SPS parser (picture size, frame rate) and AVCC/Annex B
//!   conversion.
//! - [`amf0`]: AMF0 values, encoder and decoder (for `onMetaData`).
//! - [`flv`]: FLV file header and tags (muxer), tag bodies from RTMP or an
//!   FLV file (demuxer), a file reader.
//! - [`ts`]: the MPEG-TS muxer (H.264 + AAC).
//! - [`hls`]: the HLS segmenter: segments in memory, sliding media playlist.

pub mod amf0;
pub mod flv;
pub mod frame;
pub mod h264;
pub mod hls;
pub mod ts;

pub use frame::{
    AacConfig, AudioCodec, AvcConfig, FrameKind, HevcConfig, MediaFrame, VideoCodec, VideoConfig,
};
pub use hls::{HlsConfig, HlsSegmenter, Segment};
pub use ts::TsMuxer;

/// Why a media payload could not be read or written.
///
/// Inner codecs answer plain descriptions; the session that owns the stream
/// adds which stream and connection it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The payload ends before the structure it announces.
    #[error("{0}: truncated")]
    Truncated(&'static str),
    /// A field holds a value the specification does not allow.
    #[error("{0}: invalid")]
    Invalid(&'static str),
    /// Well-formed, but a codec or feature this hub does not handle.
    #[error("unsupported {0}")]
    Unsupported(String),
    /// A frame arrived before the codec configuration it needs.
    #[error("no {0} configuration before the first frame")]
    MissingConfig(&'static str),
}

/// Result of the media codecs.
pub type Result<T, E = MediaError> = std::result::Result<T, E>;
