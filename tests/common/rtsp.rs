//! A real RTSP server for tests: GStreamer's gst-rtsp-server
//! (`tests/clients/rtsp_server.py`) serving an MP4 clip made by ffmpeg, on
//! a free loopback port; killed on drop.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Python that has GStreamer's bindings (Debian's, not a virtualenv).
pub fn system_python() -> String {
    std::env::var("ROADHUB_TEST_GST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}): apt-get install ffmpeg"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A 4 s clip: H.264 (no B-frames, as cameras send) and AAC, in MP4.
pub fn make_clip(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("clip.mp4");
    run(Command::new("ffmpeg").args([
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
        "sine=frequency=440:sample_rate=44100",
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-bf",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        path.to_str().unwrap(),
    ]));
    path
}

/// gst-rtsp-server on a free loopback port; killed on drop.
pub struct RtspServer {
    child: Child,
    pub port: u16,
}

impl RtspServer {
    pub fn start(clip: &Path, auth: Option<(&str, &str)>) -> RtspServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/rtsp_server.py");
        let mut cmd = Command::new(system_python());
        cmd.arg(script).arg(clip).arg("--audio");
        if let Some((user, password)) = auth {
            cmd.args(["--user", user, "--password", password]);
        }
        // stdin stays open while we live: the server quits when it closes.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the RTSP server ({e}): apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good")
            });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("PORT ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("the RTSP server did not say its port: {other:?}");
            }
        };
        RtspServer { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
