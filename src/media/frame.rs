//! The common media model every input produces and every output consumes:
//! [`MediaFrame`] (one access unit with its timestamps) and the codec
//! configurations a decoder needs before the first frame.
//!
//! Specs: ISO/IEC 14496-15 section 5.3.3.1 (`AVCDecoderConfigurationRecord`)
//! and 8.3.3.1 (`HEVCDecoderConfigurationRecord`); ISO/IEC 14496-3 section
//! 1.6.2.1 (`AudioSpecificConfig`).

use bytes::{BufMut, Bytes, BytesMut};

use super::h264::{self, Sps};
use super::{MediaError, Result};

/// A video codec the hub carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC (passed through to FLV viewers only).
    H265,
}

/// An audio codec the hub carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// MPEG-4 AAC (raw access units, no ADTS header).
    Aac,
}

/// What a [`MediaFrame`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// One video access unit.
    Video {
        /// Its codec.
        codec: VideoCodec,
        /// A random access point (IDR): decoding can start here.
        keyframe: bool,
        /// Composition time offset: presentation time minus decode time, ms.
        cts_ms: i32,
    },
    /// One audio access unit.
    Audio {
        /// Its codec.
        codec: AudioCodec,
    },
}

/// One access unit on the RTMP timeline.
///
/// `data` is AVCC for video (NAL units each prefixed by its length, of the
/// configuration's `nalu_length_size`) and a raw AAC frame for audio. It is
/// a [`Bytes`] so a frame is shared, never copied, between outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// What it is.
    pub kind: FrameKind,
    /// Decode timestamp in milliseconds (the RTMP/FLV clock; wraps as `u32`).
    pub dts_ms: u32,
    /// The payload.
    pub data: Bytes,
}

impl MediaFrame {
    /// A video access unit.
    pub fn video(codec: VideoCodec, keyframe: bool, dts_ms: u32, cts_ms: i32, data: Bytes) -> Self {
        MediaFrame {
            kind: FrameKind::Video {
                codec,
                keyframe,
                cts_ms,
            },
            dts_ms,
            data,
        }
    }

    /// An AAC access unit.
    pub fn audio(dts_ms: u32, data: Bytes) -> Self {
        MediaFrame {
            kind: FrameKind::Audio {
                codec: AudioCodec::Aac,
            },
            dts_ms,
            data,
        }
    }

    /// A video frame?
    pub fn is_video(&self) -> bool {
        matches!(self.kind, FrameKind::Video { .. })
    }

    /// A video random access point?
    pub fn is_keyframe(&self) -> bool {
        matches!(self.kind, FrameKind::Video { keyframe: true, .. })
    }

    /// Composition offset in ms (0 for audio).
    pub fn cts_ms(&self) -> i32 {
        match self.kind {
            FrameKind::Video { cts_ms, .. } => cts_ms,
            FrameKind::Audio { .. } => 0,
        }
    }

    /// Presentation timestamp in ms (`dts_ms + cts_ms`, wrapping like the
    /// RTMP clock).
    pub fn pts_ms(&self) -> u32 {
        self.dts_ms.wrapping_add_signed(self.cts_ms())
    }
}

/// A video stream's decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoConfig {
    /// H.264.
    Avc(AvcConfig),
    /// H.265.
    Hevc(HevcConfig),
}

impl VideoConfig {
    /// The codec it configures.
    pub fn codec(&self) -> VideoCodec {
        match self {
            VideoConfig::Avc(_) => VideoCodec::H264,
            VideoConfig::Hevc(_) => VideoCodec::H265,
        }
    }

    /// The decoder configuration record, as received.
    pub fn record(&self) -> &Bytes {
        match self {
            VideoConfig::Avc(c) => &c.record,
            VideoConfig::Hevc(c) => &c.record,
        }
    }

    /// Length in bytes of the NAL unit size prefix in frames (1, 2 or 4).
    pub fn nalu_length_size(&self) -> u8 {
        match self {
            VideoConfig::Avc(c) => c.nalu_length_size,
            VideoConfig::Hevc(c) => c.nalu_length_size,
        }
    }
}

