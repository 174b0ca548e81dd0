//! The live runtime's errors as HTTP answers (the stream's own
//! [`LiveError`](crate::live::stream::LiveError) is answered in
//! [`super::live`]): on-demand starts, edge pulls, and the backends behind
//! the runtime's ports.

use axum::http::StatusCode;

use crate::http::error::ApiError;
use crate::live::edge::EdgeError;
use crate::live::ondemand::OnDemandError;
use crate::live::ports::BackendError;

impl From<OnDemandError> for ApiError {
    fn from(e: OnDemandError) -> Self {
        match e {
            OnDemandError::QuotaExceeded => ApiError::new(
                StatusCode::FORBIDDEN,
                "live_quota_exceeded",
                "this vehicle's plan has no live-video minutes left this month",
            ),
            OnDemandError::VehicleOffline => ApiError::new(
                StatusCode::NOT_FOUND,
                "vehicle_offline",
                "the vehicle is not connected, so it cannot start streaming",
            ),
            OnDemandError::CameraUrl(error) => {
                ApiError::new(StatusCode::BAD_GATEWAY, error.code(), error.to_string())
            }
            OnDemandError::CameraFailed(error) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                error.code(),
                format!("the camera could not be pulled: {error}"),
            ),
            OnDemandError::CameraStopped => {
                ApiError::unavailable("rtsp_stopped", "the camera pull stopped; retry")
            }
            OnDemandError::CameraTimeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "live_start_timeout",
                "the camera did not start streaming in time",
            ),
            OnDemandError::PublishToken => ApiError::internal(),
            OnDemandError::Edge(e) => e.into(),
            OnDemandError::Live(e) => e.into(),
            OnDemandError::Backend(e) => e.into(),
        }
    }
}

impl From<EdgeError> for ApiError {
    fn from(e: EdgeError) -> Self {
        match e {
            EdgeError::OriginTimeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "live_start_timeout",
                "the stream's origin node did not send video in time",
            ),
        }
    }
}

/// As a database error is answered: no connection is 503
/// `database_unavailable`, anything else a bare 500.
impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Unavailable(detail) => {
                tracing::error!(error = %detail, "database pool unavailable");
                ApiError::unavailable("database_unavailable", "the database is not answering")
            }
            BackendError::Failed(detail) => {
                tracing::error!(error = %detail, "database error");
                ApiError::internal()
            }
        }
    }
}
