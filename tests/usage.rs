//! Live-video data usage: counts added in memory, flushed to the database
//! (added, never overwritten), read back over `GET .../traffic` by the
//! owner only, and the plan's live minutes checked as a quota.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::StatusCode;
use roadhub::db::queries::usage::{date_of, day_start_ms};
use roadhub::live::usage::{Usage, kind};

#[tokio::test]
async fn usage_is_added_flushed_and_read_by_the_owner_only() {
    let server = TestServer::start().await;
    let api = server.api();
    let owner = api.new_user("owner@example.com").await;
    let other = api.new_user("other@example.com").await;
    let vehicle = api.new_vehicle(&owner, "USE-1").await["id"]
        .as_i64()
        .unwrap();
    let usage = Usage::new(std::sync::Arc::new(server.db()));

    // Nothing yet: empty lists, the free plan's 60 minutes as the limit.
    let r = api
        .get(
            &format!("/api/v1/vehicles/{vehicle}/traffic"),
            &owner.access,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["traffic"], serde_json::json!([]));
    assert_eq!(r.body["live_quota"]["used_seconds"], 0);
    assert_eq!(r.body["live_quota"]["limit_seconds"], 3600);

    usage.add_bytes(vehicle, kind::LIVE_IN, 1000);
    usage.add_bytes(vehicle, kind::LIVE_IN, 500);
    usage.add_bytes(vehicle, kind::RTSP_IN, 7000);
    usage.add_live(vehicle, Duration::from_millis(2500));
    usage.flush().await.unwrap();
    // A second flush adds to the same rows; the 500 ms left over from the
    // first one makes a whole second with this one.
    usage.add_bytes(vehicle, kind::LIVE_IN, 1);
    usage.add_live(vehicle, Duration::from_millis(600));
    usage.flush().await.unwrap();

    let today = day_start_ms(roadhub::util::now_ms());
    let r = api
        .get(
            &format!("/api/v1/vehicles/{vehicle}/traffic"),
            &owner.access,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let rows = r.body["traffic"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["kind"], kind::LIVE_IN);
    assert_eq!(rows[0]["bytes"], 1501);
    assert_eq!(rows[0]["day"], today);
    assert_eq!(rows[0]["date"], date_of(today));
    assert_eq!(rows[1]["kind"], kind::RTSP_IN);
    assert_eq!(rows[1]["bytes"], 7000);
    assert_eq!(r.body["live"][0]["seconds"], 3);
    assert_eq!(r.body["live_quota"]["used_seconds"], 3);

    // Windows: a `to` at today's midnight excludes today.
    let r = api
        .get(
            &format!("/api/v1/vehicles/{vehicle}/traffic?to={today}"),
            &owner.access,
        )
        .await;
    assert_eq!(r.body["traffic"], serde_json::json!([]));
    let r = api
        .get(
            &format!("/api/v1/vehicles/{vehicle}/traffic?from={}", today + 5),
            &owner.access,
        )
        .await;
    assert_eq!(r.body["traffic"].as_array().unwrap().len(), 2);
    let r = api
        .get(
            &format!("/api/v1/vehicles/{vehicle}/traffic?from=x"),
            &owner.access,
        )
        .await;
    r.assert_error(400, "invalid_query");

    // Another user's vehicle is not found; no token is 401.
    let r = api
        .get(
            &format!("/api/v1/vehicles/{vehicle}/traffic"),
            &other.access,
        )
        .await;
    r.assert_error(404, "not_found");
    let r = api
        .get(&format!("/api/v1/vehicles/{vehicle}/traffic"), "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The quota: pending time counts before it is flushed.
    let q = usage.live_quota(vehicle).await.unwrap();
    assert_eq!((q.used_seconds, q.limit_seconds), (3, Some(3600)));
    assert!(!q.exceeded());
    usage.add_live(vehicle, Duration::from_secs(3597));
    let q = usage.live_quota(vehicle).await.unwrap();
    assert_eq!(q.used_seconds, 3600);
    assert!(q.exceeded());
}

#[tokio::test]
async fn usage_of_a_deleted_vehicle_is_dropped_not_an_error() {
    let server = TestServer::start().await;
    let api = server.api();
    let owner = api.new_user("owner@example.com").await;
    let vehicle = api.new_vehicle(&owner, "USE-2").await["id"]
        .as_i64()
        .unwrap();
    let usage = Usage::new(std::sync::Arc::new(server.db()));
    usage.add_bytes(vehicle, kind::LIVE_IN, 10);
    usage.add_bytes(vehicle + 1000, kind::LIVE_IN, 10);
    usage.flush().await.unwrap();
    let r = api
        .get(
            &format!("/api/v1/vehicles/{vehicle}/traffic"),
            &owner.access,
        )
        .await;
    assert_eq!(r.body["traffic"][0]["bytes"], 10);
}
