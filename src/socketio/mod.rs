//! Socket.IO v4 server, written for the hub: Engine.IO protocol 4
//! (<https://socket.io/docs/v4/engine-io-protocol/>) with HTTP long-polling,
//! WebSocket and the upgrade between them, and Socket.IO protocol 5
//! (<https://socket.io/docs/v4/socket-io-protocol/>) with namespaces, acks
//! both ways and binary attachments.
//!
//! - [`engine_packet`], [`packet`]: the codecs.
//! - [`conn`]: one connection as an actor (transport, heartbeats, packets).
//! - [`queue`]: its bounded outbound queue and slow-client policy.
//! - [`frame`]: packets encoded once and shared by every recipient.
//! - [`transport`]: the HTTP entry (handshake, polling, WebSocket upgrade).
//! - [`server`]: configuration, namespaces and socket handles.

pub mod conn;
pub mod engine_packet;
pub mod frame;
pub mod packet;
pub mod queue;
pub mod readings;
pub mod server;
pub mod transport;

pub use frame::{Frame, FrameClass};
pub use server::{
    AckError, Acked, ConnectResult, DisconnectReason, EngineConfig, IncomingEvent, Namespace,
    Socket, SocketHandler, SocketIo,
};
