//! Text input and CORS at the HTTP edge (`src/http/`, `lib.rs` `router`):
//! control characters in any text field, exposed headers and preflight
//! caching for browsers on another origin.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{PASSWORD, TestApp, problem};

async fn users_count(app: &TestApp) -> i64 {
    use diesel::dsl::count_star;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use gatehouse_shared::schema::users;
    let mut conn = app.db.conn().await;
    users::table
        .select(count_star())
        .first(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn item_9_control_characters_in_any_text_field_are_422() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;

    // The query of the issue: a 500 before.
    for q in ["ab%00c", "ab%1bc", "ab%7Fc", "%C2%85x"] {
        let res = app.get_auth(&format!("/users?q={q}"), &admin.access).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "q", "{q}: {body}");
        assert_eq!(body["errors"][0]["code"], "control_character");
    }
    // Any other parameter too, paging included.
    let res = app.get_auth("/users?role=ad%00min", &admin.access).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "role");
    let res = app
        .get_auth("/admin/audit?action=x%00", &admin.access)
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // JSON bodies: every string field, named.
    let before = users_count(&app).await;
    for (body, field) in [
        (
            json!({"email": "a\u{0}@example.com", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "b@example.com", "password": "correct horse\u{0} battery"}),
            "password",
        ),
        (
            json!({"email": "c@example.com", "password": PASSWORD, "first_name": "Eve\u{1b}[2J"}),
            "first_name",
        ),
        (
            json!({"email": "d@example.com", "password": PASSWORD, "last_name": "x\u{7}"}),
            "last_name",
        ),
    ] {
        let res = app.post("/auth/signup", body).await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], field, "{v}");
    }
    assert_eq!(users_count(&app).await, before, "no account was created");

    for (path, body, field) in [
        (
            "/auth/login",
            json!({"email": "root@example.com", "password": "x\u{0}"}),
            "password",
        ),
        (
            "/auth/verify",
            json!({"email": "root@example.com", "code": "12\u{0}456"}),
            "code",
        ),
        (
            "/auth/refresh",
            json!({"refresh_token": "abc\u{0}"}),
            "refresh_token",
        ),
    ] {
        let v = problem(
            app.post(path, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(v["errors"][0]["field"], field, "{path}: {v}");
    }
    let me = app.logged_in("me@example.com").await;
    let res = app
        .patch_auth("/me", &me.access, json!({"first_name": "Ma\u{0}llory"}))
        .await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "first_name");
    let res = app.get_auth("/me", &me.access).await;
    let profile: serde_json::Value = res.json().await.unwrap();
    assert_ne!(profile["first_name"], "Ma\u{0}llory");

    // Form bodies (the OAuth token endpoint).
    let res = app
        .client
        .post(app.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=root%00@example.com&password={PASSWORD}"
        ))
        .send()
        .await
        .unwrap();
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "username");

    // Ordinary text still passes.
    let res = app.get_auth("/users?q=root", &admin.access).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_12_cors_exposes_headers_and_caches_preflights() {
    let origin = "https://app.example.com";
    let app = TestApp::spawn_with(&[("cors-allowed-origins", origin)]).await;
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/auth/signup"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], origin);
    assert_eq!(res.headers()["access-control-max-age"], "600");

    let res = app
        .client
        .post(app.url("/auth/signup"))
        .header("origin", origin)
        .json(&json!({"email": "cors@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["access-control-allow-origin"], origin);
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["location", "x-request-id", "retry-after"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    assert!(res.headers().contains_key("location"));
}
