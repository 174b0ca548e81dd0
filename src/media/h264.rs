//! H.264 bitstream helpers: the sequence parameter set parser and the
//! conversion between AVCC (length-prefixed NAL units, as in FLV and MP4) and
//! the Annex B byte stream (start codes, as in MPEG-TS).
//!
//! Spec: ITU-T H.264 (08/2021), section 7.3.2.1.1 `seq_parameter_set_data`,
//! E.1.1 `vui_parameters`, 7.4.2.1.1 for the cropping arithmetic, Annex B for
//! the byte stream format.

use super::{MediaError, Result};

/// NAL unit types used here (Table 7-1).
pub mod nal {
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// Profiles whose SPS carries chroma format, bit depths and scaling lists.
const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// What the hub needs from a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sps {
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// The constraint flags byte (`constraint_set0_flag`..).
    pub constraint_flags: u8,
    /// `level_idc` (31 = level 3.1).
    pub level_idc: u8,
    /// `chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    /// Displayed width in pixels, after cropping.
    pub width: u32,
    /// Displayed height in pixels, after cropping.
    pub height: u32,
    /// `frame_mbs_only_flag`: false for interlaced (field or MBAFF) coding.
    pub frame_mbs_only: bool,
    /// Frames per second from the VUI timing information, when present.
    pub frame_rate: Option<f64>,
}

impl Sps {
    /// Parses a sequence parameter set NAL unit, header byte included.
    pub fn parse(nal_unit: &[u8]) -> Result<Sps> {
        let (&header, _) = nal_unit.split_first().ok_or(MediaError::Truncated("SPS"))?;
        if header & 0x1F != nal::SPS {
            return Err(MediaError::Invalid("SPS NAL unit type"));
        }
        let rbsp = unescape(&nal_unit[1..]);
        let mut r = BitReader::new(&rbsp);
        let profile_idc = r.u8()?;
        let constraint_flags = r.u8()?;
        let level_idc = r.u8()?;
        let _seq_parameter_set_id = r.ue()?;
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        if HIGH_PROFILES.contains(&profile_idc) {
            chroma_format_idc = r.ue()?;
            if chroma_format_idc > 3 {
                return Err(MediaError::Invalid("SPS chroma_format_idc"));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = r.flag()?;
            }
            let _bit_depth_luma_minus8 = r.ue()?;
            let _bit_depth_chroma_minus8 = r.ue()?;
            let _qpprime_y_zero_transform_bypass = r.flag()?;
            if r.flag()? {
                // seq_scaling_matrix_present_flag
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.flag()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let _log2_max_frame_num_minus4 = r.ue()?;
        match r.ue()? {
            0 => {
                let _log2_max_pic_order_cnt_lsb_minus4 = r.ue()?;
            }
            1 => {
                let _delta_pic_order_always_zero = r.flag()?;
                let _offset_for_non_ref_pic = r.se()?;
                let _offset_for_top_to_bottom_field = r.se()?;
                let cycle = r.ue()?;
                if cycle > 255 {
                    return Err(MediaError::Invalid(
                        "SPS num_ref_frames_in_pic_order_cnt_cycle",
                    ));
                }
                for _ in 0..cycle {
                    let _offset_for_ref_frame = r.se()?;
                }
            }
            2 => {}
            _ => return Err(MediaError::Invalid("SPS pic_order_cnt_type")),
        }
        let _max_num_ref_frames = r.ue()?;
        let _gaps_in_frame_num_value_allowed = r.flag()?;
        let width_in_mbs = r
            .ue()?
            .checked_add(1)
            .ok_or(MediaError::Invalid("SPS width"))?;
        let height_in_map_units = r
            .ue()?
            .checked_add(1)
            .ok_or(MediaError::Invalid("SPS height"))?;
        let frame_mbs_only = r.flag()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.flag()?;
        }
        let _direct_8x8_inference = r.flag()?;
        let (mut crop_left, mut crop_right, mut crop_top, mut crop_bottom) = (0, 0, 0, 0);
        if r.flag()? {
            crop_left = r.ue()?;
            crop_right = r.ue()?;
            crop_top = r.ue()?;
            crop_bottom = r.ue()?;
        }
        let frame_rate = if r.flag()? {
            vui_frame_rate(&mut r)?
        } else {
            None
        };

        // 7.4.2.1.1: CropUnitX/Y depend on ChromaArrayType and field coding.
        let field_factor: u32 = if frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (sub_width_c, sub_height_c): (u32, u32) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (crop_unit_x, crop_unit_y) = if chroma_array_type == 0 {
            (1, field_factor)
        } else {
            (sub_width_c, sub_height_c * field_factor)
        };
        let coded_width = u64::from(width_in_mbs) * 16;
        let coded_height = u64::from(height_in_map_units) * 16 * u64::from(field_factor);
        let crop_x = (u64::from(crop_left) + u64::from(crop_right)) * u64::from(crop_unit_x);
        let crop_y = (u64::from(crop_top) + u64::from(crop_bottom)) * u64::from(crop_unit_y);
        let width = coded_width
            .checked_sub(crop_x)
            .and_then(|w| u32::try_from(w).ok())
            .ok_or(MediaError::Invalid("SPS frame cropping"))?;
        let height = coded_height
            .checked_sub(crop_y)
            .and_then(|h| u32::try_from(h).ok())
            .ok_or(MediaError::Invalid("SPS frame cropping"))?;
        if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
            return Err(MediaError::Invalid("SPS picture size"));
        }
        Ok(Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            chroma_format_idc,
            width,
            height,
            frame_mbs_only,
            frame_rate,
        })
    }
}

