//! `roadhub simulate`: simulated blackboxes and phones against any hub, and
//! the benchmark driver of the realtime hub.
//!
//! A run goes through fixed phases, each bounded in time:
//!
//! 1. **Setup** over REST ([`setup`]): register users, log each in once,
//!    create vehicles (device tokens); or reuse `--credentials`.
//! 2. **Connect**: every device connects to `/device` ([`device`]), then
//!    every phone connects to `/app` and watches its vehicle ([`phone`]),
//!    at most `--connect-concurrency` handshakes at once. Connects/s is the
//!    number of watching phones over the time from the first phone's TCP
//!    connect to the last watch ack.
//! 3. **Traffic** (skipped with `--connect-only`): devices start sending
//!    only once every phone watches, so each phone must receive every batch
//!    its vehicle's device got acknowledged. `--warmup`, then the measured
//!    window of `--duration`: rates, latency percentiles and the
//!    simulator's CPU count only inside it.
//! 4. **Drain**: devices stop sending and wait for their outstanding acks
//!    (`--ack-timeout`), then phones keep counting for `--drain`.
//! 5. **Close** and report ([`stats::Report`]): expected deliveries (per
//!    watching phone, its vehicle's acknowledged batches) against delivered
//!    ones, losses, errors by kind.
//!
//! With `--connect-only` phase 3 is an idle hold: phones stay connected
//! for `--duration` and nothing is sent.
//!
//! A hard deadline (`--timeout`) ends everything; every loop also watches
//! it. The Socket.IO client is this module's own small codec ([`client`]).
//!
//! Benchmark hubs run with their abuse limits off:
//! `--set limits.auth_attempts_per_minute=0 --set limits.app_sessions_per_user=0
//! --set limits.device_messages_per_second=0 --set limits.app_messages_per_second=0`
//! (see `docs/SIMULATE.md`).

pub mod client;
pub mod device;
pub mod options;
pub mod phone;
pub mod route;
pub mod setup;
pub mod stats;
pub mod video;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use options::{SimulateOptions, parse_duration};
pub use stats::Report;

use client::Target;
use stats::{CpuSample, ProcSample, Stats, rate, unix_us};

/// Sockets above which client sockets are spread over loopback source
/// addresses by default (one address has ~28,000 ephemeral ports).
const SPREAD_ABOVE: usize = 10_000;
const SPREAD_ADDRS: u32 = 250;
/// Descriptors kept for everything that is not a client socket.
const SPARE_FDS: u64 = 64;

/// State shared by the coordinator and every simulated client.
pub(crate) struct Shared {
    pub opts: SimulateOptions,
    /// Where devices connect (--url).
    pub target: Target,
    /// Where phones connect (--phone-url, else --url).
    pub phone_target: Target,
    pub stats: Stats,
    pub seed: u64,
    pub connect_slots: Semaphore,
    /// Devices start sending.
    pub start: CancellationToken,
    /// Devices stop sending and drain their acks.
    pub stop: CancellationToken,
    /// Everyone closes (a child of `hard`: also cancelled by the deadline).
    pub close: CancellationToken,
    /// The hard deadline passed.
    pub hard: CancellationToken,
    /// Devices and phones that finished their connect attempt.
    pub devices_ready: watch::Sender<usize>,
    pub phones_ready: watch::Sender<usize>,
    /// Devices that published their acknowledged counts.
    pub devices_done: watch::Sender<usize>,
    pub devices_connected: AtomicU64,
    pub phones_watching: AtomicU64,
    /// Per vehicle: `loc` batches and events the hub acknowledged.
    pub expected_loc: Vec<AtomicU64>,
    pub expected_events: Vec<AtomicU64>,
}

/// CPU and memory samples taken at the phase boundaries.
#[derive(Default)]
struct Samples {
    cpu_start: CpuSample,
    cpu_window: (CpuSample, CpuSample),
    cpu_end: CpuSample,
    hub_before: Option<ProcSample>,
    hub_connected: Option<ProcSample>,
    hub_window: (Option<ProcSample>, Option<ProcSample>),
    /// Length of the measured window and of the whole run, seconds.
    window_s: f64,
    wall_s: f64,
}

/// Run one simulation and return its report. Runs on the caller's tokio
/// runtime (the CLI builds one with `--threads` workers).
pub async fn run(opts: SimulateOptions) -> anyhow::Result<Report> {
    opts.validate()?;
    let began = Instant::now();
    let cpu_start = CpuSample::now();
    let hard_deadline = began + opts.hard_timeout();
    let hard = CancellationToken::new();
    let watchdog = {
        let hard = hard.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(hard_deadline).await;
            hard.cancel();
        })
    };
    let samples = Samples {
        cpu_start,
        ..Default::default()
    };
    let result = run_phases(opts, hard, hard_deadline, began, samples).await;
    watchdog.abort();
    result
}

