//! Parse and validate device telemetry, the Socket.IO event arguments of
//! namespace `/device` (documented for clients in `docs/API.md`, "Realtime"):
//!
//! | event | payload | result |
//! | --- | --- | --- |
//! | `loc` | `{"points": [{"t","lat","lon","spd"?,"hdg"?,"alt"?}, ...]}` | [`Vec<Point>`](Point) |
//! | `event` | `{"type","t","lat"?,"lon"?,"meta"?}` | [`EventIn`] |
//! | `status`, `obd` | any JSON object | [`Report`] |
//!
//! # Rules
//!
//! - `t` is an integer of Unix milliseconds, from 2000-01-01 up to ten
//!   minutes past the server's clock ([`MIN_T`], [`MAX_FUTURE_MS`]).
//! - `lat` in [-90, 90], `lon` in [-180, 180]; `spd` (km/h) in [0, 1000],
//!   `hdg` (degrees) in [0, 360], `alt` (metres) in [-1000, 20000]. An
//!   optional field may be absent or `null`.
//! - `loc` carries 1..=[`MAX_POINTS`] points.
//! - An event `type` is 1..=64 of `a-z 0-9 _ . -`; `lat` and `lon` come
//!   together or not at all; `meta` is any JSON up to [`MAX_META_BYTES`]
//!   serialized.
//! - `status` and `obd` are JSON objects up to [`MAX_REPORT_BYTES`]
//!   serialized; their time is their own `t` when it is a sane integer,
//!   else the time of receipt.
//! - Unknown fields are ignored (newer firmware may send more).
//!
//! A failure is a [`ValidationError`] whose [`code`](ValidationError::code)
//! the device receives as `{"ok": false, "error": code}`; the session stays
//! up.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::util::now_ms;

/// Most points in one `loc` batch.
pub const MAX_POINTS: usize = 600;
/// Largest event `meta`, serialized, in bytes.
pub const MAX_META_BYTES: usize = 8 * 1024;
/// Largest `status` or `obd` object, serialized, in bytes.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;
/// Longest event type, in characters.
pub const MAX_TYPE_LEN: usize = 64;
/// Earliest accepted time: 2000-01-01T00:00:00Z in Unix milliseconds.
pub const MIN_T: i64 = 946_684_800_000;
/// How far past the server's clock a time may be (device clock skew).
pub const MAX_FUTURE_MS: i64 = 10 * 60 * 1000;

const SPD_RANGE: (f64, f64) = (0.0, 1000.0);
const HDG_RANGE: (f64, f64) = (0.0, 360.0);
const ALT_RANGE: (f64, f64) = (-1000.0, 20000.0);

/// Why a telemetry payload was refused. [`code`](Self::code) is stable:
/// devices see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Not the expected shape: not an object, a missing field, a wrong type.
    #[error("the payload does not have the expected shape or types")]
    InvalidPayload,
    /// `loc` with an empty `points` array.
    #[error("a loc batch needs at least one point")]
    NoPoints,
    /// `loc` with more than [`MAX_POINTS`] points.
    #[error("a loc batch holds at most {MAX_POINTS} points")]
    TooManyPoints,
    /// `lat`/`lon` out of range, not finite, or only one of them given.
    #[error("coordinates out of range, or lat without lon")]
    InvalidCoordinates,
    /// `t` not an integer, before 2000, or too far in the future.
    #[error("t must be integer Unix milliseconds, from 2000 to now + 10 minutes")]
    InvalidTime,
    /// `spd`, `hdg` or `alt` out of range or not finite.
    #[error("spd, hdg or alt out of range")]
    InvalidValue,
    /// An event type that is empty, too long, or has other characters than
    /// `a-z 0-9 _ . -`.
    #[error("the event type must be 1 to {MAX_TYPE_LEN} of a-z 0-9 _ . -")]
    InvalidType,
    /// `meta`, `status` or `obd` larger than allowed.
    #[error("the payload is too large")]
    TooLarge,
}

