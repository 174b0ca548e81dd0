//! Cross-origin access, from `http.cors_origins` (empty: CORS off).
//!
//! - [`layer`]: the CORS layer over the REST API and the Socket.IO
//!   transports (polling GET and POST, preflights); allowed origins get the
//!   `Access-Control-Allow-*` headers, others get none.
//! - [`refuse_foreign_websocket`]: browsers do not apply CORS to
//!   WebSockets, so a WebSocket upgrade whose `Origin` is present and not
//!   allowed is refused with 403 (cross-site WebSocket hijacking). No
//!   `Origin` header means a non-browser client: allowed.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::http::AppState;
use crate::http::error::ApiError;

/// The CORS layer for `http.cors_origins`, or `None` when it is empty.
pub fn layer(config: &Config) -> Option<CorsLayer> {
    let origins = &config.http.cors_origins;
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// Whether `origin` is allowed by a non-empty `http.cors_origins` (exact
/// match, or `*`).
fn origin_allowed(config: &Config, origin: &HeaderValue) -> bool {
    config
        .http
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.as_bytes() == origin.as_bytes())
}

fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Middleware: with `http.cors_origins` set, answer 403 to a WebSocket
/// upgrade from a browser origin that is not allowed.
pub async fn refuse_foreign_websocket(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if !state.config.http.cors_origins.is_empty()
        && is_websocket_upgrade(&req)
        && let Some(origin) = req.headers().get(header::ORIGIN)
        && !origin_allowed(&state.config, origin)
    {
        tracing::info!(origin = ?origin, "WebSocket upgrade from a foreign origin refused");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not open a WebSocket here",
        )
        .into_response();
    }
    next.run(req).await
}