/// Raise the soft limit of open files to the hard limit; returns the soft
/// limit now in force.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

async fn run_phases(
    opts: SimulateOptions,
    hard: CancellationToken,
    hard_deadline: Instant,
    began: Instant,
    mut samples: Samples,
) -> anyhow::Result<Report> {
    let phones = opts.phone_count();
    let devices_connecting = if opts.connect_only { 0 } else { opts.devices };
    let sockets = phones + devices_connecting;
    let nofile = raise_nofile_limit();
    anyhow::ensure!(
        sockets as u64 + SPARE_FDS <= nofile,
        "{sockets} connections need about {} open files but this process may open {nofile} \
         (ulimit -n; raise the hard limit, or run several simulators)",
        sockets as u64 + SPARE_FDS
    );

    let mut target = Target::resolve(&opts.url).await?;
    target.source_addrs = match opts.source_addrs {
        Some(n) => n,
        None if target.addr.ip().is_loopback() && sockets > SPREAD_ABOVE => SPREAD_ADDRS,
        None => 0,
    };
    let phone_target = match &opts.phone_url {
        Some(url) => {
            let mut t = Target::resolve(url).await?;
            t.source_addrs = target.source_addrs;
            t
        }
        None => target.clone(),
    };

    // 1. Setup.
    let run_id = format!("{:08x}", rand::random::<u32>());
    let setup_started = Instant::now();
    let fleet = tokio::time::timeout_at(hard_deadline, setup::prepare(&opts, &run_id))
        .await
        .map_err(|_| anyhow::anyhow!("setup did not finish before the --timeout deadline"))??;
    let setup_report = stats::SetupReport {
        users: fleet.credentials.users.len(),
        vehicles: fleet.credentials.vehicles.len(),
        logins: fleet.logins,
        reused_credentials: fleet.reused,
        seconds: round2(setup_started.elapsed().as_secs_f64()),
    };
    if let Some(path) = &opts.save_credentials {
        fleet.credentials.save(path)?;
    }

    let seed = opts.seed.unwrap_or_else(rand::random);
    let vehicles = fleet.credentials.vehicles.len();
    let sh = Arc::new(Shared {
        target,
        phone_target,
        stats: Stats::new()?,
        seed,
        connect_slots: Semaphore::new(opts.connect_concurrency),
        start: CancellationToken::new(),
        stop: CancellationToken::new(),
        close: hard.child_token(),
        hard: hard.clone(),
        devices_ready: watch::channel(0).0,
        phones_ready: watch::channel(0).0,
        devices_done: watch::channel(0).0,
        devices_connected: AtomicU64::new(0),
        phones_watching: AtomicU64::new(0),
        expected_loc: (0..vehicles).map(|_| AtomicU64::new(0)).collect(),
        expected_events: (0..vehicles).map(|_| AtomicU64::new(0)).collect(),
        opts,
    });
    let opts = &sh.opts;
    let hub = || opts.hub_pid.and_then(ProcSample::of);
    if let Some(pid) = opts.hub_pid {
        anyhow::ensure!(hub().is_some(), "--hub-pid {pid}: no such process in /proc");
    }
    samples.hub_before = hub();

    // 2. Connect: devices first, then phones.
    let mut device_tasks: Vec<JoinHandle<()>> = Vec::with_capacity(devices_connecting);
    for (i, v) in fleet
        .credentials
        .vehicles
        .iter()
        .enumerate()
        .take(devices_connecting)
    {
        let spec = device::DeviceSpec {
            index: i,
            vehicle: i,
            serial: v.serial.clone(),
            token: v.device_token.clone(),
        };
        device_tasks.push(tokio::spawn(device::run(spec, Arc::clone(&sh))));
    }
    let mut timed_out = !wait_count(&sh.devices_ready, devices_connecting, &hard).await;

    let mut phone_tasks: Vec<JoinHandle<phone::PhoneOutcome>> = Vec::with_capacity(phones);
    if !timed_out {
        for j in 0..phones {
            let vehicle = j % vehicles;
            let v = &fleet.credentials.vehicles[vehicle];
            let Some(token) = fleet.tokens.get(v.owner).cloned().flatten() else {
                anyhow::bail!("vehicle {} has no logged-in owner", v.id);
            };
            let spec = phone::PhoneSpec {
                index: j,
                vehicle,
                vehicle_id: v.id,
                token,
                socket_index: devices_connecting + j,
            };
            phone_tasks.push(tokio::spawn(phone::run(spec, Arc::clone(&sh))));
        }
        timed_out = !wait_count(&sh.phones_ready, phones, &hard).await;
    }
    samples.hub_connected = hub();

    // 3. Traffic (or the idle hold), measured window.
    let warmup = if opts.connect_only {
        Duration::ZERO
    } else {
        opts.warmup
    };
    let now_us = unix_us();
    let window_start = Instant::now() + warmup;
    let warmup_us = u64::try_from(warmup.as_micros()).unwrap_or(0);
    let duration_us = u64::try_from(opts.duration.as_micros()).unwrap_or(u64::MAX);
    sh.stats
        .window
        .set(now_us + warmup_us, now_us + warmup_us + duration_us);
    if !opts.connect_only {
        sh.start.cancel();
    }
    if !timed_out {
        timed_out = !sleep_or_deadline(window_start, &hard).await;
    }
    if !timed_out {
        samples.cpu_window.0 = CpuSample::now();
        samples.hub_window.0 = hub();
        let started = Instant::now();
        timed_out = !sleep_or_deadline(window_start + opts.duration, &hard).await;
        samples.window_s = started.elapsed().as_secs_f64();
        samples.cpu_window.1 = CpuSample::now();
        samples.hub_window.1 = hub();
    }

    // 4. Drain.
    sh.stop.cancel();
    if !timed_out && !opts.connect_only {
        timed_out = !wait_count(&sh.devices_done, devices_connecting, &hard).await;
        if !timed_out {
            timed_out = !sleep_or_deadline(Instant::now() + opts.drain, &hard).await;
        }
    }

    // 5. Close and collect.
    sh.close.cancel();
    let grace = Instant::now() + Duration::from_secs(10);
    let outcomes = join_bounded(phone_tasks, grace).await;
    let _ = join_bounded(device_tasks, grace).await;
    samples.cpu_end = CpuSample::now();
    samples.wall_s = began.elapsed().as_secs_f64();

    Ok(build_report(
        &sh,
        setup_report,
        &outcomes,
        (devices_connecting, phones),
        &samples,
        timed_out || hard.is_cancelled(),
    ))
}

