//! What a run measures: latency histograms (HDR, microseconds), counters,
//! errors by kind, the simulator's own CPU time, and the [`Report`] with its
//! human summary and its one-line JSON form.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms hold: one hour, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Independent histogram shards, so that worker threads rarely contend.
const SHARDS: usize = 8;

/// Unix time in microseconds.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A latency histogram in microseconds (1 us .. 1 h, 3 significant
/// digits), sharded by the recorder's index.
pub struct Latency {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latency {
    pub fn new() -> Result<Self, hdrhistogram::CreationError> {
        let template = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
        Ok(Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Histogram::new_from(&template)))
                .collect(),
        })
    }

    /// Record one latency; `shard` is any number stable per recorder.
    pub fn record(&self, shard: usize, us: u64) {
        if let Ok(mut h) = self.shards[shard % SHARDS].lock() {
            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
        }
    }

    pub fn summary(&self) -> Percentiles {
        let mut all: Option<Histogram<u64>> = None;
        for shard in &self.shards {
            if let Ok(h) = shard.lock() {
                match &mut all {
                    None => all = Some(h.clone()),
                    Some(all) => {
                        let _ = all.add(&*h);
                    }
                }
            }
        }
        all.map(|h| Percentiles::of(&h)).unwrap_or_default()
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        Self {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: round3(h.mean() / 1000.0),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "no samples");
        }
        write!(
            f,
            "p50 {:.2} ms  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  ({} samples)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// A counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The measured window, in Unix microseconds (0 = not set yet).
#[derive(Default)]
pub struct Window {
    start: AtomicU64,
    end: AtomicU64,
}

impl Window {
    pub fn set(&self, start_us: u64, end_us: u64) {
        self.end.store(end_us, Ordering::Relaxed);
        self.start.store(start_us, Ordering::Release);
    }

    /// Whether `us` falls inside the window.
    pub fn contains(&self, us: u64) -> bool {
        let start = self.start.load(Ordering::Acquire);
        start != 0 && us >= start && us < self.end.load(Ordering::Relaxed)
    }
}

/// First and last instants of a series of events (connects), in Unix us.
pub struct Span {
    first: AtomicU64,
    last: AtomicU64,
}

impl Default for Span {
    fn default() -> Self {
        Self {
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
        }
    }
}

impl Span {
    pub fn start(&self, us: u64) {
        self.first.fetch_min(us, Ordering::Relaxed);
    }
    pub fn end(&self, us: u64) {
        self.last.fetch_max(us, Ordering::Relaxed);
    }
    /// Seconds from the first start to the last end.
    pub fn seconds(&self) -> f64 {
        let (a, b) = (
            self.first.load(Ordering::Relaxed),
            self.last.load(Ordering::Relaxed),
        );
        if a == u64::MAX || b <= a {
            0.0
        } else {
            (b - a) as f64 / 1e6
        }
    }
}

/// Everything the devices and phones record while they run.
pub struct Stats {
    pub window: Window,
    /// Newest point time to arrival at a phone, `loc` messages in the window.
    pub e2e: Latency,
    /// `loc` send to its ack, acks arriving in the window.
    pub ack: Latency,
    /// Phone: TCP connect to watch ack. Device: TCP connect to namespace connect.
    pub phone_connect: Latency,
    pub device_connect: Latency,
    pub phone_span: Span,
    pub device_span: Span,

    pub loc_delivered_window: Counter,
    pub events_delivered_window: Counter,
    pub other_messages: Counter,
    pub batches_sent: Counter,
    pub batches_sent_window: Counter,
    pub batches_acked: Counter,
    pub acks_window: Counter,
    pub points_sent: Counter,
    pub points_acked: Counter,
    pub points_acked_window: Counter,
    pub events_sent: Counter,
    pub events_acked: Counter,
    pub commands_answered: Counter,
    pub skipped_inflight: Counter,
    pub unacked_at_end: Counter,
    pub sessions_dropped: Counter,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            window: Window::default(),
            e2e: Latency::new()?,
            ack: Latency::new()?,
            phone_connect: Latency::new()?,
            device_connect: Latency::new()?,
            phone_span: Span::default(),
            device_span: Span::default(),
            loc_delivered_window: Counter::default(),
            events_delivered_window: Counter::default(),
            other_messages: Counter::default(),
            batches_sent: Counter::default(),
            batches_sent_window: Counter::default(),
            batches_acked: Counter::default(),
            acks_window: Counter::default(),
            points_sent: Counter::default(),
            points_acked: Counter::default(),
            points_acked_window: Counter::default(),
            events_sent: Counter::default(),
            events_acked: Counter::default(),
            commands_answered: Counter::default(),
            skipped_inflight: Counter::default(),
            unacked_at_end: Counter::default(),
            sessions_dropped: Counter::default(),
            errors: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn error(&self, kind: impl Into<String>) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind.into()).or_default() += 1;
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// The simulator's own CPU time so far (this process, all threads).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    pub user_s: f64,
    pub system_s: f64,
    pub max_rss_kb: u64,
}

