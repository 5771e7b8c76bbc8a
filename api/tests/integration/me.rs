use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, problem};

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

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints() {
    let app = TestApp::spawn().await;
    let v: Value = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let res = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["checks"]["postgres"], "ok");
    assert_eq!(v["checks"]["redis"], "ok");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gatehouse_http_requests_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_is_503_when_redis_is_down() {
    let port = gatehouse_testkit::free_port().to_string();
    let url = format!("redis://127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("redis-url", url.as_str())]).await;
    let res = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["checks"]["redis"], "down");
    assert_eq!(v["checks"]["postgres"], "ok");
    // Signup still succeeds: the job waits in the outbox.
    app.signup("offline@example.com").await;
}
