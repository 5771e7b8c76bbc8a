//! Email change: `POST /me/email`, `POST /auth/email/confirm`,
//! `POST /auth/email/revert`.

use gatehouse_shared::domain::Role;
use gatehouse_shared::models::{AuditAction, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, assert_refresh_refused, hex_token, problem};

async fn request(app: &TestApp, access: &str, new_email: &str) -> reqwest::Response {
    app.post_json_auth(
        "/me/email",
        access,
        json!({"new_email": new_email, "current_password": PASSWORD}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn item_2_confirming_by_link_switches_the_address_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("old@example.com").await;
    let other = app.login("old@example.com", PASSWORD).await;

    // Wrong password: 422 on current_password, nothing queued.
    let res = app
        .post_json_auth(
            "/me/email",
            &t.access,
            json!({"new_email": "new@example.com", "current_password": "wrong password"}),
        )
        .await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "current_password");
    assert!(app.outbox_payloads("email-change-confirm").await.is_empty());

    let res = request(&app, &t.access, "New@Example.com").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // Both emails are queued; the address is unchanged until confirmed, so
    // the new one cannot log in yet.
    assert_eq!(app.outbox_payloads("email-change-confirm").await.len(), 1);
    assert_eq!(app.outbox_payloads("email-change-notice").await.len(), 1);
    let me: Value = app.get_auth("/me", &t.access).await.json().await.unwrap();
    assert_eq!(me["email"], "old@example.com");
    let res = app
        .post(
            "/auth/login",
            json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    let token = hex_token(0x21);
    app.issue_email_change(t.user_id, &token, "123456", &hex_token(0x22))
        .await;
    let res = app
        .post("/auth/email/confirm", json!({"token": token}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["email"], "new@example.com");
    assert_eq!(v["is_verified"], true);
    // Every session ended (a link carries no session to keep).
    app.assert_token_refused(&t.access).await;
    app.assert_token_refused(&other.access).await;
    assert_refresh_refused(&app, &other.refresh, "invalid_refresh_token").await;
    app.login("new@example.com", PASSWORD).await;
    let res = app
        .post(
            "/auth/login",
            json!({"email": "old@example.com", "password": PASSWORD}),
        )
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Used: a second click is invalid.
    let res = app
        .post("/auth/email/confirm", json!({"token": token}))
        .await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    for action in [
        AuditAction::EmailChangeRequested,
        AuditAction::EmailChangeConfirmed,
    ] {
        let events = app.audit_of(action).await;
        assert_eq!(events.len(), 1, "{action:?}");
        assert_eq!(events[0].actor_id, Some(t.user_id));
        assert_eq!(events[0].subject_id, Some(t.user_id));
        assert_eq!(events[0].ip.as_deref(), Some("127.0.0.1"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn item_2_confirming_by_code_keeps_the_current_session_only() {
    let app = TestApp::spawn().await;
    let here = app.logged_in("code@example.com").await;
    let elsewhere = app.login("code@example.com", PASSWORD).await;
    assert_eq!(
        request(&app, &here.access, "coded@example.com")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    app.issue_email_change(here.user_id, &hex_token(0x31), "654321", &hex_token(0x32))
        .await;
    // A code needs the session.
    let res = app
        .post("/auth/email/confirm", json!({"code": "654321"}))
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    // Wrong codes count.
    let res = app
        .post_json_auth(
            "/auth/email/confirm",
            &here.access,
            json!({"code": "000000"}),
        )
        .await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    let res = app
        .post_json_auth(
            "/auth/email/confirm",
            &here.access,
            json!({"code": "654321"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["email"], "coded@example.com");
    // The other session ended; this one's old token is stale, its refresh works.
    app.assert_token_refused(&elsewhere.access).await;
    assert_refresh_refused(&app, &elsewhere.refresh, "invalid_refresh_token").await;
    app.assert_token_refused(&here.access).await;
    let next = app.refreshed(&here).await;
    let me: Value = app
        .get_auth("/me", &next.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "coded@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn item_2_five_wrong_codes_kill_the_code() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("guess@example.com").await;
    request(&app, &t.access, "guessed@example.com").await;
    app.issue_email_change(t.user_id, &hex_token(0x41), "111111", &hex_token(0x42))
        .await;
    for _ in 0..5 {
        let res = app
            .post_json_auth("/auth/email/confirm", &t.access, json!({"code": "999999"}))
            .await;
        problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    let res = app
        .post_json_auth("/auth/email/confirm", &t.access, json!({"code": "111111"}))
        .await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn item_2_an_email_change_racing_a_signup_for_the_same_address() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("racer@example.com").await;
    assert_eq!(
        request(&app, &t.access, "contested@example.com")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    app.issue_email_change(t.user_id, &hex_token(0x51), "222222", &hex_token(0x52))
        .await;
    // Both at once: exactly one of them gets the address.
    let confirm = app.post("/auth/email/confirm", json!({"token": hex_token(0x51)}));
    let signup = app.post(
        "/auth/signup",
        json!({"email": "contested@example.com", "password": PASSWORD}),
    );
    let (confirm, signup) = tokio::join!(confirm, signup);
    let won = (confirm.status(), signup.status());
    assert!(
        won == (StatusCode::OK, StatusCode::CONFLICT)
            || won == (StatusCode::CONFLICT, StatusCode::CREATED),
        "{won:?}"
    );
    if won.0 == StatusCode::CONFLICT {
        problem(confirm, StatusCode::CONFLICT, "email_taken").await;
        let mut conn = app.db.conn().await;
        let me = User::find(&mut conn, t.user_id).await.unwrap().unwrap();
        assert_eq!(me.email, "racer@example.com", "unchanged");
    } else {
        problem(signup, StatusCode::CONFLICT, "email_taken").await;
    }

    // Deterministic: the address is taken between request and confirm.
    let u = app.logged_in("second@example.com").await;
    request(&app, &u.access, "later@example.com").await;
    app.issue_email_change(u.user_id, &hex_token(0x53), "333333", &hex_token(0x54))
        .await;
    app.signup("later@example.com").await;
    let res = app
        .post("/auth/email/confirm", json!({"token": hex_token(0x53)}))
        .await;
    problem(res, StatusCode::CONFLICT, "email_taken").await;
    // Asking for a taken address, or the same one, fails at once.
    let res = request(&app, &u.access, "later@example.com").await;
    problem(res, StatusCode::CONFLICT, "email_taken").await;
    let res = request(&app, &u.access, "second@example.com").await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn item_2_revert_restores_the_old_address_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("mine@example.com").await;
    request(&app, &t.access, "attacker@example.com").await;
    let change = app
        .issue_email_change(t.user_id, &hex_token(0x61), "444444", &hex_token(0x62))
        .await;
    let res = app
        .post("/auth/email/confirm", json!({"token": hex_token(0x61)}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let attacker = app.login("attacker@example.com", PASSWORD).await;

    let res = app
        .post("/auth/email/revert", json!({"token": hex_token(0x62)}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    app.assert_token_refused(&attacker.access).await;
    assert_refresh_refused(&app, &attacker.refresh, "invalid_refresh_token").await;
    let mut conn = app.db.conn().await;
    let me = User::find(&mut conn, t.user_id).await.unwrap().unwrap();
    assert_eq!(me.email, "mine@example.com");
    app.login("mine@example.com", PASSWORD).await;
    // Used: once only.
    let res = app
        .post("/auth/email/revert", json!({"token": hex_token(0x62)}))
        .await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    let events = app.audit_of(AuditAction::EmailChangeReverted).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject_id, Some(t.user_id));
    assert_eq!(events[0].details["change_id"], change.to_string());

    // Expired after 7 days; wrong and malformed tokens.
    let fresh = app.login("mine@example.com", PASSWORD).await;
    request(&app, &fresh.access, "other@example.com").await;
    let old = app
        .issue_email_change(t.user_id, &hex_token(0x63), "555555", &hex_token(0x64))
        .await;
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use gatehouse_shared::schema::email_changes as ec;
        diesel::update(ec::table.find(old))
            .set(ec::requested_at.eq(chrono::Utc::now() - chrono::Duration::days(8)))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for token in [hex_token(0x64), hex_token(0x65), "nope".into()] {
        let res = app
            .post("/auth/email/revert", json!({"token": token}))
            .await;
        problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn item_2_a_newer_request_supersedes_the_pending_one() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("twice@example.com").await;
    request(&app, &t.access, "first@example.com").await;
    app.issue_email_change(t.user_id, &hex_token(0x71), "666666", &hex_token(0x72))
        .await;
    request(&app, &t.access, "second@example.com").await;
    let res = app
        .post("/auth/email/confirm", json!({"token": hex_token(0x71)}))
        .await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    let _ = Role::User;
}
