//! The RTSP pull against a real RTSP server: GStreamer's gst-rtsp-server
//! (`tests/clients/rtsp_server.py`) serving an MP4 that ffmpeg encodes
//! (320x240 H.264 at 25 fps, a keyframe a second, AAC 44.1 kHz), over RTP
//! interleaved in the RTSP connection. What the puller delivers is written
//! as FLV and read back by ffprobe.
//!
//! Needs `ffmpeg`, `ffprobe` and, for the server, Debian's `python3-gi`,
//! `gir1.2-gst-rtsp-server-1.0` and `gstreamer1.0-plugins-good` (scripts/test
//! installs them). Everything listens on 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use roadhub::live::rtsp::{PullOptions, PullState, RtspPuller, RtspSource};
use roadhub::media::flv::{self, FlvPayload};
use roadhub::media::h264::{Sps, avcc_nal_units};
use roadhub::media::{AacConfig, AvcConfig, FrameKind, MediaFrame, VideoConfig};
use tokio::sync::mpsc;

use common::rtsp::{RtspServer, make_clip, run};

fn quick_options() -> PullOptions {
    PullOptions {
        connect_timeout: Duration::from_secs(5),
        setup_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(3),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
    }
}

/// Receives payloads until `done` says so (or panics after `limit`).
async fn collect(
    rx: &mut mpsc::Receiver<FlvPayload>,
    limit: Duration,
    mut done: impl FnMut(&[FlvPayload]) -> bool,
) -> Vec<FlvPayload> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&got) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) => got.push(p),
            Ok(None) => panic!("the puller stopped; got {} payloads", got.len()),
            Err(_) => panic!("timed out after {limit:?} with {} payloads", got.len()),
        }
    }
    got
}

fn frames(payloads: &[FlvPayload]) -> impl Iterator<Item = &MediaFrame> {
    payloads.iter().filter_map(|p| match p {
        FlvPayload::Frame(f) => Some(f),
        _ => None,
    })
}

fn video_frames(payloads: &[FlvPayload]) -> usize {
    frames(payloads).filter(|f| f.is_video()).count()
}

/// Waits until the state satisfies `want`; answers it.
async fn wait_state(
    rx: &mut tokio::sync::watch::Receiver<PullState>,
    limit: Duration,
    want: impl FnMut(&PullState) -> bool,
) -> PullState {
    let got = tokio::time::timeout(limit, rx.wait_for(want))
        .await
        .map(|r| r.map(|s| s.clone()));
    match got {
        Ok(Ok(state)) => state,
        Ok(Err(_)) => panic!("the puller is gone"),
        Err(_) => panic!("state still {:?} after {limit:?}", *rx.borrow()),
    }
}

