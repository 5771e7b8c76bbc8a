//! Following the revocation feed: HTTP pages from a cursor (gapless, since
//! Gatehouse hands out cursors in commit order), plus a Redis subscription
//! for speed. Redis messages never move the cursor, so a message lost on
//! the way is still picked up by the next HTTP catch-up.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::watch;

use crate::error::FetchError;
use crate::revocation::{FeedItem, FeedPage};
use crate::util::{lock, now_secs};
use crate::verifier::Shared;

/// Whether a page loop may go on (a misbehaving server must not spin us).
const MAX_PAGES_PER_SYNC: usize = 1000;
/// First wait before resubscribing to Redis; doubles up to the configured max.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// How often a live subscription is pinged, to notice a silent network.
const PING_EVERY: Duration = Duration::from_secs(10);

/// How the verifier currently learns about revocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedMode {
    /// Subscribed to Redis (plus a slow HTTP safety-net poll).
    Redis,
    /// Polling the HTTP feed (no Redis configured, or Redis unreachable).
    Polling,
    /// Background tasks stopped ([`Verifier::shutdown`](crate::Verifier::shutdown)):
    /// revocations are no longer followed.
    Stopped,
}

impl FeedMode {
    /// `redis`, `polling` or `stopped`, e.g. for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Polling => "polling",
            Self::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for FeedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The follower's bookkeeping, shown by [`Verifier::status`](crate::Verifier::status).
#[derive(Debug)]
pub(crate) struct FeedState {
    pub(crate) mode: FeedMode,
    pub(crate) cursor: Option<i64>,
    pub(crate) last_sync: Option<(SystemTime, Instant)>,
    /// The last HTTP sync failed (entries may be missing until one succeeds).
    pub(crate) sync_failing: bool,
    pub(crate) feed_requests: u64,
    pub(crate) redis_messages: u64,
}

impl FeedState {
    pub(crate) fn new(mode: FeedMode) -> Self {
        Self {
            mode,
            cursor: None,
            last_sync: None,
            sync_failing: false,
            feed_requests: 0,
            redis_messages: 0,
        }
    }
}

/// Read the HTTP feed from the cursor until it has nothing more; returns how
/// many entries were new. Only the poller (and `start`, before it) calls
/// this, so syncs never overlap.
pub(crate) async fn sync_http(shared: &Shared) -> Result<usize, FetchError> {
    let mut fresh = 0;
    for _ in 0..MAX_PAGES_PER_SYNC {
        let since = lock::plain(&shared.feed).cursor;
        let page = fetch_page(shared, since).await?;
        let now = now_secs();
        let count = page.items.len();
        for item in &page.items {
            if shared.revocations.apply(item.revocation(), now) {
                fresh += 1;
            }
        }
        let last_item = page.items.iter().filter_map(|i| i.cursor).max();
        let next = page.next_cursor.or(last_item);
        let advanced = {
            let mut feed = lock::plain(&shared.feed);
            match (feed.cursor, next) {
                (Some(old), Some(new)) if new < old => {
                    // The contract never moves backwards; do not re-read everything.
                    tracing::warn!(
                        old,
                        new,
                        "the revocation feed's cursor went backwards; keeping ours"
                    );
                }
                (_, Some(new)) => feed.cursor = Some(new),
                (_, None) => {}
            }
            feed.last_sync = Some((SystemTime::now(), Instant::now()));
            feed.cursor
        };
        // An empty page means we are at the head. A non-empty one may be
        // a page of a longer answer: ask again from the new cursor (unless
        // it did not move, which would ask for the same page forever).
        if count == 0 || advanced == since {
            return Ok(fresh);
        }
    }
    Ok(fresh)
}

async fn fetch_page(shared: &Shared, since: Option<i64>) -> Result<FeedPage, FetchError> {
    lock::plain(&shared.feed).feed_requests += 1;
    let mut request = shared
        .http
        .get(shared.config.feed_url())
        .timeout(shared.config.http_timeout);
    if let Some(since) = since {
        request = request.query(&[("since", since)]);
    }
    let response = request.send().await?;
    if !response.status().is_success() {
        return Err(FetchError::Transport(format!(
            "status {}",
            response.status()
        )));
    }
    let body = response.bytes().await?;
    serde_json::from_slice(&body)
        .map_err(|e| FetchError::Invalid(format!("not a revocation feed page: {e}")))
}

/// Poll the HTTP feed: fast without Redis, slowly as a safety net with it,
/// and at once when the listener asks for a catch-up.
pub(crate) async fn poller(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (mode, failing) = {
            let feed = lock::plain(&shared.feed);
            (feed.mode, feed.sync_failing)
        };
        // A failed catch-up is retried at the fast pace even while
        // subscribed: the entries it missed will not come over Redis.
        let interval = match mode {
            FeedMode::Redis if !failing => shared.config.safety_poll_interval,
            _ => shared.config.poll_interval,
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shared.catch_up.notified() => {}
            _ = shutdown.changed() => return,
        }
        // Bound the sync by shutdown too: a hung Gatehouse must not delay it.
        let result = tokio::select! {
            r = sync_http(&shared) => r,
            _ = shutdown.changed() => return,
        };
        lock::plain(&shared.feed).sync_failing = result.is_err();
        match result {
            Ok(fresh) => {
                if failing {
                    tracing::info!("revocation feed reachable again");
                }
                if fresh > 0 {
                    tracing::debug!(fresh, "revocations from the HTTP feed");
                }
            }
            // Once per outage at warn level; every second would flood logs.
            Err(e) if failing => tracing::debug!(error = %e, "revocation feed still unreachable"),
            Err(e) => tracing::warn!(error = %e, "revocation feed unreachable"),
        }
        shared.revocations.sweep(now_secs());
    }
}

