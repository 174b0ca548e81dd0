//! Vehicles over real HTTP: create, list, read, rename, rotate the device
//! token, delete with a purged copy; never another user's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn create_list_show_rename_delete() {
    let server = TestServer::start().await;
    let api = server.api();
    let s = api.new_user("owner@example.com").await;

    let created = api.new_vehicle(&s, "BB-0001").await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["serial"], "BB-0001");
    assert_eq!(created["name"], "car BB-0001");
    let token = created["device_token"].as_str().unwrap();
    assert!(token.starts_with("dt_") && token.len() > 40);

    let list = api.get("/api/v1/vehicles", &s.access).await;
    assert_eq!(list.status, StatusCode::OK);
    let arr = list.body.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["id"], id);
    assert_eq!(arr[0]["name"], "car BB-0001");
    assert_eq!(arr[0]["serial"], "BB-0001");
    assert_eq!(arr[0]["online"], false);
    assert!(arr[0]["last_location"].is_null());
    assert!(
        arr[0].get("device_token").is_none(),
        "the token is shown only once"
    );

    let path = format!("/api/v1/vehicles/{id}");
    let shown = api.get(&path, &s.access).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["serial"], "BB-0001");

    let r = api
        .send(
            Method::PATCH,
            &path,
            Some(&s.access),
            Some(json!({"name": "Family car"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["name"], "Family car");
    assert_eq!(api.get(&path, &s.access).await.body["name"], "Family car");
    api.send(
        Method::PATCH,
        &path,
        Some(&s.access),
        Some(json!({"name": ""})),
    )
    .await
    .assert_error(422, "invalid_name");
    api.send(
        Method::PATCH,
        &path,
        Some(&s.access),
        Some(json!({"serial": "X"})),
    )
    .await
    .assert_error(422, "invalid_body");
    api.send(Method::PATCH, &path, Some(&s.access), Some(json!({})))
        .await
        .assert_error(422, "nothing_to_update");

    let r = api.send(Method::DELETE, &path, Some(&s.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    api.get(&path, &s.access)
        .await
        .assert_error(404, "not_found");
    assert_eq!(api.get("/api/v1/vehicles", &s.access).await.body, json!([]));
    api.send(Method::DELETE, &path, Some(&s.access), None)
        .await
        .assert_error(404, "not_found");

    // The serial is free again after deletion, and the id is not reused.
    let again = api.new_vehicle(&s, "BB-0001").await;
    assert!(again["id"].as_i64().unwrap() > id);
}

#[tokio::test]
async fn duplicate_serial_is_409_and_input_is_validated() {
    let server = TestServer::start().await;
    let api = server.api();
    let a = api.new_user("a@example.com").await;
    let b = api.new_user("b@example.com").await;
    api.new_vehicle(&a, "DUP-1").await;
    api.post(
        "/api/v1/vehicles",
        Some(&b.access),
        json!({"name": "mine", "serial": "DUP-1"}),
    )
    .await
    .assert_error(409, "serial_taken");
    api.post(
        "/api/v1/vehicles",
        Some(&a.access),
        json!({"name": "x", "serial": "bad serial"}),
    )
    .await
    .assert_error(422, "invalid_serial");
    api.post("/api/v1/vehicles", Some(&a.access), json!({"name": "x"}))
        .await
        .assert_error(422, "invalid_body");
    api.post(
        "/api/v1/vehicles",
        Some(&a.access),
        json!({"name": ["x"], "serial": "S"}),
    )
    .await
    .assert_error(422, "invalid_body");
    api.post(
        "/api/v1/vehicles",
        None,
        json!({"name": "x", "serial": "S-9"}),
    )
    .await
    .assert_error(401, "missing_token");
}

#[tokio::test]
async fn another_users_vehicle_is_never_visible() {
    let server = TestServer::start().await;
    let api = server.api();
    let alice = api.new_user("alice@example.com").await;
    let mallory = api.new_user("mallory@example.com").await;
    let v = api.new_vehicle(&alice, "ALICE-1").await;
    let id = v["id"].as_i64().unwrap();
    let path = format!("/api/v1/vehicles/{id}");

    // Read, rename, rotate, delete: all 404, the same as a missing vehicle.
    let missing = api.get("/api/v1/vehicles/999999", &mallory.access).await;
    missing.assert_error(404, "not_found");
    let r = api.get(&path, &mallory.access).await;
    r.assert_error(404, "not_found");
    assert_eq!(
        r.body, missing.body,
        "indistinguishable from a missing vehicle"
    );
    api.send(
        Method::PATCH,
        &path,
        Some(&mallory.access),
        Some(json!({"name": "stolen"})),
    )
    .await
    .assert_error(404, "not_found");
    api.post(
        &format!("{path}/device-token"),
        Some(&mallory.access),
        json!({}),
    )
    .await
    .assert_error(404, "not_found");
    api.send(Method::DELETE, &path, Some(&mallory.access), None)
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        api.get("/api/v1/vehicles", &mallory.access).await.body,
        json!([])
    );

    // Nothing changed for the owner.
    let r = api.get(&path, &alice.access).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["name"], "car ALICE-1");

    // Ids that are not numbers are not found either.
    api.get("/api/v1/vehicles/abc", &alice.access)
        .await
        .assert_error(404, "not_found");
    api.get("/api/v1/vehicles/-1", &alice.access)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn rotating_the_device_token_replaces_the_old_one() {
    use diesel::prelude::*;
    use roadhub::db::queries::vehicles as q;

    let server = TestServer::start().await;
    let api = server.api();
    let s = api.new_user("rot@example.com").await;
    let v = api.new_vehicle(&s, "ROT-1").await;
    let id = v["id"].as_i64().unwrap();
    let old = v["device_token"].as_str().unwrap().to_string();

    let r = api
        .post(
            &format!("/api/v1/vehicles/{id}/device-token"),
            Some(&s.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let new = r.body["device_token"].as_str().unwrap().to_string();
    assert_ne!(new, old);

    // The stored hash matches the new token only; neither token is stored.
    let db = server.db();
    let mut conn = db.get().unwrap();
    let hash = |t: &str| roadhub::util::sha256_hex(t);
    assert!(
        q::find_by_token_hash(&mut conn, &hash(&old))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        q::find_by_token_hash(&mut conn, &hash(&new))
            .unwrap()
            .unwrap()
            .id,
        id
    );
    let stored: Vec<String> = roadhub::db_run!(&mut conn, |c| roadhub::db::schema::vehicles::table
        .select(roadhub::db::schema::vehicles::device_token_hash)
        .load(c)
        .unwrap());
    assert!(!stored.iter().any(|h| h == &new || h == &old));
}

#[tokio::test]
async fn deleting_a_vehicle_keeps_a_purged_copy_and_drops_its_telemetry() {
    use diesel::prelude::*;
    use roadhub::db::models::NewLocation;
    use roadhub::db::schema::{locations, vehicles_purged};

    let server = TestServer::start().await;
    let api = server.api();
    let s = api.new_user("purge@example.com").await;
    let v = api.new_vehicle(&s, "PURGE-1").await;
    let id = v["id"].as_i64().unwrap();

    // A stored location shows as last_location.
    let db = server.db();
    let mut conn = db.get().unwrap();
    let point = NewLocation {
        vehicle_id: id,
        t: 1_700_000_000_000,
        lat: 37.5,
        lon: 127.0,
        speed: Some(12.5),
        heading: None,
        altitude: None,
    };
    roadhub::db_run!(&mut conn, |c| diesel::insert_into(locations::table)
        .values(&point)
        .execute(c)
        .unwrap());
    let list = api.get("/api/v1/vehicles", &s.access).await;
    assert_eq!(
        list.body[0]["last_location"],
        json!({"t": 1_700_000_000_000_i64, "lat": 37.5, "lon": 127.0, "spd": 12.5, "hdg": null, "alt": null})
    );

    let r = api
        .send(
            Method::DELETE,
            &format!("/api/v1/vehicles/{id}"),
            Some(&s.access),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (serials, points): (Vec<String>, i64) = roadhub::db_run!(&mut conn, |c| (
        vehicles_purged::table
            .filter(vehicles_purged::id.eq(id))
            .select(vehicles_purged::serial)
            .load(c)
            .unwrap(),
        locations::table
            .filter(locations::vehicle_id.eq(id))
            .count()
            .get_result(c)
            .unwrap()
    ));
    assert_eq!(serials, vec!["PURGE-1".to_string()]);
    assert_eq!(points, 0);
}
