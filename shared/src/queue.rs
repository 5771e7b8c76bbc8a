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
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::config::RedisArgs;
use crate::jobs::{PURGE_QUEUE, RunPurge, SendVerificationEmail, VERIFY_EMAIL_QUEUE, queue_name};
use crate::models::OutboxEntry;

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
            Duration::from_secs(3),
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

    async fn push<T>(&self, queue: &str, payload: &serde_json::Value) -> anyhow::Result<()>
    where
        T: DeserializeOwned + serde::Serialize + Send + Sync + Unpin + 'static,
    {
        let job: T = serde_json::from_value(payload.clone())?;
        let conn = self.redis.get().await?;
        let mut storage: RedisStorage<T> = self.settings.storage(conn, queue);
        storage
            .push(job)
            .await
            .map_err(|e| anyhow::anyhow!("redis push failed: {e}"))?;
        Ok(())
    }

    /// Push one outbox entry. Does not touch the database: the caller marks
    /// the entry enqueued (or the sweeper has already stamped it).
    pub async fn dispatch(&self, entry: &OutboxEntry) -> anyhow::Result<()> {
        match entry.queue.as_str() {
            VERIFY_EMAIL_QUEUE => {
                self.push::<SendVerificationEmail>(VERIFY_EMAIL_QUEUE, &entry.payload)
                    .await
            }
            PURGE_QUEUE => self.push::<RunPurge>(PURGE_QUEUE, &entry.payload).await,
            other => anyhow::bail!("unknown queue {other:?}"),
        }
    }
}
