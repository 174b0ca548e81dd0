//! The HTTP side of Engine.IO: the handshake, long-polling GET and POST,
//! and the WebSocket upgrade (new sessions, or polling sessions upgrading
//! in place), all on one path (`/socket.io/`).
//!
//! Errors use Engine.IO's body (`{"code": 1, "message": "Session ID
//! unknown"}`, which stock clients understand) with the contract's
//! `error` object beside it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::conn::{
    CanUpgrade, Conn, Control, Poll, PollAborted, PollError, Posted, Upgrade, open_packet,
};
use super::engine_packet::decode_payload;
use super::server::{DisconnectReason, SocketIo};
use crate::util::PeerAddr;

/// Most packets one POST may carry.
const MAX_PACKETS_PER_POST: usize = 1000;

/// Engine.IO error codes.
#[derive(Debug, Clone, Copy)]
enum EngineError {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    UnsupportedProtocolVersion,
}

impl EngineError {
    fn response(self) -> Response {
        let (code, message, contract_code, status) = match self {
            Self::UnknownTransport => (
                0,
                "Transport unknown",
                "transport_unknown",
                StatusCode::BAD_REQUEST,
            ),
            Self::UnknownSid => (
                1,
                "Session ID unknown",
                "session_unknown",
                StatusCode::BAD_REQUEST,
            ),
            Self::BadHandshakeMethod => (
                2,
                "Bad handshake method",
                "bad_handshake_method",
                StatusCode::BAD_REQUEST,
            ),
            Self::BadRequest => (3, "Bad request", "bad_request", StatusCode::BAD_REQUEST),
            Self::UnsupportedProtocolVersion => (
                5,
                "Unsupported protocol version",
                "unsupported_protocol_version",
                StatusCode::BAD_REQUEST,
            ),
        };
        let body = serde_json::json!({
            "code": code,
            "message": message,
            "error": {"code": contract_code, "message": message},
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

fn parse_query(q: &str) -> Query<'_> {
    let mut out = Query {
        eio: None,
        transport: None,
        sid: None,
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "EIO" => out.eio = Some(v),
            "transport" => out.transport = Some(v),
            "sid" => out.sid = Some(v),
            _ => {}
        }
    }
    out
}

fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn text_response(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

/// The axum handler for the Engine.IO path.
pub async fn handle(State(server): State<SocketIo>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let q = parse_query(query);
    if q.eio != Some("4") {
        return EngineError::UnsupportedProtocolVersion.response();
    }
    let sid = q.sid.map(str::to_owned);
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
    match q.transport {
        Some("websocket") => {
            if !is_websocket_upgrade(&req) {
                return EngineError::BadRequest.response();
            }
            websocket(server, req, sid, peer).await
        }
        Some("polling") => match (req.method().clone(), sid) {
            (Method::GET, None) => handshake(server, peer),
            (Method::GET, Some(sid)) => poll(server, &sid).await,
            (Method::POST, Some(sid)) => post(server, &sid, req).await,
            (Method::POST, None) => EngineError::BadHandshakeMethod.response(),
            _ => EngineError::BadRequest.response(),
        },
        _ => EngineError::UnknownTransport.response(),
    }
}

fn handshake(server: SocketIo, peer: Option<SocketAddr>) -> Response {
    let sid = server.new_engine_sid();
    let open = open_packet(&server, &sid, &["websocket"]);
    Conn::start(server, sid, peer, None);
    text_response(open)
}

/// Tells the connection when a pending GET is dropped before its answer
/// (the client went away): the session is then closed.
struct PollGuard(Option<actix::Addr<Conn>>);

impl Drop for PollGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.do_send(PollAborted);
        }
    }
}

