//! Telemetry history: a vehicle's locations and events in time order, page
//! by page, and its latest status and OBD reports. Writes go through the
//! ingest writer (`src/ingest/`), not through here.
//!
//! Pages are keyset pages: each one starts strictly after the last row of
//! the previous page (a location's `t`, unique per vehicle; an event's
//! `(t, id)`), so paging stays correct and cheap while rows are added, on
//! the `(vehicle_id, t)` indexes.

use diesel::prelude::*;

use crate::db::models::{Event, Location, ObdRecord, StatusSnapshot};
use crate::db::schema::{events, locations, obd_records, status_snapshots};
use crate::db::{DbConn, DbError};

/// A time window in Unix milliseconds: `from` inclusive, `to` exclusive;
/// `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Up to `limit` locations of `vehicle_id` in `window`, ascending by `t`,
/// strictly after `after_t` if given.
pub fn locations_page(
    conn: &mut DbConn,
    vehicle_id: i64,
    window: Window,
    after_t: Option<i64>,
    limit: i64,
) -> Result<Vec<Location>, DbError> {
    // Both lower bounds in one: t >= from and t > after.
    let lower = match (window.from, after_t) {
        (Some(from), Some(after)) => Some(from.max(after.saturating_add(1))),
        (Some(from), None) => Some(from),
        (None, Some(after)) => Some(after.saturating_add(1)),
        (None, None) => None,
    };
    Ok(crate::db_run!(conn, |c| {
        let mut q = locations::table
            .filter(locations::vehicle_id.eq(vehicle_id))
            .select(Location::as_select())
            .order(locations::t.asc())
            .limit(limit)
            .into_boxed();
        if let Some(lower) = lower {
            q = q.filter(locations::t.ge(lower));
        }
        if let Some(to) = window.to {
            q = q.filter(locations::t.lt(to));
        }
        q.load(c)
    })?)
}

/// Up to `limit` events of `vehicle_id` in `window` (of type `kind` if
/// given), ascending by `(t, id)`, strictly after `after` = `(t, id)` if
/// given.
pub fn events_page(
    conn: &mut DbConn,
    vehicle_id: i64,
    window: Window,
    kind: Option<&str>,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<Event>, DbError> {
    Ok(crate::db_run!(conn, |c| {
        let mut q = events::table
            .filter(events::vehicle_id.eq(vehicle_id))
            .select(Event::as_select())
            .order((events::t.asc(), events::id.asc()))
            .limit(limit)
            .into_boxed();
        if let Some(from) = window.from {
            q = q.filter(events::t.ge(from));
        }
        if let Some(to) = window.to {
            q = q.filter(events::t.lt(to));
        }
        if let Some(kind) = kind {
            q = q.filter(events::kind.eq(kind));
        }
        if let Some((t, id)) = after {
            q = q.filter(events::t.gt(t).or(events::t.eq(t).and(events::id.gt(id))));
        }
        q.load(c)
    })?)
}

/// The newest status report of `vehicle_id` (by its time, then arrival).
pub fn latest_status(
    conn: &mut DbConn,
    vehicle_id: i64,
) -> Result<Option<StatusSnapshot>, DbError> {
    Ok(crate::db_run!(conn, |c| status_snapshots::table
        .filter(status_snapshots::vehicle_id.eq(vehicle_id))
        .order((status_snapshots::t.desc(), status_snapshots::id.desc()))
        .select(StatusSnapshot::as_select())
        .first(c)
        .optional())?)
}

/// The newest OBD reading of `vehicle_id` (by its time, then arrival).
pub fn latest_obd(conn: &mut DbConn, vehicle_id: i64) -> Result<Option<ObdRecord>, DbError> {
    Ok(crate::db_run!(conn, |c| obd_records::table
        .filter(obd_records::vehicle_id.eq(vehicle_id))
        .order((obd_records::t.desc(), obd_records::id.desc()))
        .select(ObdRecord::as_select())
        .first(c)
        .optional())?)
}
