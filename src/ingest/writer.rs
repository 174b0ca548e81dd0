//! The group-commit writer shared by every device session.
//!
//! # Shape
//!
//! [`IngestWriter`] is a cheap [`Clone`] handle on a bounded queue and a
//! dedicated OS thread (`ingest-writer-N`; it needs no tokio runtime):
//!
//! 1. A session calls [`IngestWriter::submit`] (or [`IngestWriter::write`],
//!    which also awaits the outcome). `submit` never blocks: a full queue is
//!    [`SubmitError::Busy`] at once, so memory never grows with a backlog.
//! 2. The thread blocks until a job arrives, then takes every job already
//!    waiting (optionally lingering up to `max_wait` for more) up to
//!    `max_batch_rows` rows, and writes them all in ONE write transaction:
//!    the points of every `loc` job together (multi-row `INSERT ... ON
//!    CONFLICT (vehicle_id, t) DO NOTHING` on SQLite, one `UNNEST` insert
//!    on PostgreSQL), the other rows beside them.
//! 3. Only after `COMMIT` returns is each job's [`oneshot`] completed. While
//!    one batch commits, the next one forms in the queue: the busier the
//!    node, the larger the batches and the cheaper each durable row.
//!
//! On SQLite there is one such thread (SQLite has one writer at a time). On
//! PostgreSQL there are [`DEFAULT_PG_WRITERS`] by default, each with its own
//! connection and its own share of the queue capacity; a job goes to the
//! thread of its vehicle (`vehicle_id mod writers`), so one vehicle's jobs
//! still commit in the order they were submitted, and two threads never
//! write rows of the same vehicle.
//!
//! # Failures
//!
//! If a batch's transaction fails because of its data (a vehicle deleted
//! meanwhile: foreign-key violation), every job of it is retried alone in
//! its own transaction, so the bad job fails alone and the others commit.
//! If it fails because the database is unreachable or locked, the jobs are
//! not retried one by one (that would multiply the wait): they fail with
//! [`WriteError::Unavailable`] and the device, which got no `ok`, resends.
//! The connection is dropped and a fresh one taken for the next batch.
//!
//! # Idempotence
//!
//! `locations` is unique per `(vehicle_id, t)`: a resent `loc` batch stores
//! nothing twice, and its ack still counts every point (they are durable,
//! which is what the device asks). Events, status and OBD rows have no
//! unique key: a resend is recognised in the batch's transaction through
//! the `(vehicle_id, t)` index (one fixed-shape lookup per row). An event
//! with the same type, `t`, position and meta is acked with the first id; a
//! status or OBD report with the same `t` and the same `data` text is not
//! stored again, nor twice when it comes twice in one batch (its ack is the
//! same `Stored::Done`). Different data at the same `t` is another row.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tokio::sync::oneshot;

use crate::config::IngestConfig;
use crate::db::models::{
    NewCommandLogEntry, NewConnectionLogEntry, NewEvent, NewLocation, NewObdRecord,
    NewStatusSnapshot,
};
use crate::db::queries::ingest as ingest_sql;
use crate::db::{Backend, Db, DbConn, DbError};
use crate::ingest::validate::{EventIn, Point};
use crate::util::now_ms;

/// A batch slower than this is logged as a warning.
const SLOW_BATCH: Duration = Duration::from_secs(1);

/// How the writer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Jobs waiting at most; a full queue answers [`SubmitError::Busy`].
    pub queue_capacity: usize,
    /// Rows per transaction at most (a `loc` job counts its points; every
    /// other job one). The writer stops taking jobs once it reaches this.
    pub max_batch_rows: usize,
    /// How long the writer lingers for more jobs after the first before
    /// committing a batch that is not full. Zero commits at once: batches
    /// still form while a commit is running.
    pub max_wait: Duration,
    /// Writer threads, each with its own connection and its own share of
    /// the queue; a vehicle always goes to the same one. 0 picks the
    /// default: 1 on SQLite (which always has one writer: more would only
    /// queue for its lock), [`DEFAULT_PG_WRITERS`] on PostgreSQL, where one
    /// server process per connection does the insert work.
    pub writers: usize,
}

/// Writer threads on PostgreSQL when [`WriterOptions::writers`] is 0: a
/// server process inserts about 130,000 locations/s on one free core, so
/// one connection alone leaves the second core idle (docs/BENCHMARKS.md).
pub const DEFAULT_PG_WRITERS: usize = 2;

