//! One running node: opens the database (migrating it), loads the JWT
//! secret, starts the telemetry writer and the room supervisor, builds the
//! shared state and serves HTTP (REST and Socket.IO) until shut down.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so
//! tests bind port 0 and stop the node when they are done.
//!
//! The live-video runtime ([`crate::live`]) is wired here: it gets the
//! hub and the database only as the small ports of [`live_ports`], and the
//! stream registry in-process on a single node or in Redis in a cluster
//! ([`crate::cluster::streams`]).
//!
//! Shutdown order: close every Socket.IO connection (sessions end and log
//! their disconnect), stop accepting and drain in-flight HTTP requests,
//! then flush the telemetry writer, so nothing acknowledged or queued is
//! lost.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use anyhow::Context as _;
use tokio::sync::watch;

use crate::actors::{Hub, RoomSupervisor};
use crate::auth::{AuthLimiter, JwtKeys};
use crate::cluster::Cluster;
use crate::cluster::streams::{LocalStreams, RedisStreams, StreamRegistry};
use crate::config::Config;
use crate::db::Db;
use crate::http::{self, AppState, Shared};
use crate::ingest::IngestWriter;
use crate::ingest::writer::WriterOptions;
use crate::live::edge::{Edge, OriginReporter};
use crate::live::ondemand::{OnDemand, Sources};
use crate::live::rtmp::RtmpContext;
use crate::live::stream::Streams;
use crate::live::usage::Usage;
use crate::metrics::Metrics;

pub mod live_ports;

/// What a node is made of before it serves (built off the async workers).
pub struct Node {
    pub config: Config,
    pub db: Db,
    pub jwt: JwtKeys,
    pub ingest: IngestWriter,
    /// The JWT secret (the cluster secret derives from it when unset).
    pub secret: String,
}

impl Node {
    /// Open and migrate the database, load the secret, start the writer.
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
        let ingest = IngestWriter::start(db.clone(), WriterOptions::from_config(&config.ingest))
            .context("starting the telemetry writer")?;
        Ok(Self {
            config,
            db,
            jwt,
            ingest,
            secret,
        })
    }
}

/// Run a node on `listener` until `shutdown` completes; then shut down in
/// order (see the module doc) and return. RTMP listens on `rtmp.listen`,
/// bound here. Must run inside an actix `System` (see `main.rs` and the
/// test harness).
pub async fn serve(
    config: Config,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let rtmp = std::net::TcpListener::bind(&config.rtmp.listen)
        .with_context(|| format!("binding rtmp.listen {}", config.rtmp.listen))?;
    serve_with(config, listener, rtmp, shutdown).await
}

