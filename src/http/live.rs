//! Live video play (documented for clients in `docs/API.md`, "Live video"):
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /live/{vehicle_id}-{channel}.flv?token=` | HTTP-FLV: `video/x-flv`, chunked, never ends while live |
//! | the same with `Upgrade: websocket` | WebSocket-FLV: each binary message carries FLV bytes |
//! | `GET /live/{vehicle_id}-{channel}/index.m3u8?token=` | HLS multivariant playlist (RFC 8216) whose one variant is `index.m3u8?session=` |
//! | `GET /live/{vehicle_id}-{channel}/index.m3u8?session=` | HLS media playlist, segment URIs `{seq}.ts?session=` |
//! | `GET /live/{vehicle_id}-{channel}/{seq}.ts?session=` (or `?token=`) | an MPEG-TS segment from memory |
//! | `GET /internal/live/{vehicle_id}-{channel}.flv` | node to node: HTTP-FLV of a stream published *here*, for another node's edge pull (cluster secret header) |
//!
//! The token is the owner's access token, in the query (players cannot set
//! headers) or as `Authorization: Bearer`. No token or an invalid one: 401;
//! a vehicle that is not the caller's: 404 `stream_not_found`, like a
//! stream that is not live (existence is not revealed). The token is
//! checked when a play starts: an HTTP-FLV or WebSocket-FLV play goes on
//! past the token's expiry; a new play needs a valid token.
//!
//! HLS players reload playlists for as long as they play, and cannot
//! refresh a token inside a URL: the token opens a playback session and the
//! URLs the player follows carry it instead ([`hls`]: its lifetime, what
//! ends it, its errors).
//!
//! CORS: with `live.cors_any_origin` (default) and no `http.cors_origins`,
//! these routes answer `Access-Control-Allow-Origin: *` so browser players
//! (mpegts.js, hls.js) on any origin can read them; the token or session in
//! the URL is the access control. With `http.cors_origins` set, the global
//! CORS layer decides instead.

mod hls;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::auth::AccessClaims;
use crate::db::queries::vehicles;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::live::stream::{EDGE_PROTOCOL, LiveError, StreamKey, Viewer, ViewerKind};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/live/{file}", get(flv))
        .route("/live/{key}/{file}", get(hls::hls))
        .route("/internal/live/{file}", get(internal_flv))
}

/// `GET /internal/live/{key}.flv`: another node's edge pull. Only in a
/// cluster (else 404), only with the cluster secret in
/// [`SECRET_HEADER`](crate::cluster::SECRET_HEADER) (else 401
/// `bad_cluster_secret`), only for a stream with an origin publisher on
/// this node (else 404 at once: it never starts a source or an edge pull of
/// its own, so pulls cannot loop). HTTP-FLV like a viewer: headers and GOP
/// cache first, then live, written as it comes.
async fn internal_flv(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let presented = headers
        .get(crate::cluster::SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match internal_inner(&state, &file, &presented).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn internal_inner(
    state: &AppState,
    file: &str,
    presented: &str,
) -> Result<Response, ApiError> {
    let Some(cluster) = state.hub.cluster.as_ref() else {
        return Err(ApiError::not_found("not in a cluster"));
    };
    if presented.is_empty() || !cluster.secret_matches(presented) {
        return Err(ApiError::unauthorized(
            "bad_cluster_secret",
            "the cluster secret is missing or wrong",
        ));
    }
    let key = file
        .strip_suffix(".flv")
        .and_then(StreamKey::parse)
        .ok_or_else(stream_not_found)?;
    match state.live.publisher_protocol(&key).await {
        Some(p) if p != EDGE_PROTOCOL => {}
        _ => return Err(stream_not_found()),
    }
    let viewer = state.live.play_now(&key, ViewerKind::Internal).await?;
    state.live.metrics().internal_pulls.inc();
    tracing::info!(stream = %key, "serving an edge pull");
    let body = futures_util::stream::unfold((viewer, None), |(viewer, mut last)| async move {
        let bytes = viewer
            .next_batch(MAX_BATCH, std::time::Duration::ZERO, &mut last)
            .await?;
        Some((Ok::<Bytes, std::convert::Infallible>(bytes), (viewer, last)))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "video/x-flv")
        .header(header::CACHE_CONTROL, "no-cache, no-store")
        .body(Body::from_stream(body))
        .map_err(|_| ApiError::internal())
}

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::NotFound => stream_not_found(),
            LiveError::StartTimeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "live_start_timeout",
                "the vehicle did not start streaming in time",
            ),
            LiveError::HlsNotReady => {
                ApiError::unavailable("hls_not_ready", "no HLS segment is ready yet; retry")
            }
            LiveError::HlsUnsupported => ApiError::invalid(
                "hls_unsupported_codec",
                "this stream's codec cannot be served as HLS; play it as FLV",
            ),
            LiveError::Unavailable => {
                ApiError::unavailable("unavailable", "the live service is not available")
            }
        }
    }
}

fn stream_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "stream_not_found",
        "no such live stream",
    )
}

/// The access token from `?token=` or `Authorization: Bearer`.
fn token(req: &Request) -> Option<String> {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_owned())
    });
    from_query.filter(|t| !t.is_empty()).or_else(|| {
        req.headers()
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_owned())
    })
}

/// Authenticate the owner of `key`'s vehicle; answers the token and its
/// claims.
async fn authorize(
    state: &AppState,
    token: Option<String>,
    key: Option<&StreamKey>,
) -> Result<(String, AccessClaims), ApiError> {
    let token = token
        .ok_or_else(|| ApiError::unauthorized("missing_token", "an access token is required"))?;
    let claims = state.jwt.verify_access(&token).ok_or_else(|| {
        ApiError::unauthorized("invalid_token", "the access token is invalid or expired")
    })?;
    let user = claims.user_id().ok_or_else(|| {
        ApiError::unauthorized("invalid_token", "the access token is invalid or expired")
    })?;
    let key = key.ok_or_else(stream_not_found)?;
    let vehicle = key.vehicle_id;
    let owned = state
        .db
        .run(move |conn| vehicles::find_owned(conn, user, vehicle))
        .await?;
    if owned.is_none() {
        return Err(stream_not_found());
    }
    Ok((token, claims))
}

fn with_cors(state: &AppState, mut res: Response) -> Response {
    if state.config.live.cors_any_origin && state.config.http.cors_origins.is_empty() {
        res.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    res
}

fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET /live/{key}.flv`: HTTP-FLV, or WebSocket-FLV on an upgrade.
async fn flv(State(state): State<AppState>, Path(file): Path<String>, req: Request) -> Response {
    let key = file.strip_suffix(".flv").and_then(StreamKey::parse);
    let res = match play(&state, key, req).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    };
    with_cors(&state, res)
}

