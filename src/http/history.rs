//! Telemetry history of one vehicle, for its owner:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /api/v1/vehicles/{id}/locations?from&to&limit&cursor` | `{"points": [{"t","lat","lon","spd","hdg","alt"}], "next_cursor"}` |
//! | `GET /api/v1/vehicles/{id}/events?from&to&type&limit&cursor` | `{"events": [{"id","type","t","lat","lon","meta"}], "next_cursor"}` |
//! | `GET /api/v1/vehicles/{id}/status` | `{"status": {"t","data"} \| null, "obd": {"t","data"} \| null}` |
//! | `GET /api/v1/vehicles/{id}/traffic?from&to` | `{"traffic": [{"day","date","kind","bytes"}], "live": [{"day","date","seconds"}], "live_quota": {"month_start","used_seconds","limit_seconds"}}` |
//!
//! # Parameters
//!
//! - `from`, `to`: Unix milliseconds; `from` is inclusive, `to` exclusive.
//!   Either may be left out (open). `from` after `to` is a 400.
//! - `limit`: rows per page; locations default 1,000 (at most 10,000),
//!   events 100 (at most 1,000). Above the maximum it is lowered to it;
//!   below 1 is a 400.
//! - `type` (events): only events of this type.
//! - `cursor`: the `next_cursor` of the previous page, opaque; send the
//!   same filters with it. `next_cursor` is `null` on the last page.
//!
//! Pages are ascending: locations by `t`, events by `(t, id)`. Another
//! user's vehicle is 404 `not_found`, exactly like a missing one. Unknown
//! parameters are ignored; a malformed value is 400 `invalid_query`, a
//! cursor that is not one of ours 400 `invalid_cursor`.

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use serde::Serialize;

use crate::ingest::validate::Point;
use serde_json::Value;

use crate::db::models::{Event, Location};
use crate::db::queries::telemetry::Window;
use crate::db::queries::{telemetry, usage, vehicles};
use crate::db::{DbConn, DbError};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, Id};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/vehicles/{id}/locations", get(locations))
        .route("/vehicles/{id}/events", get(events))
        .route("/vehicles/{id}/status", get(status))
        .route("/vehicles/{id}/traffic", get(traffic))
}

/// Rows per page of locations: default and maximum.
pub const LOCATIONS_LIMIT: (i64, i64) = (1_000, 10_000);
/// Rows per page of events: default and maximum.
pub const EVENTS_LIMIT: (i64, i64) = (100, 1_000);

/// The query string as name/value pairs; undecodable is 400.
struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("invalid_query", "the query string is malformed"))?;
        Ok(Params(pairs))
    }
}

/// The parameters of a history page, checked.
#[derive(Debug, Default)]
struct PageQuery {
    window: Window,
    limit: i64,
    cursor: Option<String>,
    kind: Option<String>,
}

impl PageQuery {
    fn parse(params: Params, (default_limit, max_limit): (i64, i64)) -> Result<Self, ApiError> {
        let mut q = PageQuery {
            limit: default_limit,
            ..PageQuery::default()
        };
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in params.0 {
            if !matches!(name.as_str(), "from" | "to" | "limit" | "cursor" | "type") {
                continue;
            }
            if seen.contains(&name) {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("{name} is given twice"),
                ));
            }
            match name.as_str() {
                "from" => q.window.from = Some(integer(&name, &value)?),
                "to" => q.window.to = Some(integer(&name, &value)?),
                "limit" => {
                    let limit = integer(&name, &value)?;
                    if limit < 1 {
                        return Err(ApiError::bad_request(
                            "invalid_query",
                            "limit must be at least 1",
                        ));
                    }
                    q.limit = limit.min(max_limit);
                }
                "cursor" => q.cursor = Some(value),
                _ => {
                    if !crate::ingest::validate::is_event_type(&value) {
                        return Err(ApiError::bad_request(
                            "invalid_query",
                            "type must be 1 to 64 of a-z 0-9 _ . -",
                        ));
                    }
                    q.kind = Some(value);
                }
            }
            seen.push(name);
        }
        if let (Some(from), Some(to)) = (q.window.from, q.window.to)
            && from > to
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                "from must not be after to",
            ));
        }
        Ok(q)
    }
}

fn integer(name: &str, value: &str) -> Result<i64, ApiError> {
    value.trim().parse::<i64>().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("{name} must be an integer (Unix milliseconds for from and to)"),
        )
    })
}

/// Cursors: base64url of `l1:{t}` (locations) or `e1:{t}:{id}` (events).
/// Opaque to clients; the prefix keeps one kind from being used for the
/// other.
mod cursor {
    use super::*;