impl Default for WriterOptions {
    fn default() -> Self {
        Self::from_config(&IngestConfig::default())
    }
}

impl WriterOptions {
    /// The options of the `[ingest]` configuration section.
    pub fn from_config(config: &IngestConfig) -> Self {
        Self {
            queue_capacity: config.queue_capacity.max(1),
            max_batch_rows: config.max_batch_rows.max(1),
            max_wait: Duration::from_millis(config.max_wait_ms),
            writers: config.writers,
        }
    }
}

/// One unit of work: one device message (or one session fact) to store.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// A validated `loc` batch.
    Locations { vehicle_id: i64, points: Vec<Point> },
    /// A validated `event`; its id comes back in [`Stored::Event`].
    Event { vehicle_id: i64, event: EventIn },
    /// A `status` report: its time and the object as JSON text.
    Status {
        vehicle_id: i64,
        t: i64,
        data: String,
    },
    /// An `obd` report: its time and the object as JSON text.
    Obd {
        vehicle_id: i64,
        t: i64,
        data: String,
    },
    /// A device connected or disconnected (`kind`: `connect` or
    /// `disconnect`).
    Connection {
        vehicle_id: i64,
        node_id: String,
        remote_addr: Option<String>,
        kind: &'static str,
        reason: Option<String>,
        t: i64,
    },
    /// A command sent to a device, with its outcome. `args` and `result`
    /// are JSON text.
    Command {
        vehicle_id: i64,
        user_id: Option<i64>,
        name: String,
        args: String,
        status: String,
        result: Option<String>,
        created_at: i64,
        completed_at: Option<i64>,
    },
    /// The device was last heard of at `t`. Never moves `last_seen_at`
    /// back; several in one batch cost one update per vehicle.
    LastSeen { vehicle_id: i64, t: i64 },
}

impl Job {
    /// The vehicle this job is about.
    pub fn vehicle_id(&self) -> i64 {
        match self {
            Job::Locations { vehicle_id, .. }
            | Job::Event { vehicle_id, .. }
            | Job::Status { vehicle_id, .. }
            | Job::Obd { vehicle_id, .. }
            | Job::Connection { vehicle_id, .. }
            | Job::Command { vehicle_id, .. }
            | Job::LastSeen { vehicle_id, .. } => *vehicle_id,
        }
    }

    /// Rows this job writes (what `max_batch_rows` counts).
    pub fn rows(&self) -> usize {
        match self {
            Job::Locations { points, .. } => points.len(),
            _ => 1,
        }
    }
}

/// What a committed job stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Every point of the batch is durable (`stored` counts points that
    /// were already stored by an earlier send too).
    Locations { stored: usize },
    /// The event's row id; `resent` when the vehicle had already sent it
    /// (same `type` and `t`): nothing new was stored, the id is the first's.
    Event { id: i64, resent: bool },
    /// Any other job; also a resent status or OBD report (same vehicle, `t`
    /// and data), for which nothing new was stored.
    Done,
}

/// Why a job could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: the database is not keeping up. Answer the device
    /// `busy`; it resends later.
    #[error("the ingest queue is full")]
    Busy,
    /// The writer is stopping or stopped (node shutdown).
    #[error("the ingest writer is stopped")]
    Closed,
}

/// Why a queued job was not stored. No database text: that is logged by
/// the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The vehicle (or a command's user) no longer exists.
    #[error("the vehicle no longer exists")]
    VehicleGone,
    /// The database refused this job's rows for another reason.
    #[error("the database refused the data")]
    Rejected,
    /// The database is unreachable or locked; nothing of the batch was
    /// stored. Worth resending later.
    #[error("the database is unavailable")]
    Unavailable,
}

/// The outcome of [`IngestWriter::write`]: not queued, or not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("the ingest queue is full")]
    Busy,
    #[error("the ingest writer is stopped")]
    Closed,
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<SubmitError> for IngestError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Busy => IngestError::Busy,
            SubmitError::Closed => IngestError::Closed,
        }
    }
}

impl IngestError {
    /// The snake_case code for the device's `{"ok": false, "error": code}`:
    /// `busy`, `unavailable` (writer stopped or database down: resend
    /// later), `vehicle_gone`, `rejected`.
    pub fn code(self) -> &'static str {
        match self {
            IngestError::Busy => "busy",
            IngestError::Closed | IngestError::Write(WriteError::Unavailable) => "unavailable",
            IngestError::Write(WriteError::VehicleGone) => "vehicle_gone",
            IngestError::Write(WriteError::Rejected) => "rejected",
        }
    }
}

