//! The media muxers checked by the real tools: ffmpeg encodes an H.264 + AAC
//! FLV file, `media::flv` reads it into frames, and what `media::flv` and
//! `media::hls` write from those frames must satisfy ffprobe and decode
//! with ffmpeg without a single warning.
//!
//! Needs `ffmpeg` and `ffprobe` on PATH (Debian: `apt-get install ffmpeg`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::{BufMut, Bytes, BytesMut};
use roadhub::media::flv::{self, FileReader, FlvPayload, Metadata};
use roadhub::media::{AacConfig, AvcConfig, HlsConfig, HlsSegmenter, MediaFrame, VideoConfig};

/// Runs a tool, failing the test clearly when it is not installed.
fn run(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{tool}` ({e}): these tests need ffmpeg and ffprobe on PATH (apt-get install ffmpeg)"))
}

/// What the parser got from ffmpeg's FLV file.
struct Source {
    video: AvcConfig,
    audio: AacConfig,
    frames: Vec<MediaFrame>,
}

/// 4 s of 320x240 25 fps H.264 (a keyframe every second) and AAC, as FLV.
fn source(dir: &Path) -> Source {
    let path = dir.join("source.flv");
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-t",
            "4",
            "-f",
            "flv",
        ]
        .iter()
        .copied()
        .chain([path.to_str().unwrap()])
        .collect::<Vec<_>>(),
    );
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let data = Bytes::from(std::fs::read(&path).unwrap());
    let reader = FileReader::new(data).unwrap();
    assert!(reader.header().has_audio && reader.header().has_video);
    let (mut video, mut audio, mut frames) = (None, None, Vec::new());
    for tag in reader {
        match tag.unwrap().parse().unwrap() {
            Some(FlvPayload::VideoConfig(VideoConfig::Avc(c))) => video = Some(c),
            Some(FlvPayload::AudioConfig(c)) => audio = Some(c),
            Some(FlvPayload::Frame(f)) => frames.push(f),
            Some(FlvPayload::EndOfSequence(_)) | None => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    let video = video.expect("AVC sequence header");
    let audio = audio.expect("AAC sequence header");
    assert_eq!(
        (video.width, video.height, video.frame_rate),
        (320, 240, Some(25.0))
    );
    assert_eq!(
        (
            audio.object_type,
            audio.sample_rate,
            audio.channel_configuration
        ),
        (2, 44_100, 1)
    );
    let video_frames: Vec<&MediaFrame> = frames.iter().filter(|f| f.is_video()).collect();
    assert_eq!(video_frames.len(), 100);
    assert_eq!(video_frames.iter().filter(|f| f.is_keyframe()).count(), 4);
    assert!(
        video_frames.iter().any(|f| f.cts_ms() > 0),
        "libx264 writes B-frames"
    );
    Source {
        video,
        audio,
        frames,
    }
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_packets",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            path.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The one stream of this codec type in ffprobe's answer.
fn stream<'a>(probe: &'a serde_json::Value, codec_type: &str) -> &'a serde_json::Value {
    let streams: Vec<&serde_json::Value> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == codec_type)
        .collect();
    assert_eq!(streams.len(), 1, "{codec_type} streams in {probe}");
    streams[0]
}

fn duration(probe: &serde_json::Value) -> f64 {
    probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Decodes everything; answers what ffmpeg printed at warning level or above.
fn decode_warnings(input: &Path) -> String {
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "warning",
            "-i",
            input.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    stderr
}

/// ffmpeg's `-v error` run on an HLS playlist: prints nothing, exits 0.
fn assert_decodes_silently(input: &Path) {
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            input.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "ffmpeg -v error printed something"
    );
}

#[test]
fn flv_remux_is_read_back_by_ffprobe() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let video = VideoConfig::Avc(src.video.clone());

    let mut file = BytesMut::new();
    file.put_slice(&flv::file_header(true, true));
    file.put_slice(&flv::metadata_tag(&Metadata::from_configs(
        Some(&video),
        Some(&src.audio),
    )));
    file.put_slice(&flv::video_config_tag(&video, 0));
    file.put_slice(&flv::audio_config_tag(&src.audio, 0));
    for f in &src.frames {
        file.put_slice(&flv::frame_tag(f));
    }
    let last = src.frames.last().unwrap().dts_ms;
    file.put_slice(&flv::end_of_sequence_tag(video.codec(), last));
    let path = dir.path().join("remux.flv");
    std::fs::write(&path, &file).unwrap();

    let probe = ffprobe(&path);
    let v = stream(&probe, "video");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(v["nb_read_packets"], "100");
    let a = stream(&probe, "audio");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "44100");
    let audio_frames = src.frames.iter().filter(|f| !f.is_video()).count();
    assert_eq!(a["nb_read_packets"], audio_frames.to_string());
    let d = duration(&probe);
    assert!((d - 4.0).abs() < 0.1, "duration {d}");
    assert_eq!(probe["format"]["tags"]["encoder"], "roadhub");
    assert_eq!(decode_warnings(&path), "");

    // The remuxed file reads back into the same frames.
    let back: Vec<MediaFrame> = FileReader::new(file.freeze())
        .unwrap()
        .filter_map(|t| match t.unwrap().parse().unwrap() {
            Some(FlvPayload::Frame(f)) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(back, src.frames);
}

/// Writes the segmenter's playlist and segments as files.
fn write_hls(dir: &Path, hls: &HlsSegmenter) -> PathBuf {
    for s in hls.segments() {
        std::fs::write(dir.join(format!("seg-{}.ts", s.sequence)), s.data()).unwrap();
    }
    let playlist = dir.join("index.m3u8");
    std::fs::write(&playlist, hls.playlist(|n| format!("seg-{n}.ts"))).unwrap();
    playlist
}

fn segmenter(src: &Source) -> HlsSegmenter {
    let mut hls = HlsSegmenter::new(HlsConfig::default());
    hls.set_video_config(src.video.clone());
    hls.set_audio_config(src.audio.clone());
    hls
}

#[test]
fn hls_playlist_decodes_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let mut hls = segmenter(&src);
    for f in &src.frames {
        hls.push(f).unwrap();
    }
    hls.end();
    let playlist = write_hls(dir.path(), &hls);
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert_eq!(
        text,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXTINF:2.000,\nseg-0.ts\n#EXTINF:2.000,\nseg-1.ts\n#EXT-X-ENDLIST\n"
    );

    assert_decodes_silently(&playlist);
    assert_eq!(decode_warnings(&playlist), "");
    let probe = ffprobe(&playlist);
    let v = stream(&probe, "video");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(v["nb_read_packets"], "100");
    assert_eq!(stream(&probe, "audio")["codec_name"], "aac");
    let d = duration(&probe);
    assert!((d - 4.0).abs() < 0.1, "duration {d}");

    // Every segment stands alone (PAT, PMT, keyframe first) ...
    for s in hls.segments() {
        let path = dir.path().join(format!("seg-{}.ts", s.sequence));
        assert_eq!(decode_warnings(&path), "", "segment {}", s.sequence);
        let probe = ffprobe(&path);
        assert_eq!(stream(&probe, "video")["nb_read_packets"], "50");
    }
    // ... and the segments in a row are one transport stream whose
    // continuity counters ffmpeg checks (it reports a gap at debug level).
    let mut all = Vec::new();
    for s in hls.segments() {
        all.extend_from_slice(s.data());
    }
    let joined = dir.path().join("all.ts");
    std::fs::write(&joined, &all).unwrap();
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "debug",
            "-i",
            joined.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(!log.contains("Continuity check failed"), "{log}");
    assert!(!log.contains("corrupt"), "{log}");
    check_transport_stream(&all);
}

#[test]
fn hls_discontinuity_decodes_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let mut hls = segmenter(&src);
    for f in &src.frames {
        hls.push(f).unwrap();
    }
    // The publisher restarts: its clock starts at 0 again.
    hls.discontinuity();
    hls.set_video_config(src.video.clone());
    hls.set_audio_config(src.audio.clone());
    for f in &src.frames {
        hls.push(f).unwrap();
    }
    hls.end();
    let playlist = write_hls(dir.path(), &hls);
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    assert!(
        text.contains("seg-1.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nseg-2.ts\n"),
        "{text}"
    );

    assert_decodes_silently(&playlist);
    assert_eq!(decode_warnings(&playlist), "");
    let probe = ffprobe(&playlist);
    assert_eq!(stream(&probe, "video")["nb_read_packets"], "200");
    assert_eq!(stream(&probe, "audio")["codec_name"], "aac");
    let d = duration(&probe);
    assert!((d - 8.0).abs() < 0.1, "duration {d}");
}

/// Our own reading of the transport stream, for what ffmpeg does not check:
/// continuity counters on every PID, a PCR at least every 100 ms that never
/// goes back, and a PCR plus the random access indicator on each keyframe.
fn check_transport_stream(ts: &[u8]) {
    use std::collections::HashMap;
    assert_eq!(ts.len() % 188, 0);
    let mut cc: HashMap<u16, u8> = HashMap::new();
    let mut last_pcr: Option<u64> = None;
    let mut max_gap = 0;
    let mut random_access = 0;
    for p in ts.chunks(188) {
        assert_eq!(p[0], 0x47);
        let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1FFF;
        let has_payload = p[3] & 0x10 != 0;
        let has_af = p[3] & 0x20 != 0;
        let counter = p[3] & 0x0F;
        if let Some(&prev) = cc.get(&pid) {
            let want = if has_payload { (prev + 1) & 0x0F } else { prev };
            assert_eq!(counter, want, "continuity counter on PID {pid:#x}");
        }
        cc.insert(pid, counter);
        if has_af && p[4] > 0 {
            let flags = p[5];
            if flags & 0x10 != 0 {
                assert_eq!(pid, 0x100, "PCR on the video PID");
                let b = &p[6..12];
                let base = (u64::from(b[0]) << 25)
                    | (u64::from(b[1]) << 17)
                    | (u64::from(b[2]) << 9)
                    | (u64::from(b[3]) << 1)
                    | u64::from(b[4] >> 7);
                let pcr = base * 300 + ((u64::from(b[4] & 1) << 8) | u64::from(b[5]));
                if let Some(last) = last_pcr {
                    assert!(pcr >= last, "PCR went back");
                    max_gap = max_gap.max(pcr - last);
                }
                last_pcr = Some(pcr);
            }
            if flags & 0x40 != 0 {
                assert!(flags & 0x10 != 0, "keyframe without PCR");
                random_access += 1;
            }
        }
    }
    assert!(max_gap <= 27_000 * 100, "PCR gap {} ms", max_gap / 27_000);
    assert_eq!(random_access, 4, "one random access point per keyframe");
}