/// An H.264 decoder configuration: the `AVCDecoderConfigurationRecord`
/// (the FLV/RTMP AVC sequence header, MP4 `avcC`), with what its first SPS
/// tells.
#[derive(Debug, Clone, PartialEq)]
pub struct AvcConfig {
    /// `AVCProfileIndication` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// `profile_compatibility` (the SPS constraint flags).
    pub profile_compatibility: u8,
    /// `AVCLevelIndication` (31 = level 3.1).
    pub level_idc: u8,
    /// Size of the NAL unit length prefix in frames: 1, 2 or 4.
    pub nalu_length_size: u8,
    /// Sequence parameter sets, NAL header byte included.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, NAL header byte included.
    pub pps: Vec<Bytes>,
    /// Displayed width (after cropping) from the first SPS.
    pub width: u32,
    /// Displayed height (after cropping) from the first SPS.
    pub height: u32,
    /// Frames per second, when the SPS carries VUI timing.
    pub frame_rate: Option<f64>,
    /// The record itself, to send on unchanged.
    pub record: Bytes,
}

impl AvcConfig {
    /// Parses an `AVCDecoderConfigurationRecord`. Needs at least one SPS
    /// (for the picture size) and one PPS. Trailing extension fields of the
    /// high profiles are kept in `record` and not interpreted.
    pub fn parse(record: Bytes) -> Result<AvcConfig> {
        let r = &record[..];
        if r.len() < 7 {
            return Err(MediaError::Truncated("AVCDecoderConfigurationRecord"));
        }
        if r[0] != 1 {
            return Err(MediaError::Invalid("AVCDecoderConfigurationRecord version"));
        }
        let nalu_length_size = (r[4] & 0x03) + 1;
        if nalu_length_size == 3 {
            return Err(MediaError::Invalid("AVC lengthSizeMinusOne"));
        }
        let mut pos = 5;
        let sps = read_parameter_sets(&record, &mut pos, usize::from(r[5] & 0x1F), 1)?;
        let pps_count = usize::from(*r.get(pos).ok_or(MediaError::Truncated("AVC PPS count"))?);
        pos += 1;
        let pps = read_parameter_sets(&record, &mut pos, pps_count, 0)?;
        let first = sps
            .first()
            .ok_or(MediaError::Invalid("AVC record without SPS"))?;
        if pps.is_empty() {
            return Err(MediaError::Invalid("AVC record without PPS"));
        }
        let parsed = Sps::parse(first)?;
        Ok(AvcConfig {
            profile_idc: r[1],
            profile_compatibility: r[2],
            level_idc: r[3],
            nalu_length_size,
            width: parsed.width,
            height: parsed.height,
            frame_rate: parsed.frame_rate,
            sps,
            pps,
            record,
        })
    }

    /// Builds the record from parameter sets (for sources that send them in
    /// band, such as RTSP), with 4-byte NAL unit lengths.
    pub fn from_parameter_sets(sps: &[Bytes], pps: &[Bytes]) -> Result<AvcConfig> {
        let first = sps
            .first()
            .ok_or(MediaError::Invalid("AVC record without SPS"))?;
        if first.len() < 4 || sps.len() > 31 || pps.len() > 255 {
            return Err(MediaError::Invalid("AVC parameter sets"));
        }
        let mut out = BytesMut::new();
        out.put_slice(&[
            1,
            first[1],
            first[2],
            first[3],
            0xFF,
            0xE0 | sps.len() as u8,
        ]);
        for set in sps {
            let len = u16::try_from(set.len()).map_err(|_| MediaError::Invalid("SPS size"))?;
            out.put_u16(len);
            out.put_slice(set);
        }
        out.put_u8(pps.len() as u8);
        for set in pps {
            let len = u16::try_from(set.len()).map_err(|_| MediaError::Invalid("PPS size"))?;
            out.put_u16(len);
            out.put_slice(set);
        }
        AvcConfig::parse(out.freeze())
    }

    /// The RFC 6381 codec string, as in an HLS `CODECS` attribute
    /// (`avc1.64001f`).
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.profile_compatibility, self.level_idc
        )
    }
}

