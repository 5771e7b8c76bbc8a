use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, problem};

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/auth/refresh", json!({"refresh_token": token}))
        .await
}

async fn refresh_ok(app: &TestApp, token: &str) -> (String, String) {
    let res = refresh(app, token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: Value = res.json().await.unwrap();
    (
        v["access_token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_and_reuse_detection_revoke_one_family_only() {
    let app = TestApp::spawn().await;
    let first = app.logged_in("rot@example.com").await;
    let other = app.login("rot@example.com", PASSWORD).await;

    let (_, r2) = refresh_ok(&app, &first.refresh).await;
    let (a3, r3) = refresh_ok(&app, &r2).await;
    assert_ne!(r3, r2);
    assert_eq!(app.get_auth("/me", &a3).await.status(), StatusCode::OK);

    // The first token is two generations old: a replay.
    problem(
        refresh(&app, &first.refresh).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    // The whole family is dead: its newest refresh token and its access token.
    problem(
        refresh(&app, &r3).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    app.assert_token_refused(&a3).await;
    // The other session lives on.
    assert_eq!(
        app.get_auth("/me", &other.access).await.status(),
        StatusCode::OK
    );
    refresh_ok(&app, &other.refresh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parent_token_within_grace_gets_the_current_token() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("tabs@example.com").await;
    let (_, r2) = refresh_ok(&app, &t.refresh).await;
    // A second tab presents the parent right after: no reuse alarm.
    let (_, again) = refresh_ok(&app, &t.refresh).await;
    let claims = |tok: &str| -> Value {
        let payload = tok.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims(&again)["jti"], claims(&r2)["jti"]);
    refresh_ok(&app, &r2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_after_grace_window_is_detected() {
    let app = TestApp::spawn_with(&[("refresh-reuse-grace", "1s")]).await;
    let t = app.logged_in("slow@example.com").await;
    refresh_ok(&app, &t.refresh).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    problem(
        refresh(&app, &t.refresh).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_types_are_not_interchangeable() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("types@example.com").await;
    app.assert_token_refused(&t.refresh).await;
    problem(
        refresh(&app, &t.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alg_none_and_tampered_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("forge@example.com").await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = t.access.split('.').collect();
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );
    app.assert_token_refused(&none).await;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 3600);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    app.assert_token_refused(&tampered).await;
    // Signed with another key.
    let other = gatehouse_api::auth::tokens::TokenKeys::new(
        &[9u8; 32],
        "gatehouse",
        "gatehouse",
        std::time::Duration::from_secs(60),
    );
    let forged = other
        .issue_access(t.user_id, uuid::Uuid::new_v4(), "admin")
        .unwrap();
    app.assert_token_refused(&forged.token).await;
    let res = app
        .client
        .get(app.url("/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    let res_headers = res.headers().clone();
    problem(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    assert_eq!(res_headers["www-authenticate"], "Bearer");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_rejects_the_old_access_token_at_once() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("bye@example.com").await;
    let other = app.login("bye@example.com", PASSWORD).await;
    let res = app.post_auth("/auth/logout", &t.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    app.assert_token_refused(&t.access).await;
    problem(
        refresh(&app, &t.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    assert_eq!(
        app.get_auth("/me", &other.access).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_ends_every_session() {
    let app = TestApp::spawn().await;
    let a = app.logged_in("all@example.com").await;
    let b = app.login("all@example.com", PASSWORD).await;
    let res = app.post_auth("/auth/logout?scope=all", &a.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for token in [&a.access, &b.access] {
        app.assert_token_refused(token).await;
    }
    let res = app
        .post_auth("/auth/logout?scope=everything", &b.access)
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_from_cookie_and_cross_site_refusal() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("cookie@example.com").await;
    let cookie = format!("gatehouse_refresh={}", t.refresh);
    let res = app
        .client
        .post(app.url("/auth/refresh"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::FORBIDDEN, "cross_site_request").await;
    let res = app
        .client
        .post(app.url("/auth/refresh"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::FORBIDDEN, "cross_site_request").await;
    let res = app
        .client
        .post(app.url("/auth/refresh"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("gatehouse_refresh=")
    );
    let res = app
        .client
        .post(app.url("/auth/refresh"))
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_user_token_is_refused() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("gone@example.com").await;
    let mut conn = app.db.conn().await;
    gatehouse_shared::models::User::delete(&mut conn, t.user_id)
        .await
        .unwrap();
    app.assert_token_refused(&t.access).await;
    problem(
        refresh(&app, &t.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

/// Session checks of concurrent requests share queries (one pooled
/// connection for them here, so they must queue and coalesce); each
/// request still gets exactly its own answer.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_session_checks_each_get_their_own_answer() {
    let app = TestApp::spawn_with(&[("db-pool-size", "2")]).await;
    let mut cases = Vec::new(); // (access token, expected email or None)
    for i in 0..12 {
        let email = format!("many{i}@example.com");
        let id = app
            .insert_user(&email, gatehouse_shared::domain::Role::User, true)
            .await;
        let t = app.session_for(id).await;
        if i % 4 == 3 {
            let res = app.post_auth("/auth/logout", &t.access).await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
            cases.push((t.access.clone(), None));
        } else {
            cases.push((t.access.clone(), Some(email)));
        }
        // A well-signed token naming this live session but another user.
        if i == 0 {
            let claims = app
                .state
                .tokens
                .decode(&t.access, gatehouse_api::auth::tokens::TokenKind::Access)
                .unwrap();
            let stranger = uuid::Uuid::now_v7();
            let forged = app
                .state
                .tokens
                .issue_access(stranger, claims.sid, "admin")
                .unwrap()
                .token;
            cases.push((forged, None));
        }
    }
    let requests = (0..5).flat_map(|_| cases.iter()).map(|(token, expected)| {
        let app = &app;
        async move {
            let res = app.get_auth("/me", token).await;
            match expected {
                Some(email) => {
                    assert_eq!(res.status(), StatusCode::OK);
                    let me: Value = res.json().await.unwrap();
                    assert_eq!(me["email"], email.as_str());
                }
                None => {
                    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
                }
            }
        }
    });
    futures::future::join_all(requests).await;
}
