//! Database access with diesel, on SQLite (one node, no setup) and
//! PostgreSQL (many nodes), chosen by `database.url`.
//!
//! - One portable [`schema`] and one set of [`models`] serve both backends.
//! - Migrations live per backend in `migrations/{sqlite,postgres}`, embedded
//!   in the binary and run at start and by `roadhub migrate`.
//! - A query is written once, as generic diesel code inside [`db_run!`],
//!   which expands it for each backend's connection type. Where SQL really
//!   differs, the macro's per-backend arms are the place for it.
//! - Queries are blocking; [`Db::run`] runs them on tokio's blocking pool, so
//!   no async worker ever waits on the database.
//! - SQLite runs in WAL mode with a busy timeout and foreign keys on; write
//!   transactions take the lock up front ([`db_write_tx!`]) so they wait for
//!   it instead of failing with `SQLITE_BUSY` halfway.

pub mod models;
pub mod queries;
pub mod schema;
mod sqlite_plans;

pub use sqlite_plans::sqlite_stable_plans;

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::{Config, DatabaseUrl, redact_url};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A failure talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database task failed: {0}")]
    Task(String),
}

impl DbError {
    /// Is this a unique-constraint violation (a duplicate serial, email...)?
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }

    /// Is this a foreign-key violation (the row it points to is gone)?
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _
            ))
        )
    }
}

/// A pooled connection to either backend. Use [`db_run!`] to run a query on it.
pub enum DbConn {
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    Pg(PooledConnection<ConnectionManager<PgConnection>>),
}

/// Run the same diesel code on whichever backend `conn` is: the body is
/// expanded once per backend with `$c` bound to `&mut SqliteConnection` or
/// `&mut PgConnection`.
#[macro_export]
macro_rules! db_run {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite(pooled) => {
                let $c: &mut ::diesel::SqliteConnection = &mut *pooled;
                $body
            }
            $crate::db::DbConn::Pg(pooled) => {
                let $c: &mut ::diesel::PgConnection = &mut *pooled;
                $body
            }
        }
    };
}

/// Like [`db_run!`], inside a write transaction: `BEGIN IMMEDIATE` on SQLite
/// (the write lock is taken up front, waiting up to the busy timeout),
/// `BEGIN` on PostgreSQL. The body returns `Result<T, diesel::result::Error>`.
#[macro_export]
macro_rules! db_write_tx {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite(pooled) => {
                let conn: &mut ::diesel::SqliteConnection = &mut *pooled;
                conn.immediate_transaction(|$c| $body)
            }
            $crate::db::DbConn::Pg(pooled) => {
                let conn: &mut ::diesel::PgConnection = &mut *pooled;
                ::diesel::Connection::transaction(conn, |$c| $body)
            }
        }
    };
}

/// Which backend a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum PoolKind {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Pg(Pool<ConnectionManager<PgConnection>>),
}

/// The connection pool: cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct Db {
    pool: PoolKind,
}

#[derive(Debug)]
struct SqlitePragmas {
    busy_timeout_ms: u64,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {};
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;",
            self.busy_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Db {
    /// Open the pool (creating the SQLite file and its folder if needed).
    /// Does not run migrations: see [`Db::migrate`].
    pub fn connect(config: &Config) -> Result<Self, DbError> {
        let timeout = Duration::from_secs(config.database.connect_timeout_secs.max(1));
        let url = config.database_url().map_err(DbError::Task)?;
        let pool = match url {
            DatabaseUrl::Sqlite(path) => {
                sqlite_stable_plans();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DbError::Task(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                let size = match config.database.pool_size {
                    0 => 4,
                    n => n,
                };
                // WAL is a property of the file: switch it once, on one
                // connection, before the pool opens several at once (the
                // switch needs the exclusive lock).
                {
                    use diesel::Connection as _;
                    let mut conn =
                        SqliteConnection::establish(&sqlite_path(&path)).map_err(|e| {
                            DbError::Task(format!("cannot open {}: {e}", path.display()))
                        })?;
                    conn.batch_execute(&format!(
                        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL;",
                        config.database.sqlite_busy_timeout_ms
                    ))?;
                }
                let manager = ConnectionManager::<SqliteConnection>::new(sqlite_path(&path));
                let pool = Pool::builder()
                    .max_size(size)
                    .connection_timeout(timeout)
                    .connection_customizer(Box::new(SqlitePragmas {
                        busy_timeout_ms: config.database.sqlite_busy_timeout_ms,
                    }))
                    .build(manager)?;
                tracing::info!(path = %path.display(), pool = size, "SQLite database open");
                PoolKind::Sqlite(pool)
            }
            DatabaseUrl::Postgres(url) => {
                let size = match config.database.pool_size {
                    0 => 16,
                    n => n,
                };
                let manager = ConnectionManager::<PgConnection>::new(url.clone());
                let pool = Pool::builder()
                    .max_size(size)
                    .min_idle(Some(1))
                    .connection_timeout(timeout)
                    .build(manager)?;
                tracing::info!(url = %redact_url(&url), pool = size, "PostgreSQL database open");
                PoolKind::Pg(pool)
            }
        };
        Ok(Self { pool })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            PoolKind::Sqlite(_) => Backend::Sqlite,
            PoolKind::Pg(_) => Backend::Postgres,
        }
    }

    /// Take a connection from the pool (blocking).
    pub fn get(&self) -> Result<DbConn, DbError> {
        Ok(match &self.pool {
            PoolKind::Sqlite(p) => DbConn::Sqlite(p.get()?),
            PoolKind::Pg(p) => DbConn::Pg(p.get()?),
        })
    }

    /// Run blocking database work on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Apply pending migrations; returns the names of those applied.
    /// On PostgreSQL an advisory lock keeps nodes starting together from
    /// migrating at the same time.
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.get()?;
        let applied = match &mut conn {
            DbConn::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(ToString::to_string).collect())
                .map_err(|e| DbError::Migration(e.to_string()))?,
            DbConn::Pg(c) => {
                const LOCK: i64 = 0x0072_6f61_6468_7562; // "roadhub" in ASCII
                c.batch_execute(&format!("SELECT pg_advisory_lock({LOCK})"))?;
                let result = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
                    .map_err(|e| DbError::Migration(e.to_string()));
                c.batch_execute(&format!("SELECT pg_advisory_unlock({LOCK})"))?;
                result?
            }
        };
        Ok(applied)
    }

    /// `SELECT 1`: does the database answer?
    pub fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.get()?;
        db_run!(&mut conn, |c| c.batch_execute("SELECT 1"))?;
        Ok(())
    }
}

fn sqlite_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