/// Reads `count` length-prefixed parameter sets from `record` at `pos`, and
/// checks each one's NAL unit type when `expect_sps` is 1 (0 for PPS).
fn read_parameter_sets(
    record: &Bytes,
    pos: &mut usize,
    count: usize,
    expect_sps: u8,
) -> Result<Vec<Bytes>> {
    if expect_sps == 1 {
        *pos += 1; // numOfSequenceParameterSets byte
    }
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        let len = record
            .get(*pos..*pos + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(MediaError::Truncated("AVC parameter set length"))?;
        *pos += 2;
        if len == 0 || *pos + len > record.len() {
            return Err(MediaError::Truncated("AVC parameter set"));
        }
        let set = record.slice(*pos..*pos + len);
        let want = if expect_sps == 1 {
            h264::nal::SPS
        } else {
            h264::nal::PPS
        };
        if set[0] & 0x1F != want {
            return Err(MediaError::Invalid("AVC parameter set NAL unit type"));
        }
        sets.push(set);
        *pos += len;
    }
    Ok(sets)
}

/// An H.265 decoder configuration (`HEVCDecoderConfigurationRecord`, the
/// Enhanced RTMP `hvc1` sequence start). Passed through to FLV viewers;
/// only the fields below are read.
#[derive(Debug, Clone, PartialEq)]
pub struct HevcConfig {
    /// `general_profile_idc` (1 Main, 2 Main 10).
    pub general_profile_idc: u8,
    /// `general_level_idc` (30 times the level: 93 = level 3.1).
    pub general_level_idc: u8,
    /// Size of the NAL unit length prefix in frames: 1, 2 or 4.
    pub nalu_length_size: u8,
    /// The record itself, to send on unchanged.
    pub record: Bytes,
}

impl HevcConfig {
    /// Parses the fixed 23-byte head of an `HEVCDecoderConfigurationRecord`.
    pub fn parse(record: Bytes) -> Result<HevcConfig> {
        if record.len() < 23 {
            return Err(MediaError::Truncated("HEVCDecoderConfigurationRecord"));
        }
        if record[0] != 1 {
            return Err(MediaError::Invalid(
                "HEVCDecoderConfigurationRecord version",
            ));
        }
        let nalu_length_size = (record[21] & 0x03) + 1;
        if nalu_length_size == 3 {
            return Err(MediaError::Invalid("HEVC lengthSizeMinusOne"));
        }
        Ok(HevcConfig {
            general_profile_idc: record[1] & 0x1F,
            general_level_idc: record[12],
            nalu_length_size,
            record,
        })
    }
}

/// Sampling frequencies by `samplingFrequencyIndex` (14496-3 Table 1.18).
pub const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// An AAC decoder configuration: the `AudioSpecificConfig` (the FLV/RTMP AAC
/// sequence header, MP4 `esds` DecoderSpecificInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// `audioObjectType` of the core coder (2 = AAC LC). For explicitly
    /// signalled HE-AAC (SBR, PS) this is the underlying core type.
    pub object_type: u8,
    /// `samplingFrequencyIndex` of the core coder (0..=12).
    pub sampling_frequency_index: u8,
    /// The core sample rate in Hz.
    pub sample_rate: u32,
    /// The output sample rate of explicitly signalled SBR (HE-AAC), in Hz.
    pub sbr_sample_rate: Option<u32>,
    /// `channelConfiguration` (1 mono, 2 stereo, ... 0 = in the stream).
    pub channel_configuration: u8,
    /// The record itself, to send on unchanged.
    pub record: Bytes,
}

impl AacConfig {
    /// Parses an `AudioSpecificConfig`.
    pub fn parse(record: Bytes) -> Result<AacConfig> {
        let mut r = h264::BitReader::new(&record);
        let truncated = |_| MediaError::Truncated("AudioSpecificConfig");
        let mut object_type = read_object_type(&mut r).map_err(truncated)?;
        let sampling_frequency_index = r.bits(4).map_err(truncated)? as u8;
        let sample_rate = rate_of_index(sampling_frequency_index)?;
        let channel_configuration = r.bits(4).map_err(truncated)? as u8;
        let mut sbr_sample_rate = None;
        if object_type == 5 || object_type == 29 {
            // Explicit SBR/PS: the extension (output) rate, then the core.
            sbr_sample_rate = Some(rate_of_index(r.bits(4).map_err(truncated)? as u8)?);
            object_type = read_object_type(&mut r).map_err(truncated)?;
        }
        if object_type == 0 {
            return Err(MediaError::Invalid("AAC audioObjectType"));
        }
        Ok(AacConfig {
            object_type,
            sampling_frequency_index,
            sample_rate,
            sbr_sample_rate,
            channel_configuration,
            record,
        })
    }

