use crate::common::{PASSWORD, TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn get_and_patch_names() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("names@example.com").await;
    let res = app
        .patch_auth(
            "/me",
            &t.access,
            json!({"first_name": "Ada", "last_name": "Lovelace"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["first_name"], "Ada");
    assert_eq!(v["last_name"], "Lovelace");
    assert_ne!(v["updated_at"], v["created_at"]);
    // Absent leaves alone; null clears.
    let v: Value = app
        .patch_auth("/me", &t.access, json!({"last_name": null}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["first_name"], "Ada");
    assert_eq!(v["last_name"], Value::Null);
    let me: Value = app.get_auth("/me", &t.access).await.json().await.unwrap();
    assert_eq!(me, v);
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_me_refuses_privileged_fields() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("climber@example.com").await;
    for field in ["role", "is_verified", "email"] {
        let res = app
            .patch_auth("/me", &t.access, json!({ field: "admin" }))
            .await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["code"], "unknown_field");
    }
    let me: Value = app.get_auth("/me", &t.access).await.json().await.unwrap();
    assert_eq!(me["role"], "user");
    let res = app
        .patch_auth("/me", &t.access, json!({"first_name": "a".repeat(101)}))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_needs_current_password_and_ends_other_sessions() {
    let app = TestApp::spawn().await;
    let here = app.logged_in("pw@example.com").await;
    let elsewhere = app.login("pw@example.com", PASSWORD).await;
    let new = "a brand new passphrase";

    let res = app
        .patch_auth("/me", &here.access, json!({"password": new}))
        .await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "current_password");
    let res = app
        .patch_auth(
            "/me",
            &here.access,
            json!({"password": new, "current_password": "wrong one!"}),
        )
        .await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"][0]["code"], "invalid_password");
    let res = app
        .patch_auth(
            "/me",
            &here.access,
            json!({"password": "password1", "current_password": PASSWORD}),
        )
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let res = app
        .patch_auth(
            "/me",
            &here.access,
            json!({"password": new, "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // This session survives, the other one is revoked at once.
    assert_eq!(
        app.get_auth("/me", &here.access).await.status(),
        StatusCode::OK
    );
    app.assert_token_refused(&elsewhere.access).await;
    // Old password no longer works, the new one does.
    let res = app
        .post(
            "/auth/login",
            json!({"email": "pw@example.com", "password": PASSWORD}),
        )
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.login("pw@example.com", new).await;
}

/// Issue 11, item 6: wrong `current_password` values on `PATCH /me` were
/// unlimited (twelve 422s, no 429). They now count against the same
/// per-account and client budget and soft-lock as login: after the
/// threshold the next try waits (429 with `Retry-After`, even with the
/// right password), login from the same client waits too, and the
/// password is unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn item_6_current_password_guesses_hit_the_login_soft_lock() {
    let app = TestApp::spawn_with(&[
        ("login-lockout-threshold", "3"),
        ("login-lockout-base", "1m"),
    ])
    .await;
    let t = app.logged_in("guess@example.com").await;
    let new = "a brand new passphrase";
    for i in 0..3 {
        let res = app
            .patch_auth(
                "/me",
                &t.access,
                json!({"password": new, "current_password": format!("guess number {i}")}),
            )
            .await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], "current_password");
    }
    let res = app
        .patch_auth(
            "/me",
            &t.access,
            json!({"password": new, "current_password": PASSWORD}),
        )
        .await;
    assert!(res.headers().contains_key("retry-after"));
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Same account, same client: login waits as well.
    let res = app
        .post(
            "/auth/login",
            json!({"email": "guess@example.com", "password": PASSWORD}),
        )
        .await;
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Nothing changed: the old password is still the stored one.
    let mut conn = app.db.conn().await;
    let user = gatehouse_shared::models::User::find(&mut conn, t.user_id)
        .await
        .unwrap()
        .unwrap();
    let still = gatehouse_shared::domain::Password::candidate(PASSWORD.to_owned()).unwrap();
    assert!(
        app.state
            .hasher
            .verify(&still, &user.password_hash)
            .await
            .unwrap()
            .ok
    );
    // Names can still be changed: only password checks are limited.
    let res = app
        .patch_auth("/me", &t.access, json!({"first_name": "Ada"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

// ---- `DELETE /me` (issue 13 item 4) and `current_password` against the
// login budget (item 5).

mod lifecycle {
    use gatehouse_shared::domain::Role;
    use gatehouse_shared::models::{AuditAction, User};
    use reqwest::StatusCode;
    use serde_json::json;

    use crate::common::{PASSWORD, TestApp, assert_refresh_refused, problem};

    #[tokio::test(flavor = "multi_thread")]
    async fn item_4_delete_me_needs_the_password_then_deletes_and_notifies() {
        let app = TestApp::spawn().await;
        let t = app.logged_in("leaving@example.com").await;
        let other = app.login("leaving@example.com", PASSWORD).await;
        let res = app
            .delete_json(
                "/me",
                &t.access,
                json!({"current_password": "not my password"}),
            )
            .await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], "current_password");
        let res = app.delete_json("/me", &t.access, json!({})).await;
        problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let res = app.delete_auth("/me", &t.access).await;
        assert!(res.status().is_client_error());

        let res = app
            .delete_json("/me", &t.access, json!({"current_password": PASSWORD}))
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let mut conn = app.db.conn().await;
        assert!(User::find(&mut conn, t.user_id).await.unwrap().is_none());
        app.assert_token_refused(&t.access).await;
        app.assert_token_refused(&other.access).await;
        assert_refresh_refused(&app, &other.refresh, "invalid_refresh_token").await;
        let notices = app.outbox_payloads("account-deleted").await;
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0]["email"], "leaving@example.com");
        let events = app.audit_of(AuditAction::AccountDeleted).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].actor_id, Some(t.user_id));
        assert_eq!(events[0].subject_id, Some(t.user_id));
        assert_eq!(events[0].ip.as_deref(), Some("127.0.0.1"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn item_4_the_last_active_admin_cannot_delete_their_account() {
        let app = TestApp::spawn().await;
        let admin = app.admin("only@example.com").await;
        let res = app
            .delete_json("/me", &admin.access, json!({"current_password": PASSWORD}))
            .await;
        problem(res, StatusCode::CONFLICT, "last_admin").await;
        // With a second active admin it works.
        app.insert_user("spare@example.com", Role::Admin, true)
            .await;
        let res = app
            .delete_json("/me", &admin.access, json!({"current_password": PASSWORD}))
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn item_5_current_password_checks_count_against_the_login_budget() {
        let app = TestApp::spawn_with(&[
            ("login-lockout-threshold", "2"),
            ("login-lockout-base", "10m"),
        ])
        .await;
        let t = app.logged_in("guarded@example.com").await;
        let wrong = json!({"password": "a new passphrase here", "current_password": "guess one"});
        for path in ["/me", "/me/email"] {
            let res = if path == "/me" {
                app.patch_auth(path, &t.access, wrong.clone()).await
            } else {
                app.post_json_auth(
                    path,
                    &t.access,
                    json!({"new_email": "x@example.com", "current_password": "guess two"}),
                )
                .await
            };
            problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        }
        // Soft-locked now: even the right password waits, here and at login.
        let res = app
            .delete_json("/me", &t.access, json!({"current_password": PASSWORD}))
            .await;
        assert!(res.headers().contains_key("retry-after"));
        problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
        let res = app
            .post(
                "/auth/login",
                json!({"email": "guarded@example.com", "password": PASSWORD}),
            )
            .await;
        problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
        let failures = app.audit_of(AuditAction::LoginFailed).await;
        assert_eq!(
            failures
                .iter()
                .filter(|e| e.details["reason"] == "wrong_current_password")
                .count(),
            2
        );
    }
}
