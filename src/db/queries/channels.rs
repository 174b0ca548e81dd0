//! Camera channels of a vehicle (`front`, `rear`, `cabin`...), with the
//! RTSP URL the hub pulls when the camera is not pushed over RTMP.
//!
//! These queries take a vehicle id the caller has already checked (see
//! [`crate::db::queries::vehicles::find_owned`]); the handler runs both in
//! one [`crate::db::Db::run`].

use diesel::prelude::*;

use crate::db::models::{Channel, NewChannel};
use crate::db::schema::channels;
use crate::db::{DbConn, DbError};
use crate::util::now_ms;

/// The channels of a vehicle, by name.
pub fn list(conn: &mut DbConn, vehicle_id: i64) -> Result<Vec<Channel>, DbError> {
    Ok(crate::db_run!(conn, |c| channels::table
        .filter(channels::vehicle_id.eq(vehicle_id))
        .order(channels::name.asc())
        .select(Channel::as_select())
        .load(c))?)
}

/// One channel of a vehicle.
pub fn find(conn: &mut DbConn, vehicle_id: i64, name: &str) -> Result<Option<Channel>, DbError> {
    Ok(crate::db_run!(conn, |c| channels::table
        .filter(channels::vehicle_id.eq(vehicle_id))
        .filter(channels::name.eq(name))
        .select(Channel::as_select())
        .first(c)
        .optional())?)
}

/// Create the channel or replace its RTSP URL (one statement: `INSERT ...
/// ON CONFLICT (vehicle_id, name) DO UPDATE`, the same on both backends).
pub fn upsert(
    conn: &mut DbConn,
    vehicle_id: i64,
    name: &str,
    rtsp_url: Option<&str>,
) -> Result<Channel, DbError> {
    let now = now_ms();
    let row = NewChannel {
        vehicle_id,
        name,
        rtsp_url,
        created_at: now,
        updated_at: now,
    };
    Ok(crate::db_run!(conn, |c| diesel::insert_into(
        channels::table
    )
    .values(&row)
    .on_conflict((channels::vehicle_id, channels::name))
    .do_update()
    .set((
        channels::rtsp_url.eq(rtsp_url),
        channels::updated_at.eq(now)
    ))
    .returning(Channel::as_returning())
    .get_result(c))?)
}

/// Delete a channel; false if there was none.
pub fn delete(conn: &mut DbConn, vehicle_id: i64, name: &str) -> Result<bool, DbError> {
    let n = crate::db_run!(conn, |c| diesel::delete(
        channels::table
            .filter(channels::vehicle_id.eq(vehicle_id))
            .filter(channels::name.eq(name))
    )
    .execute(c))?;
    Ok(n > 0)
}