    fn encode(text: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    fn decode<'a>(raw: &str, prefix: &str, buf: &'a mut String) -> Option<&'a str> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw.trim())
            .ok()?;
        *buf = String::from_utf8(bytes).ok()?;
        buf.strip_prefix(prefix)
    }

    fn invalid() -> ApiError {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this endpoint gave out",
        )
    }

    pub fn location(t: i64) -> String {
        encode(&format!("l1:{t}"))
    }

    pub fn parse_location(raw: &str) -> Result<i64, ApiError> {
        let mut buf = String::new();
        decode(raw, "l1:", &mut buf)
            .and_then(|rest| rest.parse().ok())
            .ok_or_else(invalid)
    }

    pub fn event(t: i64, id: i64) -> String {
        encode(&format!("e1:{t}:{id}"))
    }

    pub fn parse_event(raw: &str) -> Result<(i64, i64), ApiError> {
        let mut buf = String::new();
        decode(raw, "e1:", &mut buf)
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(t, id)| Some((t.parse().ok()?, id.parse().ok()?)))
            .ok_or_else(invalid)
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("no such vehicle")
}

/// Run `query` on the database if user `user_id` owns vehicle `id`; a
/// vehicle that is missing or not theirs is 404.
pub(crate) async fn owned<T, F>(
    state: &AppState,
    user_id: i64,
    id: i64,
    query: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, DbError> + Send + 'static,
{
    state
        .db
        .run(move |conn| {
            if vehicles::find_owned(conn, user_id, id)?.is_none() {
                return Ok(None);
            }
            query(conn).map(Some)
        })
        .await?
        .ok_or_else(not_found)
}

/// A point with the contract's names, absent values as `null`.
#[derive(Serialize)]
pub struct PointOut {
    t: i64,
    lat: f64,
    lon: f64,
    spd: Option<f64>,
    hdg: Option<f64>,
    alt: Option<f64>,
}

impl From<Point> for PointOut {
    fn from(p: Point) -> Self {
        Self {
            t: p.t,
            lat: p.lat,
            lon: p.lon,
            spd: p.spd,
            hdg: p.hdg,
            alt: p.alt,
        }
    }
}

impl From<Location> for PointOut {
    fn from(l: Location) -> Self {
        Point::from(&l).into()
    }
}

#[derive(Serialize)]
struct LocationsPage {
    points: Vec<PointOut>,
    next_cursor: Option<String>,
}

async fn locations(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let q = PageQuery::parse(params, LOCATIONS_LIMIT)?;
    let after = q
        .cursor
        .as_deref()
        .map(cursor::parse_location)
        .transpose()?;
    let limit = q.limit;
    // One more than asked: is there a next page?
    let mut rows = owned(&state, user.id, id, move |conn| {
        telemetry::locations_page(conn, id, q.window, after, limit + 1)
    })
    .await?;
    let next_cursor = page_end(&mut rows, limit).map(|last| cursor::location(last.t));
    Ok(axum::Json(LocationsPage {
        points: rows.into_iter().map(PointOut::from).collect(),
        next_cursor,
    }))
}

/// A stored event with the contract's names; `meta` as JSON.
#[derive(Serialize)]
struct EventOut {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    t: i64,
    lat: Option<f64>,
    lon: Option<f64>,
    meta: Value,
}

impl From<Event> for EventOut {
    fn from(e: Event) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            t: e.t,
            lat: e.lat,
            lon: e.lon,
            meta: json_or_null(e.meta.as_deref()),
        }
    }
}

#[derive(Serialize)]
struct EventsPage {
    events: Vec<EventOut>,
    next_cursor: Option<String>,
}

async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let q = PageQuery::parse(params, EVENTS_LIMIT)?;
    let after = q.cursor.as_deref().map(cursor::parse_event).transpose()?;
    let limit = q.limit;
    let mut rows = owned(&state, user.id, id, move |conn| {
        telemetry::events_page(conn, id, q.window, q.kind.as_deref(), after, limit + 1)
    })
    .await?;
    let next_cursor = page_end(&mut rows, limit).map(|last| cursor::event(last.t, last.id));
    Ok(axum::Json(EventsPage {
        events: rows.into_iter().map(EventOut::from).collect(),
        next_cursor,
    }))
}

/// Cut `rows` (fetched with one extra) to `limit`; the last row kept if
/// there is a next page.
fn page_end<T>(rows: &mut Vec<T>, limit: i64) -> Option<&T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
    } else {
        None
    }
}

#[derive(Serialize)]
struct Report {
    t: i64,
    data: Value,
}

#[derive(Serialize)]
struct StatusOut {
    status: Option<Report>,
    obd: Option<Report>,
}

