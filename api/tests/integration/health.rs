//! Liveness and readiness probes.

use crate::common::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints() {
    let app = TestApp::spawn().await;
    let v: Value = app.get("/health/live").await.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["checks"]["postgres"], "ok");
    assert_eq!(v["checks"]["redis"], "ok");
    let metrics = gatehouse_testkit::get_text(&app.client, &app.url("/metrics")).await;
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
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["checks"]["redis"], "down");
    assert_eq!(v["checks"]["postgres"], "ok");
    // Signup still succeeds: the job waits in the outbox.
    app.signup("offline@example.com").await;
}
