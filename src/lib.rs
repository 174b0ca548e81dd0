//! roadhub: the cloud hub of a dashcam ("blackbox") service, in one binary.
//!
//! Blackboxes keep persistent sessions and report GPS, events, OBD and status;
//! phones and browsers log in, watch their vehicles live and look back at
//! history. This crate is that server. The public interface (CLI, REST,
//! Socket.IO events, error codes, live-video URLs) is documented in
//! `docs/API.md`; its names are stable.
//!
//! # Layout
//!
//! - [`config`]: configuration declared once (type, default, doc): TOML file,
//!   `ROADHUB_<SECTION>_<KEY>` environment overrides, CLI flags.
//! - [`db`]: diesel on SQLite and PostgreSQL: one portable schema, migrations
//!   per backend, queries written once and run on either backend.
//! - [`ingest`]: device telemetry: validation, and the group-commit writer
//!   that makes a device's ack mean durable.
//! - [`actors`]: the realtime hub: device and app sessions, rooms,
//!   presence, commands.
//! - [`socketio`]: the Socket.IO v4 server (Engine.IO 4, Socket.IO 5).
//! - [`live`]: the live-video runtime: RTMP ingest, Stream actors, the
//!   RTSP pull, on-demand sources, edge pulls across nodes, usage counts. It
//!   reaches devices, plans, channels and the stream registry only through
//!   the small interfaces of [`live::ports`] and [`cluster::streams`], wired
//!   in [`node`].
//! - [`media`]: live video's pure core: the media model, FLV, MPEG-TS and
//!   HLS muxers, the FLV/RTMP tag parser (no I/O; [`live`] builds on it).
//! - [`auth`]: passwords (argon2id), access tokens (JWT HS256), rotating
//!   refresh tokens with reuse detection, device tokens, rate limits.
//! - [`http`]: the HTTP server (hyper + axum on actix-rt workers), the REST
//!   routes, health and metrics.
//! - [`error`]: the API error type and the contract's JSON error body.
//! - [`metrics`]: the Prometheus registry.
//! - [`node`]: one running node: state shared by every worker, start-up and
//!   graceful shutdown.
//! - [`simulate`]: `roadhub simulate`, simulated blackboxes and phones over
//!   REST and Socket.IO against any hub; the benchmark driver.

pub mod actors;
pub mod auth;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod ingest;
pub mod live;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod node;
pub mod simulate;
pub mod socketio;
pub mod util;

pub use config::Config;
pub use error::ApiError;
pub use node::{Node, serve, serve_with};
