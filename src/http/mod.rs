//! The HTTP side of a node: the router, its shared state, and the server
//! that runs it on the worker threads.
//!
//! Routes (prefix `/api/v1` for REST; every route is documented for clients
//! in `docs/API.md`, which `tests/docs.rs` checks against this router):
//!
//! | module | routes |
//! | --- | --- |
//! | [`auth`] | `POST /auth/register`, `/auth/login`, `/auth/refresh`, `/auth/logout` |
//! | [`vehicles`] | `GET/POST /vehicles`, `GET/PATCH/DELETE /vehicles/{id}`, `POST /vehicles/{id}/device-token` |
//! | [`channels`] | `GET /vehicles/{id}/channels`, `GET/PUT/DELETE /vehicles/{id}/channels/{channel}` |
//! | [`history`] | `GET /vehicles/{id}/locations`, `/vehicles/{id}/events`, `/vehicles/{id}/status`, `/vehicles/{id}/traffic` |
//! | [`me`] | `GET/DELETE /me` |
//! | [`health`] | `GET /healthz`, `/readyz`, `/metrics` |
//! | [`cors`] | the CORS layer over all of them; 403 to WebSocket upgrades from foreign origins on `/socket.io/` |
//! | [`live`] | `GET /live/{key}.flv` (HTTP-FLV, WebSocket-FLV), `/live/{key}/index.m3u8`, `/live/{key}/{seq}.ts`; node to node: `GET /internal/live/{key}.flv` |
//!
//! The Socket.IO transports (`/socket.io/`) are merged in by [`router`], under
//! the same CORS and metrics layers.
//!
//! Every error, including unknown routes (404), wrong methods (405) and
//! oversized bodies (413), answers the JSON error body
//! `{"error": {"code", "message"}}`.

pub mod auth;
pub mod channels;
pub mod cors;
pub mod error;
pub mod extract;
pub mod health;
pub mod history;
pub mod live;
pub mod live_error;
pub mod me;
pub mod server;
pub mod vehicles;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::auth::{AuthLimiter, JwtKeys};
use crate::config::Config;
use crate::db::Db;
use crate::http::error::ApiError;
use crate::metrics::Metrics;

/// What every request handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub db: Db,
    pub jwt: JwtKeys,
    pub auth_limiter: AuthLimiter,
    pub metrics: Metrics,
    /// The realtime hub (presence and latest state for REST answers).
    pub hub: Arc<crate::actors::Hub>,
    /// Live video streams (RTMP in, FLV/HLS out).
    pub live: crate::live::stream::Streams,
    /// Starts sources on demand (RTSP pull, device `live.start`) and checks
    /// the plans' live minutes.
    pub ondemand: Arc<crate::live::ondemand::OnDemand>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole HTTP application: the REST API, health and live routes, and
/// `transports` (the Socket.IO router), all under the CORS layer (see
/// [`cors`]) and counted by the metrics middleware.
pub fn router(state: AppState, transports: Router<AppState>) -> Router {
    let api = Router::new()
        .merge(auth::routes())
        .merge(vehicles::routes())
        .merge(channels::routes())
        .merge(history::routes())
        .merge(me::routes());
    let transports = transports.layer(middleware::from_fn_with_state(
        state.clone(),
        cors::refuse_foreign_websocket,
    ));
    let mut app = Router::new()
        .nest("/api/v1", api)
        .merge(health::routes())
        .merge(live::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.http.max_body_bytes))
        .merge(transports);
    if let Some(cors) = cors::layer(&state.config) {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Count and time every request (REST, live, Socket.IO) by method, route
/// template (`unmatched` when none matched: never the raw path) and status,
/// in a span carrying the method and route.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(crate::metrics::UNMATCHED_ROUTE, |p| p.as_str())
        .to_owned();
    let method = req.method().clone();
    let span = tracing::info_span!("http", method = %method, route = %route);
    let start = Instant::now();
    let res = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let elapsed = start.elapsed();
    state
        .metrics
        .observe_http(method.as_str(), &route, res.status().as_u16(), elapsed);
    span.in_scope(|| {
        tracing::debug!(
            status = res.status().as_u16(),
            ms = elapsed.as_secs_f64() * 1e3,
            "answered"
        );
    });
    res
}

/// A broken account rule is the client's to fix: 422 with the rule's code.
impl From<crate::auth::account::AccountError> for ApiError {
    fn from(e: crate::auth::account::AccountError) -> Self {
        ApiError::invalid(e.code(), e.to_string())
    }
}
