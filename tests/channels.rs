//! Camera channels over real HTTP: set an RTSP URL, list, read, delete;
//! credentials stored but never answered; never another user's vehicle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn put_list_show_delete() {
    let server = TestServer::start().await;
    let api = server.api();
    let s = api.new_user("owner@example.com").await;
    let id = api.new_vehicle(&s, "BB-0001").await["id"].as_i64().unwrap();
    let base = format!("/api/v1/vehicles/{id}/channels");

    let empty = api.get(&base, &s.access).await;
    assert_eq!(empty.status, StatusCode::OK, "{empty:?}");
    assert_eq!(empty.body, json!([]));

    let put = |name: &str, url: &str| {
        let api = api.clone();
        let path = format!("{base}/{name}");
        let token = s.access.clone();
        let body = json!({"rtsp_url": url});
        async move { api.send(Method::PUT, &path, Some(&token), Some(body)).await }
    };
    let r = put("front", "rtsp://admin:hunter2@192.0.2.10:554/Streaming/101").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["name"], "front");
    assert_eq!(
        r.body["rtsp_url"],
        "rtsp://***@192.0.2.10:554/Streaming/101"
    );
    assert!(!r.body.to_string().contains("hunter2"));
    assert!(!r.body.to_string().contains("admin"));

    // PUT again replaces (one row per vehicle and name).
    let r = put("front", "rtsp://192.0.2.11/live").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["rtsp_url"], "rtsp://192.0.2.11/live");
    let r = put("rear", "rtsp://viewer:pw@cam.local:8554/rear").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    let list = api.get(&base, &s.access).await;
    assert_eq!(list.status, StatusCode::OK);
    let arr = list.body.as_array().unwrap();
    assert_eq!(arr.len(), 2, "{list:?}");
    assert_eq!(arr[0]["name"], "front");
    assert_eq!(arr[0]["rtsp_url"], "rtsp://192.0.2.11/live");
    assert_eq!(arr[1]["name"], "rear");
    assert_eq!(arr[1]["rtsp_url"], "rtsp://***@cam.local:8554/rear");
    assert!(!list.body.to_string().contains("pw@"));

    let shown = api.get(&format!("{base}/rear"), &s.access).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["rtsp_url"], "rtsp://***@cam.local:8554/rear");

    // The credentials are stored, for the puller.
    let stored = server
        .db()
        .run(move |conn| roadhub::db::queries::channels::find(conn, id, "rear"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.rtsp_url.as_deref(),
        Some("rtsp://viewer:pw@cam.local:8554/rear")
    );

    let del = api
        .send(
            Method::DELETE,
            &format!("{base}/rear"),
            Some(&s.access),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{del:?}");
    api.send(
        Method::DELETE,
        &format!("{base}/rear"),
        Some(&s.access),
        None,
    )
    .await
    .assert_error(404, "not_found");
    api.get(&format!("{base}/rear"), &s.access)
        .await
        .assert_error(404, "not_found");
    let list = api.get(&base, &s.access).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_input_and_strangers_are_refused() {
    let server = TestServer::start().await;
    let api = server.api();
    let owner = api.new_user("owner@example.com").await;
    let other = api.new_user("other@example.com").await;
    let id = api.new_vehicle(&owner, "BB-0002").await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/vehicles/{id}/channels/front");
    let good = json!({"rtsp_url": "rtsp://u:p@cam.local/live"});

    // No token: 401.
    api.send(Method::PUT, &path, None, Some(good.clone()))
        .await
        .assert_error(401, "missing_token");
    api.send(
        Method::GET,
        &format!("/api/v1/vehicles/{id}/channels"),
        None,
        None,
    )
    .await
    .assert_error(401, "missing_token");

    // Another user's vehicle, or none: 404, and nothing is written.
    api.send(Method::PUT, &path, Some(&other.access), Some(good.clone()))
        .await
        .assert_error(404, "not_found");
    api.get(&format!("/api/v1/vehicles/{id}/channels"), &other.access)
        .await
        .assert_error(404, "not_found");
    api.send(Method::DELETE, &path, Some(&other.access), None)
        .await
        .assert_error(404, "not_found");
    api.send(
        Method::PUT,
        "/api/v1/vehicles/999999/channels/front",
        Some(&owner.access),
        Some(good.clone()),
    )
    .await
    .assert_error(404, "not_found");
    let list = api
        .get(&format!("/api/v1/vehicles/{id}/channels"), &owner.access)
        .await;
    assert_eq!(list.body, json!([]));

    // Malformed URLs and other schemes: 422, without echoing the URL.
    for bad in [
        "not a url",
        "http://cam.local/live",
        "rtsps://cam.local/live",
        "rtsp://",
        "rtsp://u:secret@/x",
        "",
    ] {
        let r = api
            .send(
                Method::PUT,
                &path,
                Some(&owner.access),
                Some(json!({"rtsp_url": bad})),
            )
            .await;
        r.assert_error(422, "invalid_rtsp_url");
        assert!(!r.body.to_string().contains("secret"), "{r:?}");
    }
    // A body of the wrong shape: 422; not JSON: 400.
    api.send(
        Method::PUT,
        &path,
        Some(&owner.access),
        Some(json!({"url": "rtsp://cam/x"})),
    )
    .await
    .assert_error(422, "invalid_body");
    api.send_raw(Method::PUT, &path, Some(&owner.access), b"{".to_vec())
        .await
        .assert_error(400, "malformed_json");

    // Channel names: [a-z0-9_]{1,16}.
    for name in ["Front", "a-b", "abcdefghijklmnopq", "%20"] {
        api.send(
            Method::PUT,
            &format!("/api/v1/vehicles/{id}/channels/{name}"),
            Some(&owner.access),
            Some(good.clone()),
        )
        .await
        .assert_error(422, "invalid_channel");
    }
    // A vehicle id that is not a number: 404.
    api.send(
        Method::PUT,
        "/api/v1/vehicles/abc/channels/front",
        Some(&owner.access),
        Some(good.clone()),
    )
    .await
    .assert_error(404, "not_found");

    // Deleting the vehicle deletes its channels.
    let r = api
        .send(Method::PUT, &path, Some(&owner.access), Some(good))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let del = api
        .send(
            Method::DELETE,
            &format!("/api/v1/vehicles/{id}"),
            Some(&owner.access),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let left = server
        .db()
        .run(move |conn| roadhub::db::queries::channels::list(conn, id))
        .await
        .unwrap();
    assert!(left.is_empty());
}
