//! Setup through the hub's REST API: register the simulated users, log
//! them in (once per user: their phones share the access token), create
//! their vehicles (each answers its device token); or reuse a credentials
//! file written by an earlier run.
//!
//! The hub rate-limits login and register (`limits.auth_attempts_per_minute`,
//! 10 per minute per address by default): benchmark hubs run with
//! `--set limits.auth_attempts_per_minute=0`. A 429 here is retried after
//! its `Retry-After`, within the run's deadline.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::options::SimulateOptions;

/// REST calls in flight at once during setup (login and register cost the
/// hub an argon2 hash each: more would only queue).
const SETUP_CONCURRENCY: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most 429 retries of one request.
const MAX_RETRIES: u32 = 20;

/// Users and vehicles of a simulation, as saved by `--save-credentials`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The hub they were created on.
    pub url: String,
    pub users: Vec<UserCredentials>,
    pub vehicles: Vec<VehicleCredentials>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCredentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VehicleCredentials {
    pub id: i64,
    pub serial: String,
    pub device_token: String,
    /// Index of the owner in `users`.
    pub owner: usize,
}

impl Credentials {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading credentials {}", path.display()))?;
        let creds: Self = serde_json::from_str(&text)
            .with_context(|| format!("parsing credentials {}", path.display()))?;
        for v in &creds.vehicles {
            anyhow::ensure!(
                v.owner < creds.users.len(),
                "credentials {}: vehicle {} names owner {} of {} users",
                path.display(),
                v.id,
                v.owner,
                creds.users.len()
            );
        }
        Ok(creds)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        write_private(path, text.as_bytes())
            .with_context(|| format!("writing credentials {}", path.display()))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// What setup hands to the run: the vehicles to drive and watch, and an
/// access token per owner (only when phones need one).
pub struct Fleet {
    pub credentials: Credentials,
    /// Access token per user index (`None` when not logged in).
    pub tokens: Vec<Option<Arc<str>>>,
    pub logins: usize,
    pub reused: bool,
}

/// A small JSON client for the REST API.
struct Rest {
    base: String,
    client: reqwest::Client,
    warned_429: AtomicBool,
}

impl Rest {
    fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .context("building the HTTP client")?,
            warned_429: AtomicBool::new(false),
        })
    }

    /// POST JSON; returns the status and the JSON body. Retries 429s.
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut tries = 0;
        loop {
            let mut req = self.client.post(&url).json(body);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let res = req.send().await.with_context(|| format!("POST {url}"))?;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let bytes = res
                .bytes()
                .await
                .with_context(|| format!("POST {url}: reading the body"))?;
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == 429 && tries < MAX_RETRIES {
                tries += 1;
                if !self.warned_429.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the hub rate-limits {path} (429); waiting and retrying. Start benchmark hubs with \
                         --set limits.auth_attempts_per_minute=0"
                    );
                }
                let wait = retry_after.unwrap_or(1).clamp(1, 60);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            return Ok((status, json));
        }
    }

    async fn register(&self, user: &UserCredentials) -> anyhow::Result<()> {
        let (status, body) = self
            .post(
                "/api/v1/auth/register",
                None,
                &json!({"email": user.email, "password": user.password, "name": "roadhub simulate"}),
            )
            .await?;
        anyhow::ensure!(status == 201, "register {}: {status} {body}", user.email);
        Ok(())
    }

    async fn login(&self, user: &UserCredentials) -> anyhow::Result<Arc<str>> {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                &json!({"email": user.email, "password": user.password}),
            )
            .await?;
        anyhow::ensure!(status == 200, "login {}: {status} {body}", user.email);
        body["access_token"]
            .as_str()
            .map(Arc::from)
            .with_context(|| format!("login {}: no access_token in {body}", user.email))
    }

    async fn create_vehicle(
        &self,
        token: &str,
        serial: &str,
        owner: usize,
    ) -> anyhow::Result<VehicleCredentials> {
        let (status, body) = self
            .post(
                "/api/v1/vehicles",
                Some(token),
                &json!({"name": format!("sim {serial}"), "serial": serial}),
            )
            .await?;
        anyhow::ensure!(status == 201, "create vehicle {serial}: {status} {body}");
        Ok(VehicleCredentials {
            id: body["id"]
                .as_i64()
                .with_context(|| format!("create vehicle {serial}: no id in {body}"))?,
            serial: serial.to_string(),
            device_token: body["device_token"]
                .as_str()
                .with_context(|| format!("create vehicle {serial}: no device_token in {body}"))?
                .to_string(),
            owner,
        })
    }
}