/// [`serve`] with an RTMP listener already bound (tests bind port 0 and
/// read the real port from it).
pub async fn serve_with(
    mut config: Config,
    listener: std::net::TcpListener,
    rtmp_listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let rtmp_addr = rtmp_listener
        .local_addr()
        .context("reading the RTMP listen address")?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    if config.rtmp.public_url.trim().is_empty() {
        // What on-demand `live.start` URLs carry: the port really bound.
        config.rtmp.public_url = format!("rtmp://{rtmp_addr}");
    }
    let node = tokio::task::spawn_blocking(move || Node::open(config))
        .await
        .context("node start-up task")??;
    let Node {
        mut config,
        db,
        jwt,
        ingest,
        secret,
    } = node;
    let advertise_url = advertise_url(&config, addr);
    config.node.advertise_url = Some(advertise_url.clone());
    let rooms_arbiter = actix_rt::Arbiter::new();
    // The cluster: only with Redis; a single node has no bus hop.
    let cluster = Cluster::start(&config, &secret, advertise_url).context("joining the cluster")?;
    drop(secret);
    let bus = cluster.as_ref().map(|c| c.bus.clone());
    let rooms = RoomSupervisor::start_in_arbiter(&rooms_arbiter.handle(), move |_| {
        RoomSupervisor::with_bus(bus)
    });
    let hub = Arc::new(Hub::new(
        config.clone(),
        db.clone(),
        ingest.clone(),
        jwt.clone(),
        rooms,
        cluster,
    ));
    // Cluster presence and node-to-node control (nothing without Redis).
    crate::actors::start_backends(&hub);
    let sio = crate::actors::socketio(hub.clone()).with_sid_prefix(&config.node.id);
    let metrics = Metrics::new().context("creating metrics")?;
    // Each part exposes its figures; they are read when Prometheus scrapes.
    for readings in [
        sio.readings(),
        hub.ingest.readings(),
        crate::actors::readings::readings(&hub),
        crate::cluster::readings::readings(hub.cluster.as_ref()),
    ] {
        metrics
            .register_readings(readings)
            .context("registering metrics")?;
    }
    metrics
        .register_latency(&hub.ingest.metrics().commit_seconds)
        .context("registering ingest metrics")?;
    metrics
        .register_latency(&hub.stats.device_ack)
        .context("registering hub metrics")?;
    metrics
        .register_latency(&hub.stats.command_round_trip)
        .context("registering hub metrics")?;
    metrics
        .register_latency(&metrics.live.first_frame)
        .context("registering live metrics")?;
    // Live video: the streams and the RTMP ingest share one arbiter.
    let media_arbiter = actix_rt::Arbiter::new();
    let usage = Arc::new(Usage::new(Arc::new(db.clone())));
    let (live, ondemand) = start_live(&media_arbiter.handle(), &config, &hub, &metrics, &usage);
    hub.set_live(Arc::new(live_ports::LiveStarts {
        usage: usage.clone(),
        jwt: jwt.clone(),
        rtmp: config.rtmp.clone(),
    }));
    let usage_flusher = actix_rt::spawn(
        usage
            .clone()
            .flush_every(Duration::from_secs(config.live.usage_flush_secs.max(1))),
    );
    let state = AppState::new(Shared {
        auth_limiter: AuthLimiter::new(config.limits.auth_attempts_per_minute),
        config,
        db,
        jwt,
        metrics,
        hub: hub.clone(),
        live: live.clone(),
        ondemand: ondemand.clone(),
    });
    let options = http::server::ServerOptions {
        workers: state.config.workers(),
        header_read_timeout: Duration::from_secs(state.config.http.header_read_timeout_secs.max(1)),
        shutdown_timeout: Duration::from_secs(state.config.http.shutdown_timeout_secs),
    };
    let housekeeping = actix_rt::spawn(housekeeping(state.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = http::router(
        state.clone(),
        crate::socketio::transport::router("/socket.io/", sio.clone()),
    );
    let rtmp_ctx = RtmpContext {
        streams: live.clone(),
        auth: Arc::new(state.db.clone()),
        config: state.config.rtmp.clone(),
        jwt: state.jwt.clone(),
    };
    let rtmp_stop = stop_rx.clone();
    media_arbiter.spawn_fn(move || {
        actix_rt::spawn(async move {
            if let Err(e) = crate::live::rtmp::run(rtmp_listener, rtmp_ctx, rtmp_stop).await {
                tracing::error!(error = %e, "RTMP listener failed");
            }
        });
    });
    let server = http::server::run(listener, app, options, stop_rx);
    tracing::info!(
        %addr,
        rtmp = %rtmp_addr,
        node = %state.config.node.id,
        workers = options.workers,
        "roadhub serving HTTP and Socket.IO"
    );
    tokio::pin!(server);
    let result = tokio::select! {
        res = &mut server => res.context("HTTP server"),
        () = shutdown => {
            tracing::info!("shutting down: closing sessions, finishing in-flight requests");
            sio.close_all();
            ondemand.stop_all();
            live.end_all().await;
            hub.leave_cluster().await;
            let _ = stop_tx.send(true);
            server.await.context("HTTP server")
        }
    };
    housekeeping.abort();
    usage_flusher.abort();
    if let Err(e) = usage.flush().await {
        tracing::warn!(error = %e, "writing live-video usage at shutdown failed");
    }
    // Sessions ended above queued their last writes: store them.
    let ingest = hub.ingest.clone();
    let _ =
        tokio::task::spawn_blocking(move || ingest.flush_and_stop(Duration::from_secs(10))).await;
    media_arbiter.stop();
    let _ = tokio::task::spawn_blocking(move || media_arbiter.join()).await;
    rooms_arbiter.stop();
    let _ = tokio::task::spawn_blocking(move || rooms_arbiter.join()).await;
    tracing::info!("stopped");
    result
}

/// The live streams and their on-demand sources, wired to the hub and the
/// database through the live runtime's ports; origins are reported to the
/// stream registry (in-process on a single node, Redis in a cluster).
fn start_live(
    arbiter: &actix_rt::ArbiterHandle,
    config: &Config,
    hub: &Arc<Hub>,
    metrics: &Metrics,
    usage: &Arc<Usage>,
) -> (Streams, Arc<OnDemand>) {
    let live = Streams::start(arbiter, config.live.clone(), metrics.live.clone());
    live.set_usage(usage.clone());
    let (registry, cluster_secret): (Arc<dyn StreamRegistry>, String) = match &hub.cluster {
        Some(cluster) => (
            Arc::new(RedisStreams::new(cluster.clone())),
            cluster.secret().to_owned(),
        ),
        None => (
            Arc::new(LocalStreams::new(config.node.id.clone())),
            String::new(),
        ),
    };
    live.set_origin_hook(Arc::new(OriginReporter(registry.clone())));
    let sources = Sources {
        devices: Arc::new(live_ports::HubDevices(hub.clone())),
        channels: Arc::new(hub.db.clone()),
        edge: Edge::new(registry, live.clone(), cluster_secret),
        jwt: hub.jwt.clone(),
    };
    let ondemand = OnDemand::new(config, sources, live.clone(), usage.clone());
    live.set_activator(ondemand.clone());
    (live, ondemand)
}

/// `node.advertise_url`, or `http://` and the address really bound (the
/// host name when bound to every interface).
fn advertise_url(config: &Config, bound: std::net::SocketAddr) -> String {
    if let Some(url) = config
        .node
        .advertise_url
        .as_ref()
        .map(|u| u.trim().trim_end_matches('/'))
        .filter(|u| !u.is_empty())
    {
        return url.to_string();
    }
    if bound.ip().is_unspecified() {
        format!("http://{}:{}", crate::config::host_name(), bound.port())
    } else {
        format!("http://{bound}")
    }
}

/// Periodic upkeep: forget recovered rate-limit keys, delete refresh
/// tokens expired for over a day and HLS playback sessions expired for
/// over an hour.
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
            let res = state
                .db
                .run(|conn| crate::db::queries::hls_sessions::delete_expired(conn, 3600 * 1000))
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "HLS playback session cleanup failed");
            }
        }
        rounds += 1;
    }
}