/// What a job's submitter awaits: the outcome, sent after the commit.
pub type Ack = oneshot::Receiver<Result<Stored, WriteError>>;

/// Counters of the writer, plain atomics for the metrics exporter. All are
/// totals since start except `queue_len` (see [`IngestWriter::queue_len`]).
#[derive(Debug, Default)]
pub struct WriterMetrics {
    /// Jobs accepted into the queue.
    pub jobs_submitted: AtomicU64,
    /// Jobs refused because the queue was full.
    pub busy_rejections: AtomicU64,
    /// Jobs committed.
    pub jobs_stored: AtomicU64,
    /// Jobs that failed (their submitters got an error).
    pub jobs_failed: AtomicU64,
    /// Location points committed (including ones already stored before).
    pub points_stored: AtomicU64,
    /// Rows of every kind committed (a point, an event... each one).
    pub rows_stored: AtomicU64,
    /// Batch transactions committed (each is one commit; retried jobs
    /// count their own).
    pub batches: AtomicU64,
    /// Batches that failed on their data and were retried job by job.
    pub batches_retried: AtomicU64,
    /// Microseconds spent writing and committing batches.
    pub write_micros: AtomicU64,
    /// Largest batch so far, in rows.
    pub max_batch_rows: AtomicU64,
    /// Write-and-commit time of each transaction.
    pub commit_seconds: crate::metrics::Latency,
}

/// A point-in-time copy of [`WriterMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub jobs_submitted: u64,
    pub busy_rejections: u64,
    pub jobs_stored: u64,
    pub jobs_failed: u64,
    pub points_stored: u64,
    pub rows_stored: u64,
    pub batches: u64,
    pub batches_retried: u64,
    pub write_micros: u64,
    pub max_batch_rows: u64,
}

impl WriterMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            jobs_submitted: get(&self.jobs_submitted),
            busy_rejections: get(&self.busy_rejections),
            jobs_stored: get(&self.jobs_stored),
            jobs_failed: get(&self.jobs_failed),
            points_stored: get(&self.points_stored),
            rows_stored: get(&self.rows_stored),
            batches: get(&self.batches),
            batches_retried: get(&self.batches_retried),
            write_micros: get(&self.write_micros),
            max_batch_rows: get(&self.max_batch_rows),
        }
    }
}

enum Msg {
    Job(Pending),
    /// Drain what is queued, commit, and end the thread.
    Stop,
}

struct Pending {
    job: Job,
    reply: oneshot::Sender<Result<Stored, WriteError>>,
}

/// One writer thread and its queue.
struct Shard {
    tx: Sender<Msg>,
    /// Disconnected when the thread has ended.
    finished: Receiver<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    shards: Vec<Shard>,
    /// `true` while jobs are accepted. `submit` holds the read side across
    /// its check and its send, so once `flush_and_stop` has flipped it no
    /// job can land behind the stop marker and be left unanswered.
    open: RwLock<bool>,
    metrics: Arc<WriterMetrics>,
}

/// Handle on the group-commit writer. Clone it freely: every clone feeds
/// the same queues and threads. The threads end on
/// [`flush_and_stop`](Self::flush_and_stop), or once every handle is
/// dropped and the queues are drained.
#[derive(Clone)]
pub struct IngestWriter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IngestWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestWriter")
            .field("writers", &self.inner.shards.len())
            .field("queue_len", &self.queue_len())
            .field("open", &self.inner.open.read().is_ok_and(|open| *open))
            .finish()
    }
}

