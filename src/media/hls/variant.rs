//! The multivariant (master) playlist of a live stream: one variant whose
//! URI is the media playlist (RFC 8216 4.3.4.2 `EXT-X-STREAM-INF`).
//!
//! roadhub answers it to a player's first playlist request so that the
//! media playlist URI can carry a playback session instead of the access
//! token the player came with (see `src/http/hls_session.rs`).
//!
//! Attributes: `BANDWIDTH` (required: the peak segment bit rate of the
//! window, RFC 8216 4.3.4.2), `AVERAGE-BANDWIDTH`, `CODECS` (RFC 6381:
//! `avc1.PPCCLL`, `mp4a.40.2` or `mp4a.40.5` for explicit HE-AAC) and
//! `RESOLUTION` when the configurations are known, `FRAME-RATE` when the
//! SPS carries timing.

use std::fmt::Write as _;

use super::HlsSegmenter;

/// What the multivariant playlist says about the one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Peak segment bit rate, bits per second.
    pub bandwidth: u64,
    /// Mean bit rate over the window, bits per second.
    pub average_bandwidth: u64,
    /// RFC 6381 codec names, comma separated.
    pub codecs: Option<String>,
    /// Width and height of the video.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
}

impl Variant {
    /// The variant the segmenter's window and configurations describe.
    pub fn of(hls: &HlsSegmenter) -> Variant {
        let (mut peak, mut bytes, mut ms) = (0u64, 0u64, 0u64);
        for s in hls.segments() {
            let len = s.data().len() as u64;
            let dur = u64::from(s.duration_ms.max(1));
            peak = peak.max(len * 8 * 1000 / dur);
            bytes += len;
            ms += dur;
        }
        let average = (bytes * 8 * 1000).checked_div(ms).unwrap_or(0);
        let video = hls.video_config();
        let mut codecs = Vec::new();
        if let Some(v) = video {
            codecs.push(format!(
                "avc1.{:02x}{:02x}{:02x}",
                v.profile_idc, v.profile_compatibility, v.level_idc
            ));
        }
        if let Some(a) = hls.audio_config() {
            let object_type = if a.sbr_sample_rate.is_some() {
                5
            } else {
                a.object_type
            };
            codecs.push(format!("mp4a.40.{object_type}"));
        }
        Variant {
            bandwidth: peak.max(1),
            average_bandwidth: average.max(1),
            codecs: (!codecs.is_empty()).then(|| codecs.join(",")),
            resolution: video.map(|v| (v.width, v.height)),
            frame_rate: video.and_then(|v| v.frame_rate).filter(|f| *f > 0.0),
        }
    }

    /// The multivariant playlist with this variant at `uri` (a URI
    /// reference: relative to the playlist, or absolute).
    pub fn playlist(&self, uri: &str) -> String {
        let mut m3u8 = String::with_capacity(160 + uri.len());
        m3u8.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        // Writing to a String cannot fail.
        let _ = write!(
            m3u8,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
            self.bandwidth, self.average_bandwidth
        );
        if let Some(codecs) = &self.codecs {
            let _ = write!(m3u8, ",CODECS=\"{codecs}\"");
        }
        if let Some((w, h)) = self.resolution {
            let _ = write!(m3u8, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = self.frame_rate {
            let _ = write!(m3u8, ",FRAME-RATE={fps:.3}");
        }
        m3u8.push('\n');
        m3u8.push_str(uri);
        m3u8.push('\n');
        m3u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_known_attribute() {
        let v = Variant {
            bandwidth: 1_200_000,
            average_bandwidth: 900_000,
            codecs: Some("avc1.64001f,mp4a.40.2".into()),
            resolution: Some((1280, 720)),
            frame_rate: Some(30.0),
        };
        assert_eq!(
            v.playlist("index.m3u8?session=abc"),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1200000,\
             AVERAGE-BANDWIDTH=900000,CODECS=\"avc1.64001f,mp4a.40.2\",\
             RESOLUTION=1280x720,FRAME-RATE=30.000\nindex.m3u8?session=abc\n"
        );
        let bare = Variant {
            codecs: None,
            resolution: None,
            frame_rate: None,
            ..v
        };
        assert_eq!(
            bare.playlist("x.m3u8"),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1200000,\
             AVERAGE-BANDWIDTH=900000\nx.m3u8\n"
        );
    }
}
