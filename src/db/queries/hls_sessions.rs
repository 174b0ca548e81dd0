//! HLS playback sessions: the opaque `?session=` an HLS player carries in
//! its playlist and segment URLs instead of the viewer's access token
//! (players cannot refresh a token inside a URL).
//!
//! Only the SHA-256 of a session id is stored. A session names one stream
//! (vehicle and channel), one user and the login it came from (the refresh
//! token family, or none for access tokens that name no login). It is
//! valid while:
//! - `expires_at` is in the future: it slides forward by the idle time on
//!   use, written at most once per `slide_step_ms` (a playlist reload every
//!   two seconds does not cost a write each time);
//! - the user still owns the vehicle (deleting either deletes the session,
//!   by cascade);
//! - its login is alive: a refresh token of the family is neither revoked
//!   (logout, reuse detection) nor expired.

use diesel::dsl::exists;
use diesel::prelude::*;

use crate::db::schema::{hls_sessions, refresh_tokens, vehicles};
use crate::db::{DbConn, DbError};
use crate::util::now_ms;

/// A new session, as the first playlist request opens it.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = hls_sessions)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewHlsSession<'a> {
    pub session_hash: &'a str,
    pub user_id: i64,
    pub vehicle_id: i64,
    pub channel: &'a str,
    pub family_id: Option<&'a str>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A stored session (its hash left out).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = hls_sessions)]
pub struct HlsSession {
    pub id: i64,
    pub user_id: i64,
    pub vehicle_id: i64,
    pub channel: String,
    pub family_id: Option<String>,
    pub expires_at: i64,
}

/// Whether the login `$family` is alive at `$now`: one of its refresh
/// tokens is neither revoked nor expired. An expression for either backend.
macro_rules! login_alive {
    ($c:expr, $family:expr, $now:expr) => {
        diesel::select(exists(
            refresh_tokens::table
                .filter(refresh_tokens::family_id.eq($family))
                .filter(refresh_tokens::revoked_at.is_null())
                .filter(refresh_tokens::expires_at.gt($now)),
        ))
        .get_result::<bool>($c)
    };
}

/// Store a new session, unless its login has ended (then false: the access
/// token outlived a logout).
pub fn open(conn: &mut DbConn, new: &NewHlsSession<'_>) -> Result<bool, DbError> {
    let now = now_ms();
    Ok(crate::db_write_tx!(conn, |c| {
        if let Some(family) = new.family_id
            && !login_alive!(c, family, now)?
        {
            return Ok(false);
        }
        diesel::insert_into(hls_sessions::table)
            .values(new)
            .execute(c)?;
        Ok::<_, diesel::result::Error>(true)
    })?)
}

/// The valid session hashing to `session_hash`, slid forward to expire
/// `idle_ms` from now when its stored expiry is `slide_step_ms` or more
/// behind that. None when it is unknown, expired, revoked (its login
/// ended) or the user no longer owns the vehicle.
pub fn check(
    conn: &mut DbConn,
    session_hash: &str,
    idle_ms: i64,
    slide_step_ms: i64,
) -> Result<Option<HlsSession>, DbError> {
    let now = now_ms();
    Ok(crate::db_run!(conn, |c| {
        let row = hls_sessions::table
            .inner_join(vehicles::table)
            .filter(hls_sessions::session_hash.eq(session_hash))
            .filter(hls_sessions::expires_at.gt(now))
            .filter(vehicles::owner_id.eq(hls_sessions::user_id))
            .select(HlsSession::as_select())
            .first(c)
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        if let Some(family) = &row.family_id
            && !login_alive!(c, family, now)?
        {
            return Ok(None);
        }
        let slid = now.saturating_add(idle_ms);
        if slid.saturating_sub(row.expires_at) >= slide_step_ms {
            // Conditional: of concurrent requests (any node) one writes.
            diesel::update(
                hls_sessions::table
                    .filter(hls_sessions::id.eq(row.id))
                    .filter(hls_sessions::expires_at.lt(slid.saturating_sub(slide_step_ms) + 1)),
            )
            .set(hls_sessions::expires_at.eq(slid))
            .execute(c)?;
        }
        Ok::<_, diesel::result::Error>(Some(row))
    })?)
}

/// Delete sessions expired for longer than `keep_ms` (housekeeping).
pub fn delete_expired(conn: &mut DbConn, keep_ms: i64) -> Result<usize, DbError> {
    let cutoff = now_ms().saturating_sub(keep_ms);
    Ok(crate::db_run!(conn, |c| diesel::delete(
        hls_sessions::table.filter(hls_sessions::expires_at.lt(cutoff))
    )
    .execute(c))?)
}
