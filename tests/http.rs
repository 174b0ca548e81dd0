//! HTTP behaviour: the error body everywhere, malformed and oversized
//! input, unknown routes and methods, CORS, health, readiness, metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn malformed_and_mistyped_bodies() {
    let server = TestServer::start().await;
    let api = server.api();
    for body in [
        &b"{"[..],
        b"not json",
        b"{\"email\": }",
        b"\xff\xfe",
        b"[1,2",
    ] {
        api.send_raw(Method::POST, "/api/v1/auth/register", None, body.to_vec())
            .await
            .assert_error(400, "malformed_json");
    }
    api.send_raw(Method::POST, "/api/v1/auth/login", None, Vec::new())
        .await
        .assert_error(400, "missing_body");
    // Well-formed JSON of the wrong shape is 422.
    for body in [
        json!([]),
        json!("x"),
        json!({"email": 1, "password": true}),
        json!({"email": "a@b.co", "password": "p", "extra": 1}),
    ] {
        api.post("/api/v1/auth/login", None, body)
            .await
            .assert_error(422, "invalid_body");
    }
    // A curl-style form content type is still read as JSON.
    let r = server
        .api()
        .client
        .post(format!("{}/api/v1/auth/register", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"email":"form@example.com","password":"correct horse battery"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn oversized_bodies_answer_413() {
    let server = TestServer::start_with(|c| c.http.max_body_bytes = 4096).await;
    let api = server.api();
    let big = json!({"email": "big@example.com", "password": "x".repeat(10_000)});
    api.post("/api/v1/auth/register", None, big)
        .await
        .assert_error(413, "payload_too_large");
    // Just under the limit is read (and then validated).
    let ok = json!({"email": "big@example.com", "password": "x".repeat(1030)});
    api.post("/api/v1/auth/register", None, ok)
        .await
        .assert_error(422, "password_too_long");

    // A chunked body without a length is cut at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let r = api
        .client
        .post(format!("{}/api/v1/auth/login", server.base))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let server = TestServer::start().await;
    let api = server.api();
    api.send(Method::GET, "/nope", None, None)
        .await
        .assert_error(404, "not_found");
    api.send(Method::GET, "/api/v1/nope", None, None)
        .await
        .assert_error(404, "not_found");
    api.send(Method::POST, "/api/v2/auth/login", None, Some(json!({})))
        .await
        .assert_error(404, "not_found");
    let r = api
        .send(Method::GET, "/api/v1/auth/login", None, None)
        .await;
    r.assert_error(405, "method_not_allowed");
    assert!(
        r.headers
            .get("allow")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("POST")
    );
    api.send(Method::PUT, "/healthz", None, None)
        .await
        .assert_error(405, "method_not_allowed");
    api.send(Method::DELETE, "/api/v1/vehicles", None, None)
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt_the_node() {
    let server = TestServer::start().await;
    let addr = server.base.trim_start_matches("http://").to_string();
    for garbage in [
        &b"\x00\x01\x02\x03garbage\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /api/v1/auth/login HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.write_all(garbage).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    }
    let r = server.api().send(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await;
    let api = server.api();
    let r = api.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["database"], "ok");
    api.send(Method::GET, "/nope", None, None).await;

    let text = api
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = text.text().await.unwrap();
    assert!(
        text.contains(
            r#"roadhub_http_requests_total{method="GET",route="/readyz",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("roadhub_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_resident_memory_bytes ")),
        "{text}"
    );
    assert!(text.contains("process_open_fds"), "{text}");
}

#[tokio::test]
async fn readyz_reports_a_database_that_stopped_answering() {
    // Only PostgreSQL can be taken away from under a running node; the
    // SQLite run checks the healthy answer.
    let server = TestServer::start_with(|c| c.database.connect_timeout_secs = 1).await;
    let api = server.api();
    let r = api.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let Some(admin_url) = common::pg_admin_url() else {
        return;
    };
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    let name = server
        .config
        .database
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = '{name}' AND pid <> pg_backend_pid();"
        ))
        .unwrap();
    // pg_terminate_backend only signals: a pooled connection may answer
    // once more before its backend is gone. Bounded wait for the 503.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let r = loop {
        let r = api.send(Method::GET, "/readyz", None, None).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    r.assert_error(503, "database_unavailable");
    assert!(r.headers.get("retry-after").is_some());
    // Liveness is not readiness: the process still serves.
    assert_eq!(
        api.send(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );

    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = api.send(Method::GET, "/readyz", None, None).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still not ready: {r:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn cors_is_off_by_default_and_configurable() {
    let server = TestServer::start().await;
    let r = server
        .api()
        .client
        .request(Method::OPTIONS, format!("{}/api/v1/vehicles", server.base))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let server =
        TestServer::start_with(|c| c.http.cors_origins = vec!["https://app.example".into()]).await;
    let preflight = |origin: &'static str| {
        server
            .api()
            .client
            .request(Method::OPTIONS, format!("{}/api/v1/vehicles", server.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let r = preflight("https://app.example").await.unwrap();
    assert!(r.status().is_success(), "{r:?}");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
