//! The echo server that the official protocol test suites of the socket.io
//! repository (`docs/engine.io-protocol/v4-test-suite` and
//! `docs/socket.io-protocol/v5-test-suite`) run against. Served by the
//! `socketio_conformance` example (`main.rs` here) and by the project's
//! own protocol tests (`tests/common` includes this file).
//!
//! - `/engine.io/`: raw Engine.IO, every message sent back as is;
//! - `/socket.io/`: namespaces `/` and `/custom`. Each socket emits `auth`
//!   with its handshake auth on connect, answers `message` with
//!   `message-back` (same arguments, binary included), and acks
//!   `message-with-ack` with the same arguments.
//!
//! For tests of acks that the server asks for (the suites have none):
//! `request-ack` makes the server emit `ack-me` with the same arguments
//! and an ack id; the client's ack comes back as an `acked` event with the
//! ack's arguments (binary included), or `ack-error` if none comes in time.
//!
//! [`conformance_config`] holds the suites' settings.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use roadhub::socketio::{
    ConnectResult, DisconnectReason, EngineConfig, IncomingEvent, Namespace, Socket, SocketHandler,
    SocketIo,
};

/// How long after the CONNECT answer a socket emits `auth`.
///
/// The Socket.IO suite reads the CONNECT answer and then `auth` with two
/// one-shot listeners in a row, and its WebSocket client dispatches all
/// the messages of one TCP read at once: when both frames share a read,
/// the listener for `auth` is not there yet and the test misses it (a
/// known flaw of the suite, issue 32 of the socket.io-protocol
/// repository). A connection here writes everything queued at one wake-up
/// in one write, so the two would always share it; a few milliseconds
/// apart, they arrive as two reads even on a busy machine. Other clients
/// do not care.
pub const AUTH_EMIT_DELAY: Duration = Duration::from_millis(50);

/// How long the server waits for the client's ack after `ack-me`.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The suites' settings: pingInterval 300 ms, pingTimeout 200 ms,
/// maxPayload 1,000,000.
pub fn conformance_config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        ..EngineConfig::default()
    }
}

/// The echo namespace (`/` and `/custom` of the suites).
pub struct Echo;

struct EchoSocket {
    socket: Socket,
    auth: Value,
}

impl Namespace for Echo {
    fn connect(&self, socket: Socket, auth: Value) -> Pin<Box<dyn Future<Output = ConnectResult>>> {
        Box::pin(async move { Ok(Box::new(EchoSocket { socket, auth }) as Box<dyn SocketHandler>) })
    }
}

impl SocketHandler for EchoSocket {
    fn on_connected(&mut self) {
        let auth = std::mem::take(&mut self.auth);
        let socket = self.socket.clone();
        actix_rt::spawn(async move {
            tokio::time::sleep(AUTH_EMIT_DELAY).await;
            socket.emit("auth", &auth);
        });
    }

    fn on_event(&mut self, event: IncomingEvent) {
        match event.name.as_str() {
            "message" => self
                .socket
                .emit_args("message-back", event.args, event.attachments),
            "message-with-ack" => {
                if let Some(id) = event.ack {
                    self.socket.ack_args(id, event.args, event.attachments);
                }
            }
            "request-ack" => {
                let socket = self.socket.clone();
                actix_rt::spawn(async move {
                    match socket
                        .emit_with_ack_args("ack-me", event.args, event.attachments, ACK_TIMEOUT)
                        .await
                    {
                        Ok(acked) => socket.emit_args("acked", acked.args, acked.attachments),
                        Err(e) => socket.emit("ack-error", &Value::String(e.to_string())),
                    }
                });
            }
            _ => {}
        }
    }

    fn on_disconnect(&mut self, _reason: DisconnectReason) {}
}

/// Socket.IO with the echo namespaces `/` and `/custom`.
pub fn socket_io(config: EngineConfig) -> SocketIo {
    SocketIo::builder(config)
        .ns("/", Echo)
        .ns("/custom", Echo)
        .build()
}

/// The suites' server: raw Engine.IO echo at `/engine.io/`, the echo
/// namespaces at `/socket.io/`, permissive CORS.
pub fn app(config: EngineConfig) -> axum::Router {
    let engine = SocketIo::engine_echo(config.clone());
    axum::Router::new()
        .merge(roadhub::socketio::transport::router("/engine.io/", engine))
        .merge(roadhub::socketio::transport::router(
            "/socket.io/",
            socket_io(config),
        ))
        .layer(tower_http::cors::CorsLayer::very_permissive())
}

/// Serve `app` on `listener` with two workers until `stop` turns true.
/// Blocks: runs its own actix System (call it from a thread of its own).
pub fn serve_blocking(
    listener: std::net::TcpListener,
    app: axum::Router,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let options = roadhub::http::server::ServerOptions {
        workers: 2,
        header_read_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(1),
    };
    actix_rt::System::new().block_on(roadhub::http::server::run(listener, app, options, stop))
}
