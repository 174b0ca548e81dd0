//! A node in its own process (`roadhub serve`), so that a test can kill it
//! with SIGKILL; killed on drop too (a test that panics leaves no node).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_roadhub");

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a process node needs: it joins the cluster on `redis` with the
/// database `db_url` and the JWT secret `secret`, as `id`, with
/// `node.presence_ttl_secs=3`.
pub struct NodeArgs<'a> {
    pub db_url: &'a str,
    pub redis: &'a str,
    pub id: &'a str,
    pub secret: &'a str,
    /// RTMP listen address (default `127.0.0.1:0`: any free port).
    pub rtmp: Option<SocketAddr>,
    /// More `--set KEY=VALUE`, applied last.
    pub set: &'a [&'a str],
}

/// `roadhub serve` on `127.0.0.1:{port}`, in `dir`; no `ROADHUB_*`
/// variable of the test's environment reaches it.
pub fn spawn_node(dir: &Path, port: u16, args: &NodeArgs) -> Child {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROADHUB_") {
            cmd.env_remove(k);
        }
    }
    let rtmp = args
        .rtmp
        .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
    let mut sets = vec![
        format!("redis.url={}", args.redis),
        format!("node.id={}", args.id),
        "node.presence_ttl_secs=3".into(),
        format!("auth.jwt_secret={}", args.secret),
        "limits.auth_attempts_per_minute=0".into(),
        format!("rtmp.listen={rtmp}"),
    ];
    sets.extend(args.set.iter().map(|s| s.to_string()));
    cmd.current_dir(dir).args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database-url",
        args.db_url,
    ]);
    for kv in sets {
        cmd.args(["--set", &kv]);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A node process, killed (SIGKILL) and reaped on drop.
pub struct Killed(pub Child);

impl Killed {
    /// SIGKILL now, and reap the process.
    pub fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a process node on a free port and wait (up to 30 s) until it
/// answers `/healthz`; the process and its base URL.
pub async fn start_process_node(dir: &Path, args: &NodeArgs<'_>) -> (Killed, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Killed(spawn_node(dir, port, args));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if reqwest::get(format!("{base}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return (child, base);
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("node {} exited during start-up: {status}", args.id);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {} not healthy within 30 s",
            args.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
