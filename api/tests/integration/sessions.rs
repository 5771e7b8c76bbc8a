//! Sessions: login, the OAuth2 token endpoint, refresh rotation and reuse
//! detection, logout.

use crate::common::{PASSWORD, TestApp, assert_refresh_refused, problem, refresh};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_tokens_cookie_and_no_store() {
    let app = TestApp::spawn().await;
    let id = app.verified_user("kim@example.com").await;
    let res = app
        .post(
            "/auth/login",
            json!({"email": "KIM@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    // The refresh cookie (the device cookie of the login soft-lock is the
    // other Set-Cookie; their order is not fixed).
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("gatehouse_refresh="))
        .unwrap();
    for part in [
        "gatehouse_refresh=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/auth",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 900);
    assert_eq!(v["user_id"], id.to_string());
    assert!(cookie.contains(v["refresh_token"].as_str().unwrap()));
    let me: Value = app
        .get_auth("/me", v["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "kim@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_email_look_identical() {
    let app = TestApp::spawn().await;
    app.verified_user("lee@example.com").await;
    let wrong = app
        .post(
            "/auth/login",
            json!({"email": "lee@example.com", "password": "not the password"}),
        )
        .await;
    let unknown = app
        .post(
            "/auth/login",
            json!({"email": "nobody@example.com", "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    let a: Value = wrong.json().await.unwrap();
    let b: Value = unknown.json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a["code"], "invalid_credentials");
}

#[tokio::test(flavor = "multi_thread")]
async fn unverified_login_is_403_only_after_correct_password() {
    let app = TestApp::spawn().await;
    app.signup("new@example.com").await;
    let res = app
        .post(
            "/auth/login",
            json!({"email": "new@example.com", "password": "wrong password!"}),
        )
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app
        .post(
            "/auth/login",
            json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await;
    problem(res, StatusCode::FORBIDDEN, "email_not_verified").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_login_can_be_turned_off() {
    let app = TestApp::spawn_with(&[("require-verified-login", "false")]).await;
    app.signup("relaxed@example.com").await;
    app.login("relaxed@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_validation() {
    let app = TestApp::spawn().await;
    let res = app.post("/auth/login", json!({})).await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_token_endpoint() {
    let app = TestApp::spawn().await;
    app.verified_user("oauth@example.com").await;
    let form = |body: &'static str| {
        app.client
            .post(app.url("/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let res = form("grant_type=password&username=oauth%40example.com&password=correct+horse+battery+staple&scope=").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();

    let res = form("grant_type=password&username=oauth%40example.com&password=nope")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");

    let res = form("grant_type=client_credentials").await.unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "unsupported_grant_type");
    let res = form("username=x").await.unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");

    let body = format!("grant_type=refresh_token&refresh_token={refresh}");
    let res = app
        .client
        .post(app.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .client
        .post(app.url("/auth/token"))
        .json(&json!({"grant_type": "password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rehashes_outdated_hashes() {
    use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
    let app = TestApp::spawn().await;
    let id = app.verified_user("legacy@example.com").await;
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(4096, 1, 1, None).unwrap(),
    )
    .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
    .unwrap()
    .to_string();
    let mut conn = app.db.conn().await;
    gatehouse_shared::models::User::set_password_hash(&mut conn, id, &weak)
        .await
        .unwrap();
    app.login("legacy@example.com", PASSWORD).await;
    let user = gatehouse_shared::models::User::find(&mut conn, id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        user.password_hash
    );
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
    assert_refresh_refused(&app, &first.refresh, "refresh_token_reused").await;
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
    assert_refresh_refused(&app, &t.refresh, "refresh_token_reused").await;
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
    assert_refresh_refused(&app, &t.refresh, "invalid_refresh_token").await;
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
        .post_headers(
            "/auth/refresh",
            &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
        )
        .await;
    problem(res, StatusCode::FORBIDDEN, "cross_site_request").await;
    let res = app
        .post_headers(
            "/auth/refresh",
            &[("cookie", &cookie), ("origin", "https://evil.example")],
        )
        .await;
    problem(res, StatusCode::FORBIDDEN, "cross_site_request").await;
    let res = app
        .post_headers(
            "/auth/refresh",
            &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
        )
        .await;
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
