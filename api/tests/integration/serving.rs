//! The server under the router (`src/server.rs`): connection timeouts and
//! cap, h2c, 431 problem+json, compression, cache validators, and the
//! separate metrics address.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestApp, problem};

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Read until the server closes the connection; the time it took.
async fn time_to_close(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// A complete request on a raw connection, kept alive; returns the status line.
async fn request_on(stream: &mut TcpStream, host: &str) -> String {
    let req = format!("GET /health/live HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn item_3_slowloris_connections_are_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(&[("header-read-timeout", "1s"), ("idle-timeout", "1s")]).await;
    let host = addr(&app);

    // Partial headers, never finished.
    let mut partial = TcpStream::connect(&host).await.unwrap();
    partial
        .write_all(format!("GET /health/live HTTP/1.1\r\nHost: {host}\r\nX-Slow: a").as_bytes())
        .await
        .unwrap();
    // Nothing at all (not even enough bytes to tell HTTP/1.1 from h2).
    let mut silent = TcpStream::connect(&host).await.unwrap();
    // A finished request, then an idle keep-alive connection.
    let mut idle = TcpStream::connect(&host).await.unwrap();
    assert_eq!(request_on(&mut idle, &host).await, "HTTP/1.1 200 OK");

    let limit = Duration::from_secs(6);
    let (a, b, c) = tokio::join!(
        time_to_close(&mut partial, limit),
        time_to_close(&mut silent, limit),
        time_to_close(&mut idle, limit),
    );
    for (what, took) in [("partial headers", a), ("silent", b), ("idle", c)] {
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(4),
            "{what}: closed after {took:?}, expected about 1 s"
        );
    }
    // The server still answers.
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_3_connection_cap_holds_new_clients_until_one_closes() {
    let app = TestApp::spawn_with(&[("max-connections", "2")]).await;
    let host = addr(&app);
    let mut first = TcpStream::connect(&host).await.unwrap();
    let mut second = TcpStream::connect(&host).await.unwrap();
    assert_eq!(request_on(&mut first, &host).await, "HTTP/1.1 200 OK");
    assert_eq!(request_on(&mut second, &host).await, "HTTP/1.1 200 OK");

    // A third client is not served while two connections are open.
    let url = app.url("/health/live");
    let third = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let res = client.get(url).send().await.unwrap();
        (Instant::now(), res.status())
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !third.is_finished(),
        "third connection served above the cap"
    );

    // One closes: the third is served.
    let closed_at = Instant::now();
    drop(first);
    let (served_at, status) = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("third client served once a slot frees")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(served_at >= closed_at);
    assert_eq!(request_on(&mut second, &host).await, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_13_h2c_with_prior_knowledge() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    // The extractors still see the peer address over h2 (the login route
    // needs ClientIp), and problem+json is unchanged.
    let res = client
        .post(app.url("/auth/login"))
        .json(&serde_json::json!({"email": "nobody@example.com", "password": "wrong password 123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // HTTP/1.1 clients on the same port are unaffected.
    let res = app.get("/health/live").await;
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
}

async fn fetch(app: &TestApp, path: &str, encoding: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(enc) = encoding {
        req = req.header("accept-encoding", enc);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_13_json_and_swagger_bundle_are_compressed() {
    let app = TestApp::spawn().await;
    for path in ["/openapi.json", "/docs/swagger-ui-bundle.js"] {
        let plain = fetch(&app, path, None).await;
        assert_eq!(plain.status(), StatusCode::OK, "{path}");
        assert!(plain.headers().get("content-encoding").is_none());
        let plain = plain.bytes().await.unwrap();

        let gz = fetch(&app, path, Some("gzip")).await;
        assert_eq!(gz.status(), StatusCode::OK);
        assert_eq!(gz.headers()["content-encoding"], "gzip", "{path}");
        assert!(
            gz.headers()
                .get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().contains("accept-encoding")),
            "{:?}",
            gz.headers()
        );
        let gz = gz.bytes().await.unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
        assert!(
            gz.len() * 2 < plain.len(),
            "{path}: gzip {} vs {}",
            gz.len(),
            plain.len()
        );

        let br = fetch(&app, path, Some("br")).await;
        assert_eq!(br.headers()["content-encoding"], "br", "{path}");
        let br = br.bytes().await.unwrap();
        assert!(
            br.len() * 2 < plain.len(),
            "{path}: br {} vs {}",
            br.len(),
            plain.len()
        );
    }
    // API JSON too (a list large enough to be worth it).
    let res = fetch(&app, "/.well-known/openid-configuration", Some("br, gzip")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get("content-encoding").is_some(),
        "{:?}",
        res.headers()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_13_etag_and_cache_control_answer_304() {
    let app = TestApp::spawn().await;
    for (path, cache) in [
        ("/openapi.json", "no-cache"),
        ("/docs/swagger-ui-bundle.js", "public, max-age=3600"),
    ] {
        let res = fetch(&app, path, None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], cache, "{path}");
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with("W/\""), "{etag}");
        let body = res.bytes().await.unwrap();
        assert!(!body.is_empty());

        let res = app
            .client
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert_eq!(res.headers()["cache-control"], cache);
        assert!(res.bytes().await.unwrap().is_empty());

        // Another tag: the full body again, same tag.
        let res = app
            .client
            .get(app.url(path))
            .header("if-none-match", "W/\"other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert_eq!(res.bytes().await.unwrap().len(), body.len());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn item_18_headers_over_the_limit_get_problem_json_431() {
    let app = TestApp::spawn_with(&[("max-header-bytes", "8192")]).await;
    let big = "a".repeat(10_000);
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("x-big", big)
        .send()
        .await
        .unwrap();
    let body = problem(
        res,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("8192"));

    // Too many fields.
    let mut req = app.client.get(app.url("/health/live"));
    for i in 0..150 {
        req = req.header(format!("x-h{i}"), "1");
    }
    problem(
        req.send().await.unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;

    // Under the limit: served.
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("x-big", "a".repeat(4_000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_18_metrics_served_on_their_own_address() {
    let port = gatehouse_testkit::free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("metrics-addr", &metrics_addr)]).await;
    // Not on the public address any more.
    problem(
        app.get("/metrics").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.get("/health/live").await;
    let url = format!("http://{metrics_addr}/metrics");
    let text = gatehouse_testkit::eventually(Duration::from_secs(5), "metrics listener", || {
        let url = url.clone();
        async move {
            let res = reqwest::get(&url).await.ok()?;
            (res.status() == StatusCode::OK).then_some(res.text().await.ok()?)
        }
    })
    .await;
    assert!(text.contains("gatehouse_http_requests_total"), "{text}");
    // Only /metrics there.
    let res = reqwest::get(format!("http://{metrics_addr}/users"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
