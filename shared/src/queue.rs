//! Redis connection and the outbox relay.
//!
//! Jobs are first written to the `outbox` table in the same transaction as
//! the change that causes them. `Queues::dispatch` then pushes an outbox
//! entry onto its apalis queue. The API dispatches right after commit; the
//! worker's sweeper dispatches whatever is still due (Redis was down, the
//! API died, a job was lost with a worker). Delivery is at least once, so
//! every job is idempotent.

use std::sync::Arc;
use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_redis::RedisStorage;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

use crate::config::RedisArgs;
use crate::jobs::{Job, queue_name};
use crate::models::OutboxEntry;

/// Longest wait for a first connection in [`Redis::get`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A lazily (re)connected Redis handle: the service starts and serves
/// even while Redis is down; calls fail fast until it is back.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    config: ConnectionManagerConfig,
    conn: Arc<Mutex<Option<ConnectionManager>>>,
}

impl Redis {
    pub fn new(args: &RedisArgs) -> anyhow::Result<Self> {
        let client = redis::Client::open(args.redis_url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(args.redis_response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            client,
            config,
            conn: Arc::new(Mutex::new(None)),
        })
    }

    /// A connection manager (cheap to clone; it reconnects by itself).
    pub async fn get(&self) -> anyhow::Result<ConnectionManager> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(self.client.clone(), self.config.clone()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("redis connect timed out"))??;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    pub async fn ping(&self) -> bool {
        let Ok(mut conn) = self.get().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }
}

/// apalis queue configuration shared by producer and consumer.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub namespace: String,
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    pub batch_size: usize,
}

impl QueueSettings {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            heartbeat: Duration::from_secs(30),
            missed_heartbeats: 2,
            batch_size: 8,
        }
    }

    pub fn apalis_config(&self, queue: &str) -> apalis_redis::Config {
        apalis_redis::Config::default()
            .queue(queue_name(&self.namespace, queue))
            .heartbeat_interval(self.heartbeat)
            .missed_heartbeats(self.missed_heartbeats)
            .batch_size(self.batch_size)
    }

    pub fn storage<T>(&self, conn: ConnectionManager, queue: &str) -> RedisStorage<T> {
        RedisStorage::new(conn).with_config(self.apalis_config(queue))
    }
}

/// Pushes outbox entries onto their queues.
#[derive(Clone)]
pub struct Queues {
    redis: Redis,
    settings: QueueSettings,
}

impl Queues {
    pub fn new(redis: Redis, settings: QueueSettings) -> Self {
        Self { redis, settings }
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Push one outbox entry onto its job's queue. Does not touch the
    /// database: the caller marks the entry enqueued (or the sweeper has
    /// already stamped it).
    pub async fn dispatch(&self, entry: &OutboxEntry) -> anyhow::Result<()> {
        let kind = crate::jobs::kind(&entry.queue)
            .ok_or_else(|| anyhow::anyhow!("unknown queue {:?}", entry.queue))?;
        (kind.push)(self, &entry.payload).await
    }
}

/// How a [`crate::jobs::Kind`] pushes a stored payload.
pub(crate) type PushFn =
    for<'a> fn(&'a Queues, &'a serde_json::Value) -> BoxFuture<'a, anyhow::Result<()>>;

/// Decode a stored payload as `J` (so a malformed row fails here, not in
/// the worker) and push it onto `J`'s queue.
pub(crate) fn push_payload<'a, J: Job>(
    queues: &'a Queues,
    payload: &'a serde_json::Value,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let job: J = serde_json::from_value(payload.clone())?;
        let conn = queues.redis.get().await?;
        let mut storage: RedisStorage<J> = queues.settings.storage(conn, J::QUEUE);
        storage
            .push(job)
            .await
            .map_err(|e| anyhow::anyhow!("redis push failed: {e}"))?;
        Ok(())
    })
}
