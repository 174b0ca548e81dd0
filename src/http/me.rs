//! `/api/v1/me`: the caller's account. `DELETE` removes the account and
//! all its vehicles, keeping backup copies in `users_purged` and
//! `vehicles_purged`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::db::queries::users;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::AuthUser;

pub fn routes() -> Router<AppState> {
    Router::new().route("/me", get(show).delete(remove))
}

fn gone() -> ApiError {
    ApiError::unauthorized("account_gone", "this account no longer exists")
}

async fn show(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<impl IntoResponse, ApiError> {
    let u = state
        .db
        .run(move |conn| users::find(conn, user.id))
        .await?
        .ok_or_else(gone)?;
    Ok(axum::Json(json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "created_at": u.created_at,
    })))
}

async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<impl IntoResponse, ApiError> {
    let (deleted, vehicle_ids) = state
        .db
        .run(move |conn| {
            let ids: Vec<i64> = crate::db::queries::vehicles::list_owned(conn, user.id)?
                .iter()
                .map(|v| v.id)
                .collect();
            Ok((users::delete_with_purge(conn, user.id)?, ids))
        })
        .await?;
    if !deleted {
        return Err(gone());
    }
    for id in vehicle_ids {
        state.hub.vehicle_removed(id, "the account was deleted");
    }
    tracing::info!(user_id = user.id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}
