//! Queries, one module per aggregate. Each function takes a [`DbConn`]
//! and is written once for both backends with [`crate::db_run!`] or
//! [`crate::db_write_tx!`]. They are blocking: call them inside
//! [`crate::db::Db::run`].
//!
//! [`DbConn`]: crate::db::DbConn

pub mod channels;
pub mod hls_sessions;
pub mod ingest;
pub mod telemetry;
pub mod tokens;
pub mod usage;
pub mod users;
pub mod vehicles;
