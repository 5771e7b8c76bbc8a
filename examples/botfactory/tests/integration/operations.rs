//! Probes, metrics, the OpenAPI document, framework errors, settings and
//! shutdown.

use reqwest::Method;

use crate::common::Ctx;

#[tokio::test(flavor = "multi_thread")]
async fn probes_metrics_docs_and_framework_errors() {
    let ctx = Ctx::new().await;
    let alice = ctx.client().await;
    ctx.create_bot(&alice.access_token, "Counted").await;

    let res = ctx.send(Method::GET, "/health/live", None, None).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["status"], "ok");
    let res = ctx.send(Method::GET, "/health/ready", None, None).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["checks"]["postgres"], "ok");
    assert_eq!(res.body["checks"]["gatehouse"], "ok");

    let metrics = ctx
        .http
        .get(format!("{}/metrics", ctx.app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("botfactory_bots_created_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "botfactory_http_requests_total{method=\"POST\",path=\"/bots\",status=\"201\"} 1"
        ),
        "{metrics}"
    );
    // Every metric is described.
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
    }

    // The document, its security schemes and Swagger UI.
    let doc = ctx.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/bots",
        "/bots/me",
        "/bots/{id}",
        "/clients/me",
        "/health/live",
        "/health/ready",
    ] {
        assert!(doc.body["paths"][path].is_object(), "{path} documented");
    }
    for (path, method) in [
        ("/bots", "post"),
        ("/bots/me", "get"),
        ("/bots/{id}", "patch"),
    ] {
        let op = &doc.body["paths"][path][method];
        assert!(
            op["summary"].is_string() && op["description"].is_string(),
            "{path}"
        );
        assert!(op["responses"]["401"].is_object(), "{path} documents 401");
    }
    let oauth = &doc.body["components"]["securitySchemes"]["oauth2"];
    assert_eq!(
        oauth["flows"]["password"]["tokenUrl"],
        format!("{}/auth/token", ctx.gatehouse.url())
    );
    let ui = ctx
        .http
        .get(format!("{}/docs/", ctx.app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger-ui"));
    let init = ctx
        .http
        .get(format!("{}/docs/swagger-initializer.js", ctx.app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        init.contains("requestInterceptor") && init.contains("/openapi.json"),
        "{init}"
    );

    // Framework errors are problems too.
    let res = ctx.send(Method::GET, "/nope", None, None).await;
    res.problem(404, "not_found");
    let res = ctx
        .send(Method::PUT, "/bots/me", Some(&alice.access_token), None)
        .await;
    res.problem(405, "method_not_allowed");
    let big = serde_json::json!({"name": "big", "description": "x".repeat(70_000)});
    let res = ctx.post("/bots", &alice.access_token, big).await;
    res.problem(413, "payload_too_large");
}

#[tokio::test(flavor = "multi_thread")]
async fn help_lists_every_setting_and_bad_config_is_one_line() {
    let out = std::process::Command::new(gatehouse_testkit::process::binary("botfactory"))
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "DATABASE_URL",
        "APP_ADDR",
        "GATEHOUSE_URL",
        "GATEHOUSE_PUBLIC_URL",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "GATEHOUSE_REDIS_URL",
        "GATEHOUSE_REDIS_NAMESPACE",
        "RUST_LOG",
        "LOG_FORMAT",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing from --help:\n{help}"
        );
    }
    assert!(help.contains("[default: 0.0.0.0:8080]"));

    let out = std::process::Command::new(gatehouse_testkit::process::binary("botfactory"))
        .env_clear()
        .env("DATABASE_URL", "postgres://x@127.0.0.1/x")
        .env("GATEHOUSE_URL", "gatehouse:8000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("http://"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_one_database_and_stop_cleanly() {
    // A second replica on the same database: migrations run once (advisory
    // lock) and both serve the same bots.
    let ctx = Ctx::new().await;
    let mut env = ctx.gatehouse.app_env();
    env.push(("DATABASE_URL", ctx.db.url.clone()));
    let second = example_testkit::App::spawn("botfactory", &env).await;
    let alice = ctx.client().await;
    let bot = ctx.create_bot(&alice.access_token, "Shared").await;
    let res = ctx
        .http
        .get(format!(
            "{}/bots/{}",
            second.url,
            bot["id"].as_str().unwrap()
        ))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(second.stop().await.success(), "exits 0 on SIGTERM");
}
