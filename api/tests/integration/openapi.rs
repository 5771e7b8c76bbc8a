use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestApp;

/// Operations anyone may call: they carry no `security` at all (not
/// `security: [{}]`, which generated clients read as authenticated).
const PUBLIC: [(&str, &str); 16] = [
    ("post", "/auth/signup"),
    ("post", "/auth/password/forgot"),
    ("post", "/auth/password/reset"),
    ("post", "/auth/email/confirm"),
    ("post", "/auth/email/revert"),
    ("post", "/auth/verify"),
    ("post", "/auth/verify/resend"),
    ("post", "/auth/login"),
    ("post", "/auth/token"),
    ("post", "/auth/refresh"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/.well-known/openid-configuration"),
    ("get", "/.well-known/revocations"),
    ("get", "/metrics"),
];

async fn document(app: &TestApp) -> Value {
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Every `$ref` target in a JSON value.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn item_10_public_operations_carry_no_security() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut public = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if PUBLIC.contains(&(method.as_str(), path.as_str())) {
                public += 1;
                assert!(
                    op.get("security").is_none(),
                    "{method} {path}: {}",
                    op["security"]
                );
            } else {
                assert_eq!(op["security"], json!([{"oauth2": []}]), "{method} {path}");
            }
        }
    }
    assert_eq!(
        public,
        PUBLIC.len() - 1,
        "every public operation is documented (not /metrics)"
    );
    // No document-wide default either.
    assert!(doc.get("security").is_none());
    // One scheme, the one Swagger UI's Authorize dialog needs.
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes.keys().collect::<Vec<_>>(), ["oauth2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_10_pages_ref_their_items_and_no_component_is_unused() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in schemas.keys() {
        assert!(
            !(name.starts_with("PageOut") || name.contains("Item")),
            "inlined generic model {name}"
        );
    }
    for (page, item) in [
        ("UserPage", "UserOut"),
        ("AuditEventPage", "AuditEventOut"),
        ("KeyPage", "KeyOut"),
        ("PurgeRunPage", "PurgeRunOut"),
    ] {
        assert_eq!(
            schemas[page]["properties"]["items"]["items"]["$ref"],
            format!("#/components/schemas/{item}"),
            "{page}"
        );
    }
    // Every component is referenced from the paths (directly or through
    // another referenced component).
    let mut used = Vec::new();
    refs(&doc["paths"], &mut used);
    let mut i = 0;
    while i < used.len() {
        if let Some(name) = used[i].strip_prefix("#/components/schemas/") {
            let mut more = Vec::new();
            refs(&schemas[name], &mut more);
            for r in more {
                if !used.contains(&r) {
                    used.push(r);
                }
            }
        }
        i += 1;
    }
    for name in schemas.keys() {
        let r = format!("#/components/schemas/{name}");
        assert!(used.contains(&r), "unused component {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn item_10_servers_license_and_examples() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["info"]["license"]["identifier"], "MIT");
    assert_eq!(doc["servers"][0]["url"], "/");
    // The 401 example shows a real status, not a value made up from the
    // type's range (Swagger UI showed 1073741824 for a bare u16).
    let problem = &doc["components"]["schemas"]["Problem"]["properties"]["status"];
    assert_eq!(problem["example"], 401);
    assert_eq!(problem["maximum"], 599);
    // Operations and tags in flow order, not alphabetical (read from the
    // text: serde_json's map here sorts its keys).
    let text = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = |p: &str| text.find(&format!("\"{p}\":{{")).unwrap();
    assert!(at("/auth/signup") < at("/auth/verify"));
    assert!(at("/auth/verify") < at("/auth/login"));
    assert!(at("/auth/login") < at("/me"));
    assert!(at("/me") < at("/users"));
    assert!(at("/users") < at("/admin/jobs/purge"));
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags[..4], ["auth", "me", "users", "admin"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_9_swagger_ui_has_no_validator_and_persists_authorization() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let js = res.text().await.unwrap();
    assert!(js.contains(r#""validatorUrl": "none""#), "{js}");
    assert!(js.contains(r#""persistAuthorization": true"#), "{js}");
    assert!(!js.contains("validator.swagger.io"), "{js}");
    assert!(
        !js.contains("tagsSorter") && !js.contains("operationsSorter"),
        "{js}"
    );
    // Vendored: nothing is fetched from a CDN.
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(!html.contains("https://"), "{html}");
}

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
            if PUBLIC.contains(&(method.as_str(), path.as_str())) {
                assert!(op.get("security").is_none(), "{what}: public, no security");
            } else {
                assert_eq!(op["security"], json!([{"oauth2": []}]), "{what}: security");
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{what}: success response"
            );
            // Every operation documents an error shape (at least the 408
            // of REQUEST_TIMEOUT), as Redocly's `operation-4xx-response` asks.
            assert!(
                responses.keys().any(|k| k.starts_with('4')),
                "{what}: error responses"
            );
        }
    }
    // Swagger UI is vendored and served.
    let res = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("swagger"));
}
