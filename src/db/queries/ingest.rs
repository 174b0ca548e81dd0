//! The ingest writer's statements: one batch of telemetry rows written in
//! one write transaction (locations, status and OBD reports, the
//! connection and command logs, events, `last_seen_at`). The writer
//! (`src/ingest/writer.rs`) batches the jobs and builds the [`Batch`];
//! the SQL lives here.

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use crate::db::models::{
    NewCommandLogEntry, NewConnectionLogEntry, NewEvent, NewLocation, NewObdRecord,
    NewStatusSnapshot,
};
use crate::db::schema::{
    command_log, connection_log, events, locations, obd_records, status_snapshots, vehicles,
};
use crate::db::{DbConn, DbError};

/// Most bind parameters in one statement: SQLite's limit (PostgreSQL's is
/// 65,535).
const MAX_BIND_PARAMS: usize = 32_766;

/// Rows of the largest SQLite location statement (7 parameters a row);
/// the rest of a batch goes in pieces of 256, ..., 1 rows, so it must be
/// 512 for the pieces to cover any remainder.
const LOCATION_CHUNK: usize = 512;

/// Inserting a batch of locations, `ON CONFLICT (vehicle_id, t) DO
/// NOTHING`, the fastest way each backend offers.
trait InsertLocations {
    fn insert_locations(&mut self, rows: &[NewLocation]) -> QueryResult<()>;
}

/// SQLite: only fixed-size statements, each prepared once per connection
/// and reused (arrays have a static query id; a statement of a size seen
/// for the first time would be parsed and planned at every commit): full
/// chunks of [`LOCATION_CHUNK`] rows, then the remainder in pieces of 256,
/// 128, ..., 1 rows (at most nine statements).
impl InsertLocations for diesel::SqliteConnection {
    fn insert_locations(&mut self, rows: &[NewLocation]) -> QueryResult<()> {
        fn insert<const N: usize>(
            c: &mut diesel::SqliteConnection,
            rows: &[NewLocation],
        ) -> QueryResult<()> {
            let chunk: &[NewLocation; N] = rows.try_into().map_err(|_| {
                DieselError::QueryBuilderError("location chunk of the wrong size".into())
            })?;
            diesel::insert_into(locations::table)
                .values(chunk)
                .on_conflict((locations::vehicle_id, locations::t))
                .do_nothing()
                .execute(c)?;
            Ok(())
        }
        let mut rest = rows;
        while rest.len() >= LOCATION_CHUNK {
            let (chunk, tail) = rest.split_at(LOCATION_CHUNK);
            insert::<LOCATION_CHUNK>(self, chunk)?;
            rest = tail;
        }
        macro_rules! pieces {
            ($($n:literal),*) => {$(
                if rest.len() >= $n {
                    let (chunk, tail) = rest.split_at($n);
                    insert::<$n>(self, chunk)?;
                    rest = tail;
                }
            )*};
        }
        pieces!(256, 128, 64, 32, 16, 8, 4, 2, 1);
        debug_assert!(rest.is_empty());
        Ok(())
    }
}

/// PostgreSQL: one statement per batch, whatever its size: seven arrays
/// bound and unnested (`INSERT ... SELECT * FROM UNNEST($1, ..., $7)`),
/// prepared once per connection. Much cheaper to parse and plan than
/// thousands of `VALUES` rows.
impl InsertLocations for diesel::PgConnection {
    fn insert_locations(&mut self, rows: &[NewLocation]) -> QueryResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let columns = UnnestLocations {
            vehicle_id: rows.iter().map(|r| r.vehicle_id).collect(),
            t: rows.iter().map(|r| r.t).collect(),
            lat: rows.iter().map(|r| r.lat).collect(),
            lon: rows.iter().map(|r| r.lon).collect(),
            speed: rows.iter().map(|r| r.speed).collect(),
            heading: rows.iter().map(|r| r.heading).collect(),
            altitude: rows.iter().map(|r| r.altitude).collect(),
        };
        columns.execute(self)?;
        Ok(())
    }
}

/// `INSERT INTO locations (...) SELECT * FROM UNNEST($1, ..., $7) ON
/// CONFLICT (vehicle_id, t) DO NOTHING`, with one array per column.
struct UnnestLocations {
    vehicle_id: Vec<i64>,
    t: Vec<i64>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    speed: Vec<Option<f64>>,
    heading: Vec<Option<f64>>,
    altitude: Vec<Option<f64>>,
}

impl diesel::query_builder::QueryId for UnnestLocations {
    type QueryId = Self;
    // The SQL text never changes: diesel prepares it once per connection.
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for UnnestLocations {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Double, Nullable};
        out.push_sql(
            "INSERT INTO locations (vehicle_id, t, lat, lon, speed, heading, altitude) \
             SELECT * FROM UNNEST(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.vehicle_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.t)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Double>, _>(&self.lat)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Double>, _>(&self.lon)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Double>>, _>(&self.speed)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Double>>, _>(&self.heading)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Double>>, _>(&self.altitude)?;
        out.push_sql(") ON CONFLICT (vehicle_id, t) DO NOTHING");
        Ok(())
    }
}

