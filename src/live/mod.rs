//! The live-video runtime: everything that moves live video with I/O, on
//! top of the pure codecs of [`crate::media`].
//!
//! A publisher (a blackbox over RTMP, a camera pulled over RTSP, another
//! node's stream pulled as an edge) feeds a [`stream::Stream`] actor, which
//! serves HTTP-FLV, WebSocket-FLV and HLS viewers (the routes are in
//! `src/http/live.rs`). A viewer asking for a stream nobody publishes starts
//! its source on demand, and the source stops once nobody watches.
//!
//! # Boundaries
//!
//! This runtime does not import the hub, the HTTP layer or the node. What
//! it needs from them it reaches through small interfaces handed to it when
//! the node is wired (`src/node.rs`):
//!
//! - [`ports::DeviceLink`]: a device's session, wherever it is connected
//!   (`live.start` / `live.stop`);
//! - [`ports::Plans`]: the plans' live minutes and the usage rows;
//! - [`ports::Channels`]: a camera channel's RTSP URL;
//! - [`ports::PublishAuth`]: device tokens, for RTMP publish;
//! - [`crate::cluster::streams::StreamRegistry`]: which node is a stream's
//!   origin (in-process on a single node, Redis in a cluster).
//!
//! Errors are this runtime's own ([`stream::LiveError`],
//! [`ondemand::OnDemandError`], [`edge::EdgeError`], ...); `src/http/` turns
//! them into status codes.
//!
//! # Layout
//!
//! - [`stream`]: the [`stream::Streams`] face, one actor per stream key,
//!   publishers and viewers.
//! - [`core`]: a stream's pure state: timeline, GOP cache, HLS feed, viewer
//!   queues and their lag policy.
//! - [`rtmp`]: the RTMP ingest (rml_rtmp): socket loop, publish
//!   authentication, limits.
//! - [`rtsp`]: the RTSP pull (retina): a camera's H.264/AAC as FLV
//!   payloads, with retry and a state watch.
//! - [`ondemand`]: starting and stopping sources for viewers; the plans'
//!   live minutes.
//! - [`edge`]: across nodes: reporting origins to the stream registry, and
//!   the edge pull of a stream published on another node.
//! - [`usage`]: bytes and seconds of live video per vehicle, counted in
//!   memory and flushed to the plans' store.
//! - [`ports`]: the interfaces above.

pub mod core;
pub mod edge;
pub mod ondemand;
pub mod ports;
pub mod rtmp;
pub mod rtsp;
pub mod stream;
pub mod usage;
