//! Users: create, look up, and delete with a backup copy in `users_purged`.

use diesel::prelude::*;

use crate::db::models::{NewPurgedUser, NewUser, User};
use crate::db::schema::{users, users_purged, vehicles};
use crate::db::{DbConn, DbError};
use crate::util::now_ms;

/// Insert a user; `email` must already be normalised (trimmed, lowercased).
pub fn create(
    conn: &mut DbConn,
    email: &str,
    name: Option<&str>,
    password_hash: &str,
) -> Result<User, DbError> {
    let now = now_ms();
    let row = NewUser {
        email,
        name,
        password_hash,
        role: "user",
        email_verified_at: None,
        created_at: now,
        updated_at: now,
    };
    let user = crate::db_run!(conn, |c| diesel::insert_into(users::table)
        .values(&row)
        .returning(User::as_returning())
        .get_result(c))?;
    Ok(user)
}

pub fn find_by_email(conn: &mut DbConn, email: &str) -> Result<Option<User>, DbError> {
    Ok(crate::db_run!(conn, |c| users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(c)
        .optional())?)
}

pub fn find(conn: &mut DbConn, id: i64) -> Result<Option<User>, DbError> {
    Ok(crate::db_run!(conn, |c| users::table
        .find(id)
        .select(User::as_select())
        .first(c)
        .optional())?)
}

/// Delete a user and all their vehicles, copying each row to its `_purged`
/// table first, in one transaction. Returns false if there was no such user.
pub fn delete_with_purge(conn: &mut DbConn, id: i64) -> Result<bool, DbError> {
    let now = now_ms();
    Ok(crate::db_write_tx!(conn, |c| {
        let Some(user) = users::table
            .find(id)
            .select(User::as_select())
            .first(c)
            .optional()?
        else {
            return Ok(false);
        };
        let vehicle_ids: Vec<i64> = vehicles::table
            .filter(vehicles::owner_id.eq(id))
            .select(vehicles::id)
            .load(c)?;
        for vehicle_id in vehicle_ids {
            super::vehicles::purge_row!(c, vehicle_id, now);
        }
        diesel::insert_into(users_purged::table)
            .values(NewPurgedUser {
                id: user.id,
                email: &user.email,
                name: user.name.as_deref(),
                password_hash: &user.password_hash,
                role: &user.role,
                email_verified_at: user.email_verified_at,
                created_at: user.created_at,
                updated_at: user.updated_at,
                purged_at: now,
            })
            .execute(c)?;
        diesel::delete(users::table.find(id)).execute(c)?;
        Ok::<_, diesel::result::Error>(true)
    })?)
}
