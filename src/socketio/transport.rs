//! The HTTP side of Engine.IO: the handshake, long-polling GET and POST,
//! and the WebSocket upgrade (new sessions, or polling sessions upgrading
//! in place), all on one path (`/socket.io/`).
//!
//! Errors use Engine.IO's body (`{"code": 1, "message": "Session ID
//! unknown"}`, which stock clients understand) with the contract's
//! `error` object beside it.

use std::net::SocketAddr;

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

use super::conn::{Conn, Poll, PollError, Posted, Upgrade, new_sid, open_packet};
use super::engine_packet::decode_payload;
use super::server::SocketIo;
use crate::http::extract::PeerAddr;

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
            websocket(server, req, sid, peer)
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
    let sid = new_sid();
    let open = open_packet(&server, &sid);
    Conn::start(server, sid, peer, None);
    text_response(open)
}

async fn poll(server: SocketIo, sid: &str) -> Response {
    let Some(conn) = server.inner.sessions.get(sid) else {
        return EngineError::UnknownSid.response();
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    conn.do_send(Poll(tx));
    match rx.await {
        Ok(Ok(body)) => text_response(body),
        Ok(Err(PollError::Concurrent | PollError::WrongTransport)) => {
            EngineError::BadRequest.response()
        }
        // The connection went away while the GET waited.
        Err(_) => text_response(Bytes::from_static(b"1")),
    }
}

async fn post(server: SocketIo, sid: &str, req: Request) -> Response {
    let Some(conn) = server.inner.sessions.get(sid) else {
        return EngineError::UnknownSid.response();
    };
    let max = server.inner.config.max_payload;
    let body = match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            // Over maxPayload (or a broken body): the session is closed.
            conn.do_send(super::conn::Control::Close(
                super::server::DisconnectReason::ProtocolError,
            ));
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"code":3,"message":"Bad request","error":{"code":"payload_too_large","message":"the payload is larger than maxPayload"}}"#,
            )
                .into_response();
        }
    };
    let packets = match decode_payload(body, max, MAX_PACKETS_PER_POST) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(%sid, error = %e, "invalid polling payload");
            conn.do_send(super::conn::Control::Close(
                super::server::DisconnectReason::ProtocolError,
            ));
            return EngineError::BadRequest.response();
        }
    };
    match conn.send(Posted(packets)).await {
        Ok(Ok(())) => ([(header::CONTENT_TYPE, "text/html")], "ok").into_response(),
        Ok(Err(_)) => EngineError::BadRequest.response(),
        Err(_) => EngineError::UnknownSid.response(),
    }
}

fn websocket(
    server: SocketIo,
    mut req: Request,
    sid: Option<String>,
    peer: Option<SocketAddr>,
) -> Response {
    let existing = match &sid {
        Some(sid) => match server.inner.sessions.get(sid) {
            Some(conn) => Some(conn),
            None => return EngineError::UnknownSid.response(),
        },
        None => None,
    };
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
            Some(conn) => conn.do_send(Upgrade(ws)),
            None => {
                Conn::start(server, new_sid(), peer, Some(ws));
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
