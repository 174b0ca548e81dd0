//! Telemetry history over real HTTP: locations and events paged with
//! cursors, time and type filters, the latest status and OBD, owner-only
//! access, and bad parameters. Telemetry goes in through the ingest writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Session, TestServer};
use reqwest::StatusCode;
use roadhub::ingest::{EventIn, IngestWriter, Job, Point, WriterOptions};
use serde_json::{Value, json};

fn t0() -> i64 {
    roadhub::util::now_ms() - 24 * 3_600_000
}

struct Fixture {
    server: TestServer,
    owner: Session,
    vehicle: i64,
    writer: IngestWriter,
    base: i64,
}

async fn fixture() -> Fixture {
    let server = TestServer::start().await;
    let api = server.api();
    let owner = api.new_user("owner@example.com").await;
    let vehicle = api.new_vehicle(&owner, "HIST-1").await["id"]
        .as_i64()
        .unwrap();
    let writer = IngestWriter::start(server.db(), WriterOptions::default()).unwrap();
    Fixture {
        server,
        owner,
        vehicle,
        writer,
        base: t0(),
    }
}

impl Fixture {
    /// Store `n` points, one a second from `base`, in batches of 600.
    async fn points(&self, n: i64) {
        let mut i = 0;
        while i < n {
            let end = (i + 600).min(n);
            let points = (i..end)
                .map(|k| Point {
                    t: self.base + k * 1000,
                    lat: 37.0 + k as f64 * 1e-4,
                    lon: 127.0,
                    spd: (k % 2 == 0).then_some(30.0),
                    hdg: None,
                    alt: Some(12.5),
                })
                .collect();
            self.writer
                .write(Job::Locations {
                    vehicle_id: self.vehicle,
                    points,
                })
                .await
                .unwrap();
            i = end;
        }
    }

    async fn get(&self, path: &str) -> common::Reply {
        self.server.api().get(path, &self.owner.access).await
    }

    /// Every page of `path` (which has a query string) from the start.
    async fn all_pages(&self, path: &str, key: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}&cursor={c}"),
                None => path.to_string(),
            };
            let r = self.get(&url).await;
            assert_eq!(r.status, StatusCode::OK, "{r:?}");
            pages += 1;
            items.extend(r.body[key].as_array().unwrap().iter().cloned());
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => {
                    assert!(r.body["next_cursor"].is_null());
                    break;
                }
            }
            assert!(pages < 100, "paging does not end");
        }
        (items, pages)
    }
}

