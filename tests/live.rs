//! Live video end to end with the real tools: ffmpeg publishes over RTMP,
//! ffprobe/ffmpeg and our own FLV reader play HTTP-FLV, WebSocket-FLV and
//! HLS. Every wait is bounded; ffmpeg children are killed on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::live::{
    Ffmpeg, FlvReader, assert_h264_aac_640x360, ffprobe_streams, read_ws_flv, run_bounded,
};
use common::{Session, TestServer};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Live {
    server: TestServer,
    owner: Session,
    vehicle: i64,
    device_token: String,
}

impl Live {
    async fn start(adjust: impl FnOnce(&mut roadhub::Config)) -> Self {
        let server = TestServer::start_with(adjust).await;
        let api = server.api();
        let owner = api
            .new_user(&format!("u{}@example.com", rand_suffix()))
            .await;
        let v = api
            .new_vehicle(&owner, &format!("SN{}", rand_suffix()))
            .await;
        Live {
            vehicle: v["id"].as_i64().unwrap(),
            device_token: v["device_token"].as_str().unwrap().to_owned(),
            server,
            owner,
        }
    }

    fn rtmp_url(&self, channel: &str, token: &str) -> String {
        format!(
            "rtmp://{}/live/{}-{channel}?token={token}",
            self.server.rtmp_addr, self.vehicle
        )
    }

    fn publish(&self, channel: &str, secs: u32) -> Ffmpeg {
        Ffmpeg::publish(&self.rtmp_url(channel, &self.device_token), secs)
    }

    fn flv_url(&self, channel: &str) -> String {
        format!(
            "{}/live/{}-{channel}.flv?token={}",
            self.server.base, self.vehicle, self.owner.access
        )
    }

    /// Wait until `channel` plays (HTTP 200), up to 15 s.
    async fn wait_live(&self, channel: &str) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(res) = client.get(self.flv_url(channel)).send().await
                && res.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{channel} did not go live within 15 s");
    }
}

fn rand_suffix() -> String {
    roadhub::util::random_token("", 6).to_lowercase()
}

/// Read an HTTP-FLV body for `dur` (or until it ends); the reader and
/// whether the body ended cleanly.
async fn read_flv(url: &str, dur: Duration) -> (FlvReader, Option<bool>) {
    let res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut reader = FlvReader::default();
    let deadline = tokio::time::Instant::now() + dur;
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => return (reader, None),
            Ok(None) => return (reader, Some(true)),
            Ok(Some(Err(_))) => return (reader, Some(false)),
            Ok(Some(Ok(b))) => reader.feed(&b),
        }
    }
}

