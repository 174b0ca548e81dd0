//! HLS playback sessions and plays that outlive the access token: a real
//! player (ffmpeg) reads HLS for many token lifetimes; HTTP-FLV and
//! WebSocket-FLV plays in progress go on past the token's expiry while a
//! new play needs a valid token; a session is bound to its stream, its
//! user and its login, and ends with logout, refresh-token reuse, account
//! or vehicle deletion, and idleness.
//!
//! The JWT leeway is 5 s: a token with a 2 s lifetime dies 7 s after it
//! was issued.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::live::{Ffmpeg, FlvReader, read_flv_body, read_ws_flv, run_bounded};
use common::{Api, Session, TestServer};
use serde_json::{Value, json};

struct Hub {
    server: TestServer,
    api: Api,
    owner: Session,
    vehicle: i64,
    device_token: String,
}

impl Hub {
    async fn start(adjust: impl FnOnce(&mut roadhub::Config)) -> Self {
        let server = TestServer::start_with(adjust).await;
        let api = server.api();
        let owner = api.new_user("owner@example.com").await;
        let v = api.new_vehicle(&owner, "HLS-1").await;
        Hub {
            vehicle: v["id"].as_i64().unwrap(),
            device_token: v["device_token"].as_str().unwrap().to_owned(),
            server,
            api,
            owner,
        }
    }

    fn publish(&self, secs: u32) -> Ffmpeg {
        Ffmpeg::publish(
            &format!(
                "rtmp://{}/live/{}-front?token={}",
                self.server.rtmp_addr, self.vehicle, self.device_token
            ),
            secs,
        )
    }