impl CpuSample {
    pub fn now() -> Self {
        match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
            Ok(u) => {
                let secs =
                    |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
                Self {
                    user_s: secs(u.user_time()),
                    system_s: secs(u.system_time()),
                    max_rss_kb: u64::try_from(u.max_rss()).unwrap_or(0),
                }
            }
            Err(_) => Self::default(),
        }
    }

    pub fn total(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// CPU time and resident memory of another process on this machine (the
/// hub, `--hub-pid`), from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User + system CPU seconds, all threads.
    pub cpu_s: f64,
    pub rss_kb: u64,
}

/// `/proc` counts CPU in USER_HZ ticks, 100 per second on Linux.
const USER_HZ: f64 = 100.0;

impl ProcSample {
    /// `None` if the process is gone or `/proc` is unreadable.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Self::parse(&stat, &status)
    }

    fn parse(stat: &str, status: &str) -> Option<Self> {
        // Fields after the command name (which may hold spaces and parens):
        // state is field 3, utime field 14, stime field 15.
        let after = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        Some(Self {
            cpu_s: (utime + stime) as f64 / USER_HZ,
            rss_kb,
        })
    }
}

// ---------------------------------------------------------------------------
// Report

/// The result of a run. `Display` is the human summary; serialize it (one
/// line, `--json`) for machines.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `traffic` or `connect_only`.
    pub mode: &'static str,
    pub url: String,
    /// `--phone-url`, when the phones used another node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_url: Option<String>,
    /// Seed of the routes and timings (`--seed` repeats them).
    pub seed: u64,
    pub setup: SetupReport,
    pub connect: ConnectReport,
    /// Length of the measured phase, seconds.
    pub window_s: f64,
    pub delivery: DeliveryReport,
    pub ingest: IngestReport,
    pub loss: LossReport,
    pub commands_answered: u64,
    /// Sessions the hub closed (or that failed) before the run ended.
    pub sessions_dropped: u64,
    pub errors: BTreeMap<String, u64>,
    pub cpu: CpuReport,
    /// The hub's own figures, with `--hub-pid`.
    pub hub: Option<HubReport>,
    /// The hard deadline passed: the figures are partial.
    pub timed_out: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SetupReport {
    pub users: usize,
    pub vehicles: usize,
    pub logins: usize,
    pub reused_credentials: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ConnectReport {
    pub devices_attempted: usize,
    pub devices_connected: u64,
    pub phones_attempted: usize,
    /// Phones connected and watching (watch acknowledged with ok).
    pub phones_watching: u64,
    /// First phone connect to last watch ack, seconds.
    pub phones_seconds: f64,
    pub phones_per_s: f64,
    pub devices_seconds: f64,
    pub devices_per_s: f64,
    /// Per phone: TCP connect to watch ack.
    pub phone_latency: Percentiles,
    pub device_latency: Percentiles,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DeliveryReport {
    /// `loc` messages phones received in the window.
    pub loc_messages: u64,
    pub loc_per_s: f64,
    /// `event` messages phones received in the window.
    pub event_messages: u64,
    /// Other messages (presence, status, ...) over the whole run.
    pub other_messages: u64,
    /// Newest point time to arrival at the phone.
    pub e2e_latency: Percentiles,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestReport {
    pub points_per_batch: usize,
    pub interval_ms: u64,
    pub batches_sent: u64,
    pub batches_acked: u64,
    pub batches_sent_per_s: f64,
    pub acks_per_s: f64,
    /// Points acknowledged (`stored`) by acks that arrived in the window.
    pub points_acked_window: u64,
    pub points_per_s: f64,
    pub points_acked_total: u64,
    pub events_sent: u64,
    pub events_acked: u64,
    /// `loc` send to ack.
    pub ack_latency: Percentiles,
    /// Sends skipped because --max-inflight batches were unacknowledged.
    pub skipped_inflight: u64,
    /// Messages still unacknowledged after --ack-timeout at the end.
    pub unacked: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct LossReport {
    /// Sum over watching phones of their vehicle's acknowledged batches.
    pub expected: u64,
    /// `loc` messages those phones received for their vehicle.
    pub delivered: u64,
    pub lost: u64,
    /// Deliveries beyond the acknowledged batches (e.g. of batches whose
    /// ack never came).
    pub extra: u64,
    pub phones_with_loss: u64,
    pub events_expected: u64,
    pub events_delivered: u64,
    pub events_lost: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct CpuReport {
    /// Simulator CPU (user + system) over the measured window, seconds.
    pub window_s: f64,
    /// That, as a percentage of one core.
    pub window_percent_of_core: f64,
    /// Whole run, setup included.
    pub total_s: f64,
    pub user_s: f64,
    pub system_s: f64,
    pub wall_s: f64,
    /// Simulator CPU microseconds per delivered message in the window.
    pub us_per_delivered: f64,
    pub max_rss_kb: u64,
}

/// The hub process measured from `/proc` (`--hub-pid`), when it runs on
/// this machine.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HubReport {
    pub pid: u32,
    /// After setup, before any Socket.IO connection.
    pub rss_before_connect_kb: u64,
    /// Once every session connected (and watched).
    pub rss_connected_kb: u64,
    pub rss_window_end_kb: u64,
    /// (connected - before) / sessions connected, bytes.
    pub rss_per_session_bytes: u64,
    /// (window end - before) / sessions connected, bytes.
    pub rss_per_session_window_end_bytes: u64,
    /// Hub CPU (user + system, all threads) over the measured window.
    pub cpu_window_s: f64,
    pub cpu_percent_of_core: f64,
    /// Hub CPU microseconds per `loc` message delivered in the window.
    pub us_per_delivered: f64,
    /// Hub CPU microseconds per point acknowledged in the window.
    pub us_per_point_acked: f64,
}

/// `n / secs`, 0 when the span is empty.
pub fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

impl Report {
    /// The one-line JSON form.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.connect;
        writeln!(
            f,
            "roadhub simulate ({}) against {}{}",
            self.mode.replace('_', "-"),
            self.url,
            if self.timed_out {
                "  [TIMED OUT: partial figures]"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "setup      {} users, {} vehicles, {} logins in {:.1} s{}",
            self.setup.users,
            self.setup.vehicles,
            self.setup.logins,
            self.setup.seconds,
            if self.setup.reused_credentials {
                " (reused credentials)"
            } else {
                ""
            }
        )?;
        if c.devices_attempted > 0 {
            writeln!(
                f,
                "devices    {}/{} connected in {:.2} s ({:.0}/s); connect {}",
                c.devices_connected,
                c.devices_attempted,
                c.devices_seconds,
                c.devices_per_s,
                c.device_latency
            )?;
        }
        if c.phones_attempted > 0 {
            writeln!(
                f,
                "phones     {}/{} watching in {:.2} s ({:.0} connects/s); connect+watch {}",
                c.phones_watching,
                c.phones_attempted,
                c.phones_seconds,
                c.phones_per_s,
                c.phone_latency
            )?;
        }
        writeln!(f, "window     {:.1} s measured", self.window_s)?;
        if self.mode == "traffic" {
            let d = &self.delivery;
            let i = &self.ingest;
            let l = &self.loss;
            if c.phones_attempted > 0 {
                writeln!(
                    f,
                    "delivered  {} loc messages ({:.0}/s), {} events, {} other",
                    d.loc_messages, d.loc_per_s, d.event_messages, d.other_messages
                )?;
                writeln!(f, "end-to-end {}", d.e2e_latency)?;
            }
            writeln!(
                f,
                "ingest     {} batches of {} points every {} ms per device: {:.0} batches/s sent, {:.0} acks/s, {:.0} points/s acknowledged",
                i.batches_sent,
                i.points_per_batch,
                i.interval_ms,
                i.batches_sent_per_s,
                i.acks_per_s,
                i.points_per_s
            )?;
            writeln!(f, "ack        {}", i.ack_latency)?;
            writeln!(
                f,
                "events     {} sent, {} acknowledged; {} commands answered",
                i.events_sent, i.events_acked, self.commands_answered
            )?;
            if c.phones_attempted > 0 {
                writeln!(
                    f,
                    "loss       loc: expected {} delivered {} lost {} extra {} ({} phones short); events: expected {} delivered {} lost {}",
                    l.expected,
                    l.delivered,
                    l.lost,
                    l.extra,
                    l.phones_with_loss,
                    l.events_expected,
                    l.events_delivered,
                    l.events_lost
                )?;
            }
            if i.skipped_inflight > 0 || i.unacked > 0 {
                writeln!(
                    f,
                    "backlog    {} sends skipped (max in flight), {} unacknowledged at the end",
                    i.skipped_inflight, i.unacked
                )?;
            }
        }
        writeln!(f, "dropped    {} sessions", self.sessions_dropped)?;
        if let Some(h) = &self.hub {
            writeln!(
                f,
                "hub        pid {}: RSS {} -> {} KiB connected ({} B per session), {} KiB at the end ({} B per session); CPU {:.2} s in the window ({:.0}% of one core{})",
                h.pid,
                h.rss_before_connect_kb,
                h.rss_connected_kb,
                h.rss_per_session_bytes,
                h.rss_window_end_kb,
                h.rss_per_session_window_end_bytes,
                h.cpu_window_s,
                h.cpu_percent_of_core,
                if h.us_per_delivered > 0.0 {
                    format!(", {:.2} us per delivered message", h.us_per_delivered)
                } else if h.us_per_point_acked > 0.0 {
                    format!(", {:.2} us per acknowledged point", h.us_per_point_acked)
                } else {
                    String::new()
                }
            )?;
        }
        if self.errors.is_empty() {
            writeln!(f, "errors     none")?;
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            writeln!(f, "errors     {}", list.join(", "))?;
        }
        write!(
            f,
            "simulator  CPU {:.2} s in the window ({:.0}% of one core{}), {:.2} s in all over {:.1} s; max RSS {} MiB",
            self.cpu.window_s,
            self.cpu.window_percent_of_core,
            if self.cpu.us_per_delivered > 0.0 {
                format!(
                    ", {:.1} us per delivered message",
                    self.cpu.us_per_delivered
                )
            } else {
                String::new()
            },
            self.cpu.total_s,
            self.cpu.wall_s,
            self.cpu.max_rss_kb / 1024
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_data() {
        let lat = Latency::new().unwrap();
        for v in 1..=1000u64 {
            lat.record(v as usize, v * 1000); // 1..=1000 ms, over every shard
        }
        let p = lat.summary();
        assert_eq!(p.count, 1000);
        assert!((p.min_ms - 1.0).abs() < 0.01, "{p:?}");
        assert!((p.p50_ms - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p90_ms - 900.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.p999_ms - 999.0).abs() < 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() < 1.0, "{p:?}");
        assert!((p.mean_ms - 500.5).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let lat = Latency::new().unwrap();
        lat.record(0, 0);
        lat.record(1, u64::MAX);
        let p = lat.summary();
        assert_eq!(p.count, 2);
        assert!(p.max_ms >= 3_599_000.0);
        assert_eq!(Latency::new().unwrap().summary(), Percentiles::default());
    }

    #[test]
    fn window_span_rate() {
        let w = Window::default();
        assert!(!w.contains(5));
        w.set(10, 20);
        assert!(w.contains(10) && w.contains(19));
        assert!(!w.contains(9) && !w.contains(20));

        let s = Span::default();
        assert_eq!(s.seconds(), 0.0);
        s.start(3_000_000);
        s.start(1_000_000);
        s.end(2_000_000);
        s.end(3_500_000);
        assert_eq!(s.seconds(), 2.5);

        assert_eq!(rate(10, 4.0), 2.5);
        assert_eq!(rate(10, 0.0), 0.0);
        assert_eq!(rate(1, 3.0), 0.3);
    }

    #[test]
    fn errors_by_kind() {
        let s = Stats::new().unwrap();
        s.error("ack:busy");
        s.error("ack:busy");
        s.error("connect:refused");
        let e = s.errors();
        assert_eq!(e["ack:busy"], 2);
        assert_eq!(e["connect:refused"], 1);
    }

    #[test]
    fn cpu_time_advances() {
        let a = CpuSample::now();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuSample::now();
        assert!(b.total() > a.total());
        assert!(b.max_rss_kb > 0);
    }

    #[test]
    fn proc_samples() {
        let stat = "1234 (road hub (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        let status = "Name:\troadhub\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        let s = ProcSample::parse(stat, status).unwrap();
        assert_eq!(s.rss_kb, 20480);
        assert!((s.cpu_s - 3.0).abs() < 1e-9);
        assert!(ProcSample::parse("garbage", status).is_none());
        let me = ProcSample::of(std::process::id()).unwrap();
        assert!(me.rss_kb > 0);
        assert!(ProcSample::of(u32::MAX).is_none());
    }

    #[test]
    fn report_is_one_json_line_and_a_summary() {
        let mut errors = BTreeMap::new();
        errors.insert("ack:busy".to_string(), 3);
        let r = Report {
            mode: "traffic",
            url: "http://127.0.0.1:8080".into(),
            phone_url: None,
            seed: 1,
            setup: SetupReport::default(),
            connect: ConnectReport {
                phones_attempted: 2,
                ..Default::default()
            },
            window_s: 10.0,
            delivery: DeliveryReport::default(),
            ingest: IngestReport::default(),
            loss: LossReport {
                expected: 10,
                delivered: 9,
                lost: 1,
                ..Default::default()
            },
            commands_answered: 0,
            sessions_dropped: 0,
            errors,
            cpu: CpuReport::default(),
            hub: None,
            timed_out: false,
        };
        let line = r.to_json_line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["loss"]["lost"], 1);
        assert_eq!(v["errors"]["ack:busy"], 3);
        assert_eq!(v["delivery"]["e2e_latency"]["p99_ms"], 0.0);
        let text = r.to_string();
        assert!(text.contains("expected 10 delivered 9 lost 1"), "{text}");
        assert!(text.contains("ack:busy=3"), "{text}");
    }
}
