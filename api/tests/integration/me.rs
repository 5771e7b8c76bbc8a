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
