//! The `roadhub` binary itself: bare `serve` in an empty folder, graceful
//! shutdown on SIGTERM, `migrate`, `user add`, `device add`,
//! `--print-config`, environment overrides, `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_roadhub");

fn roadhub(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    // No ROADHUB_* from the outside may leak into these runs.
    for (k, _) in std::env::vars() {
        if k.starts_with("ROADHUB_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn wait_healthy(base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http_get::blocking_get_healthz(base) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("roadhub exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("roadhub did not answer /healthz within 30 s");
}

/// Minimal blocking HTTP GET, so these tests need no async runtime.
mod http_get {
    use std::io::{Read as _, Write as _};

    pub fn get(base: &str, path: &str) -> Option<(u16, String)> {
        let addr = base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split(' ').nth(1)?.parse().ok()?;
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    pub fn blocking_get_healthz(base: &str) -> bool {
        matches!(get(base, "/healthz"), Some((200, _)))
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("roadhub did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bare_serve_in_an_empty_folder_runs_a_complete_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = roadhub(dir.path());
    // The contract's default port, unless something else on this machine
    // holds it; then only the port is moved, everything else is default.
    let base = if port_free(8080) {
        "http://127.0.0.1:8080".to_string()
    } else {
        let port = free_port();
        cmd.env("ROADHUB_HTTP_LISTEN", format!("127.0.0.1:{port}"));
        format!("http://127.0.0.1:{port}")
    };
    if !port_free(1935) {
        cmd.env("ROADHUB_RTMP_LISTEN", format!("127.0.0.1:{}", free_port()));
    }
    let mut child = cmd
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(&base, &mut child);
    assert!(dir.path().join("data/roadhub.db").is_file());
    assert!(dir.path().join("data/storage").is_dir());
    let secret = dir.path().join("data/jwt_secret");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (status, body) = http_get::get(&base, "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");

    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    let mut log = String::new();
    use std::io::Read as _;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("jwt_secret"),
        "the log says where the secret is: {log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = roadhub(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--set", "limits.auth_attempts_per_minute=0"])
        .args(["--set", "rtmp.listen=127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(&base, &mut child);
    // Registrations hash passwords (tens of ms each on purpose): start a
    // batch, then ask the node to stop while they run.
    let addr = format!("127.0.0.1:{port}");
    let sent = std::sync::Arc::new(std::sync::Barrier::new(13));
    let requests: Vec<_> = (0..12)
        .map(|i| {
            let addr = addr.clone();
            let sent = sent.clone();
            std::thread::spawn(move || {
                use std::io::Read as _;
                let body = format!(r#"{{"email":"u{i}@example.com","password":"correct horse battery"}}"#);
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                write!(
                    s,
                    "POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                sent.wait();
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                buf
            })
        })
        .collect();
    // Every request is written; give the node a moment to accept the
    // connections (a connection still in the listen backlog is not in
    // flight), then stop it while the hashes run.
    sent.wait();
    std::thread::sleep(Duration::from_millis(100));
    sigterm(&child);
    let answers: Vec<String> = requests.into_iter().map(|t| t.join().unwrap()).collect();
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    for a in &answers {
        assert!(
            a.starts_with("HTTP/1.1 201"),
            "an in-flight request was cut: {a:?}"
        );
    }
    // New connections are refused once it has stopped.
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

fn run(dir: &Path, args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> Output {
    let mut cmd = roadhub(dir);
    cmd.args(args).envs(envs.iter().copied());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// The database URL the CLI tests use: SQLite in `dir`, or a fresh
/// PostgreSQL database in the PostgreSQL run.
fn database_url(dir: &Path) -> (String, Option<common::PgDatabase>) {
    match common::pg_admin_url() {
        Some(admin) => {
            let db = common::PgDatabase::create(&admin);
            (db.url.clone(), Some(db))
        }
        None => (format!("sqlite://{}", dir.join("cli.db").display()), None),
    }
}

#[test]
fn migrate_user_add_and_device_add() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = database_url(dir.path());
    let db_arg = ["--database-url", url.as_str()];

    let out = run(dir.path(), &[&db_arg[..], &["migrate"]].concat(), None, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every migration applied once (both backends have the same list).
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    let applied = format!("{migrations} migration(s) applied");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&applied),
        "expected {applied:?} in {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(dir.path(), &[&db_arg[..], &["migrate"]].concat(), None, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 migration(s) applied"));

    let add_user = [
        &db_arg[..],
        &[
            "user",
            "add",
            "--email",
            "Op@Example.com",
            "--password-stdin",
        ],
    ]
    .concat();
    let out = run(dir.path(), &add_user, Some("correct horse battery\n"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("op@example.com"));
    let out = run(dir.path(), &add_user, Some("correct horse battery\n"), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let weak = [
        &db_arg[..],
        &[
            "user",
            "add",
            "--email",
            "weak@example.com",
            "--password-stdin",
        ],
    ]
    .concat();
    let out = run(dir.path(), &weak, Some("short\n"), &[]);
    assert!(!out.status.success());

    let add_device = [
        &db_arg[..],
        &[
            "device",
            "add",
            "--serial",
            "CLI-1",
            "--owner",
            "op@example.com",
        ],
    ]
    .concat();
    let out = run(dir.path(), &add_device, None, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        token.starts_with("dt_"),
        "stdout is the token alone: {token:?}"
    );
    let out = run(dir.path(), &add_device, None, &[]);
    assert!(!out.status.success(), "duplicate serial");
    let out = run(
        dir.path(),
        &[
            &db_arg[..],
            &[
                "device",
                "add",
                "--serial",
                "CLI-2",
                "--owner",
                "nobody@example.com",
            ],
        ]
        .concat(),
        None,
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));

    // The stored hash is of that token, and the user can log in over HTTP.
    let mut config = roadhub::Config::default();
    config.database.url = url.clone();
    let db = roadhub::db::Db::connect(&config).unwrap();
    let mut conn = db.get().unwrap();
    let v = roadhub::db::queries::vehicles::find_by_token_hash(
        &mut conn,
        &roadhub::util::sha256_hex(&token),
    )
    .unwrap()
    .unwrap();
    assert_eq!(v.serial, "CLI-1");
    let user = roadhub::db::queries::users::find_by_email(&mut conn, "op@example.com")
        .unwrap()
        .unwrap();
    assert_eq!(v.owner_id, user.id);
    assert!(roadhub::auth::password::verify_blocking(
        "correct horse battery",
        &user.password_hash
    ));
}

#[test]
fn print_config_shows_file_env_and_flags_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("roadhub.toml"),
        "[http]\nlisten = \"127.0.0.1:9001\"\nworkers = 3\n[limits]\napp_sessions_per_user = 7\n[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n",
    )
    .unwrap();
    let out = run(
        dir.path(),
        &[
            "--config",
            "roadhub.toml",
            "serve",
            "--print-config",
            "--listen",
            "127.0.0.1:9003",
            "--set",
            "limits.app_messages_per_second=9",
        ],
        None,
        &[
            ("ROADHUB_HTTP_LISTEN", "127.0.0.1:9002"),
            ("ROADHUB_HTTP_WORKERS", "5"),
            ("ROADHUB_REDIS_URL", "redis://127.0.0.1:6390"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("listen = \"127.0.0.1:9003\""),
        "flag wins: {text}"
    );
    assert!(text.contains("workers = 5"), "env beats file: {text}");
    assert!(
        text.contains("app_sessions_per_user = 7"),
        "file beats default: {text}"
    );
    assert!(
        text.contains("app_messages_per_second = 9"),
        "--set: {text}"
    );
    assert!(text.contains("url = \"redis://127.0.0.1:6390\""), "{text}");
    assert!(
        !text.contains("0123456789abcdef"),
        "secret redacted: {text}"
    );
    assert!(
        text.contains("[rtmp]\nlisten = \"127.0.0.1:1935\""),
        "{text}"
    );

    let out = run(
        dir.path(),
        &["serve", "--print-config"],
        None,
        &[("ROADHUB_HTTP_LISTN", "x")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ROADHUB_HTTP_LISTN"));
    let out = run(
        dir.path(),
        &["serve", "--print-config", "--database-url", "mysql://x"],
        None,
        &[],
    );
    assert!(!out.status.success());
}

#[test]
fn help_lists_only_what_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--help"], None, &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "migrate", "user", "device", "simulate"] {
        assert!(text.contains(cmd), "{text}");
    }
    assert!(!text.contains("purge"), "purge is not built yet: {text}");
}

#[test]
fn simulate_help_and_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["simulate", "--help"], None, &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--url",
        "--devices",
        "--phones-per-vehicle",
        "--phones ",
        "--points",
        "--interval",
        "--event-rate",
        "--duration",
        "--warmup",
        "--connect-only",
        "--credentials",
        "--save-credentials",
        "--json",
        "--threads",
        "--hub-pid",
    ] {
        assert!(text.contains(flag), "{flag} missing: {text}");
    }
    // Checked before anything is sent.
    let out = run(dir.path(), &["simulate", "--points", "0"], None, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--points"));
    let out = run(dir.path(), &["simulate", "--interval", "soon"], None, &[]);
    assert!(!out.status.success());
    // Nothing listens there: a clear error, quickly.
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}");
    let out = run(dir.path(), &["simulate", "--url", &url], None, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("register"),
        "{out:?}"
    );
}

#[test]
fn log_json_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("j.db").display());
    let out = run(
        dir.path(),
        &["--log-json", "--database-url", &url, "migrate"],
        None,
        &[],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "some log lines");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    // Human format by default.
    let out = run(dir.path(), &["--database-url", &url, "migrate"], None, &[]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("INFO") && !stderr.trim_start().starts_with('{'),
        "{stderr}"
    );
}