/// Wait until the counter reaches `target`; false if the deadline came
/// first.
async fn wait_count(
    counter: &watch::Sender<usize>,
    target: usize,
    hard: &CancellationToken,
) -> bool {
    let mut rx = counter.subscribe();
    tokio::select! {
        r = rx.wait_for(|n| *n >= target) => r.is_ok(),
        _ = hard.cancelled() => false,
    }
}

/// Sleep until `until`; false if the deadline came first.
async fn sleep_or_deadline(until: Instant, hard: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(until) => true,
        _ = hard.cancelled() => false,
    }
}

/// Join tasks until `deadline`; the rest are aborted (their results lost).
async fn join_bounded<T>(tasks: Vec<JoinHandle<T>>, deadline: Instant) -> Vec<Option<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    for mut task in tasks {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(v)) => out.push(Some(v)),
            Ok(Err(_)) => out.push(None),
            Err(_) => {
                task.abort();
                out.push(None);
            }
        }
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn build_report(
    sh: &Shared,
    setup: stats::SetupReport,
    outcomes: &[Option<phone::PhoneOutcome>],
    (devices_attempted, phones_attempted): (usize, usize),
    samples: &Samples,
    timed_out: bool,
) -> Report {
    let (window_s, wall_s) = (samples.window_s, samples.wall_s);
    let st = &sh.stats;
    let opts = &sh.opts;
    let (cpu_start, cpu_end) = (samples.cpu_start, samples.cpu_end);
    let (cpu_w0, cpu_w1) = samples.cpu_window;

    let mut loss = stats::LossReport::default();
    for o in outcomes.iter().flatten().filter(|o| o.watching) {
        let expected = sh
            .expected_loc
            .get(o.vehicle)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        let expected_events = sh
            .expected_events
            .get(o.vehicle)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        loss.expected += expected;
        loss.delivered += o.loc;
        if o.loc < expected {
            loss.lost += expected - o.loc;
            loss.phones_with_loss += 1;
        } else {
            loss.extra += o.loc - expected;
        }
        loss.events_expected += expected_events;
        loss.events_delivered += o.events;
        loss.events_lost += expected_events.saturating_sub(o.events);
    }

    let phone_span = st.phone_span.seconds();
    let device_span = st.device_span.seconds();
    let phones_watching = sh.phones_watching.load(Ordering::Relaxed);
    let devices_connected = sh.devices_connected.load(Ordering::Relaxed);
    let loc_window = st.loc_delivered_window.get();
    let cpu_window_s = (cpu_w1.total() - cpu_w0.total()).max(0.0);

    Report {
        mode: if opts.connect_only {
            "connect_only"
        } else {
            "traffic"
        },
        url: opts.url.clone(),
        phone_url: opts.phone_url.clone(),
        seed: sh.seed,
        setup,
        connect: stats::ConnectReport {
            devices_attempted,
            devices_connected,
            phones_attempted,
            phones_watching,
            phones_seconds: round2(phone_span),
            phones_per_s: rate(phones_watching, phone_span),
            devices_seconds: round2(device_span),
            devices_per_s: rate(devices_connected, device_span),
            phone_latency: st.phone_connect.summary(),
            device_latency: st.device_connect.summary(),
        },
        window_s: round2(window_s),
        delivery: stats::DeliveryReport {
            loc_messages: loc_window,
            loc_per_s: rate(loc_window, window_s),
            event_messages: st.events_delivered_window.get(),
            other_messages: st.other_messages.get(),
            e2e_latency: st.e2e.summary(),
        },
        ingest: stats::IngestReport {
            points_per_batch: opts.points,
            interval_ms: u64::try_from(opts.interval.as_millis()).unwrap_or(u64::MAX),
            batches_sent: st.batches_sent.get(),
            batches_acked: st.batches_acked.get(),
            batches_sent_per_s: rate(st.batches_sent_window.get(), window_s),
            acks_per_s: rate(st.acks_window.get(), window_s),
            points_acked_window: st.points_acked_window.get(),
            points_per_s: rate(st.points_acked_window.get(), window_s),
            points_acked_total: st.points_acked.get(),
            events_sent: st.events_sent.get(),
            events_acked: st.events_acked.get(),
            ack_latency: st.ack.summary(),
            skipped_inflight: st.skipped_inflight.get(),
            unacked: st.unacked_at_end.get(),
        },
        loss,
        commands_answered: st.commands_answered.get(),
        sessions_dropped: st.sessions_dropped.get(),
        errors: st.errors(),
        cpu: stats::CpuReport {
            window_s: round2(cpu_window_s),
            window_percent_of_core: if window_s > 0.0 {
                (cpu_window_s / window_s * 1000.0).round() / 10.0
            } else {
                0.0
            },
            total_s: round2(cpu_end.total() - cpu_start.total()),
            user_s: round2(cpu_end.user_s - cpu_start.user_s),
            system_s: round2(cpu_end.system_s - cpu_start.system_s),
            wall_s: round2(wall_s),
            us_per_delivered: if loc_window > 0 {
                (cpu_window_s * 1e6 / loc_window as f64 * 100.0).round() / 100.0
            } else {
                0.0
            },
            max_rss_kb: cpu_end.max_rss_kb,
        },
        hub: hub_report(sh, samples, devices_connected + phones_watching, loc_window),
        timed_out,
    }
}

