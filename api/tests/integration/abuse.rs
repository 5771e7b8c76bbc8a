use reqwest::StatusCode;
use serde_json::json;

use crate::common::{PASSWORD, TestApp, problem};

#[tokio::test(flavor = "multi_thread")]
async fn login_budget_per_ip_ends_in_429_with_retry_after() {
    let app = TestApp::spawn_with(&[("rate-limit-login-ip", "3/1m")]).await;
    for i in 0..3 {
        let res = app
            .post(
                "/auth/login",
                json!({"email": format!("u{i}@example.com"), "password": "wrong password"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app
        .post(
            "/auth/login",
            json!({"email": "u9@example.com", "password": "wrong password"}),
        )
        .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_forwarded_for_from_untrusted_peer_is_ignored() {
    let app = TestApp::spawn_with(&[("rate-limit-login-ip", "2/1m")]).await;
    for ip in ["198.51.100.1", "198.51.100.2"] {
        let res = app.login_from("x@example.com", "wrong password", ip).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // A fresh X-Forwarded-For does not buy a fresh budget.
    let res = app
        .login_from("y@example.com", "wrong password", "198.51.100.3")
        .await;
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_from_a_trusted_proxy_is_used() {
    let app = TestApp::spawn_with(&[
        ("rate-limit-login-ip", "2/1m"),
        ("trusted-proxies", "127.0.0.1/32"),
    ])
    .await;
    for ip in [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
    ] {
        let res = app.login_from("z@example.com", "wrong password", ip).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{ip} has its own budget"
        );
    }
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            app.login_from("z@example.com", "wrong password", "198.51.100.1")
                .await,
        );
    }
    problem(last.unwrap(), StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_lock_grows_then_expires_and_success_resets() {
    let app = TestApp::spawn_with(&[
        ("login-lockout-threshold", "2"),
        ("login-lockout-base", "1s"),
        ("login-lockout-max", "2s"),
    ])
    .await;
    app.verified_user("locked@example.com").await;
    let wrong = json!({"email": "locked@example.com", "password": "wrong password"});
    for _ in 0..2 {
        let (path, body) = ("/auth/login", wrong.clone());
        app.post_problem(path, body, StatusCode::UNAUTHORIZED, "invalid_credentials")
            .await;
    }
    // Even the right password waits out the delay.
    let res = app
        .post(
            "/auth/login",
            json!({"email": "locked@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(res.headers().contains_key("retry-after"));
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Unknown emails are delayed the same way (no enumeration).
    for _ in 0..2 {
        app.post(
            "/auth/login",
            json!({"email": "ghost@example.com", "password": "wrong password"}),
        )
        .await;
    }
    app.post_problem(
        "/auth/login",
        json!({"email": "ghost@example.com", "password": "wrong password"}),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;

    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    app.login("locked@example.com", PASSWORD).await;
    // Success reset the count: one failure does not lock again.
    app.post_problem(
        "/auth/login",
        json!({"email": "locked@example.com", "password": "wrong password"}),
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    app.login("locked@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signup_is_limited_per_ip_and_limits_can_be_turned_off() {
    let app = TestApp::spawn_with(&[("rate-limit-signup-ip", "2/1h")]).await;
    app.signup("s1@example.com").await;
    app.signup("s2@example.com").await;
    app.post_problem(
        "/auth/signup",
        json!({"email": "s3@example.com", "password": PASSWORD}),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;

    let off =
        TestApp::spawn_with(&[("rate-limit-signup-ip", "1/1h"), ("rate-limits", "off")]).await;
    off.signup("t1@example.com").await;
    off.signup("t2@example.com").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_attempts_are_limited_per_account() {
    let app = TestApp::spawn_with(&[("rate-limit-verify-account", "3/15m")]).await;
    app.signup("v@example.com").await;
    let wrong = json!({"email": "v@example.com", "code": "000000"});
    for _ in 0..3 {
        let body = wrong.clone();
        app.post_problem(
            "/auth/verify",
            body,
            StatusCode::BAD_REQUEST,
            "invalid_code",
        )
        .await;
    }
    app.post_problem(
        "/auth/verify",
        wrong,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
}

/// `POST /auth/token` as a form.
async fn token_form(app: &TestApp, body: String) -> reqwest::Response {
    app.client
        .post(app.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Issue 11, item 10: `/auth/token` with `grant_type=refresh_token` had no
/// rate limit. It now draws on the same per-IP budget as `/auth/refresh`,
/// and a refused request spends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn item_10_token_refresh_grant_shares_the_refresh_budget() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use gatehouse_shared::schema::sessions;

    let app = TestApp::spawn_with(&[("rate-limit-refresh-ip", "3/1m")]).await;
    let tokens = app.logged_in("grant@example.com").await;
    // 1: the grant rotates.
    let res = token_form(
        &app,
        format!("grant_type=refresh_token&refresh_token={}", tokens.refresh),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: serde_json::Value = res.json().await.unwrap();
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    // 2: a garbage token still counts.
    let res = token_form(&app, "grant_type=refresh_token&refresh_token=nope".into()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // 3: /auth/refresh shares the budget.
    let res = app
        .post("/auth/refresh", json!({"refresh_token": "nope"}))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let jti_before: uuid::Uuid = {
        let mut conn = app.db.conn().await;
        sessions::table
            .filter(sessions::user_id.eq(tokens.user_id))
            .select(sessions::refresh_jti)
            .first(&mut conn)
            .await
            .unwrap()
    };
    // 4: over budget on the token endpoint, even with a valid token.
    let res = token_form(
        &app,
        format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // And on /auth/refresh.
    let res = app
        .post("/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Nothing was rotated by the refused requests.
    let mut conn = app.db.conn().await;
    let jti_after: uuid::Uuid = sessions::table
        .filter(sessions::user_id.eq(tokens.user_id))
        .select(sessions::refresh_jti)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(jti_before, jti_after);
}
