//! `/api/v1/vehicles`: a user's vehicles (blackboxes).
//!
//! Every query is filtered by owner: another user's vehicle answers 404,
//! exactly like a vehicle that does not exist. The device token is shown
//! once, at creation and at rotation; only its SHA-256 is stored.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::account::{DeviceToken, check_serial, check_vehicle_name};
use crate::db::models::{Location, Vehicle};
use crate::db::queries::vehicles;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, Id, Json};
use crate::http::history::PointOut;
use crate::ingest::validate::Point;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/vehicles", get(list).post(create))
        .route("/vehicles/{id}", get(show).patch(update).delete(remove))
        .route("/vehicles/{id}/device-token", post(rotate_token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    serial: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    name: Option<String>,
}

/// A vehicle as the API shows it: `online` as the hub sees it (any node
/// of a cluster), `last_location` the newer of the hub's memory and the
/// newest stored point (with a cluster, another node's device feeds only
/// the database).
fn vehicle_json(
    state: &AppState,
    v: &Vehicle,
    stored_last: Option<&Location>,
    online: bool,
) -> Value {
    let memory = state.hub.presence.latest_location(v.id);
    let stored = stored_last.map(Point::from);
    let last = match (memory, stored) {
        (Some(m), Some(s)) => Some(if s.t > m.t { s } else { m }),
        (m, s) => m.or(s),
    }
    .map(|p| serde_json::to_value(PointOut::from(p)).unwrap_or(Value::Null))
    .unwrap_or(Value::Null);
    json!({
        "id": v.id,
        "name": v.name,
        "serial": v.serial,
        "online": online,
        "last_location": last,
        "plan_id": v.plan_id,
        "model_id": v.model_id,
        "last_seen_at": v.last_seen_at,
        "created_at": v.created_at,
    })
}

async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<impl IntoResponse, ApiError> {
    let (list, last): (Vec<Vehicle>, HashMap<i64, Location>) = state
        .db
        .run(move |conn| {
            let list = vehicles::list_owned(conn, user.id)?;
            let ids: Vec<i64> = list.iter().map(|v| v.id).collect();
            let last = vehicles::latest_locations(conn, &ids)?;
            Ok((list, last))
        })
        .await?;
    let ids: Vec<i64> = list.iter().map(|v| v.id).collect();
    let online = state.hub.online_set(&ids).await;
    Ok(axum::Json(
        list.iter()
            .map(|v| vehicle_json(&state, v, last.get(&v.id), online.contains(&v.id)))
            .collect::<Vec<_>>(),
    ))
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let name = check_vehicle_name(&body.name)?;
    let serial = check_serial(&body.serial)?;
    let DeviceToken { token, hash } = DeviceToken::mint();
    let created = state
        .db
        .run(move |conn| vehicles::create(conn, user.id, &serial, &name, &hash))
        .await;
    match created {
        Ok(v) => {
            tracing::info!(user_id = user.id, vehicle_id = v.id, "vehicle created");
            let mut body = vehicle_json(&state, &v, None, false);
            body["device_token"] = json!(token);
            Ok((StatusCode::CREATED, axum::Json(body)))
        }
        Err(e) if e.is_unique_violation() => Err(ApiError::conflict(
            "serial_taken",
            "a vehicle with this serial is already registered",
        )),
        // The account was deleted while its access token still lives.
        Err(e) if e.is_foreign_key_violation() => Err(ApiError::unauthorized(
            "account_gone",
            "this account no longer exists",
        )),
        Err(e) => Err(e.into()),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("no such vehicle")
}

async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<impl IntoResponse, ApiError> {
    let (v, last) = state
        .db
        .run(move |conn| {
            let Some(v) = vehicles::find_owned(conn, user.id, id)? else {
                return Ok(None);
            };
            let mut last = vehicles::latest_locations(conn, &[id])?;
            Ok(Some((v, last.remove(&id))))
        })
        .await?
        .ok_or_else(not_found)?;
    let online = state.hub.is_online(v.id).await;
    Ok(axum::Json(vehicle_json(&state, &v, last.as_ref(), online)))
}

async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    Json(body): Json<UpdateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(name) = body.name else {
        return Err(ApiError::invalid(
            "nothing_to_update",
            "send at least one field: name",
        ));
    };
    let name = check_vehicle_name(&name)?;
    let v = state
        .db
        .run(move |conn| vehicles::rename(conn, user.id, id, &name))
        .await?
        .ok_or_else(not_found)?;
    let online = state.hub.is_online(v.id).await;
    Ok(axum::Json(vehicle_json(&state, &v, None, online)))
}

async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<impl IntoResponse, ApiError> {
    let deleted = state
        .db
        .run(move |conn| vehicles::delete_with_purge(conn, user.id, id))
        .await?;
    if !deleted {
        return Err(not_found());
    }
    state.hub.vehicle_removed(id, "the vehicle was deleted");
    tracing::info!(user_id = user.id, vehicle_id = id, "vehicle deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_token(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<impl IntoResponse, ApiError> {
    let DeviceToken { token, hash } = DeviceToken::mint();
    let done = state
        .db
        .run(move |conn| vehicles::set_token_hash(conn, user.id, id, &hash))
        .await?;
    if !done {
        return Err(not_found());
    }
    state.hub.revoke_device(id, "the device token was rotated");
    tracing::info!(user_id = user.id, vehicle_id = id, "device token rotated");
    Ok(axum::Json(json!({"id": id, "device_token": token})))
}