async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<impl IntoResponse, ApiError> {
    let (status, obd) = owned(&state, user.id, id, move |conn| {
        Ok((
            telemetry::latest_status(conn, id)?,
            telemetry::latest_obd(conn, id)?,
        ))
    })
    .await?;
    Ok(axum::Json(StatusOut {
        status: status.map(|s| Report {
            t: s.t,
            data: json_or_null(Some(&s.data)),
        }),
        obd: obd.map(|o| Report {
            t: o.t,
            data: json_or_null(Some(&o.data)),
        }),
    }))
}

/// Stored JSON text as JSON (`null` if absent or, which the writer never
/// stores, not JSON).
fn json_or_null(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        assert_eq!(cursor::parse_location(&cursor::location(42)).unwrap(), 42);
        assert_eq!(cursor::parse_event(&cursor::event(-5, 7)).unwrap(), (-5, 7));
        for bad in ["", "x", "!!!", "bDE6", &cursor::event(1, 2), "bDE6eA"] {
            assert_eq!(
                cursor::parse_location(bad).unwrap_err().code,
                "invalid_cursor",
                "{bad:?}"
            );
        }
        for bad in [
            "",
            "zz",
            &cursor::location(1),
            &cursor::location(1).repeat(2),
        ] {
            assert_eq!(
                cursor::parse_event(bad).unwrap_err().code,
                "invalid_cursor",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn page_parameters_are_checked() {
        let q = PageQuery::parse(params(&[]), LOCATIONS_LIMIT).unwrap();
        assert_eq!((q.window, q.limit), (Window::default(), 1_000));
        let q = PageQuery::parse(
            params(&[("from", "10"), ("to", "20"), ("limit", "99999"), ("x", "y")]),
            LOCATIONS_LIMIT,
        )
        .unwrap();
        assert_eq!(
            (q.window.from, q.window.to, q.limit),
            (Some(10), Some(20), 10_000)
        );
        assert_eq!(
            PageQuery::parse(params(&[("limit", "5000")]), EVENTS_LIMIT)
                .unwrap()
                .limit,
            1_000
        );
        for bad in [
            &[("from", "yesterday")][..],
            &[("to", "1.5")],
            &[("limit", "0")],
            &[("limit", "-3")],
            &[("limit", "")],
            &[("from", "5"), ("to", "4")],
            &[("from", "1"), ("from", "2")],
            &[("type", "Bad Type")],
        ] {
            assert_eq!(
                PageQuery::parse(params(bad), LOCATIONS_LIMIT)
                    .unwrap_err()
                    .code,
                "invalid_query",
                "{bad:?}"
            );
        }
    }
}

#[derive(Serialize)]
struct TrafficOut {
    day: i64,
    date: String,
    kind: String,
    bytes: i64,
}

#[derive(Serialize)]
struct LiveOut {
    day: i64,
    date: String,
    seconds: i64,
}

#[derive(Serialize)]
struct QuotaOut {
    /// The UTC first of this month, Unix ms.
    month_start: i64,
    used_seconds: i64,
    /// `null`: the plan has no limit.
    limit_seconds: Option<i64>,
}

#[derive(Serialize)]
struct TrafficPage {
    traffic: Vec<TrafficOut>,
    live: Vec<LiveOut>,
    live_quota: QuotaOut,
}

/// Data usage of live video per UTC day (`from`/`to` select days: a day
/// is in when its midnight is in `[day of from, to)`), and this month's
/// live minutes against the plan. Counts reach the database every few
/// seconds (`live.usage_flush_secs`).
async fn traffic(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let q = PageQuery::parse(params, (1, 1))?;
    let month = usage::month_start_ms(crate::util::now_ms());
    let (traffic, live, used, plan) = owned(&state, user.id, id, move |conn| {
        Ok((
            usage::traffic_between(conn, id, q.window.from, q.window.to)?,
            usage::live_between(conn, id, q.window.from, q.window.to)?,
            usage::live_seconds_since(conn, id, month)?,
            usage::plan_of(conn, id)?,
        ))
    })
    .await?;
    Ok(axum::Json(TrafficPage {
        traffic: traffic
            .into_iter()
            .map(|t| TrafficOut {
                date: usage::date_of(t.day),
                day: t.day,
                kind: t.kind,
                bytes: t.bytes,
            })
            .collect(),
        live: live
            .into_iter()
            .map(|(day, seconds)| LiveOut {
                date: usage::date_of(day),
                day,
                seconds,
            })
            .collect(),
        live_quota: QuotaOut {
            month_start: month,
            used_seconds: used,
            limit_seconds: plan
                .map(|p| i64::from(p.live_minutes_per_month) * 60)
                .filter(|l| *l > 0),
        },
    }))
}
