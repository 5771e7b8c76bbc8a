//! The access-token check behind every authenticated route (`src/auth/`):
//! token types, tampering, deleted users, coalesced session checks.

use crate::common::{TestApp, assert_refresh_refused, problem};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn token_types_are_not_interchangeable() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("types@example.com").await;
    app.assert_token_refused(&t.refresh).await;
    assert_refresh_refused(&app, &t.access, "invalid_refresh_token").await;
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
async fn deleted_user_token_is_refused() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("gone@example.com").await;
    let mut conn = app.db.conn().await;
    gatehouse_shared::models::User::delete(&mut conn, t.user_id)
        .await
        .unwrap();
    app.assert_token_refused(&t.access).await;
    assert_refresh_refused(&app, &t.refresh, "invalid_refresh_token").await;
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