impl IngestWriter {
    /// Start the writer threads on `db` (see [`WriterOptions::writers`]).
    /// Each takes one pooled connection and keeps it while it runs
    /// (prepared statements are reused across batches): the pool must be
    /// larger than the number of writers (`Config::validate` checks it).
    pub fn start(db: Db, options: WriterOptions) -> std::io::Result<Self> {
        let writers = match (db.backend(), options.writers) {
            (Backend::Sqlite, _) => 1,
            (Backend::Postgres, 0) => DEFAULT_PG_WRITERS,
            (Backend::Postgres, n) => n,
        };
        let options = WriterOptions {
            queue_capacity: options.queue_capacity.max(1),
            max_batch_rows: options.max_batch_rows.max(1),
            max_wait: options.max_wait,
            writers,
        };
        // The capacity is shared out: the bound on memory stays the same.
        let per_shard = options.queue_capacity.div_ceil(writers);
        let metrics = Arc::new(WriterMetrics {
            commit_seconds: crate::metrics::Latency::new(&crate::metrics::INGEST_COMMIT),
            ..WriterMetrics::default()
        });
        let mut shards = Vec::with_capacity(writers);
        for index in 0..writers {
            let (tx, rx) = crossbeam_channel::bounded(per_shard);
            let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
            let worker = Worker {
                db: db.clone(),
                conn: None,
                rx,
                options,
                metrics: Arc::clone(&metrics),
            };
            let thread = std::thread::Builder::new()
                .name(format!("ingest-writer-{index}"))
                .spawn(move || {
                    let _finished = finished_tx;
                    worker.run();
                })?;
            shards.push(Shard {
                tx,
                finished,
                thread: Mutex::new(Some(thread)),
            });
        }
        tracing::info!(
            writers,
            queue_capacity = per_shard * writers,
            max_batch_rows = options.max_batch_rows,
            max_wait_ms = options.max_wait.as_millis() as u64,
            "ingest writer started"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                shards,
                open: RwLock::new(true),
                metrics,
            }),
        })
    }

    /// The shard of a vehicle: always the same, so one vehicle's jobs are
    /// committed in the order they were submitted.
    fn shard(&self, vehicle_id: i64) -> Option<&Shard> {
        let n = self.inner.shards.len() as i64;
        let index = usize::try_from(vehicle_id.rem_euclid(n.max(1))).unwrap_or(0);
        self.inner.shards.get(index)
    }

    /// Queue `job` without blocking. The receiver completes after the
    /// job's transaction commits (or fails). A full queue is
    /// [`SubmitError::Busy`], at once.
    pub fn submit(&self, job: Job) -> Result<Ack, SubmitError> {
        let open = self.inner.open.read().map_err(|_| SubmitError::Closed)?;
        if !*open {
            return Err(SubmitError::Closed);
        }
        let shard = self.shard(job.vehicle_id()).ok_or(SubmitError::Closed)?;
        let (reply, ack) = oneshot::channel();
        match shard.tx.try_send(Msg::Job(Pending { job, reply })) {
            Ok(()) => {
                self.inner
                    .metrics
                    .jobs_submitted
                    .fetch_add(1, Ordering::Relaxed);
                Ok(ack)
            }
            Err(TrySendError::Full(_)) => {
                self.inner
                    .metrics
                    .busy_rejections
                    .fetch_add(1, Ordering::Relaxed);
                Err(SubmitError::Busy)
            }
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Closed),
        }
    }

    /// Queue `job` and wait until it is durably stored (or failed).
    /// Cancel-safe: dropping the future does not undo the write.
    pub async fn write(&self, job: Job) -> Result<Stored, IngestError> {
        let ack = self.submit(job)?;
        match ack.await {
            Ok(outcome) => outcome.map_err(IngestError::Write),
            // The writer ended without answering (it stopped mid-drain).
            Err(_) => Err(IngestError::Closed),
        }
    }

    /// Jobs waiting in the queues now.
    pub fn queue_len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.tx.len()).sum()
    }

    /// The queues' capacity, in jobs (all writer threads together).
    pub fn queue_capacity(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.tx.capacity().unwrap_or(0))
            .sum()
    }

    /// How many writer threads (and database connections) run.
    pub fn writers(&self) -> usize {
        self.inner.shards.len()
    }

    /// The writer's counters.
    pub fn metrics(&self) -> &WriterMetrics {
        &self.inner.metrics
    }

    /// Graceful shutdown: refuse new jobs ([`SubmitError::Closed`]), write
    /// and commit everything already queued, and end the threads, waiting
    /// up to `timeout`. Blocking: from async code call it in
    /// `spawn_blocking`. Calling it again returns at once.
    pub fn flush_and_stop(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // Waits for submits in progress, then refuses new ones.
        if let Ok(mut open) = self.inner.open.write() {
            *open = false;
        }
        let queued = self.queue_len();
        for shard in &self.inner.shards {
            // The queue may be full: wait for room for the stop marker. An
            // error means the thread is gone already.
            let _ = shard.tx.send_deadline(Msg::Stop, deadline);
        }
        let mut drained = true;
        for shard in &self.inner.shards {
            match shard.finished.recv_deadline(deadline) {
                Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                    let thread = shard.thread.lock().map_or(None, |mut slot| slot.take());
                    if let Some(thread) = thread
                        && thread.join().is_err()
                    {
                        tracing::error!("an ingest writer thread panicked");
                    }
                }
                Err(RecvTimeoutError::Timeout) => drained = false,
            }
        }
        if drained {
            tracing::info!(queued, "ingest writer flushed and stopped");
        } else {
            tracing::warn!(
                still_queued = self.queue_len(),
                timeout_ms = timeout.as_millis() as u64,
                "ingest writer did not drain in time; jobs still queued are not acknowledged"
            );
        }
    }
}

