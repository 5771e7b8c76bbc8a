//! Publishes the revocation feed on Redis (`{REDIS_NAMESPACE}:revocations`).
//!
//! Entries are written to the `revocations` table in the transaction of the
//! change. A trigger `NOTIFY`s at commit; this task, run by every API
//! replica, `LISTEN`s on a dedicated connection, reads the entries after its
//! cursor (commit order, see `models::revocation`) and publishes each one.
//! A Lua script publishes only cursors above the last one published, so N
//! replicas publish each entry once. Nothing here runs on a request's path:
//! Redis being down or slow never fails or slows a request. A missed push
//! costs nothing either: verifiers catch up from the HTTP feed after any
//! reconnect, and this task resumes from its cursor after any failure.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::db::DbPool;
use crate::models::Revocation;
use crate::queue::Redis;

/// The channel the migration's trigger notifies.
pub const PG_CHANNEL: &str = "gatehouse_revocations";
/// Re-read the table this often even without a notification (a dropped
/// LISTEN connection is only noticed on the next read).
const SAFETY_POLL: Duration = Duration::from_secs(5);
const BATCH: i64 = 500;
const REDIS_DEADLINE: Duration = Duration::from_secs(2);

/// Publish the entries given in ARGV (cursor, message pairs after the
/// channel) whose cursor is above the last published one.
const PUBLISH_SCRIPT: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local sent = 0
for i = 2, #ARGV, 2 do
  local cursor = tonumber(ARGV[i])
  if cursor > last then
    redis.call('PUBLISH', ARGV[1], ARGV[i + 1])
    last = cursor
    sent = sent + 1
  end
end
redis.call('SET', KEYS[1], tostring(last), 'EX', 86400)
return sent
";

/// The Redis channel of the feed.
pub fn channel(namespace: &str) -> String {
    format!("{namespace}:revocations")
}

/// Run until `stop` turns true.
pub async fn run_publisher(
    database_url: String,
    db: DbPool,
    redis: Redis,
    namespace: String,
    mut stop: watch::Receiver<bool>,
) {
    let script = redis::Script::new(PUBLISH_SCRIPT);
    let published_key = format!("{namespace}:revocations:published");
    let channel = channel(&namespace);
    // Start after what exists: older entries were published by whoever ran
    // then, and verifiers read them from the HTTP feed anyway.
    let mut cursor: Option<i64> = None;
    let mut pause = Duration::from_millis(200);
    while !*stop.borrow() {
        let session = async {
            let mut listener = AsyncPgConnection::establish(&database_url).await?;
            diesel::sql_query(format!("LISTEN {PG_CHANNEL}"))
                .execute(&mut listener)
                .await?;
            let mut notifications = std::pin::pin!(listener.notifications_stream());
            loop {
                if cursor.is_none() {
                    let mut conn = db.get().await.map_err(anyhow::Error::msg)?;
                    cursor = Some(Revocation::last_cursor(&mut conn).await?);
                }
                drain(&db, &redis, &script, &published_key, &channel, &mut cursor).await?;
                tokio::select! {
                    n = notifications.next() => match n {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(anyhow::Error::from(e)),
                        None => anyhow::bail!("LISTEN connection closed"),
                    },
                    _ = tokio::time::sleep(SAFETY_POLL) => {}
                    _ = stop.changed() => return Ok(()),
                }
            }
        };
        match session.await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "revocation publisher restarting");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Publish every entry after `cursor`, advancing it. A Redis failure is
/// logged and skipped (verifiers poll the HTTP feed); a database failure
/// is returned so the caller reconnects.
async fn drain(
    db: &DbPool,
    redis: &Redis,
    script: &redis::Script,
    published_key: &str,
    channel: &str,
    cursor: &mut Option<i64>,
) -> anyhow::Result<()> {
    loop {
        let entries = {
            let mut conn = db.get().await.map_err(anyhow::Error::msg)?;
            Revocation::page(&mut conn, *cursor, BATCH).await?
        };
        let Some(last) = entries.last().map(|e| e.cursor) else {
            return Ok(());
        };
        let mut invocation = script.key(published_key);
        invocation.arg(channel);
        for entry in &entries {
            invocation
                .arg(entry.cursor)
                .arg(serde_json::to_string(entry)?);
        }
        let sent = tokio::time::timeout(REDIS_DEADLINE, async {
            let mut conn = redis.get().await?;
            Ok::<i64, anyhow::Error>(invocation.invoke_async(&mut conn).await?)
        })
        .await;
        match sent {
            Ok(Ok(n)) => {
                metrics::counter!("gatehouse_revocations_published_total")
                    .increment(u64::try_from(n).unwrap_or(0));
            }
            Ok(Err(e)) => {
                metrics::counter!("gatehouse_revocations_publish_failures_total").increment(1);
                tracing::warn!(error = %format!("{e:#}"), "revocations not published on Redis; verifiers will poll");
            }
            Err(_) => {
                metrics::counter!("gatehouse_revocations_publish_failures_total").increment(1);
                tracing::warn!("revocations not published on Redis (timeout); verifiers will poll");
            }
        }
        *cursor = Some(last);
        if (entries.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
