//! The group-commit ingest writer on a real database (the backend of this
//! run): acks only after commit, exactly-once storage under concurrency,
//! idempotent resends, the busy policy, failure isolation, every job kind,
//! and the drain on shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use roadhub::db::schema::{
    command_log, connection_log, events, locations, obd_records, status_snapshots, vehicles,
};
use roadhub::db::{Backend, Db, DbConn};
use roadhub::ingest::{
    EventIn, IngestError, IngestWriter, Job, Point, Stored, SubmitError, WriteError, WriterOptions,
};
use serde_json::json;

/// A base time well inside the sane window.
fn t0() -> i64 {
    roadhub::util::now_ms() - 3_600_000
}

/// Points at seconds `range` after `base`.
fn points(base: i64, range: std::ops::Range<i64>) -> Vec<Point> {
    range
        .map(|i| Point {
            t: base + i * 1000,
            lat: 37.5 + i as f64 * 1e-5,
            lon: 127.0,
            spd: Some(40.0),
            hdg: (i % 2 == 0).then_some(180.0),
            alt: None,
        })
        .collect()
}

fn locs(vehicle_id: i64, base: i64, range: std::ops::Range<i64>) -> Job {
    Job::Locations {
        vehicle_id,
        points: points(base, range),
    }
}

fn count_locations(db: &Db, vehicle_id: i64) -> i64 {
    let mut conn = db.get().unwrap();
    roadhub::db_run!(&mut conn, |c| locations::table
        .filter(locations::vehicle_id.eq(vehicle_id))
        .count()
        .get_result::<i64>(c))
    .unwrap()
}

/// A writer with the backend's default number of threads (2 on
/// PostgreSQL).
fn writer(db: &Db, queue_capacity: usize) -> IngestWriter {
    start(db, queue_capacity, 0)
}

/// A writer with one thread and one queue, for tests that count on which
/// jobs share a batch.
fn single_writer(db: &Db, queue_capacity: usize) -> IngestWriter {
    start(db, queue_capacity, 1)
}

fn start(db: &Db, queue_capacity: usize, writers: usize) -> IngestWriter {
    IngestWriter::start(
        db.clone(),
        WriterOptions {
            queue_capacity,
            max_batch_rows: 20_000,
            max_wait: Duration::ZERO,
            writers,
        },
    )
    .unwrap()
}

/// Another connection holding the write lock on `locations` until released:
/// `BEGIN IMMEDIATE` on SQLite (the whole database), `LOCK TABLE` on
/// PostgreSQL. The writer stalls behind it.
struct WriteLock(Option<DbConn>);

impl WriteLock {
    fn take(db: &Db) -> Self {
        let mut conn = db.get().unwrap();
        let sql = match db.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN; LOCK TABLE locations IN EXCLUSIVE MODE",
        };
        roadhub::db_run!(&mut conn, |c| c.batch_execute(sql)).unwrap();
        Self(Some(conn))
    }

    fn release(mut self) {
        self.release_now();
    }

    fn release_now(&mut self) {
        if let Some(mut conn) = self.0.take() {
            roadhub::db_run!(&mut conn, |c| c.batch_execute("ROLLBACK")).unwrap();
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        self.release_now();
    }
}

