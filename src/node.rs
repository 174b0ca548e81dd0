//! One running node: opens the database (migrating it), loads the JWT
//! secret, starts the ingest writer, builds the shared state and serves
//! HTTP until shut down; on shutdown, drains HTTP, then flushes the writer.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so
//! tests bind port 0 and stop the node when they are done.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::auth::{AuthLimiter, JwtKeys};
use crate::config::Config;
use crate::db::Db;
use crate::http::{self, AppState, Shared};
use crate::ingest::{IngestWriter, WriterOptions};
use crate::metrics::Metrics;

/// What a node is made of, built before it serves.
pub struct Node {
    pub state: AppState,
}

impl Node {
    /// Open and migrate the database, load the secret, start the ingest
    /// writer, build the state.
    /// Blocking: call from a blocking context or `spawn_blocking`.
    pub fn open(mut config: Config) -> anyhow::Result<Self> {
        config.resolve();
        let db = Db::connect(&config).context("opening the database")?;
        let applied = db.migrate().context("migrating the database")?;
        if !applied.is_empty() {
            tracing::info!(count = applied.len(), "database migrations applied");
        }
        std::fs::create_dir_all(&config.storage.dir)
            .with_context(|| format!("creating storage.dir {}", config.storage.dir))?;
        let secret = crate::auth::secret::load_or_create(&config).map_err(anyhow::Error::msg)?;
        let jwt = JwtKeys::new(secret.as_bytes(), config.auth.access_token_ttl_secs);
        let auth_limiter = AuthLimiter::new(config.limits.auth_attempts_per_minute);
        let metrics = Metrics::new().context("creating metrics")?;
        let ingest = IngestWriter::start(db.clone(), WriterOptions::from_config(&config.ingest))
            .context("starting the ingest writer")?;
        Ok(Self {
            state: AppState::new(Shared {
                config,
                db,
                jwt,
                auth_limiter,
                metrics,
                ingest,
            }),
        })
    }
}

/// Run a node on `listener` until `shutdown` completes; then stop
/// accepting, finish in-flight requests and return. Must run inside an
/// actix `System` (see `main.rs` and the test harness).
pub async fn serve(
    config: Config,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let node = tokio::task::spawn_blocking(move || Node::open(config))
        .await
        .context("node start-up task")??;
    let state = node.state;
    let options = http::server::ServerOptions {
        workers: state.config.workers(),
        header_read_timeout: Duration::from_secs(state.config.http.header_read_timeout_secs.max(1)),
        shutdown_timeout: Duration::from_secs(state.config.http.shutdown_timeout_secs),
    };
    let housekeeping = actix_rt::spawn(housekeeping(state.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = http::server::run(listener, http::router(state.clone()), options, stop_rx);
    tracing::info!(
        %addr,
        node = %state.config.node.id,
        workers = options.workers,
        "roadhub serving HTTP"
    );
    tokio::pin!(server);
    tokio::select! {
        res = &mut server => {
            housekeeping.abort();
            flush_writers(&state).await;
            return res.context("HTTP server");
        }
        () = shutdown => {}
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    let served = server.await.context("HTTP server");
    housekeeping.abort();
    flush_writers(&state).await;
    tracing::info!("stopped");
    served
}

/// Graceful shutdown, once no request is in flight: write and commit what
/// the ingest writer still holds, then stop it. Bounded by
/// `http.shutdown_timeout_secs` (at least 5 s).
async fn flush_writers(state: &AppState) {
    let ingest = state.ingest.clone();
    let timeout = Duration::from_secs(state.config.http.shutdown_timeout_secs.max(5));
    if let Err(e) = tokio::task::spawn_blocking(move || ingest.flush_and_stop(timeout)).await {
        tracing::error!(error = %e, "flushing the ingest writer failed");
    }
}

/// Periodic upkeep: forget recovered rate-limit keys, delete refresh
/// tokens expired for over a day.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut rounds: u64 = 0;
    loop {
        tick.tick().await;
        state.auth_limiter.prune();
        if rounds.is_multiple_of(60) {
            let res = state
                .db
                .run(|conn| crate::db::queries::tokens::delete_expired(conn, 24 * 3600 * 1000))
                .await;
            match res {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "expired refresh tokens removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "refresh token cleanup failed"),
            }
        }
        rounds += 1;
    }
}
