use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{PASSWORD, TestApp, problem};

async fn signup_id(app: &TestApp, email: &str) -> Uuid {
    app.signup(email).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn code_verifies_then_login_works_and_repeat_is_harmless() {
    let app = TestApp::spawn().await;
    let id = signup_id(&app, "code@example.com").await;
    app.issue_verification(id, "123456", &"a".repeat(64), Duration::minutes(15))
        .await;
    let res = app
        .post(
            "/auth/verify",
            json!({"email": "Code@Example.com", "code": "123456"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["is_verified"], true);
    assert_eq!(v["id"], id.to_string());
    let again = app
        .post(
            "/auth/verify",
            json!({"email": "code@example.com", "code": "123456"}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    app.login("code@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn link_token_verifies() {
    let app = TestApp::spawn().await;
    let id = signup_id(&app, "link@example.com").await;
    let token = "b".repeat(64);
    app.issue_verification(id, "654321", &token, Duration::minutes(15))
        .await;
    let res = app.post("/auth/verify", json!({"token": token})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["is_verified"], true);
    // A second click still answers 200.
    assert_eq!(
        app.post("/auth/verify", json!({"token": token}))
            .await
            .status(),
        StatusCode::OK
    );
    problem(
        app.post("/auth/verify", json!({"token": "c".repeat(64)}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn five_wrong_codes_kill_the_code() {
    let app = TestApp::spawn().await;
    let id = signup_id(&app, "guess@example.com").await;
    app.issue_verification(id, "111111", &"d".repeat(64), Duration::minutes(15))
        .await;
    for wrong in ["000000", "222222", "abc", "333333", "444444"] {
        let res = app
            .post(
                "/auth/verify",
                json!({"email": "guess@example.com", "code": wrong}),
            )
            .await;
        problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    // The right code no longer works.
    let res = app
        .post(
            "/auth/verify",
            json!({"email": "guess@example.com", "code": "111111"}),
        )
        .await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    let mut conn = app.db.conn().await;
    let user = gatehouse_shared::models::User::find(&mut conn, id)
        .await
        .unwrap()
        .unwrap();
    assert!(!user.is_verified);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_code_and_unknown_email_are_invalid() {
    let app = TestApp::spawn().await;
    let id = signup_id(&app, "late@example.com").await;
    app.issue_verification(id, "777777", &"e".repeat(64), Duration::seconds(-1))
        .await;
    let res = app
        .post(
            "/auth/verify",
            json!({"email": "late@example.com", "code": "777777"}),
        )
        .await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    let res = app
        .post(
            "/auth/verify",
            json!({"email": "nobody@example.com", "code": "777777"}),
        )
        .await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    let res = app
        .post("/auth/verify", json!({"email": "late@example.com"}))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app
        .post("/auth/verify", json!({"token": "x", "code": "1"}))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_is_always_202_with_cooldown_and_cap() {
    let app = TestApp::spawn_with(&[
        ("verify-resend-cooldown", "1s"),
        ("verify-resend-hourly-cap", "3"),
    ])
    .await;
    let id = signup_id(&app, "again@example.com").await;
    let count = || async {
        let mut conn = app.db.conn().await;
        let since = Utc::now() - Duration::hours(1);
        gatehouse_shared::models::OutboxEntry::recent_for_user(&mut conn, id, "verify-email", since)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(count().await, 1);
    // Within the cooldown: accepted, nothing queued.
    assert_eq!(
        app.post("/auth/verify/resend", json!({"email": "again@example.com"}))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(count().await, 1);
    for expected in [2, 3, 3] {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(
            app.post("/auth/verify/resend", json!({"email": "again@example.com"}))
                .await
                .status(),
            StatusCode::ACCEPTED
        );
        assert_eq!(count().await, expected, "hourly cap is 3");
    }
    // Unknown and verified accounts: same answer, nothing queued.
    assert_eq!(
        app.post("/auth/verify/resend", json!({"email": "ghost@example.com"}))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let res = app
        .post("/auth/verify/resend", json!({"email": "not an email"}))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}
