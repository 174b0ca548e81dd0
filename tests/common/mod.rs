//! Test harness: a real node on a free loopback port, on SQLite in a temp
//! folder, or on a fresh PostgreSQL database when `ROADHUB_TEST_PG_URL`
//! names a server (scripts/test starts one). Plus a small JSON client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// The conformance echo server, shared with the `socketio_conformance`
/// example.
#[path = "../../examples/socketio_conformance/echo.rs"]
pub mod echo;
pub mod engine;
pub mod live;
pub mod process;
pub mod redis;
pub mod rtsp;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, PgConnection};
use reqwest::{Method, StatusCode};
use roadhub::Config;
use serde_json::{Value, json};

/// A throwaway PostgreSQL database, dropped with the value.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create(admin_url: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "roadhub_t{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            roadhub::util::random_token("", 4)
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        let mut admin = PgConnection::establish(admin_url).expect("connect to ROADHUB_TEST_PG_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        Self {
            admin_url: admin_url.to_string(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Which backend this test run uses.
pub fn pg_admin_url() -> Option<String> {
    std::env::var("ROADHUB_TEST_PG_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A node running in this process, on its own actix System thread.
pub struct TestServer {
    pub base: String,
    /// Where the node's RTMP ingest listens (a free loopback port).
    pub rtmp_addr: std::net::SocketAddr,
    pub config: Config,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    _pg: Option<PgDatabase>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Start with a config adjusted by `adjust` (after the test defaults:
    /// temp folders, fresh database, no auth rate limit, 2 workers).
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        let path = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
        config.node.data_dir = path("data");
        config.storage.dir = path("data/storage");
        config.node.id = "test-node".into();
        config.http.workers = 2;
        config.http.shutdown_timeout_secs = 5;
        config.limits.auth_attempts_per_minute = 0;
        let pg = pg_admin_url().map(|admin| PgDatabase::create(&admin));
        config.database.url = match &pg {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", path("data/roadhub.db")),
        };
        if pg.is_some() {
            config.database.pool_size = 4;
        }
        adjust(&mut config);
        config.validate().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let rtmp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let rtmp_addr = rtmp.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let node_config = config.clone();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(roadhub::serve_with(
                node_config,
                listener,
                rtmp,
                async move {
                    let _ = stopped.await;
                },
            ))
        });
        let server = Self {
            base,
            rtmp_addr,
            config,
            dir,
            stop: Some(stop),
            thread: Some(thread),
            _pg: pg,
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(res) = client.get(format!("{}/healthz", self.base)).send().await
                && res.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                !self.thread.as_ref().is_some_and(|t| t.is_finished()),
                "the node exited during start-up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the node did not become healthy within 30 s");
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    /// A direct connection to the node's database, to check what it stored.
    pub fn db(&self) -> roadhub::db::Db {
        roadhub::db::Db::connect(&self.config).unwrap()
    }

    /// Stop the node and return how it ended.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("node thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A response: status, headers and JSON body (`Value::Null` if none).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The contract's error code, if this is an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Assert this is the contract's error body with `status` and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.code(), code, "{self:?}");
        assert!(self.body["error"]["message"].is_string(), "{self:?}");
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "{self:?}"
        );
    }
}

/// A small JSON client for the REST API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

/// Tokens of a logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i64,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    /// Send raw bytes as the body.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    async fn reply(res: reqwest::Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Register a fresh user and log in.
    pub async fn new_user(&self, email: &str) -> Session {
        let r = self.register(email, "correct horse battery").await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        let user_id = r.body["id"].as_i64().unwrap();
        let r = self.login(email, "correct horse battery").await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        Session {
            user_id,
            email: email.to_string(),
            access: r.body["access_token"].as_str().unwrap().to_string(),
            refresh: r.body["refresh_token"].as_str().unwrap().to_string(),
        }
    }

    /// Create a vehicle; returns the 201 body.
    pub async fn new_vehicle(&self, session: &Session, serial: &str) -> Value {
        let r = self
            .post(
                "/api/v1/vehicles",
                Some(&session.access),
                json!({"name": format!("car {serial}"), "serial": serial}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r.body
    }
}
pub mod sio;

/// A migrated database of this run's backend (SQLite in a temp folder, or
/// a fresh PostgreSQL database), without a server.
pub struct TestDb {
    pub db: roadhub::db::Db,
    pub config: Config,
    pub dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

impl TestDb {
    pub fn open() -> Self {
        Self::open_with(|_| {})
    }

    pub fn open_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        let pg = pg_admin_url().map(|admin| PgDatabase::create(&admin));
        config.database.url = match &pg {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}/roadhub.db", dir.path().display()),
        };
        config.database.pool_size = 4;
        adjust(&mut config);
        let db = roadhub::db::Db::connect(&config).unwrap();
        db.migrate().unwrap();
        Self {
            db,
            config,
            dir,
            _pg: pg,
        }
    }

    /// A fresh pool on the same database (another connection than any the
    /// code under test holds).
    pub fn reconnect(&self) -> roadhub::db::Db {
        roadhub::db::Db::connect(&self.config).unwrap()
    }

    /// A new user owning `n` new vehicles; returns the user id and the
    /// vehicle ids.
    pub fn user_with_vehicles(&self, n: usize) -> (i64, Vec<i64>) {
        use roadhub::db::queries::{users, vehicles};
        let mut conn = self.db.get().unwrap();
        let tag = roadhub::util::random_token("", 6);
        let user = users::create(&mut conn, &format!("{tag}@example.com"), None, "x").unwrap();
        let ids = (0..n)
            .map(|i| {
                let serial = format!("{tag}-{i}");
                vehicles::create(&mut conn, user.id, &serial, &serial, &format!("h-{serial}"))
                    .unwrap()
                    .id
            })
            .collect();
        (user.id, ids)
    }
}

/// A counter or gauge of a node's `/metrics` (`name` may carry labels,
/// e.g. `roadhub_live_viewers{protocol="internal"}`); panics when the node
/// does not export it, so a misspelt name fails instead of reading 0.
pub async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} not in the metrics of {base}"))
        .trim()
        .parse()
        .unwrap()
}