    /// Builds the two-byte `AudioSpecificConfig` for a plain object type
    /// (below 31) and a standard sample rate.
    pub fn new(object_type: u8, sample_rate: u32, channel_configuration: u8) -> Result<AacConfig> {
        let index = AAC_SAMPLE_RATES
            .iter()
            .position(|&r| r == sample_rate)
            .ok_or(MediaError::Unsupported(format!(
                "AAC sample rate {sample_rate}"
            )))?;
        if object_type == 0 || object_type >= 31 || channel_configuration > 15 {
            return Err(MediaError::Invalid("AAC configuration"));
        }
        let bits = (u16::from(object_type) << 11)
            | ((index as u16) << 7)
            | (u16::from(channel_configuration) << 3);
        AacConfig::parse(Bytes::copy_from_slice(&bits.to_be_bytes()))
    }

    /// The number of channels for the common configurations 1..=7
    /// (7 = 7.1, eight channels); `None` when the stream carries it.
    pub fn channels(&self) -> Option<u8> {
        match self.channel_configuration {
            0 => None,
            7 => Some(8),
            n => Some(n),
        }
    }

    /// The RFC 6381 codec string (`mp4a.40.2`).
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// The 7-byte ADTS header (14496-3 1.A.2.2, no CRC) for a raw frame of
    /// `payload_len` bytes. ADTS only has room for object types 1..=4; the
    /// hub writes the others (rare outside HE-AAC, whose core is LC) as LC.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; 7]> {
        let frame_len = payload_len + 7;
        if frame_len > 0x1FFF {
            return Err(MediaError::Invalid("AAC frame too long for ADTS"));
        }
        if self.channel_configuration > 7 {
            return Err(MediaError::Unsupported(
                "AAC channel configuration in ADTS".into(),
            ));
        }
        let profile = if (1..=4).contains(&self.object_type) {
            self.object_type - 1
        } else {
            1
        };
        let sfi = self.sampling_frequency_index;
        let ch = self.channel_configuration;
        let len = frame_len as u16;
        Ok([
            0xFF,
            0xF1, // syncword, MPEG-4, layer 0, protection_absent
            (profile << 6) | (sfi << 2) | (ch >> 2),
            ((ch & 0x03) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            (((len & 0x07) as u8) << 5) | 0x1F, // buffer fullness 0x7FF: VBR
            0xFC,                               // ... and one raw data block
        ])
    }
}

fn rate_of_index(index: u8) -> Result<u32> {
    if index == 15 {
        return Err(MediaError::Unsupported(
            "AAC explicit sampling frequency".into(),
        ));
    }
    AAC_SAMPLE_RATES
        .get(usize::from(index))
        .copied()
        .ok_or(MediaError::Invalid("AAC samplingFrequencyIndex"))
}