/// The writer thread's state.
struct Worker {
    db: Db,
    /// The connection kept between batches; dropped after a failure that
    /// may have broken it.
    conn: Option<DbConn>,
    rx: Receiver<Msg>,
    options: WriterOptions,
    metrics: Arc<WriterMetrics>,
}

impl Worker {
    fn run(mut self) {
        let mut stopping = false;
        let mut batch: Vec<Pending> = Vec::new();
        loop {
            // Block for the first message; once stopping, only drain.
            let first = if stopping {
                self.rx.try_recv().ok()
            } else {
                self.rx.recv().ok()
            };
            let Some(first) = first else { break };
            let mut rows = absorb(first, &mut batch, &mut stopping);
            let linger_until = (!self.options.max_wait.is_zero() && !batch.is_empty())
                .then(|| Instant::now() + self.options.max_wait);
            let mut lingered = false;
            while rows < self.options.max_batch_rows {
                let msg = match self.rx.try_recv() {
                    Ok(msg) => msg,
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => match linger_until {
                        // Sleep rather than wait on the channel: a waiting
                        // receiver is woken by every job, a sleeping one
                        // once per linger.
                        Some(until) if !stopping && !lingered => {
                            lingered = true;
                            std::thread::sleep(until.saturating_duration_since(Instant::now()));
                            continue;
                        }
                        _ => break,
                    },
                };
                rows += absorb(msg, &mut batch, &mut stopping);
            }
            if !batch.is_empty() {
                let batch = std::mem::take(&mut batch);
                // A bug must not end the writer for the whole node: the
                // jobs of a batch that panicked get no answer (their
                // submitters see `Closed`), the connection is dropped, and
                // the thread goes on.
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.commit(batch);
                }));
                if done.is_err() {
                    tracing::error!("ingest batch panicked; its jobs are not acknowledged");
                    self.conn = None;
                }
            }
        }
        tracing::debug!("ingest writer thread ends");
    }

    /// Write `batch` in one transaction and answer every job; on a data
    /// error, retry the jobs one by one.
    fn commit(&mut self, batch: Vec<Pending>) {
        let started = Instant::now();
        let jobs: Vec<&Job> = batch.iter().map(|p| &p.job).collect();
        let result = self.attempt(&jobs);
        drop(jobs);
        match result {
            Ok(stored) => {
                self.record_commit(&batch, started);
                for (p, s) in batch.into_iter().zip(stored) {
                    let _ = p.reply.send(Ok(s));
                }
            }
            Err(e) if batch.len() > 1 && is_data_error(&e) => {
                tracing::warn!(
                    error = %e,
                    jobs = batch.len(),
                    "ingest batch refused by the database; retrying its jobs one by one"
                );
                self.metrics.batches_retried.fetch_add(1, Ordering::Relaxed);
                let mut unavailable = false;
                for p in batch {
                    if unavailable {
                        self.fail(p, WriteError::Unavailable);
                        continue;
                    }
                    let started = Instant::now();
                    match self.attempt(&[&p.job]) {
                        Ok(mut stored) => {
                            self.record_commit(std::slice::from_ref(&p), started);
                            let s = stored.pop().unwrap_or(Stored::Done);
                            let _ = p.reply.send(Ok(s));
                        }
                        Err(e) => {
                            let error = classify(&e);
                            unavailable = error == WriteError::Unavailable;
                            tracing::warn!(
                                error = %e,
                                vehicle_id = p.job.vehicle_id(),
                                "ingest job refused by the database"
                            );
                            self.fail(p, error);
                        }
                    }
                }
            }
            Err(e) => {
                let error = classify(&e);
                tracing::error!(
                    error = %e,
                    jobs = batch.len(),
                    "ingest batch failed; nothing of it was stored"
                );
                for p in batch {
                    self.fail(p, error);
                }
            }
        }
        let elapsed = started.elapsed();
        if elapsed > SLOW_BATCH {
            tracing::warn!(ms = elapsed.as_millis() as u64, "slow ingest batch");
        }
    }

    fn fail(&self, p: Pending, error: WriteError) {
        self.metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
        let _ = p.reply.send(Err(error));
    }

    fn record_commit(&self, batch: &[Pending], started: Instant) {
        let m = &self.metrics;
        let rows: usize = batch.iter().map(|p| p.job.rows()).sum();
        let points: usize = batch
            .iter()
            .map(|p| match &p.job {
                Job::Locations { points, .. } => points.len(),
                _ => 0,
            })
            .sum();
        m.batches.fetch_add(1, Ordering::Relaxed);
        m.jobs_stored
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        m.rows_stored.fetch_add(rows as u64, Ordering::Relaxed);
        m.points_stored.fetch_add(points as u64, Ordering::Relaxed);
        m.max_batch_rows.fetch_max(rows as u64, Ordering::Relaxed);
        let elapsed = started.elapsed();
        m.write_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        m.commit_seconds.observe(elapsed);
        tracing::trace!(jobs = batch.len(), rows, "ingest batch committed");
    }

    /// One transaction for `jobs`, on the kept connection (taken anew if
    /// there is none). A failure that is not about the data drops the
    /// connection.
    fn attempt(&mut self, jobs: &[&Job]) -> Result<Vec<Stored>, DbError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            slot => slot.insert(self.db.get()?),
        };
        let result = write_jobs(conn, jobs);
        if let Err(e) = &result
            && !is_data_error(e)
        {
            self.conn = None;
        }
        result
    }
}