/// A live subscription to the revocation channel.
pub(crate) struct Subscription {
    sink: PubSubSink,
    stream: PubSubStream,
}

/// Connect and subscribe, bounded by the HTTP timeout.
pub(crate) async fn subscribe(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> Result<Subscription, String> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((sink, stream))) => Ok(Subscription { sink, stream }),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

fn set_mode(shared: &Shared, mode: FeedMode) {
    lock::plain(&shared.feed).mode = mode;
}

/// Keep a Redis subscription alive: apply every message at once, fall back
/// to polling when it drops, resubscribe with backoff, and after every
/// (re)subscribe have the poller catch up from the cursor so nothing
/// published during the gap is missed.
pub(crate) async fn listener(
    shared: Arc<Shared>,
    client: redis::Client,
    channel: String,
    mut current: Option<Subscription>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    // The subscription made by `start` was followed by a full sync already.
    let mut caught_up = current.is_some();
    loop {
        let subscription = match current.take() {
            Some(s) => s,
            None => match subscribe(&client, &channel, shared.config.http_timeout).await {
                Ok(s) => {
                    tracing::info!("subscribed to the revocation channel");
                    s
                }
                Err(e) => {
                    tracing::debug!(error = %e, ?backoff, "revocation channel: subscribe failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(shared.config.redis_max_backoff);
                    continue;
                }
            },
        };
        set_mode(&shared, FeedMode::Redis);
        backoff = MIN_BACKOFF;
        if !caught_up {
            shared.catch_up.notify_one();
        }
        caught_up = false;

        let stopped = follow(&shared, subscription, &mut shutdown).await;
        if stopped {
            return;
        }
        tracing::warn!("revocation channel lost; polling the HTTP feed until resubscribed");
        set_mode(&shared, FeedMode::Polling);
        // Anything published while the connection was dying is in the feed.
        shared.catch_up.notify_one();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Read messages until the subscription ends (`false`) or shutdown (`true`).
async fn follow(
    shared: &Shared,
    subscription: Subscription,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let Subscription {
        mut sink,
        mut stream,
    } = subscription;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return false };
                handle_message(shared, message.get_payload_bytes());
            }
            _ = ping.tick() => {
                let pong = tokio::time::timeout(
                    shared.config.http_timeout,
                    sink.ping::<redis::Value>(),
                ).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return false;
                }
            }
            _ = shutdown.changed() => return true,
        }
    }
}

fn handle_message(shared: &Shared, payload: &[u8]) {
    lock::plain(&shared.feed).redis_messages += 1;
    match serde_json::from_slice::<FeedItem>(payload) {
        Ok(item) => {
            let fresh = shared.revocations.apply(item.revocation(), now_secs());
            tracing::debug!(cursor = ?item.cursor, sid = %item.sid, fresh, "revocation from Redis");
        }
        Err(e) => {
            // Not ours to interpret; the feed is the source of truth.
            tracing::warn!(error = %e, "unreadable message on the revocation channel; catching up over HTTP");
            shared.catch_up.notify_one();
        }
    }
}
