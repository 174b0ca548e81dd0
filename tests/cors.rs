//! CORS on the Socket.IO transports: with `http.cors_origins` set, the
//! polling handshake, its POSTs and their preflights answer the CORS
//! headers to allowed origins only, and a WebSocket upgrade from a browser
//! origin that is not allowed is refused (403); one without `Origin` (a
//! non-browser client) is not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const ALLOWED: &str = "https://app.example";
const FOREIGN: &str = "https://evil.example";
const WAIT: Duration = Duration::from_secs(10);

async fn cors_server() -> TestServer {
    TestServer::start_with(|c| c.http.cors_origins = vec![ALLOWED.into()]).await
}

type Headers = reqwest::header::HeaderMap;

fn allow_origin(headers: &Headers) -> Option<String> {
    headers
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string())
}

fn allow_credentials(headers: &Headers) -> Option<String> {
    headers
        .get("access-control-allow-credentials")
        .map(|v| v.to_str().unwrap().to_string())
}

/// A polling handshake from `origin`: the response headers and the
/// session id.
async fn handshake(server: &TestServer, origin: &str) -> (Headers, String) {
    let client = server.api().client;
    let res = client
        .get(format!(
            "{}/socket.io/?EIO=4&transport=polling",
            server.base
        ))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers().clone();
    let body = res.text().await.unwrap();
    let open: serde_json::Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    let sid = open["sid"].as_str().unwrap().to_string();
    (headers, sid)
}

#[tokio::test]
async fn polling_transport_answers_cors_to_allowed_origins_only() {
    let server = cors_server().await;
    let client = server.api().client;
    // The API's answer to an allowed origin, to compare credentials with.
    let api = client
        .get(format!("{}/api/v1/vehicles", server.base))
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap()
        .headers()
        .clone();
    assert_eq!(allow_origin(&api).as_deref(), Some(ALLOWED));

    for origin in [ALLOWED, FOREIGN] {
        let expected = (origin == ALLOWED).then(|| origin.to_string());
        let (res, sid) = handshake(&server, origin).await;
        assert_eq!(allow_origin(&res), expected, "handshake from {origin}");
        if expected.is_some() {
            assert_eq!(allow_credentials(&res), allow_credentials(&api));
        }
        let url = format!(
            "{}/socket.io/?EIO=4&transport=polling&sid={sid}",
            server.base
        );
        let preflight = client
            .request(Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{preflight:?}");
        assert_eq!(
            allow_origin(preflight.headers()),
            expected,
            "preflight from {origin}"
        );
        if expected.is_some() {
            let methods = preflight.headers()["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(methods.contains("POST"), "{methods}");
            assert_eq!(
                allow_credentials(preflight.headers()),
                allow_credentials(&api)
            );
        }
        let post = client
            .post(&url)
            .header("origin", origin)
            .header("content-type", "text/plain;charset=UTF-8")
            .body("6")
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), StatusCode::OK);
        assert_eq!(allow_origin(post.headers()), expected, "POST from {origin}");
        if expected.is_some() {
            assert_eq!(allow_credentials(post.headers()), allow_credentials(&api));
        }
    }
}

/// Open a WebSocket to the node's Socket.IO path with `origin` (if any):
/// the handshake's HTTP status.
async fn websocket_status(server: &TestServer, origin: Option<&str>) -> u16 {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        server.base.replacen("http", "ws", 1)
    );
    let mut req = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        req.headers_mut().insert("origin", origin.parse().unwrap());
    }
    let res = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket connect timed out");
    match res {
        Ok((mut ws, response)) => {
            let _ = ws.close(None).await;
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("WebSocket handshake failed: {e}"),
    }
}

#[tokio::test]
async fn websocket_upgrade_from_a_foreign_origin_is_refused() {
    let server = cors_server().await;
    assert_eq!(websocket_status(&server, Some(ALLOWED)).await, 101);
    assert_eq!(websocket_status(&server, None).await, 101);
    assert_eq!(websocket_status(&server, Some(FOREIGN)).await, 403);

    // Without `http.cors_origins`, origins are not checked.
    let open = TestServer::start().await;
    assert_eq!(websocket_status(&open, Some(FOREIGN)).await, 101);
}
