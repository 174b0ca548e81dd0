//! MPEG-2 transport stream muxer for H.264 video and AAC audio, as HLS
//! segments carry them.
//!
//! Spec: ISO/IEC 13818-1 (ITU-T H.222.0): 2.4.3 transport packets and the
//! adaptation field (PCR, random access indicator, stuffing, continuity
//! counters), 2.4.3.6-7 PES packets (PTS, DTS), 2.4.4 program specific
//! information (PAT, PMT) with their CRC-32 (Annex A). Stream types: 0x1B
//! (H.264, Annex B byte stream with access unit delimiters), 0x0F (AAC in
//! ADTS, ISO/IEC 14496-3 1.A.2).
//!
//! Clocks: input frames carry milliseconds on the RTMP timeline
//! ([`MediaFrame::dts_ms`]); PTS and DTS are that times 90 (`_90k`), plus
//! [`TIMESTAMP_OFFSET_90K`], modulo 2^33; the PCR runs on the 27 MHz clock
//! (`_27m`) at the decode time without the offset, so every access unit
//! arrives (PCR) 700 ms before it is decoded (DTS), as ffmpeg does.
//!
//! PIDs are ffmpeg's: PMT 0x1000, video 0x100, audio 0x101, program 1.

use bytes::{BufMut, BytesMut};

use super::frame::{AacConfig, AvcConfig, FrameKind, MediaFrame, VideoCodec};
use super::h264::{self, AUD_NAL_UNIT, START_CODE};
use super::{MediaError, Result};

/// Size of a transport packet.
pub const PACKET_LEN: usize = 188;
/// PID of the program association table.
pub const PID_PAT: u16 = 0x0000;
/// PID of the program map table.
pub const PID_PMT: u16 = 0x1000;
/// PID of the video elementary stream.
pub const PID_VIDEO: u16 = 0x0100;
/// PID of the audio elementary stream.
pub const PID_AUDIO: u16 = 0x0101;
/// `stream_type` of H.264 video.
pub const STREAM_TYPE_H264: u8 = 0x1B;
/// `stream_type` of AAC audio with ADTS transport syntax.
pub const STREAM_TYPE_AAC: u8 = 0x0F;
/// Added to every PTS and DTS: the decode delay after the PCR (700 ms).
pub const TIMESTAMP_OFFSET_90K: u64 = 63_000;
/// PTS, DTS and PCR base are 33-bit counters.
const MASK_33: u64 = (1 << 33) - 1;
/// `program_number` of the one program.
const PROGRAM_NUMBER: u16 = 1;
/// `transport_stream_id`.
const TRANSPORT_STREAM_ID: u16 = 1;
/// When no video frame has carried a PCR for this long, one is sent on its
/// own before the next audio frame (so the PCR interval stays under 100 ms
/// with video below 10 frames/s).
const PCR_ONLY_AFTER_MS: i32 = 80;

/// Milliseconds on the RTMP clock to the 90 kHz clock, modulo 2^33. The
/// `u32` millisecond wrap lands on a 2^33 multiple, so wrapped inputs stay
/// continuous.
pub fn ms_to_90k(ms: u32) -> u64 {
    (u64::from(ms) * 90) & MASK_33
}

/// The 5-byte PTS or DTS field (2.4.3.7): `prefix` is 0b0010 for a PTS
/// alone, 0b0011 for a PTS followed by a DTS, 0b0001 for that DTS.
pub fn encode_timestamp(prefix: u8, ts_90k: u64) -> [u8; 5] {
    let ts = ts_90k & MASK_33;
    [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ]
}

/// The 6-byte `program_clock_reference` field (2.4.3.5): a 33-bit base at
/// 90 kHz, 6 reserved bits, a 9-bit extension at 27 MHz (0..300).
pub fn encode_pcr(pcr_27m: u64) -> [u8; 6] {
    let base = (pcr_27m / 300) & MASK_33;
    let ext = (pcr_27m % 300) as u16;
    [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        (((base & 1) as u8) << 7) | 0x7E | ((ext >> 8) as u8 & 1),
        ext as u8,
    ]
}

/// CRC-32 of PSI sections (Annex A: polynomial 0x04C11DB7, initial value
/// all ones, no reflection, no final XOR).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The adaptation field of a packet's first bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Adaptation {
    random_access: bool,
    pcr_27m: Option<u64>,
}