/// Add a message to the batch; returns the rows it adds.
fn absorb(msg: Msg, batch: &mut Vec<Pending>, stopping: &mut bool) -> usize {
    match msg {
        Msg::Job(p) => {
            let rows = p.job.rows();
            batch.push(p);
            rows
        }
        Msg::Stop => {
            *stopping = true;
            0
        }
    }
}

/// Is this failure caused by the rows themselves (so retrying the jobs
/// apart can isolate it), rather than by the database being unreachable,
/// locked or broken?
fn is_data_error(e: &DbError) -> bool {
    match e {
        DbError::Query(DieselError::DatabaseError(kind, _)) => matches!(
            kind,
            DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation
        ),
        DbError::Query(DieselError::SerializationError(_) | DieselError::QueryBuilderError(_)) => {
            true
        }
        _ => false,
    }
}

fn classify(e: &DbError) -> WriteError {
    match e {
        DbError::Query(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
            WriteError::VehicleGone
        }
        e if is_data_error(e) => WriteError::Rejected,
        _ => WriteError::Unavailable,
    }
}

/// Write `jobs` in one write transaction; one [`Stored`] per job, in order.
fn write_jobs(conn: &mut DbConn, jobs: &[&Job]) -> Result<Vec<Stored>, DbError> {
    // Serialize event metas first: the rows borrow them.
    let metas = event_metas(jobs)?;
    let mut rows = BatchRows::new(jobs, now_ms());
    let mut meta_iter = metas.iter();
    for (index, job) in jobs.iter().enumerate() {
        let meta = match job {
            Job::Event { .. } => meta_iter.next().and_then(Option::as_deref),
            _ => None,
        };
        rows.add(index, job, meta);
    }
    let BatchRows {
        batch, mut stored, ..
    } = rows;
    for event in ingest_sql::write_batch(conn, &batch)? {
        if let Some(slot) = stored.get_mut(event.index) {
            *slot = Stored::Event {
                id: event.id,
                resent: event.resent,
            };
        }
    }
    Ok(stored)
}

/// The `meta` of each event job, as JSON text, in job order.
fn event_metas(jobs: &[&Job]) -> Result<Vec<Option<String>>, DbError> {
    let mut metas = Vec::new();
    for job in jobs {
        if let Job::Event { event, .. } = job {
            let meta =
                match &event.meta {
                    Some(meta) => Some(serde_json::to_string(meta).map_err(|e| {
                        DbError::Query(DieselError::SerializationError(Box::new(e)))
                    })?),
                    None => None,
                };
            metas.push(meta);
        }
    }
    Ok(metas)
}