impl ValidationError {
    /// The snake_case code sent to the device.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid_payload",
            Self::NoPoints => "no_points",
            Self::TooManyPoints => "too_many_points",
            Self::InvalidCoordinates => "invalid_coordinates",
            Self::InvalidTime => "invalid_time",
            Self::InvalidValue => "invalid_value",
            Self::InvalidType => "invalid_type",
            Self::TooLarge => "too_large",
        }
    }

    /// The device's ack: `{"ok": false, "error": code}`.
    pub fn ack(self) -> Value {
        serde_json::json!({"ok": false, "error": self.code()})
    }
}

/// One GPS point of a `loc` batch. Serializes with the contract's names,
/// leaving out absent optional fields.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Unix milliseconds.
    pub t: i64,
    pub lat: f64,
    pub lon: f64,
    /// Speed, km/h.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spd: Option<f64>,
    /// Heading, degrees clockwise from north.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdg: Option<f64>,
    /// Altitude, metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<f64>,
}

/// A device `event`. Serializes with the contract's names (`type`, `t`,
/// `lat`, `lon`, `meta`), leaving out absent optional fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventIn {
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix milliseconds.
    pub t: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// Any JSON the device attached (`null` counts as absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

/// A `status` or `obd` report: the object serialized once, and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The object's own `t` if sane, else the time of receipt.
    pub t: i64,
    /// The object as compact JSON text (what is stored and fanned out).
    pub data: String,
}

impl From<&crate::db::models::Location> for Point {
    fn from(l: &crate::db::models::Location) -> Self {
        Self {
            t: l.t,
            lat: l.lat,
            lon: l.lon,
            spd: l.speed,
            hdg: l.heading,
            alt: l.altitude,
        }
    }
}

/// Validate a `loc` payload.
pub fn parse_loc(payload: &Value) -> Result<Vec<Point>, ValidationError> {
    parse_loc_at(payload, now_ms())
}

/// [`parse_loc`] with the server's clock given.
pub fn parse_loc_at(payload: &Value, now: i64) -> Result<Vec<Point>, ValidationError> {
    let points = object(payload)?
        .get("points")
        .and_then(Value::as_array)
        .ok_or(ValidationError::InvalidPayload)?;
    // Count first: a huge array fails before any point is looked at.
    if points.is_empty() {
        return Err(ValidationError::NoPoints);
    }
    if points.len() > MAX_POINTS {
        return Err(ValidationError::TooManyPoints);
    }
    points.iter().map(|p| point(p, now)).collect()
}

fn point(value: &Value, now: i64) -> Result<Point, ValidationError> {
    let obj = object(value)?;
    let t = time(obj.get("t"), now)?;
    let (lat, lon) = match (number(obj, "lat")?, number(obj, "lon")?) {
        (Some(lat), Some(lon)) => coordinates(lat, lon)?,
        _ => return Err(ValidationError::InvalidPayload),
    };
    Ok(Point {
        t,
        lat,
        lon,
        spd: ranged(number(obj, "spd")?, SPD_RANGE)?,
        hdg: ranged(number(obj, "hdg")?, HDG_RANGE)?,
        alt: ranged(number(obj, "alt")?, ALT_RANGE)?,
    })
}

/// Validate an `event` payload.
pub fn parse_event(payload: &Value) -> Result<EventIn, ValidationError> {
    parse_event_at(payload, now_ms())
}

