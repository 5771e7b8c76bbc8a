//! Fan-out across replicas through Redis pub/sub.
//!
//! A replica that stores a message publishes it on `{REDIS_NAMESPACE}:messages`
//! after the insert committed. Every replica (the publisher included) holds
//! one subscription and delivers what it receives to its own sockets of that
//! room, so each socket gets each message exactly once, whatever replica its
//! author is on. Redis delivers one channel's messages in one order to every
//! subscriber, so all sockets of a room see the same order.
//!
//! Pub/sub is at most once: while a replica's subscription is down it
//! misses messages. After it resubscribes it reads the messages of its rooms
//! stored since shortly before the loss from PostgreSQL and delivers those it
//! had not delivered yet (the hub remembers recent ids per room).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use example_kit::db::DbPool;
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::hub::Hub;
use crate::messages::{Message, MessageOut};

/// How far before the moment the subscription was lost the catch-up reads.
const CATCH_UP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// Most messages one catch-up delivers.
const CATCH_UP_LIMIT: i64 = 10_000;

/// What travels on the channel: the message and when it was published
/// (microseconds since the epoch), for the fan-out delay metric.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    m: MessageOut,
    t: i64,
}

pub struct Fanout {
    client: redis::Client,
    publisher: ConnectionManager,
    channel: String,
    subscribed: AtomicBool,
}

impl Fanout {
    /// Connect the publisher (it reconnects by itself when Redis comes back).
    pub async fn connect(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let publisher = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Self {
            client,
            publisher,
            channel: format!("{namespace}:messages"),
            subscribed: AtomicBool::new(false),
        })
    }

    /// Publish a stored message to every replica.
    pub async fn publish(&self, message: &MessageOut) -> redis::RedisResult<()> {
        let envelope = Envelope {
            m: message.clone(),
            t: Utc::now().timestamp_micros(),
        };
        let payload = serde_json::to_string(&envelope).unwrap_or_default();
        let mut conn = self.publisher.clone();
        let _receivers: i64 = conn.publish(&self.channel, payload).await?;
        Ok(())
    }

    /// Whether this replica currently receives the channel.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// `PING` through the publisher.
    pub async fn ping(&self) -> bool {
        let mut conn = self.publisher.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    fn set_subscribed(&self, on: bool) {
        self.subscribed.store(on, Ordering::Relaxed);
        metrics::gauge!("chat_redis_subscribed").set(if on { 1.0 } else { 0.0 });
    }

    /// Subscribe and deliver until `shutdown`, resubscribing (with backoff)
    /// and catching up from PostgreSQL after every loss.
    pub async fn run_subscriber(
        self: Arc<Self>,
        hub: Arc<Hub>,
        db: DbPool,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut lost_at: Option<DateTime<Utc>> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.subscribe().await {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(100);
                    self.set_subscribed(true);
                    if let Some(since) = lost_at.take() {
                        catch_up(&hub, &db, since - CATCH_UP_MARGIN).await;
                    }
                    let mut stream = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(msg) => on_message(&hub, msg.get_payload_bytes()),
                                None => break,
                            },
                            _ = shutdown.changed() => {
                                self.set_subscribed(false);
                                return;
                            }
                        }
                    }
                    self.set_subscribed(false);
                    lost_at = Some(Utc::now());
                    tracing::warn!(channel = %self.channel, "Redis subscription lost; resubscribing");
                }
                Err(e) => {
                    // Lost before we ever noticed (e.g. Redis down at start):
                    // catch up from now on the next success anyway.
                    lost_at.get_or_insert_with(Utc::now);
                    tracing::warn!(error = %e, channel = %self.channel, "cannot subscribe to Redis; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        self.set_subscribed(false);
    }

    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub =
            tokio::time::timeout(Duration::from_secs(5), self.client.get_async_pubsub())
                .await
                .map_err(|_| {
                    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })??;
        pubsub.subscribe(&self.channel).await?;
        Ok(pubsub)
    }
}

fn on_message(hub: &Hub, payload: &[u8]) {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else {
        tracing::warn!("ignoring a malformed message on the fan-out channel");
        return;
    };
    hub.deliver(&envelope.m);
    let delay = (Utc::now().timestamp_micros() - envelope.t).max(0) as f64 / 1e6;
    metrics::histogram!("chat_fanout_delay_seconds").record(delay);
}

/// Deliver what this replica's rooms may have missed since `since`.
async fn catch_up(hub: &Hub, db: &DbPool, since: DateTime<Utc>) {
    let rooms = hub.rooms();
    if rooms.is_empty() {
        return;
    }
    let result = async {
        let mut conn = db.get().await.map_err(anyhow::Error::from)?;
        Message::since(&mut conn, &rooms, since, CATCH_UP_LIMIT)
            .await
            .map_err(anyhow::Error::from)
    }
    .await;
    match result {
        Ok(missed) => {
            let mut delivered = 0;
            for m in missed {
                if hub.deliver(&MessageOut::from(m)) > 0 {
                    delivered += 1;
                }
            }
            metrics::counter!("chat_catch_up_messages_total").increment(delivered);
            tracing::info!(
                delivered,
                rooms = rooms.len(),
                "caught up after the Redis subscription came back"
            );
        }
        Err(e) => tracing::warn!(error = %e, "catch-up after a Redis reconnect failed"),
    }
}
