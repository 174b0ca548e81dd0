//! Liveness, readiness and metrics.
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 only when the database answers (within 3 s) and,
//!   in a cluster, Redis is reachable and no earlier live process uses
//!   this `node.id`; otherwise 503 with the error body, so a load balancer
//!   stops sending.
//! - `GET /metrics`: Prometheus text format.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::http::AppState;
use crate::http::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let db = state.db.clone();
    let ping = tokio::task::spawn_blocking(move || db.ping());
    let redis = state.hub.cluster.as_ref().map(|c| c.redis_up());
    if let Some(cluster) = &state.hub.cluster
        && cluster
            .node_id_in_use
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(ApiError::unavailable(
            "node_id_in_use",
            "another live node of the cluster uses this node.id: give each node its own",
        ));
    }
    match tokio::time::timeout(Duration::from_secs(3), ping).await {
        Ok(Ok(Ok(()))) => match redis {
            None => Ok(axum::Json(json!({"status": "ready", "database": "ok"}))),
            Some(true) => Ok(axum::Json(
                json!({"status": "ready", "database": "ok", "redis": "ok"}),
            )),
            Some(false) => Err(ApiError::unavailable(
                "redis_unavailable",
                "Redis is not reachable: this node delivers locally only",
            )),
        },
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "readiness: database not answering");
            Err(ApiError::unavailable(
                "database_unavailable",
                "the database is not answering",
            ))
        }
        _ => Err(ApiError::unavailable(
            "database_unavailable",
            "the database did not answer in time",
        )),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
