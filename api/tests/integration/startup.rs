//! The real `gatehouse-api` binary: what it logs (no secrets at any level,
//! one line per request, no colour codes into a file) and how it refuses to
//! start (published secrets, unreachable dependencies), one line each.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use gatehouse_testkit::process::{Proc, binary};
use gatehouse_testkit::{Namespace, TestDb, free_port};
use serde_json::{Value, json};

/// Not in deploy/known-secrets.txt: generated for this file only.
const FRESH_SECRET: &str = "startup-tests-7f3a9c1e5b2d8046af19c3e7d5b20864";
const PASSWORD: &str = "a passphrase for the log test";

/// A private log file, removed with the test's temp dir.
fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gatehouse-{name}-{}.log", uuid::Uuid::new_v4()))
}

/// Run `gatehouse-api` to its exit with only `envs` (plus PATH).
async fn run_to_exit(envs: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(binary("gatehouse-api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the binary exits")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One non-empty line on stderr; returns it.
fn one_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{stderr}"
    );
    lines[0].to_owned()
}

fn closed_port_url(scheme: &str, userinfo: &str) -> (String, String) {
    let port = free_port();
    (
        format!("{scheme}://{userinfo}127.0.0.1:{port}/gatehouse"),
        format!("127.0.0.1:{port}"),
    )
}

async fn wait_live(base: &str) {
    let client = reqwest::Client::new();
    gatehouse_testkit::eventually(Duration::from_secs(30), "API live", || async {
        let res = client
            .get(format!("{base}/health/live"))
            .send()
            .await
            .ok()?;
        (res.status() == 200).then_some(())
    })
    .await;
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    value: String,
}

