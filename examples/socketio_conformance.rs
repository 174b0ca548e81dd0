//! The server the official protocol test suites run against
//! (socket.io repository: `docs/engine.io-protocol/v4-test-suite` and
//! `docs/socket.io-protocol/v5-test-suite`).
//!
//! Listens on 127.0.0.1:3000 with pingInterval 300 ms, pingTimeout 200 ms,
//! maxPayload 1,000,000 and permissive CORS:
//! - `/engine.io/`: raw Engine.IO, every message sent back as is;
//! - `/socket.io/`: namespaces `/` and `/custom`; each socket emits `auth`
//!   with its handshake auth on connect, answers `message` with
//!   `message-back` (same arguments, binary included), and acks
//!   `message-with-ack` with the same arguments.
//!
//! Run: `cargo run --release --example socketio_conformance`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use roadhub::socketio::{
    ConnectResult, DisconnectReason, EngineConfig, IncomingEvent, Namespace, Socket, SocketHandler,
    SocketIo,
};
use serde_json::Value;

struct Echo;

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
        self.socket.emit("auth", &auth);
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
            _ => {}
        }
    }

    fn on_disconnect(&mut self, _reason: DisconnectReason) {}
}

fn main() -> anyhow::Result<()> {
    roadhub::logging::init("human", "warn");
    let config = EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        ..EngineConfig::default()
    };
    let engine = SocketIo::engine_echo(config.clone());
    let sio = SocketIo::builder(config)
        .ns("/", Echo)
        .ns("/custom", Echo)
        .build();
    let app = axum::Router::new()
        .merge(roadhub::socketio::transport::router("/engine.io/", engine))
        .merge(roadhub::socketio::transport::router("/socket.io/", sio))
        .layer(tower_http::cors::CorsLayer::very_permissive());
    let listener = std::net::TcpListener::bind("127.0.0.1:3000")?;
    println!("socket.io conformance server on http://127.0.0.1:3000");
    actix_rt::System::new().block_on(async move {
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let options = roadhub::http::server::ServerOptions {
            workers: 2,
            header_read_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(1),
        };
        roadhub::http::server::run(listener, app, options, stop_rx).await
    })?;
    Ok(())
}
