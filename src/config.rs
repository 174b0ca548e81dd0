//! Configuration, declared once: every key with its type, default and doc.
//!
//! Precedence, lowest first: built-in defaults, the TOML file
//! (`--config roadhub.toml`), environment variables `ROADHUB_<SECTION>_<KEY>`
//! (for example `ROADHUB_HTTP_LISTEN`), then CLI flags (`--listen`,
//! `--database-url`, `--set section.key=value`).
//!
//! The [`Config::reference`] table is generated from the same declaration,
//! and a test checks that the README's configuration reference matches it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A type a configuration key can have: parsed from an environment variable
/// or a `--set` flag, and shown by `--print-config`.
pub trait ConfigValue: Sized {
    fn parse_value(raw: &str) -> Result<Self, String>;
    /// The value as TOML (`None` for an unset optional value).
    fn to_toml(&self) -> Option<String>;
    fn type_name() -> &'static str;
}

impl ConfigValue for String {
    fn parse_value(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
    fn to_toml(&self) -> Option<String> {
        Some(toml_string(self))
    }
    fn type_name() -> &'static str {
        "string"
    }
}

impl ConfigValue for Option<String> {
    fn parse_value(raw: &str) -> Result<Self, String> {
        Ok((!raw.is_empty()).then(|| raw.to_string()))
    }
    fn to_toml(&self) -> Option<String> {
        self.as_deref().map(toml_string)
    }
    fn type_name() -> &'static str {
        "string (optional)"
    }
}

impl ConfigValue for bool {
    fn parse_value(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("expected true or false, got {raw:?}")),
        }
    }
    fn to_toml(&self) -> Option<String> {
        Some(self.to_string())
    }
    fn type_name() -> &'static str {
        "bool"
    }
}

impl ConfigValue for Vec<String> {
    /// A comma-separated list (`a,b,c`); empty means an empty list.
    fn parse_value(raw: &str) -> Result<Self, String> {
        Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect())
    }
    fn to_toml(&self) -> Option<String> {
        Some(format!(
            "[{}]",
            self.iter()
                .map(|s| toml_string(s))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
    fn type_name() -> &'static str {
        "list of strings"
    }
}

macro_rules! int_config_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse_value(raw: &str) -> Result<Self, String> {
                raw.trim().parse().map_err(|e| format!("expected an integer, got {raw:?}: {e}"))
            }
            fn to_toml(&self) -> Option<String> {
                Some(self.to_string())
            }
            fn type_name() -> &'static str {
                "integer"
            }
        }
    )*};
}
int_config_value!(u16, u32, u64, usize);

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One documented key of the reference table.
#[derive(Debug, Clone)]
pub struct KeyDoc {
    /// `section.key`
    pub key: String,
    /// `ROADHUB_SECTION_KEY`
    pub env: String,
    pub type_name: &'static str,
    /// Default as TOML, or `unset`.
    pub default: String,
    pub doc: String,
    pub secret: bool,
}