impl Adaptation {
    /// Bytes the fields need (length byte included); 0 when none is set.
    fn len(&self) -> usize {
        match (self.random_access, self.pcr_27m) {
            (false, None) => 0,
            (_, None) => 2,
            (_, Some(_)) => 8,
        }
    }
}

/// A muxer of [`MediaFrame`]s into transport packets, one program with an
/// H.264 and/or an AAC stream. It keeps the continuity counters, so one
/// muxer writes every segment of a stream; frames go in decode order.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    /// Next `continuity_counter` of PAT, PMT, video, audio.
    cc: [u8; 4],
    pmt_version: u8,
    /// The last PCR written, in ms of the RTMP clock.
    last_pcr_ms: Option<u32>,
    /// Reused PES assembly buffer.
    pes: Vec<u8>,
}

impl Default for TsMuxer {
    fn default() -> Self {
        TsMuxer::new()
    }
}

const CC_PAT: usize = 0;
const CC_PMT: usize = 1;
const CC_VIDEO: usize = 2;
const CC_AUDIO: usize = 3;

impl TsMuxer {
    /// A muxer with no streams yet: set the configurations before frames.
    pub fn new() -> Self {
        TsMuxer {
            video: None,
            audio: None,
            cc: [0; 4],
            pmt_version: 0,
            last_pcr_ms: None,
            pes: Vec::new(),
        }
    }

    /// Sets (or removes) the H.264 stream. Its SPS and PPS are written
    /// before every keyframe that does not carry its own.
    pub fn set_video_config(&mut self, config: Option<AvcConfig>) {
        if config.is_some() != self.video.is_some() {
            self.pmt_version = (self.pmt_version + 1) & 0x1F;
        }
        self.video = config;
    }

    /// Sets (or removes) the AAC stream.
    pub fn set_audio_config(&mut self, config: Option<AacConfig>) {
        if config.is_some() != self.audio.is_some() {
            self.pmt_version = (self.pmt_version + 1) & 0x1F;
        }
        self.audio = config;
    }

    /// The H.264 configuration, if set.
    pub fn video_config(&self) -> Option<&AvcConfig> {
        self.video.as_ref()
    }

    /// The AAC configuration, if set.
    pub fn audio_config(&self) -> Option<&AacConfig> {
        self.audio.as_ref()
    }

    /// The PID that carries the PCR: video when there is video.
    pub fn pcr_pid(&self) -> u16 {
        match (&self.video, &self.audio) {
            (Some(_), _) => PID_VIDEO,
            (None, Some(_)) => PID_AUDIO,
            (None, None) => 0x1FFF,
        }
    }

    /// Writes a PAT and a PMT (two packets): what every segment starts with.
    pub fn write_tables(&mut self, out: &mut BytesMut) {
        // PAT (2.4.4.3): one program.
        let mut pat = Vec::with_capacity(16);
        pat.put_u8(0x00); // table_id
        pat.put_u16(0xB000 | 13); // section_syntax_indicator, '0', reserved, length
        pat.put_u16(TRANSPORT_STREAM_ID);
        pat.put_u8(0xC1); // reserved, version 0, current_next_indicator
        pat.put_u16(0); // section_number, last_section_number
        pat.put_u16(PROGRAM_NUMBER);
        pat.put_u16(0xE000 | PID_PMT);
        let crc = crc32_mpeg2(&pat);
        pat.put_u32(crc);
        self.write_section(out, PID_PAT, CC_PAT, &pat);

        // PMT (2.4.4.8).
        let mut streams: Vec<(u8, u16)> = Vec::with_capacity(2);
        if self.video.is_some() {
            streams.push((STREAM_TYPE_H264, PID_VIDEO));
        }
        if self.audio.is_some() {
            streams.push((STREAM_TYPE_AAC, PID_AUDIO));
        }
        let section_length = 9 + 5 * streams.len() as u16 + 4;
        let mut pmt = Vec::with_capacity(32);
        pmt.put_u8(0x02); // table_id
        pmt.put_u16(0xB000 | section_length);
        pmt.put_u16(PROGRAM_NUMBER);
        pmt.put_u8(0xC1 | (self.pmt_version << 1));
        pmt.put_u16(0);
        pmt.put_u16(0xE000 | self.pcr_pid());
        pmt.put_u16(0xF000); // program_info_length 0
        for (stream_type, pid) in streams {
            pmt.put_u8(stream_type);
            pmt.put_u16(0xE000 | pid);
            pmt.put_u16(0xF000); // ES_info_length 0
        }
        let crc = crc32_mpeg2(&pmt);
        pmt.put_u32(crc);
        self.write_section(out, PID_PMT, CC_PMT, &pmt);
    }

