//! The database layer on the backend of this run: migrations, seed,
//! SQLite pragmas, and the whole schema present.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use roadhub::db::{Backend, Db, DbConn};

fn open() -> (Db, tempfile::TempDir, Option<common::PgDatabase>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = roadhub::Config::default();
    let pg = common::pg_admin_url().map(|a| common::PgDatabase::create(&a));
    config.database.url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}/nested/folder/x.db", dir.path().display()),
    };
    (Db::connect(&config).unwrap(), dir, pg)
}

#[test]
fn migrations_apply_once_and_seed_the_default_plan() {
    let (db, _dir, _pg) = open();
    assert_eq!(
        db.backend() == Backend::Postgres,
        common::pg_admin_url().is_some()
    );
    // One per migration directory of the backend.
    let dir = match db.backend() {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let migrations = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(db.migrate().unwrap().len(), migrations);
    assert!(db.migrate().unwrap().is_empty());
    let mut conn = db.get().unwrap();
    let plan = roadhub::db::queries::vehicles::default_plan(&mut conn).unwrap();
    assert_eq!(plan.name, "free");
    assert!(
        plan.retention_days > 0 && plan.storage_quota_bytes > 0 && plan.live_minutes_per_month > 0
    );
}

#[test]
fn every_domain_table_exists() {
    let (db, _dir, _pg) = open();
    db.migrate().unwrap();
    let mut conn = db.get().unwrap();
    for table in [
        "users",
        "refresh_tokens",
        "service_tokens",
        "push_tokens",
        "plans",
        "device_models",
        "vehicles",
        "channels",
        "events",
        "locations",
        "obd_records",
        "status_snapshots",
        "files",
        "geofences",
        "geofence_vehicles",
        "traffic",
        "live_usage",
        "connection_log",
        "command_log",
        "outbox",
        "users_purged",
        "vehicles_purged",
        "settings",
        "hls_sessions",
    ] {
        let n: i64 = roadhub::db_run!(&mut conn, |c| diesel::select(diesel::dsl::sql::<BigInt>(
            &format!("(SELECT COUNT(*) FROM {table})")
        ))
        .get_result(c)
        .unwrap_or_else(|e| panic!("{table}: {e}")));
        assert!(n >= 0);
    }
}

#[test]
fn sqlite_runs_in_wal_mode_with_foreign_keys_on() {
    let (db, _dir, _pg) = open();
    db.migrate().unwrap();
    let mut conn = db.get().unwrap();
    let DbConn::Sqlite(c) = &mut conn else {
        return; // PostgreSQL run: nothing SQLite-specific to check.
    };
    let mode: String = diesel::select(diesel::dsl::sql::<Text>(
        "(SELECT journal_mode FROM pragma_journal_mode)",
    ))
    .get_result(&mut **c)
    .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT foreign_keys FROM pragma_foreign_keys)",
    ))
    .get_result(&mut **c)
    .unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT timeout FROM pragma_busy_timeout)",
    ))
    .get_result(&mut **c)
    .unwrap();
    assert_eq!(busy, 5000);
    // Foreign keys are enforced: a vehicle for a user that does not exist.
    let err =
        roadhub::db::queries::vehicles::create(&mut conn, 424_242, "FK-1", "x", "h").unwrap_err();
    assert!(err.is_foreign_key_violation(), "{err}");
}