/// Declares the sections and keys once; generates the structs, defaults,
/// serde (TOML) support, `set` by name, and the reference table.
macro_rules! config {
    ($(
        $(#[doc = $sdoc:literal])*
        $section:ident : $Section:ident {
            $(
                $(#[doc = $doc:literal])*
                $key:ident : $ty:ty = $default:expr $(=> $secret:ident)?
            ),* $(,)?
        }
    )*) => {
        /// The whole configuration of a node.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $( $(#[doc = $sdoc])* pub $section: $Section, )*
        }

        $(
            $(#[doc = $sdoc])*
            #[derive(Debug, Clone, Deserialize)]
            #[serde(default, deny_unknown_fields)]
            pub struct $Section {
                $( $(#[doc = $doc])* pub $key: $ty, )*
            }

            impl Default for $Section {
                fn default() -> Self {
                    Self { $( $key: $default, )* }
                }
            }
        )*

        impl Config {
            /// Set one key by its dotted name from a string (environment
            /// variable or `--set`).
            pub fn set(&mut self, name: &str, raw: &str) -> Result<(), String> {
                match name {
                    $($(
                        concat!(stringify!($section), ".", stringify!($key)) => {
                            self.$section.$key = <$ty as ConfigValue>::parse_value(raw)
                                .map_err(|e| format!("{name}: {e}"))?;
                            Ok(())
                        }
                    )*)*
                    _ => Err(format!("unknown configuration key {name:?}")),
                }
            }

            /// Every key with its type, default and doc, in declaration order.
            #[allow(clippy::vec_init_then_push)]
            pub fn reference() -> Vec<KeyDoc> {
                let defaults = Config::default();
                let mut out: Vec<KeyDoc> = Vec::with_capacity(64);
                $($(
                    out.push(KeyDoc {
                        key: concat!(stringify!($section), ".", stringify!($key)).to_string(),
                        env: concat!("ROADHUB_", stringify!($section), "_", stringify!($key))
                            .to_ascii_uppercase(),
                        type_name: <$ty as ConfigValue>::type_name(),
                        default: ConfigValue::to_toml(&defaults.$section.$key)
                            .unwrap_or_else(|| "unset".to_string()),
                        doc: [$($doc),*].iter().map(|l: &&str| l.trim()).collect::<Vec<_>>().join(" "),
                        secret: false $(|| stringify!($secret) == "secret")?,
                    });
                )*)*
                out
            }

            /// The effective configuration as TOML, secrets redacted.
            pub fn to_toml_redacted(&self) -> String {
                let mut out = String::new();
                $(
                    out.push_str(concat!("[", stringify!($section), "]\n"));
                    $(
                        let secret = false $(|| stringify!($secret) == "secret")?;
                        match ConfigValue::to_toml(&self.$section.$key) {
                            Some(_) if secret => out.push_str(concat!(stringify!($key), " = \"<redacted>\"\n")),
                            Some(v) => {
                                out.push_str(concat!(stringify!($key), " = "));
                                out.push_str(&v);
                                out.push('\n');
                            }
                            None => out.push_str(concat!("# ", stringify!($key), " is unset\n")),
                        }
                    )*
                    out.push('\n');
                )*
                out
            }
        }
    };
}

config! {
    /// The HTTP server: REST, Socket.IO, live-video play, health, metrics.
    http: HttpConfig {
        /// Address and port the HTTP server listens on.
        listen: String = "127.0.0.1:8080".into(),
        /// Worker threads serving connections; 0 means one per CPU core.
        workers: usize = 0,
        /// Largest request body accepted, in bytes; larger bodies answer 413.
        max_body_bytes: usize = 1024 * 1024,
        /// Origins allowed by CORS (`*` for any); empty turns CORS off.
        cors_origins: Vec<String> = Vec::new(),
        /// Take the client address from the last `X-Forwarded-For` entry
        /// (set this only behind a trusted proxy such as nginx).
        trust_forwarded_for: bool = false,
        /// Seconds a client may take to send request headers.
        header_read_timeout_secs: u64 = 10,
        /// Seconds in-flight requests get to finish on shutdown.
        shutdown_timeout_secs: u64 = 20,
    }

    /// RTMP ingest of live video from blackboxes.
    rtmp: RtmpConfig {
        /// Address and port the RTMP server listens on.
        listen: String = "127.0.0.1:1935".into(),
        /// The RTMP base URL devices reach this node at (`rtmp://HOST:PORT`),
        /// put in the `url` of on-demand `live.start` commands; empty means
        /// `rtmp://` + `rtmp.listen`.
        public_url: String = String::new(),
        /// Seconds a client has to complete the RTMP handshake and publish.
        handshake_timeout_secs: u64 = 10,
        /// Seconds without any byte from a publisher before it is closed.
        read_timeout_secs: u64 = 30,
        /// Largest chunk size a publisher may announce (`SetChunkSize`), in
        /// bytes; a larger one closes the connection.
        max_chunk_size: u32 = 1024 * 1024,
        /// Bytes a connection may send before its publish is accepted
        /// (connect, createStream, publish): bounds what an unauthenticated
        /// client can make the node buffer.
        max_unauthenticated_bytes: usize = 256 * 1024,
    }

    /// Live streams: the Stream actors between publishers (RTMP, RTSP pull)
    /// and viewers (HTTP-FLV, WebSocket-FLV, HLS).
    live: LiveConfig {
        /// A viewer whose queue holds more than this many ms of media skips
        /// to the next keyframe.
        max_viewer_lag_ms: u32 = 2000,
        /// A viewer that stays behind (keeps skipping, never drains its
        /// queue) for this many seconds is disconnected.
        max_viewer_behind_secs: u64 = 10,
        /// Bytes queued for one viewer above which it skips to the next
        /// keyframe, whatever the lag in ms.
        max_viewer_queue_bytes: usize = 8 * 1024 * 1024,
        /// Largest GOP cache (latest keyframe onwards) kept per stream, in
        /// bytes; past it new viewers wait for the next keyframe.
        gop_cache_max_bytes: usize = 8 * 1024 * 1024,
        /// Seconds viewers are held after the publisher leaves, so a
        /// reconnecting blackbox does not drop them.
        publisher_grace_secs: u64 = 10,
        /// Seconds a published stream may have no viewer before the
        /// activator's `idle` hook is called (on-demand live stops there).
        idle_timeout_secs: u64 = 30,
        /// Seconds a viewer waits for a publisher the activator is starting;
        /// then 504 `live_start_timeout`.
        start_timeout_secs: u64 = 10,
        /// Seconds between two writes of live-video usage (bytes received,
        /// live seconds) to the database.
        usage_flush_secs: u64 = 5,
        /// A viewer (HTTP-FLV, WS-FLV) is written at most once per this many
        /// ms, with everything queued in one write (SRS calls it merged
        /// write): fewer wake-ups and system calls per viewer for at most
        /// this much more latency. 0 writes every tag as it comes.
        viewer_write_interval_ms: u64 = 100,
        /// Serve HLS (`/live/{key}/index.m3u8`); a stream segments only once
        /// HLS was asked for.
        hls_enabled: bool = true,
        /// HLS target segment duration, in seconds (cut at keyframes).
        hls_segment_secs: u32 = 2,
        /// HLS segments kept in the sliding playlist.
        hls_window: usize = 6,
        /// Seconds an HLS playback session (the `?session=` of HLS URLs,
        /// opened by the first playlist request with an access token) lives
        /// without a playlist or segment fetch; each fetch slides it.
        hls_session_idle_secs: u64 = 120,
        /// Send `Access-Control-Allow-Origin: *` on the live play routes,
        /// for browser players (mpegts.js, hls.js) on other origins; access
        /// still needs the owner's token in the URL.
        cors_any_origin: bool = true,
    }

    /// RTSP pull: cameras the hub fetches itself (a channel's `rtsp_url`).
    rtsp: RtspConfig {
        /// Milliseconds for the TCP connect and the `DESCRIBE` answer.
        connect_timeout_ms: u64 = 5000,
        /// Milliseconds for each `SETUP` and the `PLAY` answer.
        setup_timeout_ms: u64 = 5000,
        /// Milliseconds without a media frame before the session is
        /// dropped and retried.
        idle_timeout_ms: u64 = 10_000,
        /// Milliseconds before the first retry of a failed camera; the wait
        /// doubles after each failure.
        retry_min_ms: u64 = 500,
        /// Longest wait between retries, in milliseconds.
        retry_max_ms: u64 = 10_000,
    }

    /// The database: SQLite for a single node, PostgreSQL for many.
    database: DatabaseConfig {
        /// `sqlite://PATH` (created on start) or `postgres://USER:PASS@HOST/DB`.
        url: String = "sqlite://./data/roadhub.db".into(),
        /// Connections in the pool; 0 picks 4 for SQLite, 16 for PostgreSQL.
        pool_size: u32 = 0,
        /// Seconds to wait for a pooled connection before answering 503.
        connect_timeout_secs: u64 = 5,
        /// SQLite only: milliseconds a writer waits for the database lock.
        sqlite_busy_timeout_ms: u64 = 5000,
    }

    /// The telemetry writer: one group-commit thread stores what every
    /// device sends (see docs/INGEST.md).
    ingest: IngestConfig {
        /// Jobs (a `loc` batch, an event, a status report...) waiting to be
        /// written at most; when full, devices are answered `busy`.
        queue_capacity: usize = 4096,
        /// Rows written in one transaction at most (a `loc` job counts its
        /// points, other jobs one).
        max_batch_rows: usize = 20_000,
        /// Milliseconds the writer waits for more jobs before committing a
        /// batch that is not full; 0 commits at once (batches still form
        /// while a commit runs).
        max_wait_ms: u64 = 2,
        /// Writer threads, each with its own database connection; a vehicle
        /// always goes to the same one. 0 picks 1 on SQLite (one writer at a
        /// time anyway) and 2 on PostgreSQL.
        writers: usize = 0,
    }

    /// Redis joins the nodes of a cluster.
    redis: RedisConfig {
        /// `redis://HOST:PORT` (Redis >= 7): rooms, device presence and commands reach the other nodes through it; unset runs a single node.
        url: Option<String> = None,
        /// Seed nodes of a Redis Cluster (Redis >= 7), comma-separated
        /// `redis://HOST:PORT`; set instead of `redis.url` to run on a cluster.
        cluster_nodes: Vec<String> = Vec::new(),
    }

    /// This node.
    node: NodeConfig {
        /// Name of this node in logs, connection logs and the cluster;
        /// empty means the host name.
        id: String = String::new(),
        /// Where other nodes reach this node's HTTP (unset: derived from
        /// `http.listen`).
        advertise_url: Option<String> = None,
        /// Shared secret nodes present to each other (internal stream pulls);
        /// the same on every node. Unset: derived from the JWT secret.
        cluster_secret: Option<String> = None => secret,
        /// Seconds a device's presence (and a live stream's registry entry)
        /// lasts in Redis without a refresh (refreshed every third of it; at
        /// least 3); a dead node's devices go offline within about this long.
        presence_ttl_secs: u64 = 30,
        /// Folder for the node's own files (the generated JWT secret).
        data_dir: String = "./data".into(),
    }

    /// Accounts and tokens.
    auth: AuthConfig {
        /// HS256 key for access tokens. Unset: generated on first start and
        /// kept in `node.data_dir/jwt_secret` (set it, the same on every node,
        /// for a cluster).
        jwt_secret: Option<String> = None => secret,
        /// Lifetime of an access token, in seconds.
        access_token_ttl_secs: u64 = 600,
        /// Lifetime of a refresh token, in seconds.
        refresh_token_ttl_secs: u64 = 30 * 24 * 3600,
        /// Shortest password accepted at registration.
        min_password_len: usize = 8,
    }

    /// The realtime hub: Socket.IO at `/socket.io/` (`/device`, `/app`).
    realtime: RealtimeConfig {
        /// Engine.IO heartbeat: the server pings every this many ms.
        ping_interval_ms: u64 = 25_000,
        /// A client that does not answer a ping within this many ms is gone.
        ping_timeout_ms: u64 = 20_000,
        /// Largest Engine.IO message or polling payload, in bytes.
        max_payload: usize = 1_000_000,
        /// Time a device has to acknowledge a command, in ms.
        command_timeout_ms: u64 = 10_000,
        /// Queued frames above which a client's live positions coalesce
        /// (newest per vehicle).
        queue_soft_frames: usize = 256,
        /// Queued bytes above which a client is disconnected as too slow.
        queue_hard_bytes: usize = 4 * 1024 * 1024,
        /// Seconds a client may stay above the soft limit before it is
        /// disconnected.
        slow_timeout_secs: u64 = 30,
    }

    /// Uploaded files.
    storage: StorageConfig {
        /// Folder for uploaded clips and images.
        dir: String = "./data/storage".into(),
    }

    /// Abuse limits; 0 means unlimited.
    limits: LimitsConfig {
        /// Login and register attempts per minute, per client address and
        /// per account.
        auth_attempts_per_minute: u32 = 10,
        /// Socket.IO `/app` sessions one user may hold at once.
        app_sessions_per_user: u32 = 20,
        /// Messages per second one device session may send.
        device_messages_per_second: u32 = 50,
        /// Messages per second one app session may send.
        app_messages_per_second: u32 = 20,
    }

    /// Log output.
    log: LogConfig {
        /// `human` or `json`.
        format: String = "human".into(),
        /// Default filter (`info`, `debug`, `roadhub=debug,info`); `RUST_LOG`
        /// overrides it.
        level: String = "info".into(),
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "roadhub".into())
}

/// The database a `database.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Config {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(std::env::vars())?;
        Ok(config)
    }

    /// Apply `ROADHUB_<SECTION>_<KEY>` variables. Unknown `ROADHUB_*`
    /// variables are an error, so a typo does not go unnoticed; variables
    /// for tools and tests (`ROADHUB_CONFIG`, `ROADHUB_TEST_*`) are skipped.
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), String> {
        let reference = Self::reference();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("ROADHUB_") else {
                continue;
            };
            if rest == "CONFIG" || rest.starts_with("TEST_") {
                continue;
            }
            let key = reference
                .iter()
                .find(|k| k.env == name)
                .ok_or_else(|| format!("unknown configuration variable {name}"))?;
            self.set(&key.key, &value)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    /// Fill in defaults that depend on the machine (an empty `node.id`
    /// becomes the host name). Called once the file, environment and flags
    /// are applied.
    pub fn resolve(&mut self) {
        if self.node.id.trim().is_empty() {
            self.node.id = host_name();
        }
    }

    /// Check values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), String> {
        self.http
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("http.listen {:?}: {e}", self.http.listen))?;
        self.database_url()?;
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return Err(format!(
                "log.format must be human or json, not {:?}",
                self.log.format
            ));
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.refresh_token_ttl_secs == 0 {
            return Err("auth token lifetimes must be above 0".into());
        }
        if self.live.hls_session_idle_secs == 0 {
            return Err("live.hls_session_idle_secs must be above 0".into());
        }
        if let Some(secret) = &self.auth.jwt_secret
            && secret.len() < 32
        {
            return Err("auth.jwt_secret must be at least 32 characters".into());
        }
        if self.ingest.queue_capacity == 0 || self.ingest.max_batch_rows == 0 {
            return Err("ingest.queue_capacity and ingest.max_batch_rows must be above 0".into());
        }
        if self.ingest.writers > 64 {
            return Err("ingest.writers must be at most 64".into());
        }
        let writers = match self.database_url()? {
            DatabaseUrl::Sqlite(_) => 1,
            DatabaseUrl::Postgres(_) if self.ingest.writers == 0 => 2,
            DatabaseUrl::Postgres(_) => self.ingest.writers,
        };
        if self.database.pool_size != 0 && (self.database.pool_size as usize) <= writers {
            return Err(format!(
                "database.pool_size ({}) must be above the ingest writers' connections ({writers})",
                self.database.pool_size
            ));
        }
        let r = &self.rtsp;
        if [
            r.connect_timeout_ms,
            r.setup_timeout_ms,
            r.idle_timeout_ms,
            r.retry_min_ms,
        ]
        .contains(&0)
            || r.retry_max_ms < r.retry_min_ms
        {
            return Err(
                "rtsp timeouts and rtsp.retry_min_ms must be above 0, and rtsp.retry_max_ms at least rtsp.retry_min_ms"
                    .into(),
            );
        }
        if self.ingest.max_wait_ms > 1000 {
            return Err("ingest.max_wait_ms must be at most 1000".into());
        }
        if self.http.max_body_bytes == 0 {
            return Err("http.max_body_bytes must be above 0".into());
        }
        Ok(())
    }

    pub fn database_url(&self) -> Result<DatabaseUrl, String> {
        let url = self.database.url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("database.url sqlite:// needs a file path".into());
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_string()))
        } else {
            Err(format!(
                "database.url must start with sqlite:// or postgres://, got {:?}",
                redact_url(url)
            ))
        }
    }

    /// Worker threads to run.
    pub fn workers(&self) -> usize {
        match self.http.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The reference as a Markdown table (what the README carries).
    pub fn reference_markdown() -> String {
        let mut out = String::from(
            "| key | environment | type | default | meaning |\n| --- | --- | --- | --- | --- |\n",
        );
        for k in Self::reference() {
            out.push_str(&format!(
                "| `{}` | `{}` | {} | `{}` | {} |\n",
                k.key,
                k.env,
                k.type_name,
                k.default.replace('|', "\\|"),
                k.doc.replace('|', "\\|")
            ));
        }
        out
    }
}