    /// One PSI section in one packet: pointer field 0, then 0xFF filler.
    fn write_section(&mut self, out: &mut BytesMut, pid: u16, cc: usize, section: &[u8]) {
        let start = out.len();
        out.put_u8(0x47);
        out.put_u16(0x4000 | pid); // payload_unit_start_indicator
        out.put_u8(0x10 | self.next_cc(cc));
        out.put_u8(0); // pointer_field
        out.put_slice(section);
        out.put_bytes(0xFF, start + PACKET_LEN - out.len());
    }

    fn next_cc(&mut self, index: usize) -> u8 {
        let cc = self.cc[index];
        self.cc[index] = (cc + 1) & 0x0F;
        cc
    }

    /// Writes one frame as a PES packet in transport packets.
    ///
    /// Video: AVCC to Annex B, an access unit delimiter first, SPS and PPS
    /// before a keyframe, a PCR in the first packet, the random access
    /// indicator on keyframes; PTS and DTS (DTS only when it differs).
    /// Audio: one ADTS frame, PTS only.
    pub fn write_frame(&mut self, frame: &MediaFrame, out: &mut BytesMut) -> Result<()> {
        match frame.kind {
            FrameKind::Video {
                codec,
                keyframe,
                cts_ms,
            } => {
                if codec != VideoCodec::H264 {
                    return Err(MediaError::Unsupported("H.265 in MPEG-TS".into()));
                }
                let config = self
                    .video
                    .as_ref()
                    .ok_or(MediaError::MissingConfig("H.264"))?;
                let dts_90k = ms_to_90k(frame.dts_ms) + TIMESTAMP_OFFSET_90K;
                let pts_90k = dts_90k.wrapping_add_signed(i64::from(cts_ms) * 90);
                let mut pes = std::mem::take(&mut self.pes);
                pes.clear();
                write_pes_header(
                    &mut pes,
                    0xE0,
                    pts_90k,
                    (cts_ms != 0).then_some(dts_90k),
                    None,
                );
                let es = annex_b(config, keyframe, &frame.data, &mut pes);
                if es.is_ok() {
                    // A PCR with every video frame: at most one frame interval apart.
                    let pcr_ms = self.pcr_at(frame.dts_ms);
                    let adaptation = Adaptation {
                        random_access: keyframe,
                        pcr_27m: Some(u64::from(pcr_ms) * 27_000),
                    };
                    self.write_pes(out, PID_VIDEO, CC_VIDEO, &pes, adaptation);
                }
                self.pes = pes;
                es
            }
            FrameKind::Audio { .. } => {
                let config = self
                    .audio
                    .as_ref()
                    .ok_or(MediaError::MissingConfig("AAC"))?;
                let adts = config.adts_header(frame.data.len())?;
                let pts_90k = ms_to_90k(frame.dts_ms) + TIMESTAMP_OFFSET_90K;
                let mut pes = std::mem::take(&mut self.pes);
                pes.clear();
                let es_len = adts.len() + frame.data.len();
                write_pes_header(&mut pes, 0xC0, pts_90k, None, Some(es_len));
                pes.extend_from_slice(&adts);
                pes.extend_from_slice(&frame.data);
                let mut adaptation = Adaptation::default();
                if self.video.is_none() {
                    adaptation.pcr_27m = Some(u64::from(self.pcr_at(frame.dts_ms)) * 27_000);
                } else if self.pcr_due(frame.dts_ms) {
                    let pcr_ms = self.pcr_at(frame.dts_ms);
                    self.write_pcr_only(out, pcr_ms);
                }
                self.write_pes(out, PID_AUDIO, CC_AUDIO, &pes, adaptation);
                self.pes = pes;
                Ok(())
            }
        }
    }

    /// The PCR for a frame decoded at `dts_ms`, never before the last one.
    fn pcr_at(&mut self, dts_ms: u32) -> u32 {
        let pcr = match self.last_pcr_ms {
            Some(last) if (dts_ms.wrapping_sub(last) as i32) < 0 => last,
            _ => dts_ms,
        };
        self.last_pcr_ms = Some(pcr);
        pcr
    }

