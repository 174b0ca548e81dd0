//! `POST /api/v1/auth/{register,login,refresh,logout}`.
//!
//! Login and register are rate-limited per client address and per account
//! (429 with `Retry-After`). Login answers the same 401 for an unknown
//! account and a wrong password, after the same amount of work.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::auth::account::{check_password, check_user_name, normalize_email};
use crate::auth::password;
use crate::db::queries::tokens::{self, Issued, Rotation};
use crate::db::queries::users;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{ClientIp, Json};
use crate::util::{random_token, sha256_hex};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

fn rate_limit(state: &AppState, ip: ClientIp, account: &str) -> Result<(), ApiError> {
    state
        .auth_limiter
        .check(ip.0, account)
        .map_err(ApiError::too_many_requests)
}

async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(body): Json<RegisterBody>,
) -> Result<impl IntoResponse, ApiError> {
    rate_limit(&state, ip, body.email.trim())?;
    let email = normalize_email(&body.email)?;
    check_password(&body.password, state.config.auth.min_password_len)?;
    let name = check_user_name(body.name)?;
    let hash = password::hash(body.password).await.map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        ApiError::internal()
    })?;
    let created = state
        .db
        .run(move |conn| users::create(conn, &email, name.as_deref(), &hash))
        .await;
    match created {
        Ok(user) => {
            tracing::info!(user_id = user.id, "user registered");
            Ok((
                StatusCode::CREATED,
                axum::Json(json!({"id": user.id, "email": user.email})),
            ))
        }
        Err(e) if e.is_unique_violation() => Err(ApiError::conflict(
            "email_taken",
            "an account with this email already exists",
        )),
        Err(e) => Err(e.into()),
    }
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect())
}

/// Issue an access token naming the login `family_id` and answer with the
/// pair.
fn token_pair(
    state: &AppState,
    user_id: i64,
    family_id: &str,
    refresh_token: String,
) -> Result<impl IntoResponse + use<>, ApiError> {
    let access = state.jwt.issue_for_login(user_id, family_id).map_err(|e| {
        tracing::error!(error = %e, "JWT signing failed");
        ApiError::internal()
    })?;
    Ok(axum::Json(json!({
        "access_token": access,
        "refresh_token": refresh_token,
        "expires_in": state.jwt.ttl_secs(),
        "token_type": "Bearer",
    })))
}

fn refresh_ttl_ms(state: &AppState) -> i64 {
    i64::try_from(
        state
            .config
            .auth
            .refresh_token_ttl_secs
            .saturating_mul(1000),
    )
    .unwrap_or(i64::MAX)
}

async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    rate_limit(&state, ip, body.email.trim())?;
    let email = body.email.trim().to_lowercase();
    let user = state
        .db
        .run(move |conn| users::find_by_email(conn, &email))
        .await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    if !password::verify(body.password, stored).await {
        return Err(ApiError::unauthorized(
            "invalid_credentials",
            "wrong email or password",
        ));
    }
    let Some(user) = user else {
        return Err(ApiError::unauthorized(
            "invalid_credentials",
            "wrong email or password",
        ));
    };
    let refresh = random_token("rt_", 32);
    let hash = sha256_hex(&refresh);
    let family = random_token("", 16);
    let login = family.clone();
    let ua = user_agent(&headers);
    let ip_text = ip.0.to_string();
    let ttl = refresh_ttl_ms(&state);
    let user_id = user.id;
    state
        .db
        .run(move |conn| {
            tokens::insert(
                conn,
                user_id,
                &family,
                &hash,
                ttl,
                &Issued {
                    user_agent: ua.as_deref(),
                    ip: Some(&ip_text),
                },
            )
        })
        .await?;
    tracing::info!(user_id, "user logged in");
    token_pair(&state, user_id, &login, refresh)
}

async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(body): Json<RefreshBody>,
) -> Result<impl IntoResponse, ApiError> {
    let presented = sha256_hex(body.refresh_token.trim());
    let next = random_token("rt_", 32);
    let next_hash = sha256_hex(&next);
    let ua = user_agent(&headers);
    let ip_text = ip.0.to_string();
    let ttl = refresh_ttl_ms(&state);
    let outcome = state
        .db
        .run(move |conn| {
            tokens::rotate(
                conn,
                &presented,
                &next_hash,
                ttl,
                &Issued {
                    user_agent: ua.as_deref(),
                    ip: Some(&ip_text),
                },
            )
        })
        .await?;
    match outcome {
        Rotation::Rotated { user_id, family_id } => token_pair(&state, user_id, &family_id, next),
        Rotation::Reused => {
            tracing::warn!(ip = %ip.0, "refresh token reused: its family is revoked");
            Err(ApiError::unauthorized(
                "refresh_token_reused",
                "this refresh token was already used; every session of this login is revoked",
            ))
        }
        Rotation::Invalid => Err(ApiError::unauthorized(
            "invalid_refresh_token",
            "the refresh token is invalid, expired or revoked",
        )),
    }
}

async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshBody>,
) -> Result<impl IntoResponse, ApiError> {
    let hash = sha256_hex(body.refresh_token.trim());
    state
        .db
        .run(move |conn| tokens::revoke_family_of(conn, &hash))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