/// Register, log in and create vehicles (or load them), per the options.
pub async fn prepare(opts: &SimulateOptions, run_id: &str) -> anyhow::Result<Fleet> {
    let rest = Rest::new(&opts.url)?;
    let need_tokens = opts.phone_count() > 0;
    if let Some(path) = &opts.credentials {
        let mut creds = Credentials::load(path)?;
        anyhow::ensure!(
            creds.vehicles.len() >= opts.devices,
            "credentials {} hold {} vehicles; --devices asks for {}",
            path.display(),
            creds.vehicles.len(),
            opts.devices
        );
        if creds.url.trim_end_matches('/') != opts.url.trim_end_matches('/') {
            tracing::warn!(file = %creds.url, url = %opts.url, "the credentials were made on another URL");
        }
        creds.vehicles.truncate(opts.devices);
        let mut owners: Vec<usize> = creds.vehicles.iter().map(|v| v.owner).collect();
        owners.sort_unstable();
        owners.dedup();
        let mut tokens = vec![None; creds.users.len()];
        let mut logins = 0;
        if need_tokens {
            let rest = &rest;
            let users = &creds.users;
            let logged: Vec<(usize, Arc<str>)> = futures_util::stream::iter(owners)
                .map(|u| async move { rest.login(&users[u]).await.map(|t| (u, t)) })
                .buffer_unordered(SETUP_CONCURRENCY)
                .try_collect()
                .await?;
            logins = logged.len();
            for (u, t) in logged {
                tokens[u] = Some(t);
            }
        }
        return Ok(Fleet {
            credentials: creds,
            tokens,
            logins,
            reused: true,
        });
    }

    let user_count = opts.user_count();
    let users: Vec<UserCredentials> = (0..user_count)
        .map(|u| UserCredentials {
            email: format!("sim-{run_id}-{u}@example.com"),
            password: format!("sim-{run_id}-password"),
        })
        .collect();
    let rest_ref = &rest;
    futures_util::stream::iter(&users)
        .map(|u| rest_ref.register(u))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let mut logged: Vec<(usize, Arc<str>)> = futures_util::stream::iter(users.iter().enumerate())
        .map(|(i, u)| async move { rest_ref.login(u).await.map(|t| (i, t)) })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    logged.sort_by_key(|(i, _)| *i);
    let tokens: Vec<Option<Arc<str>>> = logged.into_iter().map(|(_, t)| Some(t)).collect();
    let per_user = opts.vehicles_per_user.max(1);
    let tokens_ref = &tokens;
    let mut vehicles: Vec<(usize, VehicleCredentials)> =
        futures_util::stream::iter(0..opts.devices)
            .map(|i| async move {
                let owner = i / per_user;
                let token = tokens_ref
                    .get(owner)
                    .and_then(Option::as_deref)
                    .context("owner not logged in")?;
                let v = rest_ref
                    .create_vehicle(token, &format!("SIM-{run_id}-{i}"), owner)
                    .await?;
                anyhow::Ok((i, v))
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
    vehicles.sort_by_key(|(i, _)| *i);
    let logins = tokens.len();
    Ok(Fleet {
        credentials: Credentials {
            url: opts.url.clone(),
            users,
            vehicles: vehicles.into_iter().map(|(_, v)| v).collect(),
        },
        tokens: if need_tokens {
            tokens
        } else {
            vec![None; user_count]
        },
        logins,
        reused: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_and_check_owners() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        let creds = Credentials {
            url: "http://127.0.0.1:8080".into(),
            users: vec![UserCredentials {
                email: "a@example.com".into(),
                password: "pw".into(),
            }],
            vehicles: vec![VehicleCredentials {
                id: 4,
                serial: "S".into(),
                device_token: "dt_x".into(),
                owner: 0,
            }],
        };
        creds.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = Credentials::load(&path).unwrap();
        assert_eq!(back.vehicles[0].id, 4);
        assert_eq!(back.users[0].email, "a@example.com");

        let mut bad = creds.clone();
        bad.vehicles[0].owner = 3;
        bad.save(&path).unwrap();
        assert!(Credentials::load(&path).is_err());
    }
}
