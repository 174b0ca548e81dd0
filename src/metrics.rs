//! Prometheus metrics: one registry per node, served at `GET /metrics` in
//! the text exposition format (every name is listed in `docs/METRICS.md`).
//!
//! A low-level module: it imports no other part of the node. It holds
//! - the registry, the HTTP request counter and duration histogram (by
//!   method, bounded to the standard methods or `other`, route template or
//!   `unmatched`, never the raw path, and status);
//! - process metrics: the `process` collector (memory, open files, threads)
//!   with CPU time in fractions of a second from `getrusage`;
//! - live video figures ([`LiveMetrics`]), handed to the streams;
//! - latency histograms ([`Latency`], defined here by [`LatencyDef`]),
//!   created by the part that observes them and registered at wiring time;
//! - [`Reading`]s: gauges and counters a part (Socket.IO, the hub, the
//!   ingest writer, the cluster) builds over its own atomics, read at scrape
//!   time and registered by `node.rs` with [`Metrics::register_readings`].

use std::time::Duration;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The method label: a standard HTTP method, or `other`.
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

/// A latency histogram's name, help and buckets (seconds).
pub struct LatencyDef {
    pub name: &'static str,
    pub help: &'static str,
    pub buckets: &'static [f64],
}

/// Storage commits: short, a slow disk shows in the upper buckets.
const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Round trips through a device or a player: up to tens of seconds.
const ROUND_TRIP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Telemetry transaction commit time, in the ingest writer.
pub const INGEST_COMMIT: LatencyDef = LatencyDef {
    name: "roadhub_ingest_commit_duration_seconds",
    help: "Time to write and commit one telemetry transaction",
    buckets: COMMIT_BUCKETS,
};

/// A device's loc/event received to its ack (sent after the commit).
pub const DEVICE_ACK: LatencyDef = LatencyDef {
    name: "roadhub_device_ack_duration_seconds",
    help: "Time from a device's loc or event to its ack (after the commit)",
    buckets: ROUND_TRIP_BUCKETS,
};

/// An app's `command` to the device's ack (through another node if the
/// device is there).
pub const COMMAND_ROUND_TRIP: LatencyDef = LatencyDef {
    name: "roadhub_command_round_trip_seconds",
    help: "Time from an app's command to the device's ack (timeouts and offline excluded)",
    buckets: ROUND_TRIP_BUCKETS,
};

/// Live video: a viewer's request to its first media bytes.
pub const LIVE_FIRST_FRAME: LatencyDef = LatencyDef {
    name: "roadhub_live_time_to_first_frame_seconds",
    help: "Time from a live viewer's start to its first media bytes",
    buckets: ROUND_TRIP_BUCKETS,
};

/// A latency histogram, created (unregistered) by the part that observes
/// it and registered at wiring time ([`Metrics::register_latency`]).
/// Observing is a few atomic operations. The default is a no-op.
#[derive(Clone, Default)]
pub struct Latency(Option<prometheus::Histogram>);

impl Latency {
    pub fn new(def: &LatencyDef) -> Self {
        let opts = HistogramOpts::new(def.name, def.help).buckets(def.buckets.to_vec());
        match prometheus::Histogram::with_opts(opts) {
            Ok(h) => Self(Some(h)),
            Err(e) => {
                tracing::error!(name = def.name, error = %e, "latency histogram not created");
                Self(None)
            }
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        if let Some(h) = &self.0 {
            h.observe(elapsed.as_secs_f64());
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, prometheus::Histogram::get_sample_count)
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Latency").field(&self.count()).finish()
    }
}

/// The stock `process` collector's name for CPU time.
const PROCESS_CPU: &str = "process_cpu_seconds_total";

/// The stock `process` collector (memory, open files, threads, start
/// time), with `process_cpu_seconds_total` replaced by one in fractions of
/// a second from `getrusage` (the stock one counts whole seconds).
struct ProcessMetrics {
    stock: prometheus::process_collector::ProcessCollector,
    cpu: prometheus::Counter,
    /// Serializes scrapes' updates of `cpu` (a delta added twice would
    /// overshoot).
    cpu_update: std::sync::Mutex<()>,
    descs: Vec<prometheus::core::Desc>,
}

impl ProcessMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        use prometheus::core::Collector as _;
        let stock = prometheus::process_collector::ProcessCollector::for_self();
        let cpu = prometheus::Counter::new(
            PROCESS_CPU,
            "Total user and system CPU time spent in seconds",
        )?;
        let descs = stock
            .desc()
            .into_iter()
            .filter(|d| d.fq_name != PROCESS_CPU)
            .chain(cpu.desc())
            .cloned()
            .collect();
        Ok(Self {
            stock,
            cpu,
            cpu_update: std::sync::Mutex::new(()),
            descs,
        })
    }

    /// User plus system CPU seconds of this process.
    fn cpu_seconds() -> Option<f64> {
        let usage =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        Some(secs(usage.user_time()) + secs(usage.system_time()))
    }
}

impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut out: Vec<_> = self
            .stock
            .collect()
            .into_iter()
            .filter(|mf| mf.name() != PROCESS_CPU)
            .collect();
        if let Some(now) = Self::cpu_seconds() {
            let _guard = self
                .cpu_update
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let seen = self.cpu.get();
            if now > seen {
                self.cpu.inc_by(now - seen);
            }
        }
        out.extend(self.cpu.collect());
        out
    }
}

/// The node's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    /// Live video figures, updated by the streams and their viewers.
    pub live: LiveMetrics,
}

/// Live video: streams, publishers, viewers by protocol, bytes, skips.
#[derive(Clone)]
pub struct LiveMetrics {
    /// Live streams (Stream actors) on this node.
    pub streams: prometheus::IntGauge,
    /// Publishers attached (RTMP, RTSP pull, ...).
    pub publishers: prometheus::IntGauge,
    /// Viewers by protocol: `flv`, `ws-flv`, `hls`.
    pub viewers: prometheus::IntGaugeVec,
    /// Media bytes received from publishers.
    pub bytes_in: prometheus::IntCounter,
    /// Media bytes sent to viewers, by protocol.
    pub bytes_out: IntCounterVec,
    /// Times a lagging viewer skipped to the next keyframe.
    pub keyframe_skips: prometheus::IntCounter,
    /// Viewers disconnected for staying behind.
    pub dropped_viewers: prometheus::IntCounter,
    /// Publish attempts refused (bad key, bad token).
    pub publish_refused: prometheus::IntCounter,
    /// Internal pulls served to other nodes' edges (`/internal/live`).
    pub internal_pulls: prometheus::IntCounter,
    /// Edge pulls this node started from another node (the origin).
    pub edge_pulls: prometheus::IntCounter,
    /// Edge pulls running now.
    pub edge_pulls_active: prometheus::IntGauge,
    /// Media bytes received by edge pulls (not in `bytes_in`).
    pub edge_bytes_in: prometheus::IntCounter,
    /// A viewer's start to its first media bytes.
    pub first_frame: Latency,
}

