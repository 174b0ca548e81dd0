//! Durable telemetry: what devices send, validated, then written by one
//! group-commit writer shared by every session.
//!
//! - [`validate`]: `loc`, `event`, `status` and `obd` payloads
//!   (`serde_json::Value`, the Socket.IO event argument) into typed values,
//!   or a [`ValidationError`] whose code the device receives.
//! - [`writer`]: the [`IngestWriter`]: sessions submit [`Job`]s without
//!   blocking; one dedicated thread takes every job waiting, writes them in
//!   one transaction, and completes each job only after the commit. A
//!   device's ack therefore means durable: a device hears `ok` only after
//!   its data is committed. The queue is bounded: when it is full, [`SubmitError::Busy`]
//!   (the device hears `busy`) instead of growing memory.
//!
//! The writer's batching, durability and busy policy are described in
//! `docs/INGEST.md`. Reading history back is [`crate::db::queries::telemetry`]
//! (served by the REST history routes).
//!
//! A device session's `loc` handler, in short:
//!
//! ```ignore
//! let points = match ingest::parse_loc(&arg) {
//!     Ok(points) => points,
//!     Err(e) => return ack(e.ack()),
//! };
//! match writer.write(Job::Locations { vehicle_id, points }).await {
//!     Ok(Stored::Locations { stored }) => ack(json!({"ok": true, "stored": stored})),
//!     Ok(_) => ack(json!({"ok": true})),
//!     Err(e) => ack(json!({"ok": false, "error": e.code()})), // busy, unavailable, ...
//! }
//! ```

pub mod readings;
pub mod validate;
pub mod writer;

pub use validate::{
    EventIn, Point, Report, ValidationError, parse_event, parse_loc, parse_obd, parse_status,
};
pub use writer::{
    IngestError, IngestWriter, Job, Stored, SubmitError, WriteError, WriterMetrics, WriterOptions,
};