/// [`parse_event`] with the server's clock given.
pub fn parse_event_at(payload: &Value, now: i64) -> Result<EventIn, ValidationError> {
    let obj = object(payload)?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or(ValidationError::InvalidPayload)?;
    if !is_event_type(kind) {
        return Err(ValidationError::InvalidType);
    }
    let t = time(obj.get("t"), now)?;
    let (lat, lon) = match (number(obj, "lat")?, number(obj, "lon")?) {
        (Some(lat), Some(lon)) => {
            let (lat, lon) = coordinates(lat, lon)?;
            (Some(lat), Some(lon))
        }
        (None, None) => (None, None),
        _ => return Err(ValidationError::InvalidCoordinates),
    };
    let meta = match obj.get("meta") {
        None | Some(Value::Null) => None,
        Some(meta) => {
            serialized_len_within(meta, MAX_META_BYTES)?;
            Some(meta.clone())
        }
    };
    Ok(EventIn {
        kind: kind.to_string(),
        t,
        lat,
        lon,
        meta,
    })
}

/// Is `s` a valid event type: 1..=64 of `a-z 0-9 _ . -`? (Also checks the
/// `type` filter of the event history.)
pub fn is_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TYPE_LEN
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

/// Validate a `status` payload.
pub fn parse_status(payload: &Value) -> Result<Report, ValidationError> {
    parse_report_at(payload, now_ms())
}

/// Validate an `obd` payload.
pub fn parse_obd(payload: &Value) -> Result<Report, ValidationError> {
    parse_report_at(payload, now_ms())
}

/// [`parse_status`] and [`parse_obd`] with the server's clock given.
pub fn parse_report_at(payload: &Value, now: i64) -> Result<Report, ValidationError> {
    let obj = object(payload)?;
    let data = serialize_within(payload, MAX_REPORT_BYTES)?;
    let t = time(obj.get("t"), now).unwrap_or(now);
    Ok(Report { t, data })
}

fn object(value: &Value) -> Result<&Map<String, Value>, ValidationError> {
    value.as_object().ok_or(ValidationError::InvalidPayload)
}

/// A sane `t`: present, an integer, from [`MIN_T`] to `now + MAX_FUTURE_MS`.
/// A `t` of another JSON type is a shape error.
fn time(value: Option<&Value>, now: i64) -> Result<i64, ValidationError> {
    match value {
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|t| (MIN_T..=now.saturating_add(MAX_FUTURE_MS)).contains(t))
            .ok_or(ValidationError::InvalidTime),
        _ => Err(ValidationError::InvalidPayload),
    }
}

/// An optional number field: absent or `null` is `None`, another type is a
/// shape error.
fn number(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ValidationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(ValidationError::InvalidPayload),
        Some(_) => Err(ValidationError::InvalidPayload),
    }
}

fn coordinates(lat: f64, lon: f64) -> Result<(f64, f64), ValidationError> {
    if lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
    {
        Ok((lat, lon))
    } else {
        Err(ValidationError::InvalidCoordinates)
    }
}

fn ranged(value: Option<f64>, (lo, hi): (f64, f64)) -> Result<Option<f64>, ValidationError> {
    match value {
        Some(v) if !(v.is_finite() && (lo..=hi).contains(&v)) => Err(ValidationError::InvalidValue),
        other => Ok(other),
    }
}

/// Serialize `value`, failing with `TooLarge` as soon as it passes `limit`
/// bytes (a huge object is never fully serialized).
fn serialize_within(value: &Value, limit: usize) -> Result<String, ValidationError> {
    let mut out = Bounded {
        buf: Vec::with_capacity(256.min(limit)),
        limit,
    };
    serde_json::to_writer(&mut out, value).map_err(|_| ValidationError::TooLarge)?;
    String::from_utf8(out.buf).map_err(|_| ValidationError::InvalidPayload)
}

/// Like [`serialize_within`], counting only.
fn serialized_len_within(value: &Value, limit: usize) -> Result<usize, ValidationError> {
    let mut out = Counter { n: 0, limit };
    serde_json::to_writer(&mut out, value).map_err(|_| ValidationError::TooLarge)?;
    Ok(out.n)
}

struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > self.limit {
            return Err(std::io::Error::other("too large"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Counter {
    n: usize,
    limit: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.n += bytes.len();
        if self.n > self.limit {
            return Err(std::io::Error::other("too large"));
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-23T00:00:00Z
    const NOW: i64 = 1_795_392_000_000;

    fn loc(points: Value) -> Result<Vec<Point>, ValidationError> {
        parse_loc_at(&json!({ "points": points }), NOW)
    }

    fn one(point: Value) -> Result<Point, ValidationError> {
        loc(json!([point])).map(|mut v| v.remove(0))
    }

    fn code<T: std::fmt::Debug>(r: Result<T, ValidationError>) -> &'static str {
        r.expect_err("should be refused").code()
    }

    #[test]
    fn loc_accepts_full_and_minimal_points() {
        let points = loc(json!([
            {"t": NOW - 1000, "lat": 37.5, "lon": 127.0, "spd": 42.5, "hdg": 90, "alt": 30.0},
            {"t": NOW, "lat": -90, "lon": 180, "spd": null, "extra": "ignored"},
        ]))
        .unwrap();
        assert_eq!(
            points,
            vec![
                Point {
                    t: NOW - 1000,
                    lat: 37.5,
                    lon: 127.0,
                    spd: Some(42.5),
                    hdg: Some(90.0),
                    alt: Some(30.0)
                },
                Point {
                    t: NOW,
                    lat: -90.0,
                    lon: 180.0,
                    spd: None,
                    hdg: None,
                    alt: None
                },
            ]
        );
        // Absent optionals are left out when serialized.
        assert_eq!(
            serde_json::to_value(points[1]).unwrap(),
            json!({"t": NOW, "lat": -90.0, "lon": 180.0})
        );
        assert_eq!(
            serde_json::to_value(points[0]).unwrap(),
            json!({"t": NOW - 1000, "lat": 37.5, "lon": 127.0, "spd": 42.5, "hdg": 90.0, "alt": 30.0})
        );
    }

    #[test]
    fn loc_shape_errors_are_invalid_payload() {
        for payload in [
            json!(null),
            json!([]),
            json!("points"),
            json!({}),
            json!({"points": {}}),
            json!({"points": "x"}),
            json!({"points": [1]}),
            json!({"points": [[]]}),
        ] {
            assert_eq!(
                code(parse_loc_at(&payload, NOW)),
                "invalid_payload",
                "{payload}"
            );
        }
        for point in [
            json!({"lat": 1, "lon": 1}),
            json!({"t": "1795392000000", "lat": 1, "lon": 1}),
            json!({"t": NOW, "lon": 1}),
            json!({"t": NOW, "lat": 1}),
            json!({"t": NOW, "lat": "1", "lon": 1}),
            json!({"t": NOW, "lat": 1, "lon": 1, "spd": "fast"}),
            json!({"t": NOW, "lat": 1, "lon": 1, "hdg": true}),
            json!({"t": NOW, "lat": 1, "lon": 1, "alt": []}),
        ] {
            assert_eq!(code(one(point.clone())), "invalid_payload", "{point}");
        }
    }

    #[test]
    fn loc_counts_points() {
        assert_eq!(code(loc(json!([]))), "no_points");
        let p = json!({"t": NOW, "lat": 1, "lon": 1});
        assert_eq!(loc(json!(vec![p.clone(); MAX_POINTS])).unwrap().len(), 600);
        assert_eq!(code(loc(json!(vec![p; MAX_POINTS + 1]))), "too_many_points");
        // The count is checked before the points themselves.
        assert_eq!(code(loc(json!(vec![json!(0); 10_000]))), "too_many_points");
    }

    #[test]
    fn loc_coordinates_are_in_range() {
        for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)] {
            assert!(one(json!({"t": NOW, "lat": lat, "lon": lon})).is_ok());
        }
        for (lat, lon) in [
            (90.01, 0.0),
            (-90.5, 0.0),
            (0.0, 180.1),
            (0.0, -181.0),
            (1e300, 0.0),
        ] {
            assert_eq!(
                code(one(json!({"t": NOW, "lat": lat, "lon": lon}))),
                "invalid_coordinates",
                "{lat} {lon}"
            );
        }
    }

    #[test]
    fn times_are_integer_and_sane() {
        for t in [MIN_T, NOW, NOW + MAX_FUTURE_MS] {
            assert!(one(json!({"t": t, "lat": 0, "lon": 0})).is_ok(), "{t}");
        }
        for t in [
            json!(MIN_T - 1),
            json!(0),
            json!(-5),
            json!(NOW + MAX_FUTURE_MS + 1),
            json!(1_795_392_000.5),
            json!(1.7e12),
            json!(u64::MAX),
        ] {
            assert_eq!(
                code(one(json!({"t": t, "lat": 0, "lon": 0}))),
                "invalid_time",
                "{t}"
            );
        }
    }

    #[test]
    fn speed_heading_altitude_are_in_range() {
        let ok = json!({"t": NOW, "lat": 0, "lon": 0, "spd": 0, "hdg": 360, "alt": -1000});
        assert!(one(ok).is_ok());
        let ok = json!({"t": NOW, "lat": 0, "lon": 0, "spd": 1000, "hdg": 0, "alt": 20000});
        assert!(one(ok).is_ok());
        for (field, value) in [
            ("spd", -0.1),
            ("spd", 1000.5),
            ("hdg", -1.0),
            ("hdg", 360.01),
            ("alt", -1000.1),
            ("alt", 20001.0),
        ] {
            let mut p = json!({"t": NOW, "lat": 0, "lon": 0});
            p[field] = json!(value);
            assert_eq!(code(one(p)), "invalid_value", "{field} {value}");
        }
    }

    #[test]
    fn event_is_parsed() {
        let e = parse_event_at(
            &json!({"type": "impact", "t": NOW, "lat": 37.5, "lon": 127.0, "meta": {"g": 2.5}}),
            NOW,
        )
        .unwrap();
        assert_eq!(
            e,
            EventIn {
                kind: "impact".into(),
                t: NOW,
                lat: Some(37.5),
                lon: Some(127.0),
                meta: Some(json!({"g": 2.5})),
            }
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "impact", "t": NOW, "lat": 37.5, "lon": 127.0, "meta": {"g": 2.5}})
        );
        let e = parse_event_at(
            &json!({"type": "parking.motion-2_x", "t": NOW, "meta": null}),
            NOW,
        )
        .unwrap();
        assert_eq!((e.lat, e.lon, &e.meta), (None, None, &None));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "parking.motion-2_x", "t": NOW})
        );
    }

    #[test]
    fn event_type_is_checked() {
        let max = "a".repeat(MAX_TYPE_LEN);
        assert!(parse_event_at(&json!({"type": max, "t": NOW}), NOW).is_ok());
        for kind in [
            "",
            "Impact",
            "a b",
            "é",
            "x/y",
            &"a".repeat(MAX_TYPE_LEN + 1),
        ] {
            assert_eq!(
                code(parse_event_at(&json!({"type": kind, "t": NOW}), NOW)),
                "invalid_type",
                "{kind:?}"
            );
        }
        for payload in [
            json!({"t": NOW}),
            json!({"type": 5, "t": NOW}),
            json!({"type": "x"}),
            json!("impact"),
        ] {
            assert_eq!(
                code(parse_event_at(&payload, NOW)),
                "invalid_payload",
                "{payload}"
            );
        }
        assert_eq!(
            code(parse_event_at(&json!({"type": "x", "t": 5}), NOW)),
            "invalid_time"
        );
    }

    #[test]
    fn event_coordinates_come_in_pairs_and_in_range() {
        for payload in [
            json!({"type": "x", "t": NOW, "lat": 1}),
            json!({"type": "x", "t": NOW, "lon": 1}),
            json!({"type": "x", "t": NOW, "lat": 1, "lon": null}),
            json!({"type": "x", "t": NOW, "lat": 91, "lon": 0}),
            json!({"type": "x", "t": NOW, "lat": 0, "lon": -200}),
        ] {
            assert_eq!(
                code(parse_event_at(&payload, NOW)),
                "invalid_coordinates",
                "{payload}"
            );
        }
        assert_eq!(
            code(parse_event_at(
                &json!({"type": "x", "t": NOW, "lat": "1", "lon": 1}),
                NOW
            )),
            "invalid_payload"
        );
    }

    #[test]
    fn event_meta_is_bounded() {
        // {"s":"..."} is 8 bytes of framing around the string.
        let fits = json!({"s": "x".repeat(MAX_META_BYTES - 8)});
        assert_eq!(serde_json::to_string(&fits).unwrap().len(), MAX_META_BYTES);
        assert!(parse_event_at(&json!({"type": "x", "t": NOW, "meta": fits}), NOW).is_ok());
        let over = json!({"s": "x".repeat(MAX_META_BYTES - 7)});
        assert_eq!(
            code(parse_event_at(
                &json!({"type": "x", "t": NOW, "meta": over}),
                NOW
            )),
            "too_large"
        );
        // Any JSON type is fine as meta.
        for meta in [json!(1), json!("note"), json!([1, 2]), json!(true)] {
            assert!(parse_event_at(&json!({"type": "x", "t": NOW, "meta": meta}), NOW).is_ok());
        }
    }

    #[test]
    fn reports_keep_the_object_and_its_time() {
        let r = parse_report_at(&json!({"t": NOW - 5, "battery": 12.4, "sd": "ok"}), NOW).unwrap();
        assert_eq!(r.t, NOW - 5);
        assert_eq!(
            serde_json::from_str::<Value>(&r.data).unwrap(),
            json!({"t": NOW - 5, "battery": 12.4, "sd": "ok"})
        );
        // No t, or an insane or mistyped one: the time of receipt.
        for payload in [
            json!({}),
            json!({"t": 5}),
            json!({"t": "yesterday"}),
            json!({"t": NOW + MAX_FUTURE_MS + 1}),
            json!({"t": 1.5}),
        ] {
            let r = parse_report_at(&payload, NOW).unwrap();
            assert_eq!(r.t, NOW, "{payload}");
            assert_eq!(r.data, serde_json::to_string(&payload).unwrap());
        }
    }

    #[test]
    fn reports_must_be_bounded_objects() {
        for payload in [json!(null), json!([1]), json!("x"), json!(5)] {
            assert_eq!(
                code(parse_report_at(&payload, NOW)),
                "invalid_payload",
                "{payload}"
            );
        }
        let fits = json!({"s": "x".repeat(MAX_REPORT_BYTES - 8)});
        assert_eq!(
            parse_report_at(&fits, NOW).unwrap().data.len(),
            MAX_REPORT_BYTES
        );
        let over = json!({"s": "x".repeat(MAX_REPORT_BYTES - 7)});
        assert_eq!(code(parse_report_at(&over, NOW)), "too_large");
        assert_eq!(
            code(parse_report_at(&json!({"s": "x".repeat(1 << 20)}), NOW)),
            "too_large"
        );
    }

    #[test]
    fn codes_are_stable() {
        use ValidationError::*;
        let all = [
            (InvalidPayload, "invalid_payload"),
            (NoPoints, "no_points"),
            (TooManyPoints, "too_many_points"),
            (InvalidCoordinates, "invalid_coordinates"),
            (InvalidTime, "invalid_time"),
            (InvalidValue, "invalid_value"),
            (InvalidType, "invalid_type"),
            (TooLarge, "too_large"),
        ];
        for (e, c) in all {
            assert_eq!(e.code(), c);
            assert_eq!(e.ack(), json!({"ok": false, "error": c}));
            assert!(!e.to_string().is_empty());
        }
    }
}