async fn poll(server: SocketIo, sid: &str) -> Response {
    let Some(session) = server.inner.sessions.get(sid) else {
        return EngineError::UnknownSid.response();
    };
    let conn = &session.addr;
    // Declared before `rx`, so dropped after it: when the connection hears
    // of the abort, the waiter's receiver is already gone.
    let mut guard = PollGuard(Some(conn.clone()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    conn.do_send(Poll(tx));
    let answer = rx.await;
    guard.0 = None;
    match answer {
        Ok(Ok(body)) => text_response(body),
        Ok(Err(PollError::Concurrent | PollError::WrongTransport)) => {
            EngineError::BadRequest.response()
        }
        Ok(Err(PollError::Closed)) => EngineError::UnknownSid.response(),
        // The connection closed while this GET was on its way to it. If a
        // close packet posted at the same time did it, the GET ends as if
        // it had been pending (a noop); otherwise the session is unknown.
        Err(_) if session.client_closed.load(Ordering::Relaxed) => {
            text_response(Bytes::from_static(b"6"))
        }
        Err(_) => EngineError::UnknownSid.response(),
    }
}

/// Close a session from a request handler, and wait until it is closed
/// (so the client's next request finds it gone).
async fn close_session(conn: &actix::Addr<Conn>, reason: DisconnectReason) {
    let _ = conn.send(Control::Close(reason)).await;
}

fn payload_too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"code":3,"message":"Bad request","error":{"code":"payload_too_large","message":"the payload is larger than maxPayload"}}"#,
    )
        .into_response()
}

async fn post(server: SocketIo, sid: &str, req: Request) -> Response {
    let Some(session) = server.inner.sessions.get(sid) else {
        return EngineError::UnknownSid.response();
    };
    let conn = &session.addr;
    let max = server.inner.config.max_payload;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        // Over maxPayload: refused unread, and the session is closed.
        close_session(conn, DisconnectReason::ProtocolError).await;
        return payload_too_large();
    }
    let body = match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            // Over maxPayload (or a broken body): the session is closed.
            tracing::debug!(%sid, error = %e, "polling payload refused");
            close_session(conn, DisconnectReason::ProtocolError).await;
            return payload_too_large();
        }
    };
    let packets = match decode_payload(body, max, MAX_PACKETS_PER_POST) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(%sid, error = %e, "invalid polling payload");
            close_session(conn, DisconnectReason::ProtocolError).await;
            return EngineError::BadRequest.response();
        }
    };
    match conn.send(Posted(packets)).await {
        Ok(Ok(())) => ([(header::CONTENT_TYPE, "text/html")], "ok").into_response(),
        Ok(Err(PollError::Closed)) | Err(_) => EngineError::UnknownSid.response(),
        Ok(Err(_)) => EngineError::BadRequest.response(),
    }
}

async fn websocket(
    server: SocketIo,
    mut req: Request,
    sid: Option<String>,
    peer: Option<SocketAddr>,
) -> Response {
    let existing = match &sid {
        Some(sid) => match server.inner.sessions.get(sid) {
            Some(session) => Some(session.addr),
            None => return EngineError::UnknownSid.response(),
        },
        None => None,
    };
    // A session already upgraded or upgrading gets its WebSocket closed
    // right after the handshake, as the reference server does.
    let mut refuse = false;
    if let Some(conn) = &existing {
        match conn.send(CanUpgrade).await {
            Ok(allowed) => refuse = !allowed,
            Err(_) => return EngineError::UnknownSid.response(),
        }
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return EngineError::BadRequest.response();
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = WebSocketConfig::default()
        .read_buffer_size(server.inner.config.ws_read_buffer)
        .max_message_size(Some(server.inner.config.max_payload))
        .max_frame_size(Some(server.inner.config.max_payload))
        .max_write_buffer_size(server.inner.config.queue_hard_bytes.max(1 << 20));
    actix_rt::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        match existing {
            Some(_) if refuse => {
                let mut ws = ws;
                let _ = ws.close(None).await;
            }
            Some(conn) => conn.do_send(Upgrade(ws)),
            None => {
                let sid = server.new_engine_sid();
                Conn::start(server, sid, peer, Some(ws));
            }
        }
    });
    let accept = derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The routes for a server mounted at `path` (e.g. `/socket.io/`).
pub fn router<S: Clone + Send + Sync + 'static>(path: &str, server: SocketIo) -> axum::Router<S> {
    axum::Router::new()
        .route(path, axum::routing::any(handle))
        .with_state(server)
}