impl LiveMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let live = Self {
            streams: prometheus::IntGauge::new(
                "roadhub_live_streams",
                "Live streams on this node",
            )?,
            publishers: prometheus::IntGauge::new(
                "roadhub_live_publishers",
                "Publishers attached to live streams",
            )?,
            viewers: prometheus::IntGaugeVec::new(
                Opts::new("roadhub_live_viewers", "Live viewers by protocol"),
                &["protocol"],
            )?,
            bytes_in: prometheus::IntCounter::new(
                "roadhub_live_received_bytes_total",
                "Media bytes received from publishers",
            )?,
            bytes_out: IntCounterVec::new(
                Opts::new(
                    "roadhub_live_sent_bytes_total",
                    "Media bytes sent to viewers",
                ),
                &["protocol"],
            )?,
            keyframe_skips: prometheus::IntCounter::new(
                "roadhub_live_keyframe_skips_total",
                "Lagging viewers skipped to the next keyframe",
            )?,
            dropped_viewers: prometheus::IntCounter::new(
                "roadhub_live_dropped_viewers_total",
                "Viewers disconnected for staying behind",
            )?,
            publish_refused: prometheus::IntCounter::new(
                "roadhub_live_publish_refused_total",
                "Publish attempts refused (bad stream key or token)",
            )?,
            internal_pulls: prometheus::IntCounter::new(
                "roadhub_live_internal_pulls_total",
                "Streams served to other nodes' edge pulls",
            )?,
            edge_pulls: prometheus::IntCounter::new(
                "roadhub_live_edge_pulls_total",
                "Edge pulls started from the stream's origin node",
            )?,
            edge_pulls_active: prometheus::IntGauge::new(
                "roadhub_live_edge_pulls_active",
                "Edge pulls running",
            )?,
            edge_bytes_in: prometheus::IntCounter::new(
                "roadhub_live_edge_received_bytes_total",
                "Media bytes received by edge pulls from origin nodes",
            )?,
            first_frame: Latency::new(&LIVE_FIRST_FRAME),
        };
        registry.register(Box::new(live.streams.clone()))?;
        registry.register(Box::new(live.publishers.clone()))?;
        registry.register(Box::new(live.viewers.clone()))?;
        registry.register(Box::new(live.bytes_in.clone()))?;
        registry.register(Box::new(live.bytes_out.clone()))?;
        registry.register(Box::new(live.keyframe_skips.clone()))?;
        registry.register(Box::new(live.dropped_viewers.clone()))?;
        registry.register(Box::new(live.publish_refused.clone()))?;
        registry.register(Box::new(live.internal_pulls.clone()))?;
        registry.register(Box::new(live.edge_pulls.clone()))?;
        registry.register(Box::new(live.edge_pulls_active.clone()))?;
        registry.register(Box::new(live.edge_bytes_in.clone()))?;
        for protocol in ["flv", "ws-flv", "hls", "internal"] {
            live.viewers.with_label_values(&[protocol]).set(0);
            live.bytes_out.with_label_values(&[protocol]).reset();
        }
        Ok(live)
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        // Our families carry the `roadhub_` prefix in their names; process
        // metrics stay `process_*`, as dashboards expect.
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("roadhub_http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "roadhub_http_request_duration_seconds",
                "Time from request to response headers",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(ProcessMetrics::new()?))?;
        let live = LiveMetrics::new(&registry)?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            live,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Count and time one HTTP request. `route` must be a matched route
    /// template or [`UNMATCHED_ROUTE`] (never the raw path); `method` is
    /// folded to the standard methods or `other`, so labels stay bounded.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [method_label(method), route, status.as_str()];
        self.http_requests.with_label_values(&labels).inc();
        self.http_duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Export `latency` (a no-op one is skipped).
    pub fn register_latency(&self, latency: &Latency) -> Result<(), prometheus::Error> {
        match &latency.0 {
            Some(h) => self.registry.register(Box::new(h.clone())),
            None => Ok(()),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// A figure read when Prometheus scrapes (nothing on the hot path but the
/// atomics it reads).
pub type Read = Box<dyn Fn() -> u64 + Send + Sync>;

/// One gauge or counter a part of the node exposes, read at scrape time.
/// Parts build their readings; `node.rs` registers them
/// ([`Metrics::register_readings`]).
pub struct Reading {
    name: &'static str,
    help: &'static str,
    counter: bool,
    read: Read,
}

impl Reading {
    /// A gauge: the value now.
    pub fn gauge(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            help,
            counter: false,
            read: Box::new(read),
        }
    }

    /// A counter: a total that only grows (`name` ends in `_total`).
    pub fn counter(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            help,
            counter: true,
            read: Box::new(read),
        }
    }
}

/// Registered readings, each with the metric it updates at scrape time.
struct ReadingCollector {
    gauges: Vec<(prometheus::IntGauge, Read)>,
    counters: Vec<(prometheus::IntCounter, Read)>,
    descs: Vec<prometheus::core::Desc>,
}

impl ReadingCollector {
    fn new(readings: Vec<Reading>) -> Result<Self, prometheus::Error> {
        use prometheus::core::Collector as _;
        let mut collector = Self {
            gauges: Vec::new(),
            counters: Vec::new(),
            descs: Vec::new(),
        };
        for r in readings {
            let opts = Opts::new(r.name, r.help);
            if r.counter {
                let c = prometheus::IntCounter::with_opts(opts)?;
                collector.descs.extend(c.desc().into_iter().cloned());
                collector.counters.push((c, r.read));
            } else {
                let g = prometheus::IntGauge::with_opts(opts)?;
                collector.descs.extend(g.desc().into_iter().cloned());
                collector.gauges.push((g, r.read));
            }
        }
        Ok(collector)
    }
}

impl prometheus::core::Collector for ReadingCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut out = Vec::new();
        for (gauge, read) in &self.gauges {
            gauge.set(i64::try_from(read()).unwrap_or(i64::MAX));
            out.extend(gauge.collect());
        }
        for (counter, read) in &self.counters {
            let now = read();
            let seen = counter.get();
            if now > seen {
                counter.inc_by(now - seen);
            }
            out.extend(counter.collect());
        }
        out
    }
}

impl Metrics {
    /// Export `readings` (a part's gauges and counters) with this registry.
    pub fn register_readings(&self, readings: Vec<Reading>) -> Result<(), prometheus::Error> {
        self.registry
            .register(Box::new(ReadingCollector::new(readings)?))
    }
}