async fn play(
    state: &AppState,
    key: Option<StreamKey>,
    mut req: Request,
) -> Result<Response, ApiError> {
    authorize(state, token(&req), key.as_ref()).await?;
    let key = key.ok_or_else(stream_not_found)?;
    state.ondemand.prepare(&key).await?;
    if !is_websocket_upgrade(&req) {
        let viewer = state.live.play(&key, ViewerKind::Flv).await?;
        let pace = write_pace(state);
        let body =
            futures_util::stream::unfold((viewer, None), move |(viewer, mut last)| async move {
                let bytes = viewer.next_batch(MAX_BATCH, pace, &mut last).await?;
                Some((Ok::<Bytes, std::convert::Infallible>(bytes), (viewer, last)))
            });
        return Response::builder()
            .header(header::CONTENT_TYPE, "video/x-flv")
            .header(header::CACHE_CONTROL, "no-cache, no-store")
            .body(Body::from_stream(body))
            .map_err(|_| ApiError::internal());
    }
    let ws_key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or_else(|| ApiError::bad_request("bad_upgrade", "Sec-WebSocket-Key is missing"))?;
    let viewer = state.live.play(&key, ViewerKind::WsFlv).await?;
    let pace = write_pace(state);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024));
    let span = tracing::info_span!("ws-flv", stream = %key);
    actix_rt::spawn(tracing::Instrument::instrument(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket upgrade failed");
                    return;
                }
            };
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            ws_flv(ws, viewer, pace).await;
        },
        span,
    ));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(ws_key.as_bytes()),
        )
        .body(Body::empty())
        .map_err(|_| ApiError::internal())
}

/// The most bytes written to a viewer in one go.
const MAX_BATCH: usize = 256 * 1024;

/// `live.viewer_write_interval_ms` as a duration.
fn write_pace(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_millis(state.config.live.viewer_write_interval_ms)
}

/// Send the viewer's bytes as binary messages (what is queued goes as one
/// message, paced like HTTP-FLV); end with a normal close. Messages from
/// the client are read only to notice it leaving.
async fn ws_flv<S>(ws: WebSocketStream<S>, viewer: Viewer, pace: std::time::Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = ws.split();
    let mut last = None;
    loop {
        let next = tokio::select! {
            next = viewer.next_batch(MAX_BATCH, pace, &mut last) => next,
            msg = incoming.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        let Some(first) = next else {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "stream ended".into(),
                })))
                .await;
            return;
        };
        if sink.send(Message::Binary(first)).await.is_err() {
            return;
        }
    }
}
