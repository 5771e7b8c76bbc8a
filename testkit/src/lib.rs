//! Test support shared by the API and worker test suites: real PostgreSQL
//! databases per test, unique Redis namespaces, a real SMTP listener and
//! helpers to run the real binaries.

#![allow(clippy::unwrap_used)]

#[cfg(feature = "browser")]
pub mod browser;
pub mod db;
pub mod process;
pub mod services;
pub mod smtp;

pub use db::TestDb;
pub use smtp::{MailSink, ReceivedMail};

/// Server URL of the PostgreSQL used by tests, without a database name:
/// `TEST_PG_URL` (default the local trust-auth server) if it answers, else
/// a private server started for this test process (see [`services`]).
pub fn pg_server_url() -> String {
    services::pg_url()
}

/// Redis used by tests: `TEST_REDIS_URL` (default the local server) if it
/// answers, else a private server started for this test process.
pub fn redis_url() -> String {
    services::redis_url()
}

/// A Redis key namespace unique to one test.
pub fn redis_namespace() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// Delete every key of a namespace (best effort).
pub async fn clear_redis_namespace(url: &str, namespace: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

/// Command-line arguments for `program`: `--name value` for each of
/// `defaults`, except those named again in `overrides`, then `overrides`.
pub fn cli_args(
    program: &str,
    defaults: &[(&str, &str)],
    overrides: &[(&str, &str)],
) -> Vec<String> {
    let mut args = vec![program.to_owned()];
    let kept = defaults
        .iter()
        .filter(|(name, _)| !overrides.iter().any(|(o, _)| o == name));
    for (name, value) in kept.chain(overrides) {
        args.push(format!("--{name}"));
        args.push((*value).to_owned());
    }
    args
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` until it returns `Some`, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
