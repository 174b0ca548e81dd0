//! The server the official protocol test suites run against
//! (socket.io repository: `docs/engine.io-protocol/v4-test-suite` and
//! `docs/socket.io-protocol/v5-test-suite`); see `scripts/conformance`.
//!
//! Listens on 127.0.0.1:3000 with pingInterval 300 ms, pingTimeout 200 ms,
//! maxPayload 1,000,000 and permissive CORS:
//! - `/engine.io/`: raw Engine.IO, every message sent back as is;
//! - `/socket.io/`: namespaces `/` and `/custom`; each socket emits `auth`
//!   with its handshake auth on connect, answers `message` with
//!   `message-back` (same arguments, binary included), and acks
//!   `message-with-ack` with the same arguments.
//!
//! The server itself is `echo.rs`, next to this file.
//!
//! Run: `cargo run --release --example socketio_conformance`.

mod echo;

fn main() -> anyhow::Result<()> {
    roadhub::logging::init("human", "warn");
    // The suites expect this address.
    let addr = "127.0.0.1:3000";
    let listener = std::net::TcpListener::bind(addr)?;
    println!("socket.io conformance server on http://{addr}");
    // Runs until the process is stopped.
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    echo::serve_blocking(listener, echo::app(echo::conformance_config()), stop_rx)?;
    Ok(())
}