fn read_object_type(r: &mut h264::BitReader<'_>) -> Result<u8> {
    let t = r.bits(5)? as u8;
    if t == 31 {
        Ok(32 + r.bits(6)? as u8)
    } else {
        Ok(t)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The sequence header libx264 writes for 320x240 High 1.3 (ffmpeg 5.1).
    pub(crate) fn avcc_320x240() -> Bytes {
        let sps = [
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
        ];
        let pps = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        let mut r = vec![1, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0, sps.len() as u8];
        r.extend_from_slice(&sps);
        r.extend_from_slice(&[1, 0, pps.len() as u8]);
        r.extend_from_slice(&pps);
        r.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0x00]); // high profile extension
        Bytes::from(r)
    }

    #[test]
    fn avc_record() {
        let c = AvcConfig::parse(avcc_320x240()).unwrap();
        assert_eq!(
            (c.profile_idc, c.profile_compatibility, c.level_idc),
            (100, 0, 13)
        );
        assert_eq!(c.nalu_length_size, 4);
        assert_eq!((c.sps.len(), c.pps.len()), (1, 1));
        assert_eq!(c.pps[0][..], [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]);
        assert_eq!((c.width, c.height, c.frame_rate), (320, 240, Some(25.0)));
        assert_eq!(c.codec_string(), "avc1.64000d");

        let rebuilt = AvcConfig::from_parameter_sets(&c.sps, &c.pps).unwrap();
        assert_eq!(rebuilt.record[..], c.record[..c.record.len() - 4]);
    }

    #[test]
    fn avc_record_rejects_garbage() {
        let good = avcc_320x240();
        for len in 0..good.len() - 4 {
            assert!(AvcConfig::parse(good.slice(..len)).is_err(), "len {len}");
        }
        let mut bad = good.to_vec();
        bad[0] = 2;
        assert!(AvcConfig::parse(Bytes::from(bad)).is_err());
        let mut no_pps = good.to_vec();
        no_pps.truncate(8 + 25);
        no_pps.push(0);
        assert_eq!(
            AvcConfig::parse(Bytes::from(no_pps)),
            Err(MediaError::Invalid("AVC record without PPS"))
        );
    }

    #[test]
    fn aac_lc_44100_stereo() {
        let c = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        assert_eq!(
            (c.object_type, c.sampling_frequency_index, c.sample_rate),
            (2, 4, 44_100)
        );
        assert_eq!((c.channel_configuration, c.channels()), (2, Some(2)));
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(AacConfig::new(2, 44_100, 2).unwrap(), c);
        // ffmpeg's AAC encoder: LC, 44.1 kHz, mono, then a sync extension.
        let m = AacConfig::parse(Bytes::from_static(&[0x12, 0x08, 0x56, 0xe5, 0x00])).unwrap();
        assert_eq!(
            (
                m.object_type,
                m.sample_rate,
                m.channels(),
                m.sbr_sample_rate
            ),
            (2, 44_100, Some(1), None)
        );
        assert_eq!(
            c.adts_header(371).unwrap(),
            [0xFF, 0xF1, 0x50, 0x80, 0x2F, 0x5F, 0xFC]
        );
        // The first header of ffmpeg's `-f lavfi -i sine -c:a aac -f adts`
        // (mono 44.1 kHz LC, 258-byte frame), bit for bit.
        let mono = AacConfig::new(2, 44_100, 1).unwrap();
        assert_eq!(
            mono.adts_header(258).unwrap(),
            [0xFF, 0xF1, 0x50, 0x40, 0x21, 0x3F, 0xFC]
        );
    }

    #[test]
    fn aac_explicit_he_aac_uses_the_core() {
        // HE-AAC (5), 24 kHz core (6), stereo, extension 48 kHz (3), core LC.
        // 00101 0110 0010 0011 00010 + padding
        let c = AacConfig::parse(Bytes::from_static(&[0x2B, 0x11, 0x88, 0x00])).unwrap();
        assert_eq!(c.object_type, 2);
        assert_eq!((c.sampling_frequency_index, c.sample_rate), (6, 24_000));
        assert_eq!(c.sbr_sample_rate, Some(48_000));
    }

    #[test]
    fn aac_errors() {
        assert!(AacConfig::parse(Bytes::from_static(&[0x12])).is_err());
        assert!(AacConfig::parse(Bytes::new()).is_err());
        assert!(AacConfig::parse(Bytes::from_static(&[0x17, 0x90])).is_err()); // index 15
        assert!(AacConfig::parse(Bytes::from_static(&[0x16, 0x90])).is_err()); // index 13
        let c = AacConfig::new(2, 48_000, 1).unwrap();
        assert!(c.adts_header(0x1FFF).is_err());
    }

    #[test]
    fn hevc_record_head() {
        let mut r = vec![0u8; 23];
        r[0] = 1;
        r[1] = 0x01; // Main
        r[12] = 93;
        r[21] = 0x0F; // lengthSizeMinusOne 3
        let c = HevcConfig::parse(Bytes::from(r)).unwrap();
        assert_eq!(
            (
                c.general_profile_idc,
                c.general_level_idc,
                c.nalu_length_size
            ),
            (1, 93, 4)
        );
        assert!(HevcConfig::parse(Bytes::from_static(&[1, 2, 3])).is_err());
    }

    #[test]
    fn frame_timestamps() {
        let f = MediaFrame::video(VideoCodec::H264, true, 1000, 80, Bytes::new());
        assert!(f.is_video() && f.is_keyframe());
        assert_eq!(f.pts_ms(), 1080);
        let f = MediaFrame::video(VideoCodec::H264, false, 10, -20, Bytes::new());
        assert_eq!(f.pts_ms(), u32::MAX - 9);
        let a = MediaFrame::audio(5, Bytes::new());
        assert!(!a.is_video() && !a.is_keyframe());
        assert_eq!((a.cts_ms(), a.pts_ms()), (0, 5));
    }
}
