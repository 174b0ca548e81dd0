//! Accounts over real HTTP: register, login, refresh rotation, reuse
//! detection, logout, validation and rate limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn register_login_and_use_the_access_token() {
    let server = TestServer::start().await;
    let api = server.api();
    let r = api
        .register("Ann@Example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert!(r.body["id"].as_i64().unwrap() > 0);
    assert_eq!(r.body["email"], "ann@example.com");

    // Email is case-insensitive.
    let r = api.login("ANN@example.com", "correct horse battery").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["expires_in"], 600);
    let access = r.body["access_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "a JWT");
    assert!(r.body["refresh_token"].as_str().unwrap().len() >= 40);

    let me = api.get("/api/v1/me", access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], "ann@example.com");

    let r = api.get("/api/v1/vehicles", access).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!([]));
}

#[tokio::test]
async fn wrong_credentials_and_tokens_answer_401() {
    let server = TestServer::start().await;
    let api = server.api();
    api.new_user("bob@example.com").await;
    api.login("bob@example.com", "wrong password!")
        .await
        .assert_error(401, "invalid_credentials");
    api.login("nobody@example.com", "correct horse battery")
        .await
        .assert_error(401, "invalid_credentials");

    let r = api
        .send(reqwest::Method::GET, "/api/v1/vehicles", None, None)
        .await;
    r.assert_error(401, "missing_token");
    assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
    api.get("/api/v1/vehicles", "not-a-jwt")
        .await
        .assert_error(401, "invalid_token");
    // A token signed with another key.
    let forged = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwiaWF0IjoxNzk1NDU0NTg0LCJleHAiOjQ3OTU0NTUxODQsInR5cCI6ImFjY2VzcyJ9.UbRxshxz86oSID63yBrzDfqvLNWbfxt_uwkFaWzyh5E";
    api.get("/api/v1/vehicles", forged)
        .await
        .assert_error(401, "invalid_token");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let server = TestServer::start().await;
    let api = server.api();
    let s = api.new_user("carol@example.com").await;

    // First use: a new pair; the new access token works.
    let r = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": s.refresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let second = r.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, s.refresh);
    let access = r.body["access_token"].as_str().unwrap();
    assert_eq!(api.get("/api/v1/me", access).await.status, StatusCode::OK);

    // The second token rotates too.
    let r = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": second}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let third = r.body["refresh_token"].as_str().unwrap().to_string();

    // Presenting the first (already used) token again: theft detected.
    api.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": s.refresh}),
    )
    .await
    .assert_error(401, "refresh_token_reused");
    // ... and the whole family is revoked, including the newest token.
    api.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": third}),
    )
    .await
    .assert_error(401, "invalid_refresh_token");

    // Another login (another family) is unaffected.
    let r = api
        .login("carol@example.com", "correct horse battery")
        .await;
    let other = r.body["refresh_token"].as_str().unwrap().to_string();
    let r = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": other}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    api.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": "rt_made_up"}),
    )
    .await
    .assert_error(401, "invalid_refresh_token");
}

#[tokio::test]
async fn concurrent_use_of_one_refresh_token_lets_one_win() {
    let server = TestServer::start().await;
    let api = server.api();
    let s = api.new_user("race@example.com").await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let api = api.clone();
            let token = s.refresh.clone();
            tokio::spawn(async move {
                api.post(
                    "/api/v1/auth/refresh",
                    None,
                    json!({"refresh_token": token}),
                )
                .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::UNAUTHORIZED => {}
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    assert!(ok <= 1, "at most one concurrent use may rotate, got {ok}");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let server = TestServer::start().await;
    let api = server.api();
    let s = api.new_user("dave@example.com").await;
    let r = api
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": s.refresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    api.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": s.refresh}),
    )
    .await
    .assert_error(401, "invalid_refresh_token");
    // Logging out twice, or with an unknown token, is harmless.
    let r = api
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": s.refresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn registration_is_validated() {
    let server = TestServer::start().await;
    let api = server.api();
    api.register("not-an-email", "correct horse battery")
        .await
        .assert_error(422, "invalid_email");
    api.register("eve@example.com", "short")
        .await
        .assert_error(422, "password_too_short");
    api.register("eve@example.com", &"x".repeat(2000))
        .await
        .assert_error(422, "password_too_long");
    api.post(
        "/api/v1/auth/register",
        None,
        json!({"email": "eve@example.com"}),
    )
    .await
    .assert_error(422, "invalid_body");
    api.post(
        "/api/v1/auth/register",
        None,
        json!({"email": 5, "password": "correct horse battery"}),
    )
    .await
    .assert_error(422, "invalid_body");
    let r = api
        .register("eve@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    api.register("EVE@example.com", "correct horse battery")
        .await
        .assert_error(409, "email_taken");
}

