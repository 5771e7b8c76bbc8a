use reqwest::StatusCode;
use serde_json::Value;

use crate::common::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn document_is_complete() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(
        schemes["oauth2"]["flows"]["password"]["tokenUrl"],
        "/auth/token"
    );
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/auth/signup",
        "/auth/login",
        "/auth/token",
        "/auth/refresh",
        "/auth/logout",
        "/auth/verify",
        "/auth/verify/resend",
        "/me",
        "/users",
        "/users/{id}",
        "/admin/jobs/purge",
        "/admin/jobs/runs",
        "/admin/audit",
        "/health/live",
        "/health/ready",
        "/admin/keys",
        "/admin/keys/rotate",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/.well-known/revocations",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: summary"
            );
            assert!(
                op["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: description"
            );
            assert!(op["security"].is_array(), "{what}: security");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{what}: success response"
            );
            // These answer from memory and take no input: nothing to refuse.
            let infallible = [
                "/health/live",
                "/.well-known/jwks.json",
                "/.well-known/openid-configuration",
            ];
            if !infallible.contains(&path.as_str()) {
                assert!(
                    responses
                        .keys()
                        .any(|k| k.starts_with('4') || k.starts_with('5')),
                    "{what}: error responses"
                );
            }
        }
    }
    // Swagger UI is vendored and served.
    let res = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("swagger"));
}
