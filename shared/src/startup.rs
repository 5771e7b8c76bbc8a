//! Waiting for PostgreSQL and Redis at startup. Containers start in any
//! order, so an unreachable dependency is retried with backoff for
//! `STARTUP_TIMEOUT`; then the binary exits with one line naming the
//! host:port (never the URL: it can hold a password), the cause and the
//! variable to fix. Each distinct failure is logged once while waiting.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::config::{DatabaseArgs, RedisArgs};

/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// One attempt's own deadline (a black-holed port never answers).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` of a `postgres://`, `redis://` or `rediss://` URL, without
/// user or password (`default_port` when the URL names none).
pub fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return format!("localhost:{default_port}");
    }
    // `[::1]:5432`, `[::1]`, `db:5432`, `db`.
    let has_port = match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}

/// Wait until PostgreSQL (and Redis, when given) answer, or `timeout` passes.
/// The worker passes no Redis: its scheduled jobs need only PostgreSQL and
/// must run while Redis is down, and its consumers wait for Redis themselves.
pub async fn wait_for_services(
    db: &DatabaseArgs,
    redis: Option<&RedisArgs>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let pg = format!("PostgreSQL at {}", host_port(&db.database_url, 5432));
    retry(&pg, "DATABASE_URL", timeout, || {
        check_postgres(&db.database_url)
    })
    .await?;
    let Some(redis) = redis else {
        return Ok(());
    };
    let rd = format!("Redis at {}", host_port(&redis.redis_url, 6379));
    retry(&rd, "REDIS_URL", timeout, || check_redis(&redis.redis_url)).await
}

async fn retry<F, Fut>(
    what: &str,
    variable: &str,
    timeout: Duration,
    mut attempt: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = Duration::from_millis(250);
    let mut last_logged: Option<String> = None;
    loop {
        let cause = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt()).await {
            Ok(Ok(())) => {
                if last_logged.is_some() {
                    tracing::info!("{what} is reachable");
                }
                return Ok(());
            }
            Ok(Err(cause)) => cause,
            Err(_) => format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            anyhow::bail!(
                "cannot reach {what}: {cause}; gave up after {} (STARTUP_TIMEOUT); check {variable} and that the server is running",
                humantime::format_duration(Duration::from_secs(timeout.as_secs().max(1)))
            );
        }
        if last_logged.as_deref() != Some(cause.as_str()) {
            tracing::warn!(
                "cannot reach {what} ({variable}): {cause}; retrying until STARTUP_TIMEOUT ({})",
                humantime::format_duration(timeout)
            );
            last_logged = Some(cause);
        }
        tokio::time::sleep(backoff.min(deadline - now)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A TCP connection to `host:port` first: the drivers' own messages drop
/// the cause ("error connecting to server"), this one says "Connection
/// refused" or "failed to lookup address".
async fn check_tcp(host_port: &str) -> Result<(), String> {
    tokio::net::TcpStream::connect(host_port)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Connect once; the cause without the URL.
async fn check_postgres(url: &str) -> Result<(), String> {
    if url.contains("://") && !url.contains("host=") {
        check_tcp(&host_port(url, 5432)).await?;
    }
    AsyncPgConnection::establish(url)
        .await
        .map(drop)
        .map_err(|e| redact(&e.to_string(), url))
}

async fn check_redis(url: &str) -> Result<(), String> {
    if !url.starts_with("redis+unix") && !url.starts_with("unix") {
        check_tcp(&host_port(url, 6379)).await?;
    }
    let client = redis::Client::open(url).map_err(|e| redact(&e.to_string(), url))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| redact(&e.to_string(), url))?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(drop)
        .map_err(|e| redact(&e.to_string(), url))
}

/// A driver message on one line, with the URL and its password removed in
/// case the driver quoted them.
fn redact(message: &str, url: &str) -> String {
    let mut out = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if !url.is_empty() {
        out = out.replace(url, "<url>");
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
        && !password.is_empty()
    {
        out = out.replace(password, "<password>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_never_has_credentials() {
        assert_eq!(host_port("postgres://u:secret@db:6543/x", 5432), "db:6543");
        assert_eq!(
            host_port("postgres://u:secret@db/x?sslmode=require", 5432),
            "db:5432"
        );
        assert_eq!(host_port("redis://:pw@cache", 6379), "cache:6379");
        assert_eq!(host_port("rediss://[::1]:7000/0", 6379), "[::1]:7000");
        assert_eq!(host_port("redis://[::1]", 6379), "[::1]:6379");
        assert_eq!(host_port("postgres:///x", 5432), "localhost:5432");
    }

    #[test]
    fn redact_removes_url_and_password() {
        let url = "postgres://u:s3cret@db:5432/x";
        assert_eq!(
            redact("failed: postgres://u:s3cret@db:5432/x\nbad s3cret", url),
            "failed: <url> bad <password>"
        );
    }
}