#[tokio::test]
async fn locations_page_through_in_time_order() {
    let f = fixture().await;
    f.points(2_500).await;
    let path = format!("/api/v1/vehicles/{}/locations", f.vehicle);

    // Default limit 1,000.
    let r = f.get(&path).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let points = r.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 1_000);
    assert_eq!(
        points[0],
        json!({"t": f.base, "lat": 37.0, "lon": 127.0, "spd": 30.0, "hdg": null, "alt": 12.5})
    );
    assert!(r.body["next_cursor"].is_string());

    let (all, pages) = f.all_pages(&format!("{path}?limit=700"), "points").await;
    assert_eq!(pages, 4);
    let ts: Vec<i64> = all.iter().map(|p| p["t"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (0..2_500).map(|k| f.base + k * 1000).collect();
    assert_eq!(ts, expected);

    // A last page that is exactly full has no next cursor.
    let (all, pages) = f.all_pages(&format!("{path}?limit=1250"), "points").await;
    assert_eq!((all.len(), pages), (2_500, 2));

    // from inclusive, to exclusive; the cursor keeps the filters' bounds.
    let from = f.base + 100_000;
    let to = f.base + 200_000;
    let (all, pages) = f
        .all_pages(&format!("{path}?from={from}&to={to}&limit=30"), "points")
        .await;
    assert_eq!((all.len(), pages), (100, 4));
    assert_eq!(all[0]["t"], from);
    assert_eq!(all[99]["t"], to - 1000);
    let r = f.get(&format!("{path}?from={to}&to={to}")).await;
    assert_eq!(r.body, json!({"points": [], "next_cursor": null}));
    let r = f.get(&format!("{path}?from={}", f.base + 2_499_000)).await;
    assert_eq!(r.body["points"].as_array().unwrap().len(), 1);
    assert!(r.body["next_cursor"].is_null());
}

#[tokio::test]
async fn locations_limit_is_clamped() {
    let f = fixture().await;
    f.points(10_050).await;
    let path = format!("/api/v1/vehicles/{}/locations", f.vehicle);
    let r = f.get(&format!("{path}?limit=1000000")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["points"].as_array().unwrap().len(), 10_000);
    let next = r.body["next_cursor"].as_str().unwrap();
    let r = f.get(&format!("{path}?limit=1000000&cursor={next}")).await;
    assert_eq!(r.body["points"].as_array().unwrap().len(), 50);
    assert!(r.body["next_cursor"].is_null());
}

async fn write_events(f: &Fixture) -> Vec<(i64, String, i64)> {
    let mut out = Vec::new();
    for i in 0..25i64 {
        let kind = if i % 3 == 0 {
            "impact"
        } else {
            "parking.motion"
        };
        // Two events share each second: the id orders them.
        let t = f.base + (i / 2) * 1000;
        let event = EventIn {
            kind: kind.into(),
            t,
            lat: (i % 2 == 0).then_some(37.5),
            lon: (i % 2 == 0).then_some(127.0),
            meta: (i == 3).then(|| json!({"g": 2.5, "clip": [1, 2]})),
        };
        let stored = f
            .writer
            .write(Job::Event {
                vehicle_id: f.vehicle,
                event,
            })
            .await
            .unwrap();
        let roadhub::ingest::Stored::Event { id, .. } = stored else {
            panic!("{stored:?}")
        };
        out.push((id, kind.to_string(), t));
    }
    out
}

#[tokio::test]
async fn events_page_with_type_and_time_filters() {
    let f = fixture().await;
    let written = write_events(&f).await;
    let path = format!("/api/v1/vehicles/{}/events", f.vehicle);

    let (all, pages) = f.all_pages(&format!("{path}?limit=10"), "events").await;
    assert_eq!(pages, 3);
    let got: Vec<(i64, String, i64)> = all
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_string(),
                e["t"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, written);
    assert_eq!(
        all[3],
        json!({"id": written[3].0, "type": "impact", "t": written[3].2, "lat": null, "lon": null,
               "meta": {"g": 2.5, "clip": [1, 2]}})
    );
    assert_eq!(all[0]["lat"], 37.5);
    assert!(all[0]["meta"].is_null());

    // Cursor inside a second shared by two events.
    let r = f.get(&format!("{path}?limit=3")).await;
    let next = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = f.get(&format!("{path}?limit=3&cursor={next}")).await;
    let ids: Vec<i64> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, written[3..6].iter().map(|w| w.0).collect::<Vec<_>>());

    let (impacts, _) = f
        .all_pages(&format!("{path}?type=impact&limit=4"), "events")
        .await;
    assert_eq!(impacts.len(), 9);
    assert!(impacts.iter().all(|e| e["type"] == "impact"));

    let from = f.base + 2_000;
    let to = f.base + 5_000;
    let (window, _) = f
        .all_pages(&format!("{path}?from={from}&to={to}"), "events")
        .await;
    assert_eq!(window.len(), 6);
    assert!(window.iter().all(|e| {
        let t = e["t"].as_i64().unwrap();
        t >= from && t < to
    }));
    let r = f.get(&format!("{path}?type=nothing.here")).await;
    assert_eq!(r.body, json!({"events": [], "next_cursor": null}));
}