fn hub_report(
    sh: &Shared,
    samples: &Samples,
    sessions: u64,
    delivered: u64,
) -> Option<stats::HubReport> {
    let window_s = samples.window_s;
    let pid = sh.opts.hub_pid?;
    let before = samples.hub_before?;
    let connected = samples.hub_connected.unwrap_or(before);
    let (w0, w1) = samples.hub_window;
    let end = w1.unwrap_or(connected);
    let per_session = |kb: u64| {
        (kb.saturating_sub(before.rss_kb) * 1024)
            .checked_div(sessions)
            .unwrap_or(0)
    };
    let cpu = match (w0, w1) {
        (Some(a), Some(b)) => (b.cpu_s - a.cpu_s).max(0.0),
        _ => 0.0,
    };
    let points = sh.stats.points_acked_window.get();
    let per = |n: u64| {
        if n == 0 {
            0.0
        } else {
            (cpu * 1e6 / n as f64 * 100.0).round() / 100.0
        }
    };
    Some(stats::HubReport {
        pid,
        rss_before_connect_kb: before.rss_kb,
        rss_connected_kb: connected.rss_kb,
        rss_window_end_kb: end.rss_kb,
        rss_per_session_bytes: per_session(connected.rss_kb),
        rss_per_session_window_end_bytes: per_session(end.rss_kb),
        cpu_window_s: round2(cpu),
        cpu_percent_of_core: if window_s > 0.0 {
            (cpu / window_s * 1000.0).round() / 10.0
        } else {
            0.0
        },
        us_per_delivered: per(delivered),
        us_per_point_acked: per(points),
    })
}