/// Hide the password of a URL for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::default();
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        assert_eq!(c.rtmp.listen, "127.0.0.1:1935");
        assert_eq!(
            c.database_url(),
            Ok(DatabaseUrl::Sqlite(PathBuf::from("./data/roadhub.db")))
        );
        assert_eq!(c.redis.url, None);
        assert_eq!(c.storage.dir, "./data/storage");
        assert_eq!(c.auth.access_token_ttl_secs, 600);
        c.validate()
            .unwrap_or_else(|e| panic!("defaults invalid: {e}"));
    }

    #[test]
    fn file_then_env_then_set() {
        let mut c: Config = toml::from_str(
            "[http]\nlisten = \"127.0.0.1:9000\"\n[limits]\napp_sessions_per_user = 3\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.http.listen, "127.0.0.1:9000");
        c.apply_env(
            [
                (
                    "ROADHUB_HTTP_LISTEN".to_string(),
                    "127.0.0.1:9001".to_string(),
                ),
                ("ROADHUB_LIMITS_AUTH_ATTEMPTS_PER_MINUTE".into(), "0".into()),
                ("ROADHUB_REDIS_URL".into(), "redis://127.0.0.1:6379".into()),
                (
                    "ROADHUB_HTTP_CORS_ORIGINS".into(),
                    "https://a.example, https://b.example".into(),
                ),
                ("ROADHUB_TEST_PG_URL".into(), "ignored".into()),
                ("PATH".into(), "/bin".into()),
            ]
            .into_iter(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.http.listen, "127.0.0.1:9001");
        assert_eq!(c.limits.auth_attempts_per_minute, 0);
        assert_eq!(c.limits.app_sessions_per_user, 3);
        assert_eq!(c.redis.url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(
            c.http.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
        c.set("http.listen", "127.0.0.1:9002")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.http.listen, "127.0.0.1:9002");
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let mut c = Config::default();
        assert!(
            c.apply_env([("ROADHUB_HTTP_LISTN".to_string(), "x".to_string())].into_iter())
                .is_err()
        );
        assert!(c.set("limits.app_sessions_per_user", "many").is_err());
        assert!(c.set("nope.key", "1").is_err());
        assert!(toml::from_str::<Config>("[http]\nlisten_typo = 1\n").is_err());
        c.database.url = "mysql://x".into();
        assert!(c.validate().is_err());
        c.database.url = "sqlite://".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn ingest_settings_are_checked() {
        let mut c = Config::default();
        c.ingest.queue_capacity = 0;
        assert!(c.validate().is_err());
        c.ingest.queue_capacity = 10;
        c.ingest.max_wait_ms = 5000;
        assert!(c.validate().is_err());
        c.ingest.max_wait_ms = 1;
        c.validate().unwrap_or_else(|e| panic!("{e}"));
        // Each writer keeps a connection: the pool needs one more.
        c.database.pool_size = 1;
        assert!(c.validate().is_err());
        c.database.url = "postgres://u@h/db".into();
        c.database.pool_size = 2;
        assert!(c.validate().is_err());
        c.database.pool_size = 3;
        c.validate().unwrap_or_else(|e| panic!("{e}"));
        c.ingest.writers = 4;
        assert!(c.validate().is_err());
    }

    #[test]
    fn print_config_redacts_secrets_and_round_trips() {
        let mut c = Config::default();
        c.auth.jwt_secret = Some("s".repeat(40));
        let text = c.to_toml_redacted();
        assert!(!text.contains(&"s".repeat(40)));
        assert!(text.contains("jwt_secret = \"<redacted>\""));
        assert!(text.contains("# url is unset"));
        let back: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.http.listen, c.http.listen);
    }

    #[test]
    fn reference_covers_contract_keys() {
        let keys: Vec<String> = Config::reference().into_iter().map(|k| k.key).collect();
        for k in [
            "http.listen",
            "rtmp.listen",
            "database.url",
            "redis.url",
            "node.id",
            "node.advertise_url",
            "auth.jwt_secret",
            "storage.dir",
            "limits.auth_attempts_per_minute",
            "limits.app_sessions_per_user",
            "limits.device_messages_per_second",
            "limits.app_messages_per_second",
        ] {
            assert!(keys.iter().any(|x| x == k), "missing {k}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
    }
}