#[tokio::test]
async fn status_is_the_latest_report() {
    let f = fixture().await;
    let path = format!("/api/v1/vehicles/{}/status", f.vehicle);
    let r = f.get(&path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": null, "obd": null}));
    for (t, battery) in [(f.base + 2000, 12.6), (f.base, 11.9)] {
        f.writer
            .write(Job::Status {
                vehicle_id: f.vehicle,
                t,
                data: json!({"battery": battery, "t": t}).to_string(),
            })
            .await
            .unwrap();
    }
    f.writer
        .write(Job::Obd {
            vehicle_id: f.vehicle,
            t: f.base,
            data: r#"{"rpm":850,"codes":[]}"#.into(),
        })
        .await
        .unwrap();
    let r = f.get(&path).await;
    assert_eq!(
        r.body,
        json!({
            "status": {"t": f.base + 2000, "data": {"battery": 12.6, "t": f.base + 2000}},
            "obd": {"t": f.base, "data": {"rpm": 850, "codes": []}},
        })
    );
}

#[tokio::test]
async fn only_the_owner_sees_history() {
    let f = fixture().await;
    f.points(10).await;
    let api = f.server.api();
    let other = api.new_user("other@example.com").await;
    let other_vehicle = api.new_vehicle(&other, "HIST-2").await["id"]
        .as_i64()
        .unwrap();
    for what in ["locations", "events", "status"] {
        let mine = format!("/api/v1/vehicles/{}/{what}", f.vehicle);
        api.get(&mine, &other.access)
            .await
            .assert_error(404, "not_found");
        // Exactly like a vehicle that does not exist.
        let missing = api
            .get(&format!("/api/v1/vehicles/999999/{what}"), &other.access)
            .await;
        missing.assert_error(404, "not_found");
        let theirs = format!("/api/v1/vehicles/{other_vehicle}/{what}");
        api.get(&theirs, &f.owner.access)
            .await
            .assert_error(404, "not_found");
        api.get(&format!("/api/v1/vehicles/abc/{what}"), &f.owner.access)
            .await
            .assert_error(404, "not_found");
        api.send(reqwest::Method::GET, &mine, None, None)
            .await
            .assert_error(401, "missing_token");
    }
}

#[tokio::test]
async fn bad_parameters_are_400() {
    let f = fixture().await;
    f.points(10).await;
    write_events(&f).await;
    let loc = format!("/api/v1/vehicles/{}/locations", f.vehicle);
    let ev = format!("/api/v1/vehicles/{}/events", f.vehicle);
    for query in [
        "from=yesterday",
        "to=1e12",
        "limit=0",
        "limit=-1",
        "limit=many",
        "from=20&to=10",
        "from=1&from=2",
        "from=%ZZ",
    ] {
        f.get(&format!("{loc}?{query}"))
            .await
            .assert_error(400, "invalid_query");
        f.get(&format!("{ev}?{query}"))
            .await
            .assert_error(400, "invalid_query");
    }
    f.get(&format!("{ev}?type=Not%20A%20Type"))
        .await
        .assert_error(400, "invalid_query");
    for cursor in ["garbage", "", "bDE6eA", "%F0%9F%92%A9"] {
        f.get(&format!("{loc}?cursor={cursor}"))
            .await
            .assert_error(400, "invalid_cursor");
        f.get(&format!("{ev}?cursor={cursor}"))
            .await
            .assert_error(400, "invalid_cursor");
    }
    // One endpoint's cursor is garbage to the other.
    let r = f.get(&format!("{loc}?limit=2")).await;
    let loc_cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = f.get(&format!("{ev}?limit=2")).await;
    let ev_cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    f.get(&format!("{ev}?cursor={loc_cursor}"))
        .await
        .assert_error(400, "invalid_cursor");
    f.get(&format!("{loc}?cursor={ev_cursor}"))
        .await
        .assert_error(400, "invalid_cursor");
    // Unknown parameters are ignored.
    let r = f.get(&format!("{loc}?foo=bar&limit=3")).await;
    assert_eq!(r.body["points"].as_array().unwrap().len(), 3);
    f.writer.flush_and_stop(Duration::from_secs(5));
}
