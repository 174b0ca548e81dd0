//! Vehicles: create, list, read, rename, rotate the device token, delete
//! with a backup copy in `vehicles_purged`. Every user-facing query filters
//! on the owner, so another user's vehicle is simply not found.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::models::{Location, NewVehicle, Plan, Vehicle};
use crate::db::schema::{locations, plans, vehicles};
use crate::db::{DbConn, DbError};
use crate::util::now_ms;

/// Copy vehicle `$id` into `vehicles_purged` and delete it (its telemetry
/// goes with it by `ON DELETE CASCADE`). Used inside a write transaction.
macro_rules! purge_row {
    ($c:expr, $id:expr, $now:expr) => {{
        use $crate::db::models::{NewPurgedVehicle, Vehicle};
        use $crate::db::schema::{vehicles, vehicles_purged};
        let v: Vehicle = vehicles::table
            .find($id)
            .select(Vehicle::as_select())
            .first($c)?;
        diesel::insert_into(vehicles_purged::table)
            .values(NewPurgedVehicle {
                id: v.id,
                owner_id: v.owner_id,
                plan_id: v.plan_id,
                model_id: v.model_id,
                serial: &v.serial,
                name: &v.name,
                device_token_hash: &v.device_token_hash,
                last_seen_at: v.last_seen_at,
                created_at: v.created_at,
                updated_at: v.updated_at,
                purged_at: $now,
            })
            .execute($c)?;
        diesel::delete(vehicles::table.find($id)).execute($c)?;
    }};
}
pub(crate) use purge_row;

/// The plan new vehicles get.
pub fn default_plan(conn: &mut DbConn) -> Result<Plan, DbError> {
    Ok(crate::db_run!(conn, |c| plans::table
        .filter(plans::is_default.eq(true))
        .order(plans::id.asc())
        .select(Plan::as_select())
        .first(c))?)
}

/// Insert a vehicle for `owner_id` on the default plan.
pub fn create(
    conn: &mut DbConn,
    owner_id: i64,
    serial: &str,
    name: &str,
    device_token_hash: &str,
) -> Result<Vehicle, DbError> {
    let plan = default_plan(conn)?;
    let now = now_ms();
    let row = NewVehicle {
        owner_id,
        plan_id: plan.id,
        model_id: None,
        serial,
        name,
        device_token_hash,
        last_seen_at: None,
        created_at: now,
        updated_at: now,
    };
    Ok(crate::db_run!(conn, |c| diesel::insert_into(
        vehicles::table
    )
    .values(&row)
    .returning(Vehicle::as_returning())
    .get_result(c))?)
}

pub fn list_owned(conn: &mut DbConn, owner_id: i64) -> Result<Vec<Vehicle>, DbError> {
    Ok(crate::db_run!(conn, |c| vehicles::table
        .filter(vehicles::owner_id.eq(owner_id))
        .order(vehicles::id.asc())
        .select(Vehicle::as_select())
        .load(c))?)
}

/// The vehicle `id` if `owner_id` owns it.
pub fn find_owned(conn: &mut DbConn, owner_id: i64, id: i64) -> Result<Option<Vehicle>, DbError> {
    Ok(crate::db_run!(conn, |c| vehicles::table
        .filter(vehicles::id.eq(id))
        .filter(vehicles::owner_id.eq(owner_id))
        .select(Vehicle::as_select())
        .first(c)
        .optional())?)
}

/// The vehicle whose device token hashes to `token_hash`.
pub fn find_by_token_hash(conn: &mut DbConn, token_hash: &str) -> Result<Option<Vehicle>, DbError> {
    Ok(crate::db_run!(conn, |c| vehicles::table
        .filter(vehicles::device_token_hash.eq(token_hash))
        .select(Vehicle::as_select())
        .first(c)
        .optional())?)
}

/// The vehicle with this serial (any owner: for the CLI and devices).
pub fn find_by_serial(conn: &mut DbConn, serial: &str) -> Result<Option<Vehicle>, DbError> {
    Ok(crate::db_run!(conn, |c| vehicles::table
        .filter(vehicles::serial.eq(serial))
        .select(Vehicle::as_select())
        .first(c)
        .optional())?)
}

/// Rename an owned vehicle; `None` if not found.
pub fn rename(
    conn: &mut DbConn,
    owner_id: i64,
    id: i64,
    name: &str,
) -> Result<Option<Vehicle>, DbError> {
    let now = now_ms();
    Ok(crate::db_run!(conn, |c| diesel::update(
        vehicles::table
            .filter(vehicles::id.eq(id))
            .filter(vehicles::owner_id.eq(owner_id))
    )
    .set((vehicles::name.eq(name), vehicles::updated_at.eq(now)))
    .returning(Vehicle::as_returning())
    .get_result(c)
    .optional())?)
}

/// Replace the device token hash of an owned vehicle; false if not found.
pub fn set_token_hash(
    conn: &mut DbConn,
    owner_id: i64,
    id: i64,
    token_hash: &str,
) -> Result<bool, DbError> {
    let now = now_ms();
    let n = crate::db_run!(conn, |c| diesel::update(
        vehicles::table
            .filter(vehicles::id.eq(id))
            .filter(vehicles::owner_id.eq(owner_id))
    )
    .set((
        vehicles::device_token_hash.eq(token_hash),
        vehicles::updated_at.eq(now)
    ))
    .execute(c))?;
    Ok(n == 1)
}

/// Delete an owned vehicle, keeping a copy in `vehicles_purged`; false if
/// not found.
pub fn delete_with_purge(conn: &mut DbConn, owner_id: i64, id: i64) -> Result<bool, DbError> {
    let now = now_ms();
    Ok(crate::db_write_tx!(conn, |c| {
        let owned = vehicles::table
            .filter(vehicles::id.eq(id))
            .filter(vehicles::owner_id.eq(owner_id))
            .select(vehicles::id)
            .first::<i64>(c)
            .optional()?;
        if owned.is_none() {
            return Ok(false);
        }
        purge_row!(c, id, now);
        Ok::<_, diesel::result::Error>(true)
    })?)
}

/// The newest stored location of each vehicle in `ids` that has one.
pub fn latest_locations(conn: &mut DbConn, ids: &[i64]) -> Result<HashMap<i64, Location>, DbError> {
    let mut out = HashMap::with_capacity(ids.len());
    for &id in ids {
        // One indexed lookup per vehicle on UNIQUE (vehicle_id, t).
        let row = crate::db_run!(conn, |c| locations::table
            .filter(locations::vehicle_id.eq(id))
            .order(locations::t.desc())
            .select(Location::as_select())
            .first(c)
            .optional())?;
        if let Some(row) = row {
            out.insert(id, row);
        }
    }
    Ok(out)
}
