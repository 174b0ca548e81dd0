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
//! Top to bottom: a module uses only modules listed below it (the layering
//! of `docs/ARCHITECTURE.md`, checked by `tests/layering.rs`).
//!
//! - [`node`]: one running node: builds every part, wires them through
//!   their interfaces, start-up and graceful shutdown.
//! - [`simulate`]: `roadhub simulate`, simulated blackboxes, phones and
//!   video viewers over the network against any hub; the benchmark driver.
//! - [`http`]: the HTTP server (hyper + axum on actix-rt workers), the REST
//!   routes, live play, health and metrics; the only place that picks
//!   status codes ([`ApiError`]).
//! - [`live`]: the live-video runtime: RTMP ingest, Stream actors, the
//!   RTSP pull, on-demand sources, edge pulls across nodes, usage counts. It
//!   reaches devices, plans, channels and device tokens only through the
//!   small interfaces of [`live::ports`], wired in [`node`].
//! - [`actors`]: the realtime hub: device and app sessions, rooms,
//!   presence, commands.
//! - [`ingest`]: device telemetry: validation, and the group-commit writer
//!   that makes a device's ack mean durable.
//! - [`cluster`]: the backends below the hub: device presence, node
//!   control and the stream registry, each in process (single node) or on
//!   Redis.
//! - [`bus`]: room messages between nodes: in process, or Redis sharded
//!   pub/sub.
//! - [`socketio`]: the Socket.IO v4 server (Engine.IO 4, Socket.IO 5).
//! - [`media`]: live video's pure codecs: the media model, FLV, AMF0,
//!   H.264/AAC configuration, MPEG-TS, HLS playlists and segmenter (no I/O).
//! - [`auth`]: passwords (argon2id), access and publish tokens (JWT HS256),
//!   rotating refresh tokens with reuse detection, rate limits, account
//!   rules.
//! - [`db`]: diesel on SQLite and PostgreSQL: one portable schema, migrations
//!   per backend, all SQL, written once and run on either backend.
//! - [`metrics`], [`logging`]: the Prometheus registry, the log output.
//! - [`config`], [`util`]: configuration declared once (type, default, doc:
//!   TOML file, `ROADHUB_<SECTION>_<KEY>` environment overrides, CLI flags),
//!   small shared helpers.

pub mod actors;
pub mod auth;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod db;
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
pub use http::error::ApiError;
pub use node::{Node, serve, serve_with};