    /// A fresh login of the owner: (access, refresh).
    async fn login(&self) -> (String, String) {
        let r = self
            .api
            .login("owner@example.com", "correct horse battery")
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        (
            r.body["access_token"].as_str().unwrap().to_owned(),
            r.body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    fn live_url(&self, vehicle: i64, channel: &str, rest: &str) -> String {
        format!("{}/live/{vehicle}-{channel}{rest}", self.server.base)
    }

    /// Wait until the front channel plays as HTTP-FLV, up to 15 s.
    async fn wait_live(&self) {
        let (token, _) = self.login().await;
        let url = self.live_url(self.vehicle, "front", &format!(".flv?token={token}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(res) = reqwest::get(&url).await
                && res.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the stream did not go live within 15 s");
    }

    /// Open an HLS session with `token`: the media playlist URL the
    /// multivariant playlist points at.
    async fn open(&self, token: &str) -> String {
        let url = self.live_url(self.vehicle, "front", "/index.m3u8");
        let (status, body) = get(&format!("{url}?token={token}")).await;
        assert_eq!(status, 200, "{body}");
        let uri = body
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap_or_else(|| panic!("no variant URI: {body}"));
        assert!(uri.starts_with("index.m3u8?session="), "{body}");
        url.replace("index.m3u8", uri)
    }
}

/// Status and body text of a GET.
async fn get(url: &str) -> (u16, String) {
    let res = reqwest::get(url).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Assert a GET answers `status` with the JSON error `code`.
async fn assert_refused(url: &str, status: u16, code: &str) {
    let (got, body) = get(url).await;
    assert_eq!(got, status, "{url}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!(v["error"]["code"], code, "{url}: {body}");
}

/// A media playlist reload answers 200 with segment URIs carrying the
/// session; the first listed segment is served.
async fn assert_plays(media: &str) {
    let (status, body) = get(media).await;
    assert_eq!(status, 200, "{media}: {body}");
    assert!(body.contains("#EXTINF"), "{body}");
    assert!(!body.contains("token"), "{body}");
    let seg = body
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap();
    assert!(seg.contains(".ts?session=hs_"), "{body}");
    let seg_url = media.replace(media.rsplit('/').next().unwrap(), seg);
    let res = reqwest::get(&seg_url).await.unwrap();
    assert_eq!(res.status(), 200, "{seg_url}");
    assert_eq!(res.headers()["content-type"], "video/mp2t");
}

fn ffprobe_duration(path: &str) -> f64 {
    let out = run_bounded(
        std::process::Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=nw=1:nk=1",
            path,
        ]),
        20,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("duration {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_reads_hls_for_many_token_lifetimes() {
    let hub = Hub::start(|c| c.auth.access_token_ttl_secs = 2).await;
    let _publisher = hub.publish(60);
    hub.wait_live().await;
    let (token, _) = hub.login().await;
    let url = hub.live_url(hub.vehicle, "front", &format!("/index.m3u8?token={token}"));
    let out = hub.server.dir.path().join("out.ts");
    let out_path = out.to_string_lossy().into_owned();
    let started = Instant::now();
    let path = out_path.clone();
    let run = tokio::task::spawn_blocking(move || {
        run_bounded(
            std::process::Command::new("ffmpeg").args([
                "-nostdin", "-nostats", "-v", "info", "-i", &url, "-t", "24", "-c", "copy", "-f",
                "mpegts", &path,
            ]),
            60,
        )
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    for bad in [
        "HTTP error",
        "Unauthorized",
        "Forbidden",
        "Failed to reload",
    ] {
        assert!(!log.contains(bad), "ffmpeg saw {bad:?}: {log}");
    }
    assert!(
        log.contains("session=hs_"),
        "the player followed the session: {log}"
    );
    // The token died 7 s after it was issued; the player read on.
    assert!(took > Duration::from_secs(14), "ffmpeg ran {took:?}: {log}");
    let duration = tokio::task::spawn_blocking(move || ffprobe_duration(&out_path))
        .await
        .unwrap();
    assert!(duration > 22.0, "{duration} s read: {log}");

    // Deleting the account ends its sessions.
    let (token, _) = hub.login().await;
    let media = hub.open(&token).await;
    assert_plays(&media).await;
    let r = hub
        .api
        .send(reqwest::Method::DELETE, "/api/v1/me", Some(&token), None)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_refused(&media, 401, "playback_session_expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flv_plays_outlive_the_token_but_a_new_play_needs_a_valid_one() {
    let hub = Hub::start(|c| c.auth.access_token_ttl_secs = 2).await;
    let _publisher = hub.publish(40);
    hub.wait_live().await;
    let (token, _) = hub.login().await;
    let issued = Instant::now();
    let flv = hub.live_url(hub.vehicle, "front", &format!(".flv?token={token}"));
    let ws = flv.replacen("http://", "ws://", 1);
    let res = reqwest::get(&flv).await.unwrap();
    assert_eq!(res.status(), 200);
    let read = Duration::from_secs(12);
    let (http, ws_bytes) = tokio::join!(read_flv_body(res, read), read_ws_flv(&ws, read));
    let mut ws_flv = FlvReader::default();
    ws_flv.feed(&ws_bytes);
    for (what, reader) in [("HTTP-FLV", &http), ("WS-FLV", &ws_flv)] {
        let ts = reader.video_timestamps();
        let span = ts.last().unwrap() - ts.first().unwrap();
        assert!(
            span >= 10_000,
            "{what} delivered {span} ms of video in 12 s"
        );
    }
    // The token is dead now (2 s + 5 s leeway): a new play is refused.
    assert!(issued.elapsed() > Duration::from_secs(8));
    assert_refused(&flv, 401, "invalid_token").await;
    match tokio_tungstenite::connect_async(&ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 401);
        }
        other => panic!("a WS-FLV play with a dead token: {other:?}"),
    }
    assert_refused(
        &hub.live_url(hub.vehicle, "front", &format!("/index.m3u8?token={token}")),
        401,
        "invalid_token",
    )
    .await;
    assert_refused(
        &hub.live_url(hub.vehicle, "front", &format!("/0.ts?token={token}")),
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_bound_to_its_stream_user_and_login() {
    let hub = Hub::start(|c| c.live.hls_session_idle_secs = 5).await;
    let _publisher = hub.publish(60);
    hub.wait_live().await;
    let other = hub.api.new_user("other@example.com").await;
    let other_vehicle = hub.api.new_vehicle(&other, "HLS-2").await["id"]
        .as_i64()
        .unwrap();

    // Bound to the stream: not another stream of the same user, nor
    // another user's stream.
    let media = hub.open(&hub.owner.access).await;
    assert_plays(&media).await;
    let session = media.split("session=").nth(1).unwrap().to_owned();
    for (vehicle, channel) in [(hub.vehicle, "rear"), (other_vehicle, "front")] {
        for file in ["index.m3u8", "0.ts"] {
            let url = hub.live_url(vehicle, channel, &format!("/{file}?session={session}"));
            assert_refused(&url, 404, "stream_not_found").await;
        }
    }
    let forged = media.replace(&session, "hs_forged");
    assert_refused(&forged, 401, "playback_session_expired").await;

    let url = hub.live_url(hub.vehicle, "front", "/index.m3u8?token=");
    // Logout ends the login's sessions; the login's access token, still
    // valid, opens no new one.
    assert_plays(&media).await;
    let r = hub
        .api
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": hub.owner.refresh}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_refused(&media, 401, "playback_session_expired").await;
    assert_refused(&format!("{url}{}", hub.owner.access), 401, "invalid_token").await;

    // A reused refresh token revokes the login and its sessions; a
    // rotation alone does not.
    let (access2, refresh2) = hub.login().await;
    let media2 = hub.open(&access2).await;
    let rotate = json!({"refresh_token": refresh2});
    let r = hub
        .api
        .post("/api/v1/auth/refresh", None, rotate.clone())
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let access3 = r.body["access_token"].as_str().unwrap().to_owned();
    assert_plays(&media2).await;
    let r = hub.api.post("/api/v1/auth/refresh", None, rotate).await;
    r.assert_error(401, "refresh_token_reused");
    assert_refused(&media2, 401, "playback_session_expired").await;
    assert_refused(&format!("{url}{access3}"), 401, "invalid_token").await;

    // Idle for longer than live.hls_session_idle_secs: expired.
    let (access4, _) = hub.login().await;
    let idle = hub.open(&access4).await;
    let kept = hub.open(&access4).await;
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_plays(&kept).await;
    }
    assert_refused(&idle, 401, "playback_session_expired").await;

    // Deleting the vehicle ends its sessions.
    let r = hub
        .api
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/vehicles/{}", hub.vehicle),
            Some(&access4),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{r:?}");
    assert_refused(&kept, 401, "playback_session_expired").await;
}