#[tokio::test]
async fn login_and_register_are_rate_limited_per_address_and_account() {
    let server = TestServer::start_with(|c| c.limits.auth_attempts_per_minute = 3).await;
    let api = server.api();
    let r = api
        .register("frank@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Two more attempts from this address are allowed, the fourth is not.
    assert_eq!(
        api.login("frank@example.com", "wrong password!")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.login("frank@example.com", "wrong password!")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = api
        .login("frank@example.com", "correct horse battery")
        .await;
    r.assert_error(429, "rate_limited");
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry), "Retry-After {retry}");
    // Register is limited by the same address.
    api.register("gina@example.com", "correct horse battery")
        .await
        .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn rate_limit_per_account_holds_across_addresses() {
    // Behind a trusted proxy the client address comes from X-Forwarded-For,
    // so one test can speak from several addresses.
    let server = TestServer::start_with(|c| {
        c.limits.auth_attempts_per_minute = 2;
        c.http.trust_forwarded_for = true;
    })
    .await;
    let client = reqwest::Client::new();
    let login = |ip: &'static str| {
        client
            .post(format!("{}/api/v1/auth/login", server.base))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": "target@example.com", "password": "guess guess"}))
            .send()
    };
    assert_eq!(
        login("10.0.0.1").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login("10.0.0.2").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login("10.0.0.3").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn account_deletion_keeps_a_purged_copy_and_ends_access() {
    use diesel::prelude::*;
    use roadhub::db::schema::{users, users_purged, vehicles, vehicles_purged};

    let server = TestServer::start().await;
    let api = server.api();
    let s = api.new_user("henry@example.com").await;
    let v1 = api.new_vehicle(&s, "HEN-1").await;
    let v2 = api.new_vehicle(&s, "HEN-2").await;
    let other = api.new_user("ivy@example.com").await;
    let kept = api.new_vehicle(&other, "IVY-1").await;

    let r = api
        .send(reqwest::Method::DELETE, "/api/v1/me", Some(&s.access), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");

    api.login("henry@example.com", "correct horse battery")
        .await
        .assert_error(401, "invalid_credentials");
    api.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": s.refresh}),
    )
    .await
    .assert_error(401, "invalid_refresh_token");
    api.get("/api/v1/me", &s.access)
        .await
        .assert_error(401, "account_gone");
    api.post(
        "/api/v1/vehicles",
        Some(&s.access),
        json!({"name": "x", "serial": "HEN-3"}),
    )
    .await
    .assert_error(401, "account_gone");

    let db = server.db();
    let mut conn = db.get().unwrap();
    let user_id = s.user_id;
    let (live_users, purged_users, live_vehicles, purged_vehicles) =
        roadhub::db_run!(&mut conn, |c| {
            (
                users::table
                    .filter(users::id.eq(user_id))
                    .count()
                    .get_result::<i64>(c)
                    .unwrap(),
                users_purged::table
                    .filter(users_purged::id.eq(user_id))
                    .select(users_purged::email)
                    .load::<String>(c)
                    .unwrap(),
                vehicles::table
                    .select(vehicles::id)
                    .order(vehicles::id)
                    .load::<i64>(c)
                    .unwrap(),
                vehicles_purged::table
                    .select(vehicles_purged::id)
                    .order(vehicles_purged::id)
                    .load::<i64>(c)
                    .unwrap(),
            )
        });
    assert_eq!(live_users, 0);
    assert_eq!(purged_users, vec!["henry@example.com".to_string()]);
    assert_eq!(live_vehicles, vec![kept["id"].as_i64().unwrap()]);
    assert_eq!(
        purged_vehicles,
        vec![v1["id"].as_i64().unwrap(), v2["id"].as_i64().unwrap()]
    );

    // The email can be registered again, with a new id.
    let r = api
        .register("henry@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["id"].as_i64().unwrap() > other.user_id);
}
