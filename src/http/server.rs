//! The HTTP server: `workers` threads, each an actix-rt arbiter (a
//! single-threaded tokio runtime), each accepting from the same listening
//! socket and serving its connections with hyper on that thread. Actors of
//! a connection (later: Socket.IO sessions) live on the same arbiter as its
//! socket, so no cross-thread hop sits on the hot path.
//!
//! Shutdown: stop accepting, let in-flight requests finish (keep-alive
//! connections close after their current response), up to
//! `http.shutdown_timeout_secs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use actix_rt::Arbiter;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{oneshot, watch};
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::util::PeerAddr;

/// How the server runs.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    pub workers: usize,
    pub header_read_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// Serve `app` on `listener` until `shutdown` turns true, then drain.
/// Must be called inside an actix `System`.
pub async fn run(
    listener: std::net::TcpListener,
    app: Router,
    options: ServerOptions,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut workers = Vec::with_capacity(options.workers);
    for index in 0..options.workers.max(1) {
        let listener = listener.try_clone()?;
        let app = app.clone();
        let shutdown = shutdown.clone();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let arbiter = Arbiter::new();
        // The closure crosses to the arbiter's thread; the worker future
        // it starts stays there (it holds thread-local connection state).
        arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                worker(index, listener, app, options, shutdown).await;
                let _ = done_tx.send(());
            });
        });
        workers.push((arbiter, done_rx));
    }
    drop(listener);
    for (arbiter, done) in workers {
        let _ = done.await;
        arbiter.stop();
        let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
    }
    Ok(())
}

async fn worker(
    index: usize,
    listener: std::net::TcpListener,
    app: Router,
    options: ServerOptions,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop_accepting = shutdown.clone();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = index, error = %e, "cannot register the listener");
            return;
        }
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service(app.clone(), peer))
                        .with_upgrades();
                    let mut stop = shutdown.clone();
                    actix_rt::spawn(connections.track_future(async move {
                        tokio::pin!(conn);
                        let res = tokio::select! {
                            res = conn.as_mut() => res,
                            _ = stop.wait_for(|stop| *stop) => {
                                // Finish the request in flight, then close.
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = res {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }));
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off briefly
                    // instead of spinning.
                    tracing::warn!(worker = index, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop_accepting.wait_for(|stop| *stop) => break,
        }
    }
    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(options.shutdown_timeout) => {
            tracing::warn!(worker = index, "in-flight requests still running at the shutdown timeout");
        }
    }
}

fn service(
    app: Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        started(app.clone().oneshot(req.map(axum::body::Body::new)))
    })
}

/// A request's handler, already polled once. hyper creates the handler's
/// future when it has read a request, but polls it only after trying to
/// read on; when the client hangs up right after its request (an abandoned
/// long-poll GET), hyper sees the end of the connection first and drops a
/// handler that never ran. Polled here, the handler has seen its request
/// and can act on being dropped (the Engine.IO session learns that its GET
/// was abandoned). The first poll's waker is a no-op; hyper's own polls
/// (right after, and on every wake-up) register the real one.
fn started<F>(fut: F) -> impl Future<Output = F::Output> + Send
where
    F: Future + Send,
    F::Output: Send,
{
    let mut fut = Box::pin(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let first = fut.as_mut().poll(&mut cx);
    async move {
        match first {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => fut.await,
        }
    }
}