    fn pcr_due(&self, dts_ms: u32) -> bool {
        match self.last_pcr_ms {
            Some(last) => dts_ms.wrapping_sub(last) as i32 >= PCR_ONLY_AFTER_MS,
            None => false,
        }
    }

    /// A packet on the video PID with only an adaptation field holding a
    /// PCR. It has no payload, so its continuity counter repeats the last.
    fn write_pcr_only(&mut self, out: &mut BytesMut, pcr_ms: u32) {
        let cc = self.cc[CC_VIDEO].wrapping_sub(1) & 0x0F;
        out.put_u8(0x47);
        out.put_u16(PID_VIDEO);
        out.put_u8(0x20 | cc); // adaptation field only
        out.put_u8(183);
        out.put_u8(0x10); // PCR_flag
        out.put_slice(&encode_pcr(u64::from(pcr_ms) * 27_000));
        out.put_bytes(0xFF, 176);
    }

    /// Splits a PES packet into transport packets: the adaptation field in
    /// the first, stuffing in the adaptation field of the last.
    fn write_pes(
        &mut self,
        out: &mut BytesMut,
        pid: u16,
        cc: usize,
        pes: &[u8],
        first: Adaptation,
    ) {
        let mut rest = pes;
        let mut adaptation = first;
        let mut pusi = true;
        out.reserve((pes.len() / 184 + 2) * PACKET_LEN);
        while pusi || !rest.is_empty() {
            let mut af_len = adaptation.len();
            let n = rest.len().min(184 - af_len);
            af_len = 184 - n; // stuffing, if any, grows the adaptation field
            let cc_value = self.next_cc(cc);
            out.put_u8(0x47);
            out.put_u16((u16::from(pusi) << 14) | pid);
            out.put_u8(if af_len > 0 { 0x30 } else { 0x10 } | cc_value);
            if af_len > 0 {
                out.put_u8((af_len - 1) as u8);
                if af_len > 1 {
                    let mut flags = 0;
                    if adaptation.random_access {
                        flags |= 0x40;
                    }
                    if adaptation.pcr_27m.is_some() {
                        flags |= 0x10;
                    }
                    out.put_u8(flags);
                    let mut used = 2;
                    if let Some(pcr) = adaptation.pcr_27m {
                        out.put_slice(&encode_pcr(pcr));
                        used += 6;
                    }
                    out.put_bytes(0xFF, af_len - used);
                }
            }
            out.put_slice(&rest[..n]);
            rest = &rest[n..];
            adaptation = Adaptation::default();
            pusi = false;
        }
    }
}

/// A PES header (2.4.3.6) with PTS, an optional DTS, and
/// `PES_packet_length` (0, unbounded, for video).
fn write_pes_header(
    pes: &mut Vec<u8>,
    stream_id: u8,
    pts_90k: u64,
    dts_90k: Option<u64>,
    es_len: Option<usize>,
) {
    let header_data_len: u8 = if dts_90k.is_some() { 10 } else { 5 };
    let packet_len = es_len
        .map(|len| len + 3 + usize::from(header_data_len))
        .and_then(|len| u16::try_from(len).ok())
        .unwrap_or(0);
    pes.extend_from_slice(&[0, 0, 1, stream_id]);
    pes.put_u16(packet_len);
    pes.put_u8(0x84); // '10', data_alignment_indicator
    pes.put_u8(if dts_90k.is_some() { 0xC0 } else { 0x80 });
    pes.put_u8(header_data_len);
    match dts_90k {
        Some(dts) => {
            pes.extend_from_slice(&encode_timestamp(0b0011, pts_90k));
            pes.extend_from_slice(&encode_timestamp(0b0001, dts));
        }
        None => pes.extend_from_slice(&encode_timestamp(0b0010, pts_90k)),
    }
}