async fn strings(db: &TestDb, sql: &str) -> Vec<String> {
    let mut conn = db.conn().await;
    diesel::sql_query(sql)
        .load::<Row>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn item_5_trace_logs_hold_no_password_hash_email_session_or_token() {
    let db = TestDb::new().await;
    let namespace = Namespace::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = log_path("trace");
    let mut api = Proc::spawn_logging_to(
        "gatehouse-api",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", gatehouse_testkit::redis_url()),
            ("REDIS_NAMESPACE", namespace.as_str().to_owned()),
            ("JWT_SECRET", FRESH_SECRET.into()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("REQUIRE_VERIFIED_LOGIN", "false".into()),
            ("COOKIE_SECURE", "false".into()),
            // Everything, drivers included: the pinned crates stay at info.
            ("RUST_LOG", "trace".into()),
            ("LOG_FORMAT", "json".into()),
        ],
        &log,
    );
    wait_live(&base).await;
    let client = reqwest::Client::new();
    let email = "log-secrets@example.com";
    let res = client
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let res = client
        .post(format!("{base}/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .get(format!("{base}/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    api.signal("TERM");
    let _ = tokio::time::timeout(Duration::from_secs(10), api.wait()).await;

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    // The run did log below info (so the absence below means something).
    assert!(text.contains("\"DEBUG\""), "nothing below info:\n{text}");

    let hashes = strings(&db, "SELECT password_hash AS value FROM users").await;
    let sessions = strings(&db, "SELECT id::text AS value FROM sessions").await;
    assert!(!hashes.is_empty() && !sessions.is_empty());
    let mut secrets: Vec<(&str, String)> = vec![
        ("email", email.to_owned()),
        ("password", PASSWORD.to_owned()),
        ("refresh token", refresh),
        ("access token", access),
    ];
    secrets.extend(hashes.into_iter().map(|h| ("password hash", h)));
    secrets.extend(sessions.into_iter().map(|s| ("session id", s)));
    for (what, value) in secrets {
        assert!(
            !text.contains(&value),
            "the {what} appears in the trace log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_4_one_request_line_docs_url_and_no_ansi_in_files() {
    let db = TestDb::new().await;
    let namespace = Namespace::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = log_path("requests");
    let mut api = Proc::spawn_logging_to(
        "gatehouse-api",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", gatehouse_testkit::redis_url()),
            ("REDIS_NAMESPACE", namespace.as_str().to_owned()),
            ("JWT_SECRET", FRESH_SECRET.into()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("PUBLIC_URL", "https://auth.example.com".into()),
            ("RUST_LOG", "info".into()),
            // Pretty is the format that would colour a terminal.
            ("LOG_FORMAT", "pretty".into()),
        ],
        &log,
    );
    wait_live(&base).await;
    let res = reqwest::Client::new()
        .get(format!("{base}/users/not-a-uuid?q=someone@example.com"))
        .header("x-request-id", "req-for-the-log-test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    api.signal("TERM");
    let _ = tokio::time::timeout(Duration::from_secs(10), api.wait()).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);

    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a file:\n{text}"
    );
    assert!(
        text.contains("https://auth.example.com/docs"),
        "docs URL not printed at startup:\n{text}"
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("req-for-the-log-test"))
        .collect();
    assert_eq!(lines.len(), 1, "one line per request at info:\n{text}");
    let line = lines[0];
    for part in [
        " INFO ",
        "method=GET",
        "route=/users/{id}",
        "status=401",
        "latency_ms=",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
    // The route template, never the raw path or query.
    assert!(!line.contains("someone@example.com") && !line.contains("not-a-uuid"));
}

#[tokio::test(flavor = "multi_thread")]
async fn item_15_published_jwt_secret_is_refused_without_the_dev_flag() {
    let (db_url, _) = closed_port_url("postgres", "postgres@");
    let (redis_url, _) = closed_port_url("redis", "");
    // docker-compose's former fallback, a published value.
    let published = "dev-only-insecure-jwt-secret-change-me-0123456789";
    let base = |secret: &str| {
        vec![
            ("DATABASE_URL", db_url.clone()),
            ("REDIS_URL", redis_url.clone()),
            ("JWT_SECRET", secret.to_owned()),
            ("STARTUP_TIMEOUT", "1s".to_owned()),
        ]
    };
    let (code, _, stderr) = run_to_exit(&base(published)).await;
    assert_eq!(code, 1, "{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.contains("JWT_SECRET") && line.contains("GATEHOUSE_DEV_ALLOW_KNOWN_SECRETS"),
        "{line}"
    );
    assert!(!line.contains(published), "the secret was echoed: {line}");

    // A published bootstrap admin password too.
    let mut env = base(FRESH_SECRET);
    env.push(("BOOTSTRAP_ADMIN_EMAIL", "root@example.com".into()));
    env.push((
        "BOOTSTRAP_ADMIN_PASSWORD",
        "a-long-unique-dev-password".into(),
    ));
    let (code, _, stderr) = run_to_exit(&env).await;
    assert_eq!(code, 1, "{stderr}");
    let line = one_line(&stderr);
    assert!(line.contains("BOOTSTRAP_ADMIN_PASSWORD"), "{line}");
    assert!(!line.contains("a-long-unique-dev-password"), "{line}");

    // With the development flag the secret passes (and the start then
    // fails on the closed database port, not on the secret).
    let mut env = base(published);
    env.push(("GATEHOUSE_DEV_ALLOW_KNOWN_SECRETS", "true".into()));
    let (code, _, stderr) = run_to_exit(&env).await;
    assert_eq!(code, 1);
    let line = one_line(&stderr);
    assert!(
        line.contains("DATABASE_URL") && !line.contains("JWT_SECRET"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_3_rejected_short_secret_is_not_echoed() {
    let (db_url, _) = closed_port_url("postgres", "postgres@");
    let short = "tooshort-s3cret";
    let (code, stdout, stderr) = run_to_exit(&[
        ("DATABASE_URL", db_url),
        ("REDIS_URL", "redis://127.0.0.1:1".into()),
        ("JWT_SECRET", short.into()),
    ])
    .await;
    assert_eq!(code, 2);
    let line = one_line(&stderr);
    assert!(
        line.contains("JWT_SECRET") && line.contains("at least 32 bytes"),
        "{line}"
    );
    assert!(!line.contains(short) && !stdout.contains(short), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_3_unreachable_database_is_retried_then_named_in_one_line() {
    let (db_url, host_port) = closed_port_url("postgres", "gatehouse:hunter2-db-pw@");
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = run_to_exit(&[
        ("DATABASE_URL", db_url),
        ("REDIS_URL", gatehouse_testkit::redis_url()),
        ("JWT_SECRET", FRESH_SECRET.into()),
        ("STARTUP_TIMEOUT", "2s".into()),
        ("LOG_FORMAT", "json".into()),
    ])
    .await;
    let took = started.elapsed();
    assert_eq!(code, 1, "{stderr}");
    // Retried for STARTUP_TIMEOUT, not given up at the first refusal.
    assert!(
        took >= Duration::from_millis(1900),
        "gave up after {took:?}"
    );
    let line = one_line(&stderr);
    for part in [
        "PostgreSQL",
        host_port.as_str(),
        "DATABASE_URL",
        "STARTUP_TIMEOUT",
        "refused",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
    assert!(!line.contains("hunter2-db-pw") && !stdout.contains("hunter2-db-pw"));
    // Printed once: not repeated as a log line on stdout (the retry warning
    // is logged once, whatever the number of attempts).
    assert!(!stdout.contains("gave up"), "{stdout}");
    let warnings = stdout.lines().filter(|l| l.contains("retrying")).count();
    assert_eq!(warnings, 1, "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn firstrun_3_unreachable_redis_is_named_in_one_line() {
    let db = TestDb::new().await;
    let (redis_url, host_port) = closed_port_url("redis", ":hunter2-redis-pw@");
    let (code, stdout, stderr) = run_to_exit(&[
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis_url),
        ("JWT_SECRET", FRESH_SECRET.into()),
        ("STARTUP_TIMEOUT", "1s".into()),
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    let line = one_line(&stderr);
    for part in ["Redis", host_port.as_str(), "REDIS_URL", "STARTUP_TIMEOUT"] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
    assert!(!line.contains("hunter2-redis-pw") && !stdout.contains("hunter2-redis-pw"));
}

#[tokio::test(flavor = "multi_thread")]
async fn item_14_wildcard_cors_origin_is_a_one_line_config_error() {
    let (db_url, _) = closed_port_url("postgres", "postgres@");
    for origins in ["*", "https://app.example.com,*", "app.example.com"] {
        let (code, stdout, stderr) = run_to_exit(&[
            ("DATABASE_URL", db_url.clone()),
            ("REDIS_URL", "redis://127.0.0.1:1".into()),
            ("JWT_SECRET", FRESH_SECRET.into()),
            ("CORS_ALLOWED_ORIGINS", origins.into()),
        ])
        .await;
        // A config error, not a panic (101) after "listening".
        assert_eq!(code, 1, "{origins}: {stderr}");
        let line = one_line(&stderr);
        assert!(line.contains("CORS_ALLOWED_ORIGINS"), "{line}");
        assert!(!stderr.contains("panicked") && !stdout.contains("listening"));
    }
}
