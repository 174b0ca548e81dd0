//! Data usage of live video: bytes per vehicle, UTC day and kind
//! (`traffic`), seconds of live video per vehicle and UTC day
//! (`live_usage`), and the plan limits they are checked against.
//!
//! Counts are added, never overwritten: `INSERT ... ON CONFLICT DO UPDATE
//! SET bytes = bytes + excluded.bytes`, so flushes from several streams
//! (and several nodes) add up. Days are UTC midnights in Unix ms
//! ([`day_start_ms`]).

use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::db::models::Plan;
use crate::db::schema::{live_usage, plans, traffic, vehicles};
use crate::db::{DbConn, DbError};

pub use crate::util::{date_of, day_start_ms, month_start_ms};

/// One row to add: `bytes` of `kind` for `vehicle_id` on `day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficAdd {
    pub vehicle_id: i64,
    pub day: i64,
    pub kind: String,
    pub bytes: i64,
}

/// Seconds of live video to add for `vehicle_id` on `day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveAdd {
    pub vehicle_id: i64,
    pub day: i64,
    pub seconds: i64,
}

/// Add traffic and live seconds in one transaction. Rows of vehicles that
/// no longer exist are skipped (a stream may outlive its vehicle by a few
/// seconds).
pub fn add(
    conn: &mut DbConn,
    traffic_rows: &[TrafficAdd],
    live: &[LiveAdd],
) -> Result<(), DbError> {
    if traffic_rows.is_empty() && live.is_empty() {
        return Ok(());
    }
    Ok(crate::db_write_tx!(conn, |c| {
        let mut ids: Vec<i64> = traffic_rows
            .iter()
            .map(|r| r.vehicle_id)
            .chain(live.iter().map(|r| r.vehicle_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let existing: Vec<i64> = vehicles::table
            .filter(vehicles::id.eq_any(&ids))
            .select(vehicles::id)
            .load(c)?;
        for r in traffic_rows
            .iter()
            .filter(|r| existing.binary_search(&r.vehicle_id).is_ok() && r.bytes > 0)
        {
            diesel::insert_into(traffic::table)
                .values((
                    traffic::vehicle_id.eq(r.vehicle_id),
                    traffic::day.eq(r.day),
                    traffic::kind.eq(&r.kind),
                    traffic::bytes.eq(r.bytes),
                ))
                .on_conflict((traffic::vehicle_id, traffic::day, traffic::kind))
                .do_update()
                .set(traffic::bytes.eq(traffic::bytes + excluded(traffic::bytes)))
                .execute(c)?;
        }
        for r in live
            .iter()
            .filter(|r| existing.binary_search(&r.vehicle_id).is_ok() && r.seconds > 0)
        {
            diesel::insert_into(live_usage::table)
                .values((
                    live_usage::vehicle_id.eq(r.vehicle_id),
                    live_usage::day.eq(r.day),
                    live_usage::seconds.eq(r.seconds),
                ))
                .on_conflict((live_usage::vehicle_id, live_usage::day))
                .do_update()
                .set(live_usage::seconds.eq(live_usage::seconds + excluded(live_usage::seconds)))
                .execute(c)?;
        }
        diesel::QueryResult::Ok(())
    })?)
}

/// A day of traffic as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct TrafficDay {
    pub day: i64,
    pub kind: String,
    pub bytes: i64,
}

/// Traffic of `vehicle_id` with `from <= day < to` (either open), by day
/// then kind.
pub fn traffic_between(
    conn: &mut DbConn,
    vehicle_id: i64,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<TrafficDay>, DbError> {
    Ok(crate::db_run!(conn, |c| {
        let mut q = traffic::table
            .filter(traffic::vehicle_id.eq(vehicle_id))
            .select((traffic::day, traffic::kind, traffic::bytes))
            .order((traffic::day.asc(), traffic::kind.asc()))
            .into_boxed();
        if let Some(from) = from {
            q = q.filter(traffic::day.ge(day_start_ms(from)));
        }
        if let Some(to) = to {
            q = q.filter(traffic::day.lt(to));
        }
        q.load::<TrafficDay>(c)
    })?)
}

/// Live seconds of `vehicle_id` per day with `from <= day < to`.
pub fn live_between(
    conn: &mut DbConn,
    vehicle_id: i64,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(crate::db_run!(conn, |c| {
        let mut q = live_usage::table
            .filter(live_usage::vehicle_id.eq(vehicle_id))
            .select((live_usage::day, live_usage::seconds))
            .order(live_usage::day.asc())
            .into_boxed();
        if let Some(from) = from {
            q = q.filter(live_usage::day.ge(day_start_ms(from)));
        }
        if let Some(to) = to {
            q = q.filter(live_usage::day.lt(to));
        }
        q.load::<(i64, i64)>(c)
    })?)
}

/// Seconds of live video `vehicle_id` used since `since` (a day start).
pub fn live_seconds_since(conn: &mut DbConn, vehicle_id: i64, since: i64) -> Result<i64, DbError> {
    let rows: Vec<i64> = crate::db_run!(conn, |c| {
        live_usage::table
            .filter(live_usage::vehicle_id.eq(vehicle_id))
            .filter(live_usage::day.ge(since))
            .select(live_usage::seconds)
            .load::<i64>(c)
    })?;
    Ok(rows.iter().sum())
}

/// The plan of `vehicle_id`, if the vehicle exists.
pub fn plan_of(conn: &mut DbConn, vehicle_id: i64) -> Result<Option<Plan>, DbError> {
    Ok(crate::db_run!(conn, |c| {
        vehicles::table
            .inner_join(plans::table)
            .filter(vehicles::id.eq(vehicle_id))
            .select(Plan::as_select())
            .first(c)
            .optional()
    })?)
}