/// Skips `scaling_list()` (7.3.2.1.1.1): only the deltas are coded.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<()> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            let delta = i64::from(r.se()?);
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Reads `vui_parameters()` (E.1.1) up to the timing information.
fn vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<f64>> {
    if r.flag()? {
        // aspect_ratio_info_present_flag
        if r.u8()? == 255 {
            r.skip(32)?; // sar_width, sar_height
        }
    }
    if r.flag()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.flag()? {
        // video_signal_type_present_flag
        r.skip(4)?; // video_format, video_full_range_flag
        if r.flag()? {
            r.skip(24)?; // colour_primaries, transfer, matrix
        }
    }
    if r.flag()? {
        // chroma_loc_info_present_flag
        r.ue()?;
        r.ue()?;
    }
    if !r.flag()? {
        return Ok(None);
    }
    let num_units_in_tick = r.bits(32)?;
    let time_scale = r.bits(32)?;
    if num_units_in_tick == 0 || time_scale == 0 {
        return Ok(None);
    }
    // One frame is two ticks (fields) in H.264's timing model.
    Ok(Some(time_scale as f64 / (2.0 * num_units_in_tick as f64)))
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`, 7.4.1).
pub fn unescape(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit reader with Exp-Golomb codes (9.1).
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// Reads `data` from its first bit.
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// One bit.
    pub fn flag(&mut self) -> Result<bool> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(MediaError::Truncated("bitstream"))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// `n` bits (at most 32), most significant first.
    pub fn bits(&mut self, n: u32) -> Result<u32> {
        debug_assert!(n <= 32);
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.flag()?);
        }
        Ok(v)
    }

    /// Eight bits.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bits(8)? as u8)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        if self.pos + n > self.data.len() * 8 {
            return Err(MediaError::Truncated("bitstream"));
        }
        self.pos += n;
        Ok(())
    }

    /// `ue(v)`: unsigned Exp-Golomb.
    pub fn ue(&mut self) -> Result<u32> {
        let mut leading_zeros = 0;
        while !self.flag()? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(MediaError::Invalid("Exp-Golomb code"));
            }
        }
        let suffix = self.bits(leading_zeros)?;
        let value = (1u64 << leading_zeros) - 1 + u64::from(suffix);
        u32::try_from(value).map_err(|_| MediaError::Invalid("Exp-Golomb code"))
    }

    /// `se(v)`: signed Exp-Golomb.
    pub fn se(&mut self) -> Result<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

/// Iterates the NAL units of an AVCC payload (each prefixed by a big-endian
/// length of `length_size` bytes, 1 to 4).
pub fn avcc_nal_units(data: &[u8], length_size: u8) -> AvccNalUnits<'_> {
    AvccNalUnits {
        rest: data,
        length_size: usize::from(length_size),
    }
}

/// Iterator returned by [`avcc_nal_units`]; yields an error once, then stops,
/// on a length that runs past the payload.
pub struct AvccNalUnits<'a> {
    rest: &'a [u8],
    length_size: usize,
}

impl<'a> Iterator for AvccNalUnits<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if !(1..=4).contains(&self.length_size) {
            self.rest = &[];
            return Some(Err(MediaError::Invalid("NAL unit length size")));
        }
        let Some((len, rest)) = self.rest.split_at_checked(self.length_size) else {
            self.rest = &[];
            return Some(Err(MediaError::Truncated("AVCC NAL unit length")));
        };
        let len = len
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some((unit, rest)) = rest.split_at_checked(len) else {
            self.rest = &[];
            return Some(Err(MediaError::Truncated("AVCC NAL unit")));
        };
        self.rest = rest;
        Some(Ok(unit))
    }
}

/// The Annex B start code written before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// An access unit delimiter NAL unit, `primary_pic_type` 7 (any slice type).
pub const AUD_NAL_UNIT: [u8; 2] = [0x09, 0xF0];

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Real SPS NAL units written by libx264 (ffmpeg 5.1), with what ffprobe
    // reported for each stream.
    #[test]
    fn sps_high_320x240() {
        let sps = Sps::parse(&hex("6764000dacd94141fb011000000300100000030320f1429960")).unwrap();
        assert_eq!((sps.profile_idc, sps.level_idc), (100, 13));
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!(sps.frame_rate, Some(25.0));
        assert!(sps.frame_mbs_only);
    }

    #[test]
    fn sps_baseline_1080p_cropped() {
        // 1920x1088 coded, 8 rows cropped at the bottom.
        let sps = Sps::parse(&hex("6742c028da01e0089f97011000000300100000030320f1832a")).unwrap();
        assert_eq!(
            (sps.profile_idc, sps.constraint_flags, sps.level_idc),
            (66, 0xC0, 40)
        );
        assert_eq!((sps.width, sps.height), (1920, 1080));
    }

    #[test]
    fn sps_width_cropped_on_the_right() {
        // 432x240 coded, 6 columns cropped.
        let sps = Sps::parse(&hex("6742c015d901b1fe4f011000000300100000030320f162e480")).unwrap();
        assert_eq!((sps.width, sps.height), (426, 240));
    }

    #[test]
    fn sps_high_444_predictive() {
        let sps = Sps::parse(&hex("67f4001f9196805005bb011000000300100000030320f1832a")).unwrap();
        assert_eq!(sps.profile_idc, 244);
        assert_eq!(sps.chroma_format_idc, 3);
        assert_eq!((sps.width, sps.height), (1280, 720));
    }

    #[test]
    fn sps_interlaced_main() {
        let sps = Sps::parse(&hex("674d401ef405a126c044000003000400000300c87c50aa80")).unwrap();
        assert_eq!(sps.profile_idc, 77);
        assert!(!sps.frame_mbs_only);
        assert_eq!((sps.width, sps.height), (720, 576));
    }

    #[test]
    fn sps_high_with_scaling_matrix_30fps() {
        let sps = Sps::parse(&hex("6764001eacb405017fcb8088000003000800000301e078b175")).unwrap();
        assert_eq!((sps.width, sps.height), (640, 360));
        assert_eq!(sps.frame_rate, Some(30.0));
    }

    #[test]
    fn sps_truncated_or_wrong_type_is_an_error() {
        let full = hex("6764000dacd94141fb011000000300100000030320f1429960");
        for len in 0..6 {
            assert!(Sps::parse(&full[..len]).is_err(), "len {len}");
        }
        assert_eq!(
            Sps::parse(&hex("68ee3cb0")),
            Err(MediaError::Invalid("SPS NAL unit type"))
        );
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3, 4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        let got: Vec<u32> = (0..5).map(|_| r.ue().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        let mut r = BitReader::new(&data);
        let got: Vec<i32> = (0..5).map(|_| r.se().unwrap()).collect();
        assert_eq!(got, [0, 1, -1, 2, -2]);
        assert!(BitReader::new(&[0, 0, 0, 0, 0]).ue().is_err());
    }

    #[test]
    fn unescape_removes_emulation_prevention() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
    }

    #[test]
    fn avcc_iteration() {
        let data = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41];
        let units: Vec<&[u8]> = avcc_nal_units(&data, 4).map(|u| u.unwrap()).collect();
        assert_eq!(units, [&[0x65, 1][..], &[0x41][..]]);
        let short = [0, 0, 0, 9, 0x65];
        let mut it = avcc_nal_units(&short, 4);
        assert_eq!(it.next(), Some(Err(MediaError::Truncated("AVCC NAL unit"))));
        assert_eq!(it.next(), None);
        let units: Vec<&[u8]> = avcc_nal_units(&[1, 0x09, 2, 0x65, 0x88], 1)
            .map(|u| u.unwrap())
            .collect();
        assert_eq!(units, [&[0x09][..], &[0x65, 0x88][..]]);
    }
}
