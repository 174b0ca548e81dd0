//! Socket.IO v4 as clients speak it: the Engine.IO protocol 4 underneath
//! (<https://socket.io/docs/v4/engine-io-protocol/>) and the Socket.IO
//! protocol 5 on top (<https://socket.io/docs/v4/socket-io-protocol/>).
//!
//! - [`engine_packet`]: Engine.IO packets, WebSocket frames and HTTP
//!   long-polling payloads.
//! - [`packet`]: Socket.IO packets (namespaces, events, acks, binary
//!   placeholders), and the fast frame encoders used by the fan-out.

pub mod engine_packet;
pub mod packet;
