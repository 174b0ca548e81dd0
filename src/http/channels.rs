//! `/api/v1/vehicles/{id}/channels`: a vehicle's camera channels and the
//! RTSP URL the hub pulls for each (see `docs/MEDIA.md`, "RTSP pull").
//!
//! Owner only: another user's vehicle answers 404 like one that does not
//! exist. Credentials in an RTSP URL are stored (the hub needs them to
//! pull) but never answered: the URL comes back as `rtsp://***@host/path`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::models::Channel;
use crate::db::queries::{channels, vehicles};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, Id, Json};
use crate::live::rtsp::{RtspSource, mask_url};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/vehicles/{id}/channels", get(list))
        .route(
            "/vehicles/{id}/channels/{channel}",
            get(show).put(upsert).delete(remove),
        )
}

/// Longest channel name.
pub const MAX_CHANNEL_LEN: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    rtsp_url: String,
}

/// A channel name: 1..=16 of `a-z 0-9 _` (it is part of the stream key
/// `{vehicle_id}-{channel}`).
pub fn check_channel(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty()
        || raw.len() > MAX_CHANNEL_LEN
        || !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::invalid(
            "invalid_channel",
            format!("the channel name must be 1 to {MAX_CHANNEL_LEN} of a-z, 0-9 and '_'"),
        ));
    }
    Ok(raw.to_string())
}

/// A channel as the API shows it: the URL without its credentials.
fn channel_json(c: &Channel) -> Value {
    json!({
        "name": c.name,
        "rtsp_url": c.rtsp_url.as_deref().map(mask_url),
        "updated_at": c.updated_at,
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("no such vehicle")
}

/// The vehicle id and channel name of the path (a bad id is a 404, a bad
/// name a 422).
fn vehicle_channel(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(i64, String), ApiError> {
    let Path((id, channel)) = path.map_err(|_| ApiError::not_found("no such resource"))?;
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("no such resource"))?;
    Ok((id, check_channel(&channel)?))
}

async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<impl IntoResponse, ApiError> {
    let list =
        super::history::owned(&state, user.id, id, move |conn| channels::list(conn, id)).await?;
    Ok(axum::Json(
        list.iter().map(channel_json).collect::<Vec<_>>(),
    ))
}

async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, name) = vehicle_channel(path)?;
    let found = state
        .db
        .run(move |conn| {
            if vehicles::find_owned(conn, user.id, id)?.is_none() {
                return Ok(Err(not_found()));
            }
            Ok(channels::find(conn, id, &name)?
                .ok_or_else(|| ApiError::not_found("no such channel")))
        })
        .await??;
    Ok(axum::Json(channel_json(&found)))
}

async fn upsert(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
    Json(body): Json<PutBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, name) = vehicle_channel(path)?;
    let rtsp_url = body.rtsp_url.trim().to_string();
    // The error text never holds the URL, so no credentials are echoed.
    RtspSource::parse(&rtsp_url)
        .map_err(|e| ApiError::invalid("invalid_rtsp_url", e.to_string()))?;
    let saved = state
        .db
        .run(move |conn| {
            if vehicles::find_owned(conn, user.id, id)?.is_none() {
                return Ok(None);
            }
            channels::upsert(conn, id, &name, Some(&rtsp_url)).map(Some)
        })
        .await;
    let channel = match saved {
        Ok(Some(c)) => c,
        Ok(None) => return Err(not_found()),
        // The vehicle was deleted between the check and the write.
        Err(e) if e.is_foreign_key_violation() => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(
        user_id = user.id,
        vehicle_id = id,
        channel = %channel.name,
        "channel RTSP URL set"
    );
    state.ondemand.source_changed(id, &channel.name);
    Ok(axum::Json(channel_json(&channel)))
}

async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, name) = vehicle_channel(path)?;
    let channel = name.clone();
    let deleted = state
        .db
        .run(move |conn| {
            if vehicles::find_owned(conn, user.id, id)?.is_none() {
                return Ok(Err(not_found()));
            }
            Ok(if channels::delete(conn, id, &name)? {
                Ok(())
            } else {
                Err(ApiError::not_found("no such channel"))
            })
        })
        .await?;
    deleted?;
    tracing::info!(user_id = user.id, vehicle_id = id, channel = %channel, "channel deleted");
    state.ondemand.source_changed(id, &channel);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_checked() {
        for good in ["front", "rear", "cabin_2", "0", "abcdefghijklmnop"] {
            assert_eq!(check_channel(good).unwrap(), good);
        }
        for bad in ["", "Front", "a-b", "a b", "ü", "abcdefghijklmnopq", "../x"] {
            assert!(check_channel(bad).is_err(), "{bad:?}");
        }
    }
}