/// The rows of a batch being built from its jobs, and what each job will
/// answer.
struct BatchRows<'a> {
    batch: ingest_sql::Batch<'a>,
    stored: Vec<Stored>,
    received_at: i64,
    /// (vehicle_id, t, data) of the reports already in this batch: the
    /// same report twice in one batch is stored once.
    seen_statuses: HashSet<(i64, i64, &'a str)>,
    seen_obds: HashSet<(i64, i64, &'a str)>,
}

impl<'a> BatchRows<'a> {
    fn new(jobs: &[&Job], received_at: i64) -> Self {
        let batch = ingest_sql::Batch {
            locations: Vec::with_capacity(jobs.iter().map(|j| j.rows()).sum()),
            ..Default::default()
        };
        Self {
            batch,
            stored: Vec::with_capacity(jobs.len()),
            received_at,
            seen_statuses: HashSet::new(),
            seen_obds: HashSet::new(),
        }
    }

    /// Add the rows of job `index` (`meta`: an event's serialized meta).
    fn add(&mut self, index: usize, job: &'a Job, meta: Option<&'a str>) {
        let received_at = self.received_at;
        let answer = match job {
            Job::Locations { vehicle_id, points } => {
                self.add_locations(*vehicle_id, points);
                Stored::Locations {
                    stored: points.len(),
                }
            }
            Job::Event { vehicle_id, event } => {
                let row = event_row(*vehicle_id, event, meta, received_at);
                self.batch.events.push((index, row));
                Stored::Done // replaced by the id once written
            }
            Job::Status {
                vehicle_id,
                t,
                data,
            } => {
                if self.seen_statuses.insert((*vehicle_id, *t, data.as_str())) {
                    self.batch.statuses.push(NewStatusSnapshot {
                        vehicle_id: *vehicle_id,
                        t: *t,
                        data,
                        received_at,
                    });
                }
                Stored::Done
            }
            Job::Obd {
                vehicle_id,
                t,
                data,
            } => {
                if self.seen_obds.insert((*vehicle_id, *t, data.as_str())) {
                    self.batch.obds.push(NewObdRecord {
                        vehicle_id: *vehicle_id,
                        t: *t,
                        data,
                        received_at,
                    });
                }
                Stored::Done
            }
            Job::Connection { .. } | Job::Command { .. } | Job::LastSeen { .. } => {
                self.add_log(job);
                Stored::Done
            }
        };
        self.stored.push(answer);
    }

    fn add_locations(&mut self, vehicle_id: i64, points: &[Point]) {
        self.batch
            .locations
            .extend(points.iter().map(|p| NewLocation {
                vehicle_id,
                t: p.t,
                lat: p.lat,
                lon: p.lon,
                speed: p.spd,
                heading: p.hdg,
                altitude: p.alt,
            }));
    }

    /// The connection and command logs, and `last_seen_at`.
    fn add_log(&mut self, job: &'a Job) {
        match job {
            Job::Connection {
                vehicle_id,
                node_id,
                remote_addr,
                kind,
                reason,
                t,
            } => self.batch.connections.push(NewConnectionLogEntry {
                vehicle_id: *vehicle_id,
                node_id,
                remote_addr: remote_addr.as_deref(),
                kind,
                reason: reason.as_deref(),
                t: *t,
            }),
            Job::Command {
                vehicle_id,
                user_id,
                name,
                args,
                status,
                result,
                created_at,
                completed_at,
            } => self.batch.commands.push(NewCommandLogEntry {
                vehicle_id: *vehicle_id,
                user_id: *user_id,
                name,
                args,
                status,
                result: result.as_deref(),
                created_at: *created_at,
                completed_at: *completed_at,
            }),
            Job::LastSeen { vehicle_id, t } => {
                let last_seen = &mut self.batch.last_seen;
                match last_seen.iter_mut().find(|(v, _)| v == vehicle_id) {
                    Some((_, latest)) => *latest = (*latest).max(*t),
                    None => last_seen.push((*vehicle_id, *t)),
                }
            }
            _ => {}
        }
    }
}

fn event_row<'a>(
    vehicle_id: i64,
    event: &'a EventIn,
    meta: Option<&'a str>,
    received_at: i64,
) -> NewEvent<'a> {
    NewEvent {
        vehicle_id,
        kind: &event.kind,
        t: event.t,
        lat: event.lat,
        lon: event.lon,
        meta,
        received_at,
    }
}