impl RunQueryDsl<diesel::PgConnection> for UnnestLocations {}

/// Insert `$rows` (a slice of `New...` rows of `$table`, `$cols` columns
/// each) in as few statements as the bind-parameter limit allows.
macro_rules! insert_many {
    ($c:expr, $table:expr, $rows:expr, $cols:expr) => {{
        for chunk in $rows.chunks(MAX_BIND_PARAMS / $cols) {
            diesel::insert_into($table).values(chunk).execute($c)?;
        }
    }};
}

/// Insert the rows of `$rows` (status or OBD reports, `Copy`) that the
/// report table `$table` does not hold yet: a row with the same vehicle, `t`
/// and `data` text is a resend. One lookup per row, always the same
/// statement (prepared once per connection), through the `(vehicle_id, t)`
/// index; none when there are no rows.
macro_rules! insert_new_reports {
    ($c:expr, $table:ident, $rows:expr) => {{
        let mut fresh = Vec::with_capacity($rows.len());
        for row in &$rows {
            let resent: bool = diesel::select(diesel::dsl::exists(
                $table::table
                    .filter($table::vehicle_id.eq(row.vehicle_id))
                    .filter($table::t.eq(row.t))
                    .filter($table::data.eq(row.data)),
            ))
            .get_result($c)?;
            if !resent {
                fresh.push(*row);
            }
        }
        insert_many!($c, $table::table, fresh, 4);
    }};
}

/// Insert the event `$row` unless it is a resend (the device missed the
/// ack): the same vehicle, type, time, position and meta (the (vehicle_id,
/// t) index finds the candidates; there are almost never any). Evaluates to
/// its id and whether it was already stored.
macro_rules! insert_event {
    ($c:expr, $row:expr) => {{
        let row = $row;
        type Candidate = (i64, Option<f64>, Option<f64>, Option<String>);
        let candidates: Vec<Candidate> = events::table
            .filter(events::vehicle_id.eq(row.vehicle_id))
            .filter(events::t.eq(row.t))
            .filter(events::kind.eq(row.kind))
            .select((events::id, events::lat, events::lon, events::meta))
            .order(events::id.asc())
            .load($c)?;
        let existing = candidates.into_iter().find_map(|(id, lat, lon, meta)| {
            (lat == row.lat && lon == row.lon && meta.as_deref() == row.meta).then_some(id)
        });
        match existing {
            Some(id) => (id, true),
            None => {
                let id: i64 = diesel::insert_into(events::table)
                    .values(row)
                    .returning(events::id)
                    .get_result($c)?;
                (id, false)
            }
        }
    }};
}

/// The rows of one batch of jobs.
#[derive(Default)]
pub struct Batch<'a> {
    pub locations: Vec<NewLocation>,
    /// Status reports, each at most once per batch.
    pub statuses: Vec<NewStatusSnapshot<'a>>,
    /// OBD reports, each at most once per batch.
    pub obds: Vec<NewObdRecord<'a>>,
    pub connections: Vec<NewConnectionLogEntry<'a>>,
    pub commands: Vec<NewCommandLogEntry<'a>>,
    /// Events, with the index of their job.
    pub events: Vec<(usize, NewEvent<'a>)>,
    /// (vehicle, newest time seen), one per vehicle.
    pub last_seen: Vec<(i64, i64)>,
}

/// An event as stored: the index of its job, its id, and whether it was
/// already stored (a resend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredEvent {
    pub index: usize,
    pub id: i64,
    pub resent: bool,
}

/// Write `batch` in one write transaction; the events' ids.
pub fn write_batch(conn: &mut DbConn, batch: &Batch<'_>) -> Result<Vec<StoredEvent>, DbError> {
    let ids = crate::db_write_tx!(conn, |c| {
        InsertLocations::insert_locations(c, &batch.locations)?;
        // A resent report (the device missed the ack) is stored once.
        insert_new_reports!(c, status_snapshots, batch.statuses);
        insert_new_reports!(c, obd_records, batch.obds);
        insert_many!(c, connection_log::table, batch.connections, 6);
        insert_many!(c, command_log::table, batch.commands, 8);
        let mut ids = Vec::with_capacity(batch.events.len());
        for (index, row) in &batch.events {
            let (id, resent) = insert_event!(c, row);
            ids.push(StoredEvent {
                index: *index,
                id,
                resent,
            });
        }
        for (vehicle_id, t) in &batch.last_seen {
            diesel::update(
                vehicles::table.filter(vehicles::id.eq(vehicle_id)).filter(
                    vehicles::last_seen_at
                        .is_null()
                        .or(vehicles::last_seen_at.lt(t)),
                ),
            )
            .set(vehicles::last_seen_at.eq(t))
            .execute(c)?;
        }
        Ok::<_, DieselError>(ids)
    })?;
    Ok(ids)
}
