//! Refresh tokens: opaque, stored as SHA-256, grouped in families (one
//! family per login). Each use rotates the token: the presented one is
//! marked used and a new one of the same family is issued. Presenting a
//! token that was already used means it was copied: the whole family is
//! revoked (theft detection), so both the thief and the victim must log in
//! again.

use diesel::prelude::*;

use crate::db::models::{NewRefreshToken, RefreshToken};
use crate::db::schema::refresh_tokens;
use crate::db::{DbConn, DbError};
use crate::util::{now_ms, secure_eq};

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was valid: it is now used, and `new_hash` replaces it in
    /// the same family (login).
    Rotated { user_id: i64, family_id: String },
    /// The token had been used before: its family is now revoked.
    Reused,
    /// Unknown, revoked or expired.
    Invalid,
}

/// Where a token was issued (kept for the user's session list).
#[derive(Debug, Clone, Default)]
pub struct Issued<'a> {
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
}

pub fn insert(
    conn: &mut DbConn,
    user_id: i64,
    family_id: &str,
    token_hash: &str,
    ttl_ms: i64,
    issued: &Issued<'_>,
) -> Result<(), DbError> {
    let row = new_row(user_id, family_id, token_hash, now_ms(), ttl_ms, issued);
    crate::db_run!(conn, |c| diesel::insert_into(refresh_tokens::table)
        .values(&row)
        .execute(c))?;
    Ok(())
}

/// A fresh, unused token row of `family_id`.
fn new_row<'a>(
    user_id: i64,
    family_id: &'a str,
    token_hash: &'a str,
    now: i64,
    ttl_ms: i64,
    issued: &Issued<'a>,
) -> NewRefreshToken<'a> {
    NewRefreshToken {
        user_id,
        family_id,
        token_hash,
        created_at: now,
        expires_at: now.saturating_add(ttl_ms),
        used_at: None,
        revoked_at: None,
        user_agent: issued.user_agent,
        ip: issued.ip,
    }
}

/// Use the token hashing to `presented_hash`, and if it is valid, store its
/// successor `new_hash` in the same family, all in one transaction.
pub fn rotate(
    conn: &mut DbConn,
    presented_hash: &str,
    new_hash: &str,
    ttl_ms: i64,
    issued: &Issued<'_>,
) -> Result<Rotation, DbError> {
    let now = now_ms();
    Ok(crate::db_write_tx!(conn, |c| {
        let Some(row) = refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(presented_hash))
            .select(RefreshToken::as_select())
            .first(c)
            .optional()?
        else {
            return Ok(Rotation::Invalid);
        };
        if !secure_eq(&row.token_hash, presented_hash) || row.revoked_at.is_some() {
            return Ok(Rotation::Invalid);
        }
        let revoke_family = |c: &mut _| {
            diesel::update(
                refresh_tokens::table
                    .filter(refresh_tokens::family_id.eq(&row.family_id))
                    .filter(refresh_tokens::revoked_at.is_null()),
            )
            .set(refresh_tokens::revoked_at.eq(now))
            .execute(c)
        };
        if row.used_at.is_some() {
            revoke_family(c)?;
            return Ok(Rotation::Reused);
        }
        if row.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        // Conditional on still being unused: of two concurrent uses only one
        // wins; the other is a reuse.
        let won = diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::id.eq(row.id))
                .filter(refresh_tokens::used_at.is_null()),
        )
        .set(refresh_tokens::used_at.eq(now))
        .execute(c)?;
        if won != 1 {
            revoke_family(c)?;
            return Ok(Rotation::Reused);
        }
        diesel::insert_into(refresh_tokens::table)
            .values(new_row(
                row.user_id,
                &row.family_id,
                new_hash,
                now,
                ttl_ms,
                issued,
            ))
            .execute(c)?;
        Ok::<_, diesel::result::Error>(Rotation::Rotated {
            user_id: row.user_id,
            family_id: row.family_id.clone(),
        })
    })?)
}

/// Revoke the family of the token hashing to `hash` (logout). Returns
/// whether a token was found.
pub fn revoke_family_of(conn: &mut DbConn, hash: &str) -> Result<bool, DbError> {
    let now = now_ms();
    Ok(crate::db_write_tx!(conn, |c| {
        let family: Option<String> = refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(hash))
            .select(refresh_tokens::family_id)
            .first(c)
            .optional()?;
        let Some(family) = family else {
            return Ok(false);
        };
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::family_id.eq(&family))
                .filter(refresh_tokens::revoked_at.is_null()),
        )
        .set(refresh_tokens::revoked_at.eq(now))
        .execute(c)?;
        Ok::<_, diesel::result::Error>(true)
    })?)
}

/// Delete tokens expired for longer than `keep_ms` (housekeeping).
pub fn delete_expired(conn: &mut DbConn, keep_ms: i64) -> Result<usize, DbError> {
    let cutoff = now_ms().saturating_sub(keep_ms);
    Ok(crate::db_run!(conn, |c| diesel::delete(
        refresh_tokens::table.filter(refresh_tokens::expires_at.lt(cutoff))
    )
    .execute(c))?)
}
