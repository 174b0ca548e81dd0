//! Durable-ingest benchmark: many simulated devices each send
//! `loc` batches through the group-commit writer, one after another, each
//! waiting for its ack (= commit) before sending the next. Prints points/s
//! acknowledged, batch sizes and ack latency percentiles.
//!
//! ```sh
//! cargo run --release --example ingest_bench                       # SQLite in a temp folder
//! cargo run --release --example ingest_bench -- --database-url postgres://user@127.0.0.1:5432/bench
//! cargo run --release --example ingest_bench -- --devices 1000 --points 60 --seconds 20
//! cargo run --release --example ingest_bench -- --interval-ms 1000    # a fixed offered load
//! ```
//!
//! The writer is driven directly (no Socket.IO): this measures the
//! database path alone. A PostgreSQL database must exist and be empty or
//! already migrated; SQLite uses WAL with `synchronous = NORMAL`, as a node
//! does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use diesel::connection::SimpleConnection as _;
use roadhub::Config;
use roadhub::db::Db;
use roadhub::db::queries::{users, vehicles};
use roadhub::ingest::{IngestWriter, Job, Point, Stored, WriterOptions};

#[derive(Parser, Debug)]
struct Args {
    /// `sqlite://PATH` or `postgres://...`; default: SQLite in a temp folder.
    #[arg(long)]
    database_url: Option<String>,
    /// Simulated devices (one task and one vehicle each).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Points per `loc` batch.
    #[arg(long, default_value_t = 60)]
    points: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Writer queue capacity (jobs).
    #[arg(long, default_value_t = 4096)]
    queue_capacity: usize,
    /// Rows per transaction at most.
    #[arg(long, default_value_t = 20_000)]
    max_batch_rows: usize,
    /// Writer linger, milliseconds.
    #[arg(long, default_value_t = 0)]
    max_wait_ms: u64,
    /// Tokio worker threads driving the devices.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Milliseconds between a device's batches (0: the next batch as soon
    /// as the previous one is acknowledged, to find the maximum rate).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Writer threads (0: the default for the backend).
    #[arg(long, default_value_t = 0)]
    writers: usize,
    /// Print one JSON line only.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.database.url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}/bench.db", dir.path().display()),
    };
    let db = Db::connect(&config).context("connecting")?;
    db.migrate().context("migrating")?;

    // One owner, `devices` vehicles, in one transaction.
    let mut conn = db.get()?;
    roadhub::db_run!(&mut conn, |c| c.batch_execute("BEGIN"))?;
    let tag = roadhub::util::random_token("", 4).to_lowercase();
    let owner = users::create(&mut conn, &format!("bench-{tag}@example.com"), None, "x")?;
    let mut ids = Vec::with_capacity(args.devices);
    for i in 0..args.devices {
        let serial = format!("BENCH-{tag}-{i}");
        let v = vehicles::create(&mut conn, owner.id, &serial, &serial, &serial)?;
        ids.push(v.id);
    }
    roadhub::db_run!(&mut conn, |c| c.batch_execute("COMMIT"))?;
    // The PostgreSQL server's processes, to count their CPU time.
    let postmaster = match &mut conn {
        roadhub::db::DbConn::Pg(c) => {
            use diesel::RunQueryDsl as _;
            let pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "pg_backend_pid()",
            ))
            .get_result(&mut **c)?;
            proc_stat(pid as u32).map(|s| s.ppid)
        }
        roadhub::db::DbConn::Sqlite(_) => None,
    };
    drop(conn);

    let writer = IngestWriter::start(
        db.clone(),
        WriterOptions {
            queue_capacity: args.queue_capacity,
            max_batch_rows: args.max_batch_rows,
            max_wait: Duration::from_millis(args.max_wait_ms),
            writers: args.writers,
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let points_acked = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start_t = roadhub::util::now_ms() - 24 * 3600 * 1000;
    let points_per_batch = args.points;
    let interval = Duration::from_millis(args.interval_ms);
    let devices = args.devices.max(1);

    let (latencies, elapsed, m0, m1, cpu0, cpu1) = rt.block_on(async {
        let mut tasks = Vec::with_capacity(ids.len());
        for (n, &vehicle_id) in ids.iter().enumerate() {
            let writer = writer.clone();
            let measuring = Arc::clone(&measuring);
            let stop = Arc::clone(&stop);
            let points_acked = Arc::clone(&points_acked);
            let busy = Arc::clone(&busy);
            let errors = Arc::clone(&errors);
            tasks.push(tokio::spawn(async move {
                let mut lat_us: Vec<u32> = Vec::new();
                let mut seq: i64 = 0;
                // Spread the devices around a 1 s clock.
                let lat0 = 37.0 + (n as f64) * 1e-3;
                let mut tick = (interval > Duration::ZERO).then(|| {
                    let mut t = tokio::time::interval_at(
                        tokio::time::Instant::now() + interval.mul_f64(n as f64 / devices as f64),
                        interval,
                    );
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                while !stop.load(Ordering::Relaxed) {
                    if let Some(tick) = &mut tick {
                        tick.tick().await;
                    }
                    let points: Vec<Point> = (0..points_per_batch)
                        .map(|i| {
                            let k = seq + i as i64;
                            Point {
                                t: start_t + k * 1000,
                                lat: lat0 + (k as f64) * 1e-5,
                                lon: 127.0 + (k as f64) * 1e-5,
                                spd: Some(50.0),
                                hdg: Some(90.0),
                                alt: Some(30.0),
                            }
                        })
                        .collect();
                    seq += points_per_batch as i64;
                    let sent = Instant::now();
                    match writer.write(Job::Locations { vehicle_id, points }).await {
                        Ok(Stored::Locations { stored }) => {
                            if measuring.load(Ordering::Relaxed) {
                                points_acked.fetch_add(stored as u64, Ordering::Relaxed);
                                lat_us.push(
                                    u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX),
                                );
                            }
                        }
                        Ok(_) => {}
                        Err(roadhub::ingest::IngestError::Busy) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                lat_us
            }));
        }
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        let m0 = writer.metrics().snapshot();
        let cpu0 = (self_cpu(), postmaster.map(server_cpu));
        measuring.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = t0.elapsed();
        let m1 = writer.metrics().snapshot();
        let cpu1 = (self_cpu(), postmaster.map(server_cpu));
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            if let Ok(v) = t.await {
                all.extend(v);
            }
        }
        (all, elapsed, m0, m1, cpu0, cpu1)
    });
    writer.flush_and_stop(Duration::from_secs(30));
    let m_end = writer.metrics().snapshot();

    let mut lat = latencies;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        f64::from(lat[i.min(lat.len() - 1)]) / 1000.0
    };
    let acked = points_acked.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    let batches = m1.batches - m0.batches;
    let rows = m1.rows_stored - m0.rows_stored;
    let write_ms = (m1.write_micros - m0.write_micros) as f64 / 1000.0;
    let cpu_per_point = |seconds: f64| -> f64 {
        let points = (m1.points_stored - m0.points_stored).max(1) as f64;
        (seconds * 1e6 / points * 100.0).round() / 100.0
    };
    let backend = if config.database.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let summary = serde_json::json!({
        "backend": backend,
        "devices": args.devices,
        "points_per_batch": args.points,
        "interval_ms": args.interval_ms,
        "seconds": secs,
        "points_acked_per_s": (acked as f64 / secs).round(),
        "batches_acked_per_s": (lat.len() as f64 / secs).round(),
        "transactions_per_s": (batches as f64 / secs).round(),
        "mean_rows_per_transaction": rows.checked_div(batches).unwrap_or(0),
        "writer_busy_fraction": (write_ms / 1000.0 / secs * 100.0).round() / 100.0,
        "ack_latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
        "points_total": m_end.points_stored,
        "cpu_us_per_point": {
            "bench_and_writer": cpu_per_point(cpu1.0 - cpu0.0),
            "postgres": cpu0.1.zip(cpu1.1).map(|(a, b)| cpu_per_point(b - a)),
        },
        "busy": busy.load(Ordering::Relaxed),
        "errors": errors.load(Ordering::Relaxed),
        "max_batch_rows": args.max_batch_rows,
        "max_wait_ms": args.max_wait_ms,
        "writers": writer.writers(),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

struct ProcStat {
    ppid: u32,
    cpu_seconds: f64,
}

/// Parent and CPU time (user + system) of a process, from `/proc` (Linux).
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ProcStat {
        ppid,
        cpu_seconds: (utime + stime) / 100.0,
    })
}

fn self_cpu() -> f64 {
    proc_stat(std::process::id()).map_or(0.0, |s| s.cpu_seconds)
}

/// CPU seconds of the PostgreSQL postmaster `pid` and all its children.
fn server_cpu(postmaster: u32) -> f64 {
    let mut total = proc_stat(postmaster).map_or(0.0, |s| s.cpu_seconds);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(s) = proc_stat(pid).filter(|s| s.ppid == postmaster) {
                total += s.cpu_seconds;
            }
        }
    }
    total
}
