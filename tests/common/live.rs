//! Live video test helpers: an ffmpeg publisher killed on drop, bounded
//! runs of ffmpeg/ffprobe, and a small incremental FLV tag reader.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An ffmpeg child process, killed when dropped.
pub struct Ffmpeg(pub Child);

impl Ffmpeg {
    /// Publish `testsrc2` 640x360 30 fps H.264 (GOP 30) + `sine` AAC to
    /// `url` in real time for `secs` seconds.
    pub fn publish(url: &str, secs: u32) -> Self {
        Self::publish_with(url, secs, &[])
    }

    /// [`Ffmpeg::publish`] with extra output options (e.g. `-qp 0` for a
    /// high bit rate).
    pub fn publish_with(url: &str, secs: u32, extra: &[&str]) -> Self {
        let child = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
            ])
            .args(extra)
            .args(["-t", &secs.to_string(), "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg is installed (scripts/test installs it)");
        Ffmpeg(child)
    }

    /// Wait (bounded) for the process to exit; its status and stderr.
    pub fn wait_exit(&mut self, within: Duration) -> Option<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.0.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Some((status, err));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `cmd` to its end, killed after `secs` (then panics).
pub fn run_bounded(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still running after {secs} s; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ffprobe's streams of `input` (a URL or a file) as JSON.
pub fn ffprobe_streams(input: &str) -> serde_json::Value {
    let out = run_bounded(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,codec_type,width,height,sample_rate",
            "-of",
            "json",
            input,
        ]),
        20,
    );
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Assert ffprobe saw H.264 640x360 and AAC.
pub fn assert_h264_aac_640x360(probe: &serde_json::Value) {
    let streams = probe["streams"].as_array().unwrap();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("no video: {probe}"));
    assert_eq!(video["codec_name"], "h264", "{probe}");
    assert_eq!(video["width"], 640, "{probe}");
    assert_eq!(video["height"], 360, "{probe}");
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .unwrap_or_else(|| panic!("no audio: {probe}"));
    assert_eq!(audio["codec_name"], "aac", "{probe}");
}

/// One FLV tag as read by [`FlvReader`].
#[derive(Debug, Clone)]
pub struct Tag {
    pub tag_type: u8,
    pub timestamp_ms: u32,
    pub body: Vec<u8>,
}

impl Tag {
    pub fn is_video(&self) -> bool {
        self.tag_type == 9
    }
    pub fn is_keyframe(&self) -> bool {
        self.is_video() && self.body.first().is_some_and(|b| b >> 4 == 1)
    }
    /// An AVC sequence header.
    pub fn is_video_config(&self) -> bool {
        self.is_video() && self.body.get(1) == Some(&0)
    }
}

/// An FLV response body read for `dur` (or until it ends), as tags.
pub async fn read_flv_body(res: reqwest::Response, dur: Duration) -> FlvReader {
    use futures_util::StreamExt as _;
    let mut body = res.bytes_stream();
    let mut reader = FlvReader::default();
    let deadline = tokio::time::Instant::now() + dur;
    while let Ok(Some(Ok(b))) = tokio::time::timeout_at(deadline, body.next()).await {
        reader.feed(&b);
    }
    reader
}

/// The bytes of a WebSocket-FLV play of `url` (`ws://...`) read for `dur`;
/// any message but a binary one fails the test.
pub async fn read_ws_flv(url: &str, dur: Duration) -> Vec<u8> {
    use futures_util::StreamExt as _;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + dur;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await {
        match msg.unwrap() {
            tokio_tungstenite::tungstenite::Message::Binary(b) => bytes.extend_from_slice(&b),
            other => panic!("unexpected message {other:?}"),
        }
    }
    bytes
}

/// Reads FLV bytes fed in pieces: the 13-byte header, then tags.
#[derive(Default)]
pub struct FlvReader {
    buf: Vec<u8>,
    header_seen: bool,
    pub tags: Vec<Tag>,
}

impl FlvReader {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if !self.header_seen {
            if self.buf.len() < 13 {
                return;
            }
            assert_eq!(&self.buf[..3], b"FLV", "FLV signature");
            self.buf.drain(..13);
            self.header_seen = true;
        }
        loop {
            if self.buf.len() < 11 {
                return;
            }
            let size = (usize::from(self.buf[1]) << 16)
                | (usize::from(self.buf[2]) << 8)
                | usize::from(self.buf[3]);
            if self.buf.len() < 11 + size + 4 {
                return;
            }
            let ts = (u32::from(self.buf[7]) << 24)
                | (u32::from(self.buf[4]) << 16)
                | (u32::from(self.buf[5]) << 8)
                | u32::from(self.buf[6]);
            let prev = u32::from_be_bytes(self.buf[11 + size..15 + size].try_into().unwrap());
            assert_eq!(prev as usize, 11 + size, "PreviousTagSize");
            self.tags.push(Tag {
                tag_type: self.buf[0],
                timestamp_ms: ts,
                body: self.buf[11..11 + size].to_vec(),
            });
            self.buf.drain(..15 + size);
        }
    }

    /// Video frame timestamps (not sequence headers), in order.
    pub fn video_timestamps(&self) -> Vec<u32> {
        self.tags
            .iter()
            .filter(|t| t.is_video() && !t.is_video_config())
            .map(|t| t.timestamp_ms)
            .collect()
    }
}