/// Wait until the writer has taken every queued job (it is then stalled
/// inside its transaction, behind a [`WriteLock`]).
async fn until_taken(w: &IngestWriter) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.queue_len() > 0 {
        assert!(Instant::now() < deadline, "the writer took nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let it reach the lock.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A long busy timeout, so a writer stalled by a test's lock waits for it.
fn patient() -> TestDb {
    TestDb::open_with(|c| c.database.sqlite_busy_timeout_ms = 60_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_come_after_commit() {
    let tdb = TestDb::open();
    let (_, ids) = tdb.user_with_vehicles(1);
    let w = writer(&tdb.db, 64);
    let other = tdb.reconnect();
    let base = t0();
    for round in 0..5 {
        let stored = w
            .write(locs(ids[0], base, round * 60..(round + 1) * 60))
            .await
            .unwrap();
        assert_eq!(stored, Stored::Locations { stored: 60 });
        // Another pool sees the points as soon as the ack is in.
        assert_eq!(count_locations(&other, ids[0]), (round + 1) * 60);
    }
    let mut conn = other.get().unwrap();
    let first: (i64, f64, Option<f64>, Option<f64>, Option<f64>) =
        roadhub::db_run!(&mut conn, |c| locations::table
            .filter(locations::vehicle_id.eq(ids[0]))
            .order(locations::t.asc())
            .select((
                locations::t,
                locations::lat,
                locations::speed,
                locations::heading,
                locations::altitude
            ))
            .first(c))
        .unwrap();
    assert_eq!(first, (base, 37.5, Some(40.0), Some(180.0), None));
    let m = w.metrics().snapshot();
    assert_eq!((m.jobs_submitted, m.jobs_stored, m.jobs_failed), (5, 5, 0));
    assert_eq!(m.points_stored, 300);
    assert!(w.metrics().commit_seconds.count() >= 1, "commits are timed");
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_are_all_stored_exactly_once() {
    let tdb = TestDb::open();
    let (_, ids) = tdb.user_with_vehicles(8);
    let w = writer(&tdb.db, 4096);
    let expected_writers = match tdb.db.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => roadhub::ingest::writer::DEFAULT_PG_WRITERS,
    };
    assert_eq!(w.writers(), expected_writers);
    assert_eq!(w.queue_capacity(), 4096);
    let base = t0();
    let mut tasks = Vec::new();
    // 8 vehicles x 5 tasks each (disjoint time ranges) x 10 batches of 60.
    for (v, &vehicle_id) in ids.iter().enumerate() {
        for task in 0..5i64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                for batch in 0..10i64 {
                    let from = (task * 10 + batch) * 60;
                    let job = locs(vehicle_id, base, from..from + 60);
                    let stored = w.write(job).await.unwrap();
                    assert_eq!(stored, Stored::Locations { stored: 60 }, "vehicle {v}");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let other = tdb.reconnect();
    for &id in &ids {
        assert_eq!(count_locations(&other, id), 3000);
    }
    // Exactly once: the counts match, and (vehicle_id, t) is unique.
    let m = w.metrics().snapshot();
    assert_eq!(m.jobs_stored, 400);
    assert_eq!(m.points_stored, 24_000);
    assert!(m.batches <= 400, "{m:?}");
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_idempotent() {
    let tdb = TestDb::open();
    let (_, ids) = tdb.user_with_vehicles(1);
    let w = writer(&tdb.db, 64);
    let base = t0();
    for _ in 0..3 {
        assert_eq!(
            w.write(locs(ids[0], base, 0..60)).await.unwrap(),
            Stored::Locations { stored: 60 }
        );
    }
    assert_eq!(count_locations(&tdb.db, ids[0]), 60);
    // Half old, half new: every point counts as stored, new ones are added.
    assert_eq!(
        w.write(locs(ids[0], base, 30..90)).await.unwrap(),
        Stored::Locations { stored: 60 }
    );
    assert_eq!(count_locations(&tdb.db, ids[0]), 90);
    // The same time twice in one batch, and the same batch twice in one
    // transaction (both submitted before the writer wakes).
    let mut dup = points(base, 100..110);
    dup.extend(points(base, 105..115));
    let a = w
        .submit(Job::Locations {
            vehicle_id: ids[0],
            points: dup.clone(),
        })
        .unwrap();
    let b = w
        .submit(Job::Locations {
            vehicle_id: ids[0],
            points: dup,
        })
        .unwrap();
    assert_eq!(a.await.unwrap(), Ok(Stored::Locations { stored: 20 }));
    assert_eq!(b.await.unwrap(), Ok(Stored::Locations { stored: 20 }));
    assert_eq!(count_locations(&tdb.db, ids[0]), 105);
    w.flush_and_stop(Duration::from_secs(10));
}

fn count_reports(db: &Db, vehicle_id: i64) -> (i64, i64) {
    let mut conn = db.get().unwrap();
    let statuses = roadhub::db_run!(&mut conn, |c| status_snapshots::table
        .filter(status_snapshots::vehicle_id.eq(vehicle_id))
        .count()
        .get_result::<i64>(c))
    .unwrap();
    let obds = roadhub::db_run!(&mut conn, |c| obd_records::table
        .filter(obd_records::vehicle_id.eq(vehicle_id))
        .count()
        .get_result::<i64>(c))
    .unwrap();
    (statuses, obds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_status_or_obd_is_stored_once_even_in_one_batch() {
    let tdb = patient();
    let (_, ids) = tdb.user_with_vehicles(2);
    let w = single_writer(&tdb.db, 64);
    let base = t0();
    let status = |vehicle_id: i64, data: &str| Job::Status {
        vehicle_id,
        t: base,
        data: data.into(),
    };
    let obd = |vehicle_id: i64, data: &str| Job::Obd {
        vehicle_id,
        t: base,
        data: data.into(),
    };
    let lock = WriteLock::take(&tdb.db);
    let first = w.submit(locs(ids[0], base, 0..60)).unwrap();
    until_taken(&w).await;
    // These queue up behind the lock and go in one batch: each report
    // twice, another status at the same time, the same report of another
    // vehicle.
    let acks = [
        status(ids[0], r#"{"battery":12.4}"#),
        status(ids[0], r#"{"battery":12.4}"#),
        obd(ids[0], r#"{"rpm":900}"#),
        obd(ids[0], r#"{"rpm":900}"#),
        status(ids[0], r#"{"battery":12.1}"#),
        status(ids[1], r#"{"battery":12.4}"#),
    ]
    .map(|job| w.submit(job).unwrap());
    lock.release();
    assert_eq!(first.await.unwrap(), Ok(Stored::Locations { stored: 60 }));
    for ack in acks {
        assert_eq!(ack.await.unwrap(), Ok(Stored::Done));
    }
    let m = w.metrics().snapshot();
    assert_eq!((m.batches, m.batches_retried), (2, 0), "{m:?}");
    assert_eq!(count_reports(&tdb.db, ids[0]), (2, 1));
    assert_eq!(count_reports(&tdb.db, ids[1]), (1, 0));
    // Resent in a later batch: found in the table, not stored again.
    for job in [
        status(ids[0], r#"{"battery":12.4}"#),
        obd(ids[0], r#"{"rpm":900}"#),
        status(ids[0], r#"{"battery":12.1}"#),
    ] {
        assert_eq!(w.write(job).await.unwrap(), Stored::Done);
    }
    assert_eq!(count_reports(&tdb.db, ids[0]), (2, 1));
    // Another time with the same data is another report.
    assert_eq!(
        w.write(Job::Obd {
            vehicle_id: ids[0],
            t: base + 1,
            data: r#"{"rpm":900}"#.into(),
        })
        .await
        .unwrap(),
        Stored::Done
    );
    assert_eq!(count_reports(&tdb.db, ids[0]), (2, 2));
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_without_blocking() {
    let tdb = patient();
    let (_, ids) = tdb.user_with_vehicles(1);
    let w = single_writer(&tdb.db, 2);
    assert_eq!(w.queue_capacity(), 2);
    let base = t0();
    let lock = WriteLock::take(&tdb.db);
    let first = w.submit(locs(ids[0], base, 0..60)).unwrap();
    until_taken(&w).await;
    // The writer is stalled in its transaction: two more fit in the queue.
    let a = w.submit(locs(ids[0], base, 60..120)).unwrap();
    let b = w.submit(locs(ids[0], base, 120..180)).unwrap();
    assert_eq!(w.queue_len(), 2);
    let started = Instant::now();
    assert_eq!(
        w.submit(locs(ids[0], base, 180..240)).unwrap_err(),
        SubmitError::Busy
    );
    assert_eq!(
        w.write(locs(ids[0], base, 240..300)).await.unwrap_err(),
        IngestError::Busy
    );
    assert_eq!(IngestError::Busy.code(), "busy");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "submit blocked"
    );
    assert_eq!(w.metrics().snapshot().busy_rejections, 2);
    lock.release();
    for ack in [first, a, b] {
        assert_eq!(ack.await.unwrap(), Ok(Stored::Locations { stored: 60 }));
    }
    assert_eq!(count_locations(&tdb.db, ids[0]), 180);
    // Room again.
    w.write(locs(ids[0], base, 180..240)).await.unwrap();
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_job_fails_alone() {
    let tdb = patient();
    let (_, ids) = tdb.user_with_vehicles(2);
    let w = single_writer(&tdb.db, 64);
    let base = t0();
    let lock = WriteLock::take(&tdb.db);
    let first = w.submit(locs(ids[0], base, 0..60)).unwrap();
    until_taken(&w).await;
    // These queue up behind the lock and go in one batch.
    let good = w.submit(locs(ids[0], base, 60..120)).unwrap();
    let bad = w.submit(locs(i64::MAX / 2, base, 0..60)).unwrap();
    let event = w
        .submit(Job::Event {
            vehicle_id: ids[1],
            event: EventIn {
                kind: "impact".into(),
                t: base,
                lat: None,
                lon: None,
                meta: None,
            },
        })
        .unwrap();
    let bad_event = w
        .submit(Job::Event {
            vehicle_id: -1,
            event: EventIn {
                kind: "impact".into(),
                t: base,
                lat: None,
                lon: None,
                meta: None,
            },
        })
        .unwrap();
    let other = w.submit(locs(ids[1], base, 0..60)).unwrap();
    lock.release();
    assert_eq!(first.await.unwrap(), Ok(Stored::Locations { stored: 60 }));
    assert_eq!(good.await.unwrap(), Ok(Stored::Locations { stored: 60 }));
    assert_eq!(bad.await.unwrap(), Err(WriteError::VehicleGone));
    assert!(matches!(event.await.unwrap(), Ok(Stored::Event { id, resent: false }) if id > 0));
    assert_eq!(bad_event.await.unwrap(), Err(WriteError::VehicleGone));
    assert_eq!(other.await.unwrap(), Ok(Stored::Locations { stored: 60 }));
    assert_eq!(
        IngestError::Write(WriteError::VehicleGone).code(),
        "vehicle_gone"
    );
    assert_eq!(count_locations(&tdb.db, ids[0]), 120);
    assert_eq!(count_locations(&tdb.db, ids[1]), 60);
    let m = w.metrics().snapshot();
    assert!(m.batches_retried >= 1, "{m:?}");
    assert_eq!((m.jobs_stored, m.jobs_failed), (4, 2), "{m:?}");

    // A vehicle deleted while its session still sends.
    let mut conn = tdb.db.get().unwrap();
    roadhub::db_run!(&mut conn, |c| diesel::delete(vehicles::table.find(ids[1]))
        .execute(c))
    .unwrap();
    assert_eq!(
        w.write(locs(ids[1], base, 60..120)).await.unwrap_err(),
        IngestError::Write(WriteError::VehicleGone)
    );
    // The writer carries on.
    w.write(locs(ids[0], base, 120..180)).await.unwrap();
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_kind_is_stored() {
    let tdb = TestDb::open();
    let (user_id, ids) = tdb.user_with_vehicles(1);
    let v = ids[0];
    let w = writer(&tdb.db, 64);
    let base = t0();
    let Stored::Event { id, .. } = w
        .write(Job::Event {
            vehicle_id: v,
            event: EventIn {
                kind: "impact".into(),
                t: base,
                lat: Some(37.5),
                lon: Some(127.0),
                meta: Some(json!({"g": 2.5, "clip": "front"})),
            },
        })
        .await
        .unwrap()
    else {
        panic!("not an event id")
    };
    for job in [
        Job::Status {
            vehicle_id: v,
            t: base,
            data: r#"{"battery":12.4}"#.into(),
        },
        Job::Obd {
            vehicle_id: v,
            t: base + 1,
            data: r#"{"rpm":900}"#.into(),
        },
        Job::Connection {
            vehicle_id: v,
            node_id: "node-a".into(),
            remote_addr: Some("10.0.0.1:5555".into()),
            kind: "connect",
            reason: None,
            t: base,
        },
        Job::Command {
            vehicle_id: v,
            user_id: Some(user_id),
            name: "snapshot".into(),
            args: r#"{"channel":"front"}"#.into(),
            status: "ok".into(),
            result: Some(r#"{"ok":true}"#.into()),
            created_at: base,
            completed_at: Some(base + 300),
        },
        Job::LastSeen {
            vehicle_id: v,
            t: base + 5000,
        },
    ] {
        assert_eq!(w.write(job).await.unwrap(), Stored::Done);
    }
    // Last seen never goes back.
    assert_eq!(
        w.write(Job::LastSeen {
            vehicle_id: v,
            t: base
        })
        .await
        .unwrap(),
        Stored::Done
    );

    let mut conn = tdb.reconnect().get().unwrap();
    let event: (i64, String, i64, Option<f64>, Option<String>) =
        roadhub::db_run!(&mut conn, |c| events::table
            .find(id)
            .select((
                events::vehicle_id,
                events::kind,
                events::t,
                events::lat,
                events::meta
            ))
            .first(c))
        .unwrap();
    assert_eq!((event.0, event.1.as_str(), event.2), (v, "impact", base));
    assert_eq!(event.3, Some(37.5));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(event.4.as_deref().unwrap()).unwrap(),
        json!({"g": 2.5, "clip": "front"})
    );
    let status: (i64, String) = roadhub::db_run!(&mut conn, |c| status_snapshots::table
        .filter(status_snapshots::vehicle_id.eq(v))
        .select((status_snapshots::t, status_snapshots::data))
        .first(c))
    .unwrap();
    assert_eq!(status, (base, r#"{"battery":12.4}"#.to_string()));
    let obd: (i64, String) = roadhub::db_run!(&mut conn, |c| obd_records::table
        .filter(obd_records::vehicle_id.eq(v))
        .select((obd_records::t, obd_records::data))
        .first(c))
    .unwrap();
    assert_eq!(obd, (base + 1, r#"{"rpm":900}"#.to_string()));
    let conn_log: (String, Option<String>, String) =
        roadhub::db_run!(&mut conn, |c| connection_log::table
            .filter(connection_log::vehicle_id.eq(v))
            .select((
                connection_log::node_id,
                connection_log::remote_addr,
                connection_log::kind
            ))
            .first(c))
        .unwrap();
    assert_eq!(
        conn_log,
        (
            "node-a".to_string(),
            Some("10.0.0.1:5555".to_string()),
            "connect".to_string()
        )
    );
    let cmd: (Option<i64>, String, String, Option<i64>) =
        roadhub::db_run!(&mut conn, |c| command_log::table
            .filter(command_log::vehicle_id.eq(v))
            .select((
                command_log::user_id,
                command_log::name,
                command_log::status,
                command_log::completed_at
            ))
            .first(c))
        .unwrap();
    assert_eq!(
        cmd,
        (
            Some(user_id),
            "snapshot".to_string(),
            "ok".to_string(),
            Some(base + 300)
        )
    );
    let seen: Option<i64> = roadhub::db_run!(&mut conn, |c| vehicles::table
        .find(v)
        .select(vehicles::last_seen_at)
        .first(c))
    .unwrap();
    assert_eq!(seen, Some(base + 5000));
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_batches_are_chunked() {
    let tdb = TestDb::open();
    let (_, ids) = tdb.user_with_vehicles(2);
    let w = writer(&tdb.db, 64);
    let base = t0();
    // Past SQLite's 32,766 bind parameters at 7 a row, and not a multiple
    // of any chunk size.
    let a = w.submit(locs(ids[0], base, 0..5_003)).unwrap();
    let b = w.submit(locs(ids[1], base, 0..1_237)).unwrap();
    assert_eq!(a.await.unwrap(), Ok(Stored::Locations { stored: 5_003 }));
    assert_eq!(b.await.unwrap(), Ok(Stored::Locations { stored: 1_237 }));
    assert_eq!(count_locations(&tdb.db, ids[0]), 5_003);
    assert_eq!(count_locations(&tdb.db, ids[1]), 1_237);
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_stop_drains_the_queue() {
    let tdb = patient();
    let (_, ids) = tdb.user_with_vehicles(1);
    let w = single_writer(&tdb.db, 64);
    let base = t0();
    let lock = WriteLock::take(&tdb.db);
    let mut acks = vec![w.submit(locs(ids[0], base, 0..60)).unwrap()];
    until_taken(&w).await;
    for i in 1..20 {
        acks.push(w.submit(locs(ids[0], base, i * 60..(i + 1) * 60)).unwrap());
    }
    assert_eq!(w.queue_len(), 19);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        lock.release();
    });
    let stopper = w.clone();
    tokio::task::spawn_blocking(move || stopper.flush_and_stop(Duration::from_secs(30)))
        .await
        .unwrap();
    releaser.join().unwrap();
    // Everything queued before the stop is committed and acknowledged.
    assert_eq!(count_locations(&tdb.reconnect(), ids[0]), 1200);
    for ack in acks {
        assert_eq!(ack.await.unwrap(), Ok(Stored::Locations { stored: 60 }));
    }
    // Closed for good.
    assert_eq!(
        w.submit(locs(ids[0], base, 2000..2060)).unwrap_err(),
        SubmitError::Closed
    );
    assert_eq!(
        w.write(locs(ids[0], base, 2000..2060)).await.unwrap_err(),
        IngestError::Closed
    );
    let again = Instant::now();
    w.flush_and_stop(Duration::from_secs(10));
    assert!(again.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_still_drains() {
    let tdb = TestDb::open();
    let (_, ids) = tdb.user_with_vehicles(1);
    let w = writer(&tdb.db, 64);
    let base = t0();
    let acks: Vec<_> = (0..10)
        .map(|i| w.submit(locs(ids[0], base, i * 60..(i + 1) * 60)).unwrap())
        .collect();
    drop(w);
    for ack in acks {
        assert_eq!(ack.await.unwrap(), Ok(Stored::Locations { stored: 60 }));
    }
    assert_eq!(count_locations(&tdb.db, ids[0]), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_batches_more() {
    let tdb = TestDb::open();
    let (_, ids) = tdb.user_with_vehicles(1);
    let w = IngestWriter::start(
        tdb.db.clone(),
        WriterOptions {
            queue_capacity: 64,
            max_batch_rows: 20_000,
            max_wait: Duration::from_millis(200),
            writers: 1,
        },
    )
    .unwrap();
    let base = t0();
    let first = w.submit(locs(ids[0], base, 0..60)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = w.submit(locs(ids[0], base, 60..120)).unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    // Both went in one transaction.
    let m = w.metrics().snapshot();
    assert_eq!((m.batches, m.max_batch_rows), (1, 120), "{m:?}");
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vehicles_jobs_commit_in_order() {
    let tdb = TestDb::open();
    let (_, ids) = tdb.user_with_vehicles(20);
    let w = writer(&tdb.db, 256);
    let base = t0();
    // Submitted back to back without waiting: connect, then disconnect,
    // for every vehicle.
    let mut acks = Vec::new();
    for &v in &ids {
        for (kind, dt) in [("connect", 0), ("disconnect", 1)] {
            acks.push(
                w.submit(Job::Connection {
                    vehicle_id: v,
                    node_id: "n".into(),
                    remote_addr: None,
                    kind,
                    reason: None,
                    t: base + dt,
                })
                .unwrap(),
            );
        }
    }
    for ack in acks {
        assert_eq!(ack.await.unwrap(), Ok(Stored::Done));
    }
    let mut conn = tdb.db.get().unwrap();
    for &v in &ids {
        let kinds: Vec<String> = roadhub::db_run!(&mut conn, |c| connection_log::table
            .filter(connection_log::vehicle_id.eq(v))
            .order(connection_log::id.asc())
            .select(connection_log::kind)
            .load(c))
        .unwrap();
        assert_eq!(kinds, ["connect", "disconnect"]);
    }
    w.flush_and_stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_submit_racing_shutdown_gets_an_answer() {
    let tdb = TestDb::open();
    let (_, ids) = tdb.user_with_vehicles(8);
    let w = writer(&tdb.db, 64);
    let base = t0();
    let mut tasks = Vec::new();
    for &v in &ids {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = 0i64;
            for i in 0.. {
                match w.write(locs(v, base, i * 10..(i + 1) * 10)).await {
                    Ok(_) => acked += 10,
                    Err(IngestError::Busy) => tokio::task::yield_now().await,
                    Err(IngestError::Closed) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
            (v, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopper = w.clone();
    tokio::task::spawn_blocking(move || stopper.flush_and_stop(Duration::from_secs(30)))
        .await
        .unwrap();
    for t in tasks {
        let (v, acked) = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("a submitter was left without an answer")
            .unwrap();
        assert!(acked > 0);
        // Every acknowledged point is stored (a point may be stored without
        // its ack only if the answer was lost, which shutdown does not do).
        assert_eq!(count_locations(&tdb.db, v), acked);
    }
}