#[tokio::test]
async fn pulls_h264_and_aac_from_a_real_rtsp_server() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), 4);
    let server = RtspServer::start(&clip, None);

    let (tx, mut rx) = mpsc::channel(4096);
    let source = RtspSource::parse(&server.url("clip")).unwrap();
    let handle = RtspPuller::new(7, "front", source)
        .with_options(quick_options())
        .spawn(tx);
    let mut state = handle.state();
    // Two seconds of video: 50 frames, at least two keyframes.
    let got = collect(&mut rx, Duration::from_secs(20), |p| video_frames(p) >= 50).await;
    assert_eq!(
        wait_state(&mut state, Duration::from_secs(1), |s| *s
            == PullState::Playing)
        .await,
        PullState::Playing
    );
    assert!(
        handle.bytes_received() > 10_000,
        "{}",
        handle.bytes_received()
    );

    // The configurations first: AVC (checked with our SPS parser), then AAC.
    let FlvPayload::VideoConfig(VideoConfig::Avc(avc)) = &got[0] else {
        panic!("first payload: {:?}", got[0]);
    };
    let sps = Sps::parse(&avc.sps[0]).unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    assert_eq!((avc.width, avc.height), (320, 240));
    assert_eq!(avc.nalu_length_size, 4);
    let FlvPayload::AudioConfig(aac) = &got[1] else {
        panic!("second payload: {:?}", got[1]);
    };
    assert_eq!(aac.sample_rate, 44_100);
    assert_eq!(aac.object_type, 2);

    // Then frames, starting with a keyframe near 0, each track monotonic.
    let first = frames(&got).next().unwrap();
    assert!(first.is_keyframe() && first.dts_ms < 100, "{first:?}");
    let mut last_video: Option<u32> = None;
    let mut last_audio: Option<u32> = None;
    let mut keyframes = 0;
    for f in frames(&got) {
        match f.kind {
            FrameKind::Video { keyframe, .. } => {
                if let Some(last) = last_video {
                    assert!(f.dts_ms > last, "video went from {last} to {}", f.dts_ms);
                    // 25 fps: 40 ms apart (a late packet may stretch one).
                    assert!(f.dts_ms - last <= 200, "{last} -> {}", f.dts_ms);
                }
                last_video = Some(f.dts_ms);
                keyframes += usize::from(keyframe);
                // AVCC with 4-byte lengths that add up.
                let nals: Vec<_> = avcc_nal_units(&f.data, 4).collect();
                assert!(!nals.is_empty());
                assert!(nals.iter().all(|n| n.is_ok()), "bad AVCC at {}", f.dts_ms);
            }
            FrameKind::Audio { .. } => {
                if let Some(last) = last_audio {
                    assert!(f.dts_ms >= last);
                }
                last_audio = Some(f.dts_ms);
            }
        }
    }
    assert!(keyframes >= 2, "{keyframes} keyframes");
    // 50 frames at 25 fps span about two seconds.
    let span = last_video.unwrap() - first.dts_ms;
    assert!((1800..=2200).contains(&span), "{span} ms");
    let audio = last_audio.expect("audio frames");
    assert!(
        audio.abs_diff(last_video.unwrap()) < 500,
        "audio {audio} ms"
    );

    // Stopping is prompt and final.
    handle.stop_and_wait().await;
    assert_eq!(*state.borrow(), PullState::Stopped);

    // Written as FLV, ffprobe reads h264 320x240 and AAC.
    let flv_path = dir.path().join("pulled.flv");
    std::fs::write(&flv_path, to_flv(avc, aac, frames(&got))).unwrap();
    let out = run(Command::new("ffprobe").args([
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,codec_name,width,height,sample_rate",
        "-of",
        "compact",
        flv_path.to_str().unwrap(),
    ]));
    let probe = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = probe.lines().collect();
    assert_eq!(lines.len(), 2, "{probe}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("codec_name=h264|codec_type=video|width=320|height=240")),
        "{probe}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("codec_name=aac|codec_type=audio|sample_rate=44100")),
        "{probe}"
    );
    // And ffmpeg decodes it without an error.
    let out = run(Command::new("ffmpeg").args([
        "-v",
        "error",
        "-i",
        flv_path.to_str().unwrap(),
        "-f",
        "null",
        "-",
    ]));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn to_flv<'a>(
    avc: &AvcConfig,
    aac: &AacConfig,
    frames: impl Iterator<Item = &'a MediaFrame>,
) -> Vec<u8> {
    let mut out: Vec<Bytes> = vec![
        flv::file_header(true, true),
        flv::video_config_tag(&VideoConfig::Avc(avc.clone()), 0),
        flv::audio_config_tag(aac, 0),
    ];
    out.extend(frames.map(flv::frame_tag));
    out.concat()
}

#[tokio::test]
async fn the_end_of_the_stream_reconnects_and_the_timeline_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), 2);
    let server = RtspServer::start(&clip, None);

    let (tx, mut rx) = mpsc::channel(4096);
    let source = RtspSource::parse(&server.url("clip")).unwrap();
    let options = PullOptions {
        idle_timeout: Duration::from_millis(1500),
        ..quick_options()
    };
    let handle = RtspPuller::new(7, "rear", source)
        .with_options(options)
        .spawn(tx);
    let mut state = handle.state();
    // The 2 s clip ends; the session is retried and the configuration sent
    // again before the frames of the new session.
    let got = collect(&mut rx, Duration::from_secs(30), |p| {
        let second = p
            .iter()
            .skip(1)
            .position(|x| matches!(x, FlvPayload::VideoConfig(_)));
        second.is_some_and(|i| video_frames(&p[i + 1..]) >= 5)
    })
    .await;
    let second = 1 + got
        .iter()
        .skip(1)
        .position(|x| matches!(x, FlvPayload::VideoConfig(_)))
        .unwrap();
    assert!(matches!(got[second + 1], FlvPayload::AudioConfig(_)));
    let before = frames(&got[..second])
        .filter(|f| f.is_video())
        .last()
        .unwrap();
    let after = frames(&got[second..]).next().unwrap();
    assert!(after.is_keyframe());
    assert!(
        after.dts_ms > before.dts_ms + 1000,
        "the timeline goes on after the gap: {} then {}",
        before.dts_ms,
        after.dts_ms
    );
    drop(handle);
    wait_state(&mut state, Duration::from_secs(5), |s| {
        *s == PullState::Stopped
    })
    .await;
}

