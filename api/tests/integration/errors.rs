use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestApp, problem};

#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_is_problem_json() {
    let app = TestApp::spawn().await;
    let post_raw = |body: &'static str, ct: &'static str| {
        app.client
            .post(app.url("/auth/signup"))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    problem(
        post_raw("{not json", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    problem(
        post_raw("", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    problem(
        post_raw("email=a", "text/plain").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let res = app
        .client
        .post(app.url("/auth/signup"))
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let v = problem(
        post_raw(r#"{"email": 42, "password": "x"}"#, "application/json")
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(v["errors"][0]["field"], "email");
    assert_eq!(v["errors"][0]["code"], "invalid_type");
    problem(
        post_raw("[]", "application/json").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_and_wrong_method() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // 405 whether or not the path needs auth.
    for (method, path) in [
        ("PUT", "/me"),
        ("GET", "/auth/login"),
        ("PUT", "/health/live"),
    ] {
        let res = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_is_413() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(2 * 1024 * 1024);
    let res = app
        .post(
            "/auth/signup",
            json!({"email": "big@example.com", "password": big}),
        )
        .await;
    problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_authorization_is_401_with_challenge() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/me")).send().await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    problem(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    let res = app
        .client
        .get(app.url("/me"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_carry_request_id_and_security_headers() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let res = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert!(!res.headers()["x-request-id"].is_empty());
}