fn assert_monotonic(ts: &[u32]) {
    for w in ts.windows(2) {
        assert!(w[1] >= w[0], "video DTS went back: {} then {}", w[0], w[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_http_flv_plays_h264_aac() {
    let live = Live::start(|_| {}).await;
    let _ffmpeg = live.publish("front", 30);
    live.wait_live("front").await;

    let res = reqwest::get(live.flv_url("front")).await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(h["content-type"], "video/x-flv");
    assert!(h["cache-control"].to_str().unwrap().contains("no-cache"));
    assert_eq!(h["access-control-allow-origin"], "*");
    drop(res);

    let url = live.flv_url("front");
    let probe = tokio::task::spawn_blocking(move || ffprobe_streams(&url))
        .await
        .unwrap();
    assert_h264_aac_640x360(&probe);

    // A new viewer starts at a keyframe with the headers first.
    let (reader, _) = read_flv(&live.flv_url("front"), Duration::from_millis(1500)).await;
    let tags = &reader.tags;
    assert_eq!(tags[0].tag_type, 18, "onMetaData first");
    let first_frame = tags
        .iter()
        .find(|t| t.is_video() && !t.is_video_config())
        .unwrap();
    assert!(first_frame.is_keyframe(), "starts at a keyframe");
    assert!(tags.iter().any(|t| t.is_video_config()));
    assert_monotonic(&reader.video_timestamps());

    let metrics = live
        .server
        .api()
        .client
        .get(format!("{}/metrics", live.server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("roadhub_live_streams 1"), "{metrics}");
    assert!(metrics.contains("roadhub_live_publishers 1"), "{metrics}");
    let bytes_in = metrics
        .lines()
        .find_map(|l| l.strip_prefix("roadhub_live_received_bytes_total "))
        .unwrap();
    assert!(bytes_in.parse::<u64>().unwrap() > 10_000, "{metrics}");
    assert!(
        metrics.contains("roadhub_live_sent_bytes_total{protocol=\"flv\"}"),
        "{metrics}"
    );
    let first_frames = metrics
        .lines()
        .find_map(|l| l.strip_prefix("roadhub_live_time_to_first_frame_seconds_count "))
        .unwrap();
    assert!(first_frames.parse::<u64>().unwrap() >= 1, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_needs_the_owners_token() {
    let live = Live::start(|_| {}).await;
    let _ffmpeg = live.publish("front", 30);
    live.wait_live("front").await;
    let api = live.server.api();
    let path = format!("/live/{}-front.flv", live.vehicle);
    let r = api.get(&path, "").await;
    r.assert_error(401, "missing_token");
    let r = api
        .client
        .get(format!("{}{path}?token=nope", live.server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
    // Another user: 404 for a live vehicle, like a stream that is not live.
    let other = api.new_user("other@example.com").await;
    let r = api
        .client
        .get(format!("{}{path}?token={}", live.server.base, other.access))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "stream_not_found");
    // Same for HLS.
    let r = api
        .client
        .get(format!(
            "{}/live/{}-front/index.m3u8?token={}",
            live.server.base, live.vehicle, other.access
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The owner, a channel that is not live: 404 at once.
    let started = Instant::now();
    let r = api
        .get(
            &format!("/live/{}-rear.flv", live.vehicle),
            &live.owner.access,
        )
        .await;
    // (Nothing can start it: no RTSP source, the device is offline.)
    r.assert_error(404, "vehicle_offline");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A malformed key.
    let r = api.get("/live/abc.flv", &live.owner.access).await;
    r.assert_error(404, "stream_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_flv_capture_is_read_by_ffprobe() {
    let live = Live::start(|_| {}).await;
    let _ffmpeg = live.publish("front", 30);
    live.wait_live("front").await;
    let url = live.flv_url("front").replacen("http://", "ws://", 1);
    let bytes = read_ws_flv(&url, Duration::from_secs(3)).await;
    assert!(bytes.len() > 50_000, "{} bytes in 3 s", bytes.len());
    let mut reader = FlvReader::default();
    reader.feed(&bytes);
    assert!(reader.tags.len() > 50);
    assert_monotonic(&reader.video_timestamps());
    let file = live.server.dir.path().join("capture.flv");
    std::fs::write(&file, &bytes).unwrap();
    let path = file.to_string_lossy().into_owned();
    let probe = tokio::task::spawn_blocking(move || ffprobe_streams(&path))
        .await
        .unwrap();
    assert_h264_aac_640x360(&probe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_playlist_decodes_without_errors() {
    let live = Live::start(|_| {}).await;
    let _ffmpeg = live.publish("front", 40);
    live.wait_live("front").await;
    let url = format!(
        "{}/live/{}-front/index.m3u8?token={}",
        live.server.base, live.vehicle, live.owner.access
    );
    let client = reqwest::Client::new();
    // The first request (the public URL, with the access token) waits for a
    // first segment and answers a multivariant playlist whose one variant
    // is the media playlist of a playback session.
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let master = res.text().await.unwrap();
    assert!(!master.contains("token"), "{master}");
    let inf = master
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-STREAM-INF:"))
        .unwrap_or_else(|| panic!("{master}"));
    assert!(inf.starts_with("BANDWIDTH="), "{master}");
    assert!(inf.contains(",CODECS=\"avc1."), "{master}");
    assert!(inf.contains(",mp4a.40.2\""), "{master}");
    assert!(inf.contains(",RESOLUTION=640x360"), "{master}");
    let variant = master.lines().last().unwrap();
    assert!(variant.starts_with("index.m3u8?session=hs_"), "{master}");
    let media = url.replace(url.rsplit('/').next().unwrap(), variant);
    // The same with the token as a Bearer header.
    let res = client
        .get(url.split('?').next().unwrap())
        .bearer_auth(&live.owner.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("session=hs_"));

    let mut playlist = client
        .get(&media)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(12);
    while playlist.matches("#EXTINF").count() < 3 {
        assert!(Instant::now() < deadline, "{playlist}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        playlist = client
            .get(&media)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert!(playlist.contains("#EXT-X-TARGETDURATION:2"), "{playlist}");
    for line in playlist.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d: f64 = d.trim_end_matches(',').parse().unwrap();
            assert!((1.5..=2.6).contains(&d), "{playlist}");
        }
        if !line.starts_with('#') && !line.is_empty() {
            assert!(line.contains(".ts?session=hs_"), "{playlist}");
            let seg = media.replace(media.rsplit('/').next().unwrap(), line);
            let res = client.get(&seg).send().await.unwrap();
            assert_eq!(res.status(), 200, "{seg}");
            assert_eq!(res.headers()["content-type"], "video/mp2t");
            // A segment also answers to a valid access token.
            let with_token = url.replace("index.m3u8", line.split('?').next().unwrap());
            let res = client.get(&with_token).send().await.unwrap();
            assert_eq!(res.status(), 200, "{with_token}");
        }
    }
    let out = tokio::task::spawn_blocking(move || {
        run_bounded(
            std::process::Command::new("ffmpeg").args([
                "-nostdin", "-v", "error", "-i", &url, "-t", "4", "-f", "null", "-",
            ]),
            25,
        )
    })
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "ffmpeg reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_or_vehicle_is_refused_and_closed() {
    let live = Live::start(|_| {}).await;
    // A token that is nobody's.
    let mut ffmpeg = Ffmpeg::publish(&live.rtmp_url("front", "not-a-token"), 10);
    let (status, _) = ffmpeg
        .wait_exit(Duration::from_secs(10))
        .expect("ffmpeg ends: the publish is refused and the connection closed");
    assert!(!status.success());
    // Another vehicle's token (a second vehicle of the same owner).
    let v2 = live
        .server
        .api()
        .new_vehicle(&live.owner, "SN-second")
        .await;
    let mut ffmpeg = Ffmpeg::publish(
        &live.rtmp_url("front", v2["device_token"].as_str().unwrap()),
        10,
    );
    let (status, _) = ffmpeg.wait_exit(Duration::from_secs(10)).expect("refused");
    assert!(!status.success());
    // No token at all; and a malformed key.
    let url = format!(
        "rtmp://{}/live/{}-front",
        live.server.rtmp_addr, live.vehicle
    );
    let (status, _) = Ffmpeg::publish(&url, 10)
        .wait_exit(Duration::from_secs(10))
        .expect("refused");
    assert!(!status.success());
    let url = format!(
        "rtmp://{}/live/{}-BAD?token={}",
        live.server.rtmp_addr, live.vehicle, live.device_token
    );
    let (status, _) = Ffmpeg::publish(&url, 10)
        .wait_exit(Duration::from_secs(10))
        .expect("refused");
    assert!(!status.success());
    // No stream came of it (were there one, it would play; the device
    // being offline, nothing can start one either).
    let r = live
        .server
        .api()
        .get(
            &format!("/live/{}-front.flv", live.vehicle),
            &live.owner.access,
        )
        .await;
    r.assert_error(404, "vehicle_offline");
    let metrics = reqwest::get(format!("{}/metrics", live.server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("roadhub_live_publish_refused_total 4"),
        "{metrics}"
    );
}

/// The plain RTMP handshake (C0, C1; read S0-S2; C2).
async fn rtmp_handshake(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    s.write_all(&c0c1).await.unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut s0s1s2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s0s1s2[0], 3);
    s.write_all(&s0s1s2[1..1537]).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_handshake_closes_only_that_connection() {
    let live = Live::start(|_| {}).await;
    let _ffmpeg = live.publish("front", 30);
    live.wait_live("front").await;
    let url = live.flv_url("front");
    let viewer = tokio::spawn(async move { read_flv(&url, Duration::from_secs(5)).await });
    for seed in 0..4u8 {
        let mut s = rtmp_handshake(live.server.rtmp_addr).await;
        let garbage: Vec<u8> = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).rotate_left(u32::from(seed)) >> 13) as u8)
            .collect();
        let _ = s.write_all(&garbage).await;
        // The node closes it (or it hits the unauthenticated byte bound).
        let mut buf = vec![0u8; 64 * 1024];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the garbage connection stays open");
    }
    let (reader, ended) = viewer.await.unwrap();
    assert_eq!(ended, None, "the viewer of another publisher kept playing");
    let ts = reader.video_timestamps();
    assert!(ts.len() > 90, "{} video frames in 5 s", ts.len());
    let r = live.server.api().get("/healthz", "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_does_not_slow_a_fast_one() {
    let live = Live::start(|c| {
        c.live.max_viewer_behind_secs = 2;
        c.live.max_viewer_lag_ms = 500;
    })
    .await;
    // Lossless: ~25 Mbit/s, more than loopback socket buffers absorb.
    let _ffmpeg = Ffmpeg::publish_with(
        &live.rtmp_url("front", &live.device_token),
        30,
        &["-qp", "0"],
    );
    live.wait_live("front").await;
    // The slow viewer: a tiny receive buffer, and it never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = sock
        .connect(
            live.server
                .base
                .trim_start_matches("http://")
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let path = live.flv_url("front").replacen(&live.server.base, "", 1);
    slow.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let (reader, ended) = read_flv(&live.flv_url("front"), Duration::from_secs(7)).await;
    assert_eq!(ended, None);
    let ts = reader.video_timestamps();
    assert_monotonic(&ts);
    let span = ts.last().unwrap() - ts.first().unwrap();
    assert!(
        span as f64 >= started.elapsed().as_millis() as f64 - 2500.0,
        "the fast viewer got {span} ms of video in {:?}",
        started.elapsed()
    );
    // The slow one skipped, stayed behind and was dropped.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let metrics = reqwest::get(format!("{}/metrics", live.server.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let skips = value("roadhub_live_keyframe_skips_total ");
        let dropped = value("roadhub_live_dropped_viewers_total ");
        if skips >= 1 && dropped == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_restart_within_grace_keeps_the_viewer_then_it_ends_cleanly() {
    let live = Live::start(|c| c.live.publisher_grace_secs = 3).await;
    let mut first = live.publish("front", 3);
    live.wait_live("front").await;
    let url = live.flv_url("front");
    let viewer = tokio::spawn(async move { read_flv(&url, Duration::from_secs(18)).await });
    first
        .wait_exit(Duration::from_secs(10))
        .expect("ffmpeg 1 ends");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started_second = Instant::now();
    let mut second = live.publish("front", 3);
    second
        .wait_exit(Duration::from_secs(10))
        .expect("ffmpeg 2 ends");
    let (reader, ended) = viewer.await.unwrap();
    assert_eq!(
        ended,
        Some(true),
        "the body ends cleanly after the grace period"
    );
    assert!(started_second.elapsed() < Duration::from_secs(12));
    let ts = reader.video_timestamps();
    assert_monotonic(&ts);
    // Video from both publishers: about 3 s + 3 s (the first partly before
    // the viewer joined), continuous.
    let span = ts.last().unwrap() - ts.first().unwrap();
    assert!(span >= 4000, "{span} ms of video");
    let keyframes: Vec<u32> = reader
        .tags
        .iter()
        .filter(|t| t.is_keyframe())
        .map(|t| t.timestamp_ms)
        .collect();
    assert!(keyframes.len() >= 4, "{keyframes:?}");
    // Nothing is left: the stream is gone (and, the device being offline,
    // nothing can start it again).
    let r = live
        .server
        .api()
        .get(
            &format!("/live/{}-front.flv", live.vehicle),
            &live.owner.access,
        )
        .await;
    r.assert_error(404, "vehicle_offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_replaces_the_first() {
    let live = Live::start(|_| {}).await;
    let mut first = live.publish("front", 30);
    live.wait_live("front").await;
    let url = live.flv_url("front");
    let viewer = tokio::spawn(async move { read_flv(&url, Duration::from_secs(6)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = live.publish("front", 30);
    let (status, _) = first
        .wait_exit(Duration::from_secs(10))
        .expect("the first publisher's connection is closed");
    assert!(!status.success());
    assert!(second.is_running());
    let (reader, ended) = viewer.await.unwrap();
    assert_eq!(ended, None, "the viewer stays");
    assert_monotonic(&reader.video_timestamps());
}
