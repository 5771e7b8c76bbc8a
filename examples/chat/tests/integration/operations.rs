//! Probes, metrics, settings and graceful shutdown.

use crate::common::{Chat, WAIT, metric};

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_described_metrics() {
    let chat = Chat::new().await;
    let (status, body) = chat.get(0, "/health/live", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = chat.get(0, "/health/ready", None).await;
    assert_eq!(status, 200);
    for check in ["postgres", "redis", "gatehouse", "accepting"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    let alice = chat.gatehouse.login_new_user().await;
    let mut ws = chat.join(0, "lobby", &alice).await;
    ws.say("counted").await;
    ws.next_message(WAIT).await;
    let metrics = chat.metrics(0).await;
    assert_eq!(
        metric(&metrics, "chat_messages_received_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "chat_messages_delivered_total"), 1.0);
    assert_eq!(metric(&metrics, "chat_ws_connections"), 1.0);
    assert_eq!(metric(&metrics, "chat_redis_subscribed"), 1.0);
    assert_eq!(metric(&metrics, "gatehouse_verifier_ready"), 1.0);
    assert_eq!(metric(&metrics, "gatehouse_verifier_redis"), 1.0);
    assert!(
        metrics.contains("chat_fanout_delay_seconds_bucket"),
        "{metrics}"
    );
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
    let (status, body) = chat.get(0, "/nope", None).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("urn:chat:problem:not_found"))
    );

    // The page, with its CSP and Gatehouse's URL.
    let res = chat
        .http
        .get(format!("{}/", chat.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("connect-src 'self' {}", chat.gatehouse.url())),
        "{csp}"
    );
    assert!(csp.contains("script-src 'self'"));
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("content=\"{}\"", chat.gatehouse.url())));
    assert!(
        !html.contains("http://cdn") && !html.contains("https://"),
        "no external assets"
    );
    for asset in ["/app.js", "/style.css"] {
        let res = chat
            .http
            .get(format!("{}{asset}", chat.url(0)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{asset}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn help_lists_every_setting() {
    let out = std::process::Command::new(gatehouse_testkit::process::binary("chat"))
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
        "REDIS_URL",
        "REDIS_NAMESPACE",
        "WS_AUTH_TIMEOUT",
        "WS_PING_INTERVAL",
        "WS_SEND_QUEUE",
        "WS_WRITE_TIMEOUT",
        "WS_SOCKET_SEND_BUFFER",
        "WS_MESSAGE_RATE",
        "RUST_LOG",
        "LOG_FORMAT",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing from --help:\n{help}"
        );
    }
    assert!(help.contains("[default: chat]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_sockets_with_1001_and_exits_cleanly() {
    let mut chat = Chat::new().await;
    chat.add_replica().await;
    let alice = chat.gatehouse.login_new_user().await;
    let mut leaving = chat.join(0, "lobby", &alice).await;
    let mut staying = chat.join(1, "lobby", &alice).await;
    let first = chat.replicas.remove(0);
    let stopping = tokio::spawn(first.stop());
    assert_eq!(
        leaving.expect_close(WAIT).await,
        (1001, "server shutting down".into())
    );
    assert!(stopping.await.unwrap().success(), "exit 0 after SIGTERM");
    // The other replica serves on.
    staying.say("still up").await;
    assert_eq!(staying.next_message(WAIT).await["body"], "still up");
}
