//! Password reset: `POST /auth/password/forgot`, `POST /auth/password/reset`.

use chrono::Duration;
use gatehouse_api::password::{self, ForgotPath};
use gatehouse_shared::domain::Role;
use gatehouse_shared::models::{AuditAction, PasswordReset, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, assert_refresh_refused, hex_token, problem};

const NEW: &str = "a completely new passphrase";

#[tokio::test(flavor = "multi_thread")]
async fn item_1_forgot_answers_the_same_for_known_and_unknown_emails() {
    let app = TestApp::spawn().await;
    let id = app.insert_user("known@example.com", Role::User, true).await;

    let known = app
        .post(
            "/auth/password/forgot",
            json!({"email": "Known@Example.com"}),
        )
        .await;
    let unknown = app
        .post(
            "/auth/password/forgot",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    let ct = |r: &reqwest::Response| r.headers().get("content-type").cloned();
    assert_eq!(ct(&known), ct(&unknown));
    assert_eq!(known.bytes().await.unwrap(), unknown.bytes().await.unwrap());

    // The known path queued one reset email and started a reset row keyed
    // on that job; the unknown path queued nothing but did its dummy work.
    let jobs = app.outbox_payloads("password-reset").await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["user_id"], id.to_string());
    let mut conn = app.db.conn().await;
    let row = PasswordReset::find(&mut conn, id).await.unwrap().unwrap();
    assert_eq!(
        row.job_id.to_string(),
        jobs[0]["outbox_id"].as_str().unwrap()
    );
    assert!(row.token_hash.is_none(), "the worker makes the token");
    assert_eq!(
        password::forgot_path(&app.state, "ghost@example.com", None)
            .await
            .unwrap(),
        ForgotPath::Unknown
    );
    assert_eq!(
        password::forgot_path(&app.state, "known@example.com", None)
            .await
            .unwrap(),
        ForgotPath::Known
    );
    let events = app.audit_of(AuditAction::PasswordResetRequested).await;
    assert!(events.iter().any(|e| e.subject_id == Some(id)));
    assert!(
        events
            .iter()
            .any(|e| e.subject_id.is_none() && e.details["known"] == false),
        "the unknown path is audited (hashed email, no subject)"
    );
    // A malformed address is the only input error.
    let res = app
        .post("/auth/password/forgot", json!({"email": "not-an-email"}))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn item_1_forgot_is_rate_limited_per_account_and_per_ip_alike() {
    let app = TestApp::spawn_with(&[
        ("rate-limit-forgot-account", "2/1h"),
        ("rate-limit-forgot-ip", "5/1h"),
    ])
    .await;
    app.insert_user("limited@example.com", Role::User, true)
        .await;
    for email in ["limited@example.com", "unknown@example.com"] {
        for _ in 0..2 {
            let res = app
                .post("/auth/password/forgot", json!({"email": email}))
                .await;
            assert_eq!(res.status(), StatusCode::ACCEPTED);
        }
        let res = app
            .post("/auth/password/forgot", json!({"email": email}))
            .await;
        assert!(res.headers().contains_key("retry-after"), "{email}");
        problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
    // Per IP: 6 requests so far from this client; a fresh email is refused.
    let res = app
        .post(
            "/auth/password/forgot",
            json!({"email": "fresh@example.com"}),
        )
        .await;
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Only the two accepted requests of the known account queued emails.
    assert_eq!(app.outbox_payloads("password-reset").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_1_reset_changes_the_password_ends_sessions_lifts_the_lock_and_verifies() {
    let app = TestApp::spawn_with(&[
        ("login-lockout-threshold", "1"),
        ("login-lockout-base", "10m"),
    ])
    .await;
    let id = app
        .insert_user("reset@example.com", Role::User, false)
        .await;
    let before = app.session_for(id).await;
    // A wrong login puts the account in its soft-lock.
    let res = app
        .post(
            "/auth/login",
            json!({"email": "reset@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .post(
            "/auth/login",
            json!({"email": "reset@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "soft-locked");

    let token = hex_token(1);
    app.issue_reset(id, &token, Duration::minutes(30)).await;
    let res = app
        .post(
            "/auth/password/reset",
            json!({"token": token, "new_password": NEW}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v, json!({"status": "password_reset"}));

    // Every session ended: the old access token and refresh token die.
    app.assert_token_refused(&before.access).await;
    assert_refresh_refused(&app, &before.refresh, "invalid_refresh_token").await;
    // The lock is lifted, the email is verified, the new password works.
    app.login("reset@example.com", NEW).await;
    let res = app
        .post(
            "/auth/login",
            json!({"email": "reset@example.com", "password": PASSWORD}),
        )
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let mut conn = app.db.conn().await;
    assert!(
        User::find(&mut conn, id)
            .await
            .unwrap()
            .unwrap()
            .is_verified
    );
    // The "password changed" notice is queued; the event is audited.
    let notices = app.outbox_payloads("password-changed").await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0]["user_id"], id.to_string());
    let events = app.audit_of(AuditAction::PasswordReset).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_id, Some(id));
    assert_eq!(events[0].ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn item_1_wrong_expired_used_and_foreign_tokens_are_invalid_token() {
    let app = TestApp::spawn().await;
    let id = app
        .insert_user("tokens@example.com", Role::User, true)
        .await;
    let reset = |token: String| {
        let app = &app;
        async move {
            app.post(
                "/auth/password/reset",
                json!({"token": token, "new_password": NEW}),
            )
            .await
        }
    };
    // Unknown and malformed tokens.
    for token in [hex_token(9), "short".into(), "z".repeat(64)] {
        problem(reset(token).await, StatusCode::BAD_REQUEST, "invalid_token").await;
    }
    // Expired.
    app.issue_reset(id, &hex_token(2), Duration::minutes(-1))
        .await;
    problem(
        reset(hex_token(2)).await,
        StatusCode::BAD_REQUEST,
        "invalid_token",
    )
    .await;
    // A verification link token of the same user is not a reset token.
    app.issue_verification(id, "123456", &hex_token(3), Duration::minutes(15))
        .await;
    problem(
        reset(hex_token(3)).await,
        StatusCode::BAD_REQUEST,
        "invalid_token",
    )
    .await;
    // A newer request kills the older token at once.
    app.issue_reset(id, &hex_token(4), Duration::minutes(30))
        .await;
    let res = app
        .post(
            "/auth/password/forgot",
            json!({"email": "tokens@example.com"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    problem(
        reset(hex_token(4)).await,
        StatusCode::BAD_REQUEST,
        "invalid_token",
    )
    .await;
    // Used: the second try fails.
    app.issue_reset(id, &hex_token(5), Duration::minutes(30))
        .await;
    assert_eq!(reset(hex_token(5)).await.status(), StatusCode::OK);
    problem(
        reset(hex_token(5)).await,
        StatusCode::BAD_REQUEST,
        "invalid_token",
    )
    .await;
    // Missing fields are 422 like every body.
    let res = app
        .post("/auth/password/reset", json!({"token": hex_token(5)}))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn item_1_a_weak_new_password_is_422_and_keeps_the_token() {
    let app = TestApp::spawn().await;
    let id = app.insert_user("weak@example.com", Role::User, true).await;
    app.issue_reset(id, &hex_token(6), Duration::minutes(30))
        .await;
    for weak in ["short", "password123", "weak@example.com"] {
        let res = app
            .post(
                "/auth/password/reset",
                json!({"token": hex_token(6), "new_password": weak}),
            )
            .await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], "new_password", "{weak}");
    }
    let res = app
        .post(
            "/auth/password/reset",
            json!({"token": hex_token(6), "new_password": NEW}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_1_a_reset_racing_a_login_leaves_no_session_on_the_old_password() {
    let app = TestApp::spawn().await;
    let id = app.insert_user("race@example.com", Role::User, true).await;
    // A login that checked the old password just before the reset commits,
    // then opens its session after: refused.
    let mut conn = app.db.conn().await;
    let checked = User::find(&mut conn, id).await.unwrap().unwrap();
    app.issue_reset(id, &hex_token(7), Duration::minutes(30))
        .await;
    password::reset(&app.state, &hex_token(7), NEW.into(), None)
        .await
        .unwrap();
    let late = gatehouse_api::sessions::open_session(
        &app.state,
        &checked,
        gatehouse_api::sessions::ClientInfo {
            ip: None,
            user_agent: None,
        },
    )
    .await;
    assert_eq!(late.err().unwrap().code, "invalid_credentials");

    // Really concurrent: whatever the login got, it does not outlive the reset.
    app.issue_reset(id, &hex_token(8), Duration::minutes(30))
        .await;
    let login = app.post(
        "/auth/login",
        json!({"email": "race@example.com", "password": NEW}),
    );
    let reset = app.post(
        "/auth/password/reset",
        json!({"token": hex_token(8), "new_password": "yet another passphrase"}),
    );
    let (login, reset) = tokio::join!(login, reset);
    assert_eq!(reset.status(), StatusCode::OK);
    if login.status() == StatusCode::OK {
        let v: Value = login.json().await.unwrap();
        app.assert_token_refused(v["access_token"].as_str().unwrap())
            .await;
    }
    app.login("race@example.com", "yet another passphrase")
        .await;
}
