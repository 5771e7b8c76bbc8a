//! The real `gatehouse-worker` binary: it refuses to start without
//! `SMTP_URL` (smtp is the default transport), and the `log` transport
//! writes each email as one tracing event, never a code hash.

use std::process::Stdio;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use gatehouse_testkit::process::{Proc, binary};
use serde_json::{Value, json};

use crate::common::Ctx;

/// Not in deploy/known-secrets.txt.
const FRESH_SECRET: &str = "worker-startup-tests-5e1d7a3c9b0f24688c1e7a5d3f9b";

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_4_worker_refuses_to_start_without_smtp_url() {
    let port = gatehouse_testkit::free_port();
    let mut cmd = tokio::process::Command::new(binary("gatehouse-worker"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/x"),
        )
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("JWT_SECRET", FRESH_SECRET)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("SMTP_URL") && lines[0].contains("MAIL_TRANSPORT=log"),
        "{stderr}"
    );
    // Nothing was sent anywhere: it stopped before connecting.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("email"));
}

#[derive(diesel::QueryableByName)]
struct Hash {
    #[diesel(sql_type = Text)]
    code_hash: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_4_log_transport_is_one_json_event_and_item_5_no_code_hash_at_debug() {
    let ctx = Ctx::new().await;
    let (_api, base) = crate::common::spawn_api(&ctx, &gatehouse_testkit::redis_url()).await;
    let log = std::env::temp_dir().join(format!("gatehouse-worker-{}.log", uuid::Uuid::new_v4()));
    let env = ctx.worker_env(&[
        ("MAIL_TRANSPORT", "log"),
        ("SMTP_URL", ""),
        ("LOG_FORMAT", "json"),
        // Drivers would log the code hash as a bound parameter at debug.
        ("RUST_LOG", "debug"),
    ]);
    let mut worker = Proc::spawn_logging_to("gatehouse-worker", &env, &log);
    let email = "log-transport@example.com";
    let res = reqwest::Client::new()
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": email, "password": "a passphrase for the log transport"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    gatehouse_testkit::eventually(Duration::from_secs(30), "email in the log", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("email (MAIL_TRANSPORT=log)").then_some(())
    })
    .await;
    worker.signal("TERM");
    let _ = tokio::time::timeout(Duration::from_secs(15), worker.wait()).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);

    // Every line is one JSON object, the email included.
    let mut emails = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        if v["message"] == "email (MAIL_TRANSPORT=log)" {
            emails += 1;
            assert_eq!(v["to"], email);
            assert_eq!(v["level"], "INFO");
            assert!(v["body"].as_str().unwrap().contains("verification"), "{v}");
        }
    }
    assert_eq!(emails, 1, "{text}");

    let mut conn = ctx.db.conn().await;
    let hashes: Vec<Hash> = diesel::sql_query("SELECT code_hash FROM email_verifications")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 1);
    assert!(
        !text.contains(&hashes[0].code_hash),
        "the code hash appears in the worker's debug log"
    );
}