#[tokio::test]
async fn credentials_in_the_url_are_used_and_wrong_ones_reported() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), 4);
    let server = RtspServer::start(&clip, Some(("cam", "s3cr:t@")));

    // Right credentials (percent-encoded in the URL): it plays.
    let (tx, mut rx) = mpsc::channel(4096);
    let url = format!("rtsp://cam:s3cr%3At%40@127.0.0.1:{}/clip", server.port);
    let source = RtspSource::parse(&url).unwrap();
    assert!(source.has_credentials());
    assert!(!format!("{source:?}").contains("s3cr"));
    let handle = RtspPuller::new(1, "cabin", source)
        .with_options(quick_options())
        .spawn(tx);
    let got = collect(&mut rx, Duration::from_secs(20), |p| video_frames(p) >= 1).await;
    assert!(matches!(got[0], FlvPayload::VideoConfig(_)));
    drop(handle);

    // Wrong password, then none at all: rtsp_unauthorized.
    for url in [
        format!("rtsp://cam:wrong@127.0.0.1:{}/clip", server.port),
        server.url("clip"),
    ] {
        let (tx, _rx) = mpsc::channel(16);
        let handle = RtspPuller::new(1, "cabin", RtspSource::parse(&url).unwrap())
            .with_options(quick_options())
            .spawn(tx);
        let mut state = handle.state();
        let failed = wait_state(&mut state, Duration::from_secs(10), |s| {
            matches!(s, PullState::Failed { .. })
        })
        .await;
        assert_eq!(failed.error_code(), Some("rtsp_unauthorized"), "{failed:?}");
        let PullState::Failed { error, .. } = failed else {
            unreachable!()
        };
        assert!(!error.to_string().contains("wrong"), "{error}");
        assert!(error.to_string().contains("rtsp://127.0.0.1:"), "{error}");
    }
}

#[tokio::test]
async fn a_wrong_path_is_reported_as_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), 1);
    let server = RtspServer::start(&clip, None);
    let (tx, _rx) = mpsc::channel(16);
    let source = RtspSource::parse(&server.url("no/such/stream")).unwrap();
    let handle = RtspPuller::new(3, "front", source)
        .with_options(quick_options())
        .spawn(tx);
    let mut state = handle.state();
    let failed = wait_state(&mut state, Duration::from_secs(10), |s| {
        matches!(s, PullState::Failed { .. })
    })
    .await;
    assert_eq!(failed.error_code(), Some("rtsp_not_found"), "{failed:?}");
    let PullState::Failed { error, .. } = failed else {
        unreachable!()
    };
    assert!(error.to_string().contains("/no/such/stream"), "{error}");
}

#[tokio::test]
async fn an_unreachable_camera_is_retried_with_backoff() {
    // A loopback port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (tx, _rx) = mpsc::channel(16);
    let source = RtspSource::parse(&format!("rtsp://127.0.0.1:{port}/cam")).unwrap();
    let started = std::time::Instant::now();
    let handle = RtspPuller::new(9, "front", source)
        .with_options(quick_options())
        .spawn(tx);
    let mut state = handle.state();
    let mut failures = Vec::new();
    while failures.len() < 5 {
        let s = wait_state(&mut state, Duration::from_secs(10), |s| {
            matches!(s, PullState::Failed { attempt, .. } if *attempt as usize > failures.len())
        })
        .await;
        let PullState::Failed {
            error,
            attempt,
            retry_in,
        } = s
        else {
            unreachable!()
        };
        assert_eq!(error.code(), "rtsp_unreachable", "{error}");
        assert_eq!(attempt as usize, failures.len() + 1);
        failures.push(retry_in.as_millis());
    }
    // 100 ms doubling to the 400 ms maximum.
    assert_eq!(failures, [100, 200, 400, 400, 400]);
    // Four waits (100 + 200 + 400 + 400 ms) came before the fifth failure.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    handle.stop_and_wait().await;
    assert_eq!(*state.borrow(), PullState::Stopped);
}