/// Appends the access unit in Annex B form: AUD, SPS/PPS on a keyframe
/// without its own, then the frame's NAL units (its own AUDs dropped).
fn annex_b(config: &AvcConfig, keyframe: bool, avcc: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&START_CODE);
    out.extend_from_slice(&AUD_NAL_UNIT);
    let length_size = config.nalu_length_size;
    if keyframe {
        let mut in_band = false;
        for unit in h264::avcc_nal_units(avcc, length_size) {
            if unit?.first().is_some_and(|b| b & 0x1F == h264::nal::SPS) {
                in_band = true;
            }
        }
        if !in_band {
            for set in config.sps.iter().chain(&config.pps) {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(set);
            }
        }
    }
    for unit in h264::avcc_nal_units(avcc, length_size) {
        let unit = unit?;
        match unit.first() {
            None => {}
            Some(b) if b & 0x1F == h264::nal::AUD => {}
            Some(_) => {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(unit);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn avc() -> AvcConfig {
        AvcConfig::parse(crate::media::frame::tests::avcc_320x240()).unwrap()
    }

    fn aac() -> AacConfig {
        AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap()
    }

    fn packets(data: &[u8]) -> Vec<&[u8]> {
        assert_eq!(data.len() % PACKET_LEN, 0);
        let p: Vec<&[u8]> = data.chunks(PACKET_LEN).collect();
        assert!(p.iter().all(|p| p[0] == 0x47));
        p
    }

    fn pid(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[1], p[2]]) & 0x1FFF
    }

    #[test]
    fn crc32_check_value() {
        // CRC-32/MPEG-2 check value of "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn pat_and_pmt_match_ffmpeg_bit_for_bit() {
        let mut m = TsMuxer::new();
        m.set_video_config(Some(avc()));
        m.set_audio_config(Some(aac()));
        m.pmt_version = 0;
        let mut out = BytesMut::new();
        m.write_tables(&mut out);
        let p = packets(&out);
        // What ffmpeg 5.1's mpegts muxer writes for H.264 + AAC.
        let pat = [
            0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00,
            0x01, 0xF0, 0x00, 0x2A, 0xB1, 0x04, 0xB2,
        ];
        assert_eq!(p[0][..pat.len()], pat);
        assert!(p[0][pat.len()..].iter().all(|&b| b == 0xFF));
        let pmt = [
            0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xB0, 0x17, 0x00, 0x01, 0xC1, 0x00, 0x00, 0xE1,
            0x00, 0xF0, 0x00, 0x1B, 0xE1, 0x00, 0xF0, 0x00, 0x0F, 0xE1, 0x01, 0xF0, 0x00, 0x2F,
            0x44, 0xB9, 0x9B,
        ];
        assert_eq!(p[1][..pmt.len()], pmt);
        assert!(p[1][pmt.len()..].iter().all(|&b| b == 0xFF));
        // A section followed by its own CRC checks to zero.
        assert_eq!(crc32_mpeg2(&p[0][5..5 + 3 + 13]), 0);
    }

    #[test]
    fn timestamps_bit_exact() {
        // ffmpeg 5.1's first video PES header (PTS 133200, DTS 126000).
        assert_eq!(
            encode_timestamp(0b0011, 133_200),
            [0x31, 0x00, 0x09, 0x10, 0xA1]
        );
        assert_eq!(
            encode_timestamp(0b0001, 126_000),
            [0x11, 0x00, 0x07, 0xD8, 0x61]
        );
        let back = |b: [u8; 5]| {
            (u64::from(b[0] >> 1 & 7) << 30)
                | (u64::from(b[1]) << 22)
                | (u64::from(b[2] >> 1) << 15)
                | (u64::from(b[3]) << 7)
                | u64::from(b[4] >> 1)
        };
        for v in [0, 1, 0x1_2345_6789, MASK_33] {
            let b = encode_timestamp(0b0010, v);
            assert_eq!(back(b), v);
            assert_eq!((b[0] >> 4, b[0] & 1, b[2] & 1, b[4] & 1), (0b0010, 1, 1, 1));
        }
        assert_eq!(encode_timestamp(0b0001, 0), [0x11, 0, 1, 0, 1]);
        assert_eq!(ms_to_90k(1000), 90_000);
        // The u32 ms wrap lands on a multiple of 2^33.
        assert_eq!(ms_to_90k(u32::MAX).wrapping_add(90) & MASK_33, 0);
    }

    #[test]
    fn pcr_bit_exact() {
        // base 1, ext 0 / base 0, ext 299 / the 33rd bit.
        assert_eq!(encode_pcr(300), [0, 0, 0, 0, 0xFE, 0x00]);
        assert_eq!(encode_pcr(299), [0, 0, 0, 0, 0x7F, 0x2B]);
        assert_eq!(encode_pcr((1 << 32) * 300), [0x80, 0, 0, 0, 0x7E, 0]);
        // 10 s: base 900000 = 0xDBBA0.
        assert_eq!(
            encode_pcr(10 * 27_000_000),
            [0x00, 0x06, 0xDD, 0xD0, 0x7E, 0x00]
        );
        let back = |b: [u8; 6]| {
            let base = (u64::from(b[0]) << 25)
                | (u64::from(b[1]) << 17)
                | (u64::from(b[2]) << 9)
                | (u64::from(b[3]) << 1)
                | u64::from(b[4] >> 7);
            let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
            base * 300 + ext
        };
        for v in [
            0,
            1,
            299,
            300,
            301,
            27_000_000 * 3600 + 123,
            (MASK_33 * 300) + 299,
        ] {
            assert_eq!(back(encode_pcr(v)), v);
        }
    }

    #[test]
    fn keyframe_pes_layout() {
        let mut m = TsMuxer::new();
        m.set_video_config(Some(avc()));
        let mut out = BytesMut::new();
        let data = Bytes::from_static(&[0, 0, 0, 2, 0x09, 0x10, 0, 0, 0, 3, 0x65, 0x88, 0x84]);
        let f = MediaFrame::video(VideoCodec::H264, true, 1000, 40, data);
        m.write_frame(&f, &mut out).unwrap();
        let p = packets(&out);
        assert_eq!(p.len(), 1);
        let p = p[0];
        assert_eq!(&p[..4], &[0x47, 0x41, 0x00, 0x30]); // PUSI, PID 0x100, AF + payload, CC 0
        let af_len = usize::from(p[4]);
        assert_eq!(p[5], 0x50); // random_access_indicator, PCR_flag
        assert_eq!(p[6..12], encode_pcr(1000 * 27_000));
        assert!(p[12..5 + af_len].iter().all(|&b| b == 0xFF));
        let pes = &p[5 + af_len..];
        let dts = 90_000 + TIMESTAMP_OFFSET_90K;
        assert_eq!(pes[..9], [0, 0, 1, 0xE0, 0, 0, 0x84, 0xC0, 10]);
        assert_eq!(pes[9..14], encode_timestamp(0b0011, dts + 40 * 90));
        assert_eq!(pes[14..19], encode_timestamp(0b0001, dts));
        let sps = &avc().sps[0];
        let mut es = vec![0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1];
        es.extend_from_slice(sps);
        es.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]);
        es.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
        assert_eq!(pes[19..], es[..]);
    }

    #[test]
    fn large_frame_continuity_and_stuffing() {
        let mut m = TsMuxer::new();
        m.set_video_config(Some(avc()));
        let mut out = BytesMut::new();
        let mut data = vec![0, 0, 0x0F, 0xA0, 0x41];
        data.resize(5 + 4000 - 1, 0xAB);
        let f = MediaFrame::video(VideoCodec::H264, false, 0, 0, Bytes::from(data));
        for _ in 0..2 {
            m.write_frame(&f, &mut out).unwrap();
        }
        let p = packets(&out);
        // PES: 14 header + 6 AUD + 4 + 4000 = 4024 bytes; the first packet
        // carries 184 - 8 (PCR) = 176, then 20 full packets, then 168.
        assert_eq!(p.len(), 44);
        for (i, p) in p.iter().enumerate() {
            assert_eq!(pid(p), PID_VIDEO);
            assert_eq!(usize::from(p[3] & 0x0F), i % 16, "packet {i}");
            assert_eq!(p[1] & 0x40 != 0, i % 22 == 0);
        }
        // The last packet of each PES: a 16-byte adaptation field of stuffing.
        let last = p[21];
        assert_eq!(last[3] & 0x30, 0x30);
        assert_eq!((last[4], last[5]), (15, 0x00));
        assert!(last[6..20].iter().all(|&b| b == 0xFF));
        assert_eq!(last[20..], [0xAB; 168]);
    }

    #[test]
    fn one_byte_adaptation_field() {
        // A payload of exactly 183 bytes leaves one byte: AF length 0.
        let mut m = TsMuxer::new();
        let mut out = BytesMut::new();
        m.write_pes(
            &mut out,
            PID_AUDIO,
            CC_AUDIO,
            &[7u8; 183],
            Adaptation::default(),
        );
        assert_eq!(out[3], 0x30);
        assert_eq!(out[4], 0);
        assert_eq!(out[5..], [7u8; 183]);
        let mut out = BytesMut::new();
        m.write_pes(
            &mut out,
            PID_AUDIO,
            CC_AUDIO,
            &[7u8; 184],
            Adaptation::default(),
        );
        assert_eq!(out[3], 0x11);
    }

    #[test]
    fn continuity_counters_wrap_per_pid() {
        let mut m = TsMuxer::new();
        m.set_audio_config(Some(aac()));
        m.set_video_config(Some(avc()));
        let mut out = BytesMut::new();
        for i in 0..20u32 {
            m.write_tables(&mut out);
            m.write_frame(
                &MediaFrame::audio(i * 23, Bytes::from_static(&[1, 2, 3])),
                &mut out,
            )
            .unwrap();
        }
        let mut seen: std::collections::HashMap<u16, Vec<u8>> = Default::default();
        for p in packets(&out) {
            seen.entry(pid(p)).or_default().push(p[3] & 0x0F);
        }
        let expected: Vec<u8> = (0..20).map(|i| i % 16).collect();
        assert_eq!(seen[&PID_PAT], expected);
        assert_eq!(seen[&PID_PMT], expected);
        assert_eq!(seen[&PID_AUDIO], expected);
    }

    #[test]
    fn audio_pes_and_pcr_only_packets() {
        let mut m = TsMuxer::new();
        m.set_video_config(Some(avc()));
        m.set_audio_config(Some(aac()));
        let mut out = BytesMut::new();
        let key = MediaFrame::video(
            VideoCodec::H264,
            true,
            0,
            0,
            Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        );
        m.write_frame(&key, &mut out).unwrap();
        let n = out.len();
        m.write_frame(
            &MediaFrame::audio(50, Bytes::from_static(&[0x21; 10])),
            &mut out,
        )
        .unwrap();
        let p = packets(&out[n..]);
        assert_eq!(p.len(), 1, "no PCR yet at 50 ms");
        let pes = &p[0][4 + 1 + usize::from(p[0][4])..];
        assert_eq!(pes[..9], [0, 0, 1, 0xC0, 0, 8 + 7 + 10, 0x84, 0x80, 5]);
        assert_eq!(
            pes[9..14],
            encode_timestamp(0b0010, 50 * 90 + TIMESTAMP_OFFSET_90K)
        );
        assert_eq!(pes[14..21], aac().adts_header(10).unwrap());

        let n = out.len();
        m.write_frame(
            &MediaFrame::audio(90, Bytes::from_static(&[0x21; 10])),
            &mut out,
        )
        .unwrap();
        let p = packets(&out[n..]);
        assert_eq!(p.len(), 2);
        // PCR-only on the video PID, CC unchanged (0: the keyframe's).
        assert_eq!(p[0][..6], [0x47, 0x01, 0x00, 0x20, 183, 0x10]);
        assert_eq!(p[0][6..12], encode_pcr(90 * 27_000));
        assert_eq!(pid(p[1]), PID_AUDIO);
    }

    #[test]
    fn missing_config_and_bad_avcc() {
        let mut m = TsMuxer::new();
        let mut out = BytesMut::new();
        let f = MediaFrame::video(
            VideoCodec::H264,
            true,
            0,
            0,
            Bytes::from_static(&[0, 0, 0, 9, 0x65]),
        );
        assert_eq!(
            m.write_frame(&f, &mut out),
            Err(MediaError::MissingConfig("H.264"))
        );
        m.set_video_config(Some(avc()));
        assert!(m.write_frame(&f, &mut out).is_err());
        assert!(out.is_empty());
        let hevc = MediaFrame::video(VideoCodec::H265, true, 0, 0, Bytes::new());
        assert!(matches!(
            m.write_frame(&hevc, &mut out),
            Err(MediaError::Unsupported(_))
        ));
        assert_eq!(
            m.write_frame(&MediaFrame::audio(0, Bytes::new()), &mut out),
            Err(MediaError::MissingConfig("AAC"))
        );
    }

    #[test]
    fn in_band_sps_is_not_duplicated() {
        let mut m = TsMuxer::new();
        m.set_video_config(Some(avc()));
        let mut out = BytesMut::new();
        let data = Bytes::from_static(&[
            0, 0, 0, 2, 0x67, 0x42, 0, 0, 0, 2, 0x68, 0x01, 0, 0, 0, 1, 0x65,
        ]);
        m.write_frame(
            &MediaFrame::video(VideoCodec::H264, true, 0, 0, data),
            &mut out,
        )
        .unwrap();
        let af_len = usize::from(out[4]);
        let pes = &out[5 + af_len..];
        assert_eq!(
            pes[14..],
            [
                0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0x01, 0, 0, 0, 1,
                0x65
            ]
        );
    }
}
