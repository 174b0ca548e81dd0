//! HLS play with playback sessions.
//!
//! Players cannot refresh an access token inside a URL, and access tokens
//! live minutes; HLS playlists are reloaded for as long as the viewer
//! watches. So the access token opens a playback session and the URLs the
//! player follows afterwards carry that session:
//!
//! 1. `GET /live/{key}/index.m3u8?token=<access_token>` (or
//!    `Authorization: Bearer`): the owner's token is checked and the answer
//!    is a multivariant playlist (RFC 8216 4.3.4.2) with one variant,
//!    `index.m3u8?session=<id>`.
//! 2. `GET /live/{key}/index.m3u8?session=<id>`: the media playlist, its
//!    segment URIs `{seq}.ts?session=<id>`; the player reloads it.
//! 3. `GET /live/{key}/{seq}.ts?session=<id>`: a segment.
//!
//! The session id is random; only its SHA-256 is stored, in the database
//! (any node of a cluster behind a round-robin balancer can check it). It is
//! good for that stream and that user only, slides forward by
//! `live.hls_session_idle_secs` on every fetch (written at most every
//! quarter of that), and ends with the login its access token came from
//! (logout, refresh-token reuse), the account or the vehicle. An unknown,
//! expired or ended session: 401 `playback_session_expired`; a session of
//! another stream: 404 `stream_not_found`, as for a stream that is not the
//! caller's. `?session=` wins over `?token=` when both are given.
//!
//! `{seq}.ts?token=<access_token>` also serves a segment while the token is
//! valid (for simple clients that fetch segments themselves).

use std::hash::{Hash as _, Hasher as _};

use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::auth::AccessClaims;
use crate::db::queries::hls_sessions::{self, NewHlsSession};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::live::stream::StreamKey;
use crate::util::{now_ms, random_token, sha256_hex};

/// The longest `?session=` value looked up.
const MAX_SESSION_LEN: usize = 128;

/// What an HLS request presents.
enum Credential {
    /// `?session=`: a playback session id.
    Session(String),
    /// `?token=` or `Authorization: Bearer`: an access token (or nothing).
    Token(Option<String>),
}

fn credential(req: &Request) -> Credential {
    let session = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, v)| *k == "session" && !v.is_empty())
            .map(|(_, v)| v.to_owned())
    });
    match session {
        Some(s) => Credential::Session(s),
        None => Credential::Token(super::token(req)),
    }
}

/// A stable id for an HLS client (the stream's viewer count): a hash of
/// its session id or token.
fn client_id(secret: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    secret.hash(&mut h);
    h.finish()
}

fn session_expired() -> ApiError {
    ApiError::unauthorized(
        "playback_session_expired",
        "the playback session is unknown, expired or ended; open the stream again with an access token",
    )
}

/// `GET /live/{key}/index.m3u8` and `GET /live/{key}/{seq}.ts`.
pub(super) async fn hls(
    State(state): State<AppState>,
    Path((key, file)): Path<(String, String)>,
    req: Request,
) -> Response {
    let key = StreamKey::parse(&key);
    let res = match hls_inner(&state, key, &file, credential(&req)).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    };
    super::with_cors(&state, res)
}

async fn hls_inner(
    state: &AppState,
    key: Option<StreamKey>,
    file: &str,
    credential: Credential,
) -> Result<Response, ApiError> {
    let (key, secret, claims) = match credential {
        Credential::Session(session) => (check_session(state, &session, key).await?, session, None),
        Credential::Token(token) => {
            let (token, claims) = super::authorize(state, token, key.as_ref()).await?;
            let key = key.ok_or_else(super::stream_not_found)?;
            (key, token, Some(claims))
        }
    };
    if !state.config.live.hls_enabled {
        return Err(ApiError::not_found("HLS is not enabled on this node"));
    }
    if file != "index.m3u8" {
        return segment(state, &key, file, client_id(&secret)).await;
    }
    state.ondemand.prepare(&key).await?;
    let playlist = match claims {
        None => {
            let query = format!("?session={secret}");
            state
                .live
                .hls_playlist(&key, client_id(&secret), &query)
                .await?
        }
        Some(claims) => open_session(state, &key, claims).await?,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        playlist,
    )
        .into_response())
}

/// The stream key of a valid session presented for `key`; slides it.
async fn check_session(
    state: &AppState,
    session: &str,
    key: Option<StreamKey>,
) -> Result<StreamKey, ApiError> {
    if session.len() > MAX_SESSION_LEN {
        return Err(session_expired());
    }
    let key = key.ok_or_else(super::stream_not_found)?;
    let hash = sha256_hex(session);
    let idle_ms = idle_ms(state);
    let row = state
        .db
        .run(move |conn| hls_sessions::check(conn, &hash, idle_ms, idle_ms / 4))
        .await?
        .ok_or_else(session_expired)?;
    if row.vehicle_id != key.vehicle_id || row.channel != key.channel {
        return Err(super::stream_not_found());
    }
    Ok(key)
}

fn idle_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.live.hls_session_idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Open a session for the holder of an access token with `claims`
/// (already authorized for `key`) and answer the multivariant playlist that
/// points at it.
async fn open_session(
    state: &AppState,
    key: &StreamKey,
    claims: AccessClaims,
) -> Result<String, ApiError> {
    let user_id = claims.user_id().ok_or_else(ApiError::internal)?;
    let session = random_token("hs_", 24);
    let uri = format!("index.m3u8?session={session}");
    let master = state
        .live
        .hls_multivariant(key, client_id(&session), &uri)
        .await?;
    let hash = sha256_hex(&session);
    let (vehicle_id, channel) = (key.vehicle_id, key.channel.clone());
    let now = now_ms();
    let expires_at = now.saturating_add(idle_ms(state));
    let opened = state
        .db
        .run(move |conn| {
            hls_sessions::open(
                conn,
                &NewHlsSession {
                    session_hash: &hash,
                    user_id,
                    vehicle_id,
                    channel: &channel,
                    family_id: claims.sid.as_deref(),
                    created_at: now,
                    expires_at,
                },
            )
        })
        .await?;
    if !opened {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "the login this access token came from has ended; log in again",
        ));
    }
    tracing::info!(stream = %key, user_id, "HLS playback session opened");
    Ok(master)
}

/// `{seq}.ts` of `key` for `client`, while in the window.
async fn segment(
    state: &AppState,
    key: &StreamKey,
    file: &str,
    client: u64,
) -> Result<Response, ApiError> {
    let sequence = file
        .strip_suffix(".ts")
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| ApiError::not_found("no such segment"))?;
    let data = state
        .live
        .hls_segment(key, client, sequence)
        .await
        .map_err(|_| ApiError::not_found("no such segment (it may have left the window)"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp2t"),
            (header::CACHE_CONTROL, "private, max-age=60, immutable"),
        ],
        data,
    )
        .into_response())
}
