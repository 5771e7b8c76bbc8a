//! The outbox sweeper: relays jobs that did not reach Redis at commit time
//! (Redis down, API crashed) and re-relays jobs that were never completed
//! (lost with a worker). Also publishes queue-depth gauges.

use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use gatehouse_shared::jobs::{self, queue_name};
use gatehouse_shared::models::{OutboxEntry, PurgeRun};
use tokio::sync::watch;

use crate::state::WorkerState;

const BATCH: i64 = 200;
/// An entry enqueued this long ago that no worker has claimed, while its
/// queue in Redis is empty, was lost (Redis stalled or restarted between
/// push and fetch): push it again.
const UNCLAIMED_AFTER: ChronoDuration = ChronoDuration::seconds(20);

/// Entries younger than this and not yet enqueued are left to the API's
/// own push. At least as long as that push may take (the connect timeout
/// of `Redis::get`, then the response timeout, plus a margin): a shorter
/// wait pushed jobs the API was still pushing, and sent two emails
/// (issue 11 item 8).
fn fresh_grace(state: &WorkerState) -> ChronoDuration {
    let push = gatehouse_shared::queue::CONNECT_TIMEOUT
        + state.config.redis.redis_response_timeout
        + Duration::from_secs(1);
    ChronoDuration::from_std(push).unwrap_or(ChronoDuration::seconds(10))
}

/// One sweep; returns how many entries were relayed.
pub async fn sweep(state: &WorkerState) -> anyhow::Result<usize> {
    let now = Utc::now();
    let stale = ChronoDuration::from_std(state.config.outbox_redeliver_after)?;
    let fresh_before = now - fresh_grace(state);
    let mut relayed = 0;
    loop {
        let mut conn = state.db.get().await?;
        let due = OutboxEntry::claim_due(&mut conn, fresh_before, now - stale, BATCH).await?;
        drop(conn);
        relayed += push_all(state, &due).await?;
        if due.len() < BATCH as usize {
            break;
        }
    }
    if relayed > 0 {
        metrics::counter!("gatehouse_outbox_relayed_total").increment(relayed as u64);
        tracing::info!(relayed, "outbox sweeper relayed jobs");
    }
    Ok(relayed)
}

/// Push `entries`; when Redis fails, un-stamp the rest so the next sweep
/// pushes them.
async fn push_all(state: &WorkerState, entries: &[OutboxEntry]) -> anyhow::Result<usize> {
    for (i, entry) in entries.iter().enumerate() {
        if let Err(e) = state.queues.dispatch(entry).await {
            let mut conn = state.db.get().await?;
            for rest in &entries[i..] {
                OutboxEntry::unclaim(&mut conn, rest.id).await?;
            }
            return Err(e);
        }
    }
    Ok(entries.len())
}

/// Push again the entries of `queues` enqueued before `before` that no
/// worker has claimed (issue 11 item 22); returns how many.
pub async fn recover(
    state: &WorkerState,
    queues: &[&str],
    before: chrono::DateTime<Utc>,
    never_attempted: bool,
) -> anyhow::Result<usize> {
    if queues.is_empty() {
        return Ok(0);
    }
    let mut recovered = 0;
    loop {
        let mut conn = state.db.get().await?;
        let lost = OutboxEntry::take_unclaimed_enqueued_before(
            &mut conn,
            queues,
            before,
            never_attempted,
            BATCH,
        )
        .await?;
        drop(conn);
        recovered += push_all(state, &lost).await?;
        if lost.len() < BATCH as usize {
            break;
        }
    }
    if recovered > 0 {
        metrics::counter!("gatehouse_outbox_recovered_total").increment(recovered as u64);
        tracing::warn!(
            recovered,
            "pushed again jobs that Redis lost before any worker took them"
        );
    }
    Ok(recovered)
}

/// Notices when Redis lost its data. A marker key holds the time it was
/// written; a marker that vanished (Redis restarted empty, was flushed or
/// failed over) or changed since the last look means every job pushed
/// before the new marker may be gone.
#[derive(Default)]
pub struct Epoch {
    known: Option<String>,
}

impl Epoch {
    /// Look at the marker; returns the time before which pushed jobs may
    /// have been lost, if Redis lost data since the last look (or holds no
    /// marker at this process's first look).
    pub async fn check(
        &mut self,
        state: &WorkerState,
    ) -> anyhow::Result<Option<chrono::DateTime<Utc>>> {
        let key = format!("{}:outbox-epoch", state.queues.settings().namespace);
        let mut conn = state.queues.redis().get().await?;
        let mine = format!("{}:{}", Utc::now().timestamp_millis(), uuid::Uuid::now_v7());
        let created: bool = redis::cmd("SET")
            .arg(&key)
            .arg(&mine)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        let current: String = if created {
            mine
        } else {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(&mut conn)
                .await?
                .unwrap_or_default()
        };
        let lost = created || self.known.as_ref().is_some_and(|k| *k != current);
        self.known = Some(current.clone());
        if !lost {
            return Ok(None);
        }
        let since = current
            .split(':')
            .next()
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        Ok(Some(since))
    }
}

/// Push again what Redis lost: everything pushed before a data loss, and
/// unclaimed entries of queues that are empty in Redis.
async fn recover_lost(state: &WorkerState, epoch: &mut Epoch, depths: &[(&'static str, i64)]) {
    let every: Vec<&str> = jobs::queues().collect();
    match epoch.check(state).await {
        Ok(Some(since)) => {
            if let Err(e) = recover(state, &every, since, false).await {
                tracing::warn!(error = %format!("{e:#}"), "outbox recovery failed; will retry");
                // Look again next sweep.
                epoch.known = None;
            }
        }
        Ok(None) => {}
        Err(_) => return, // Redis is down: nothing to push to.
    }
    let idle: Vec<&str> = depths
        .iter()
        .filter(|(_, depth)| *depth == 0)
        .map(|(queue, _)| *queue)
        .collect();
    if let Err(e) = recover(state, &idle, Utc::now() - UNCLAIMED_AFTER, true).await {
        tracing::warn!(error = %format!("{e:#}"), "outbox recovery failed; will retry");
    }
}

/// Queue depth (ready + delayed) of each queue, from the apalis key layout.
pub async fn queue_depths(state: &WorkerState) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let mut conn = state.queues.redis().get().await?;
    let mut out = Vec::new();
    for queue in jobs::queues() {
        let name = queue_name(&state.queues.settings().namespace, queue);
        let (active, scheduled): (i64, i64) = redis::pipe()
            .cmd("LLEN")
            .arg(format!("{name}:active"))
            .cmd("ZCOUNT")
            .arg(format!("{name}:scheduled"))
            .arg("-inf")
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        out.push((queue, active + scheduled));
    }
    Ok(out)
}

/// Sweep every `OUTBOX_SWEEP_INTERVAL` until shutdown.
pub async fn sweep_until_shutdown(state: WorkerState, mut shutdown: watch::Receiver<bool>) {
    let interval = state.config.outbox_sweep_interval;
    let mut epoch = Epoch::default();
    loop {
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "outbox sweep failed; will retry");
        }
        if let Ok(depths) = queue_depths(&state).await {
            for (queue, depth) in &depths {
                metrics::gauge!("gatehouse_queue_depth", "queue" => *queue).set(*depth as f64);
            }
            recover_lost(&state, &mut epoch, &depths).await;
        }
        if let Ok(mut conn) = state.db.get().await {
            if let Ok(pending) = OutboxEntry::pending_count(&mut conn).await {
                metrics::gauge!("gatehouse_outbox_pending").set(pending as f64);
            }
            // Every replica reports the last success, whichever ran it.
            if let Ok(Some(at)) = PurgeRun::last_success(&mut conn).await {
                metrics::gauge!("gatehouse_purge_last_success_timestamp_seconds")
                    .set(at.timestamp() as f64);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(interval)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    let ms = d.as_millis() as u64;
    Duration::from_millis(ms + rand::rng().random_range(0..=ms / 5 + 1))
}

/// apalis-redis never trims its `done` and `dead` sets or the payloads of
/// finished jobs (its own `vacuum` also deletes payloads of jobs still
/// waiting for a retry). Remove finished jobs older than the retention, in
/// batches, touching only ids in those sets.
pub async fn vacuum_queues(
    state: &WorkerState,
    done_retention: Duration,
    dead_retention: Duration,
) -> anyhow::Result<u64> {
    let mut conn = state.queues.redis().get().await?;
    let now = Utc::now().timestamp();
    let mut removed = 0u64;
    for queue in jobs::queues() {
        let name = queue_name(&state.queues.settings().namespace, queue);
        for (set, retention) in [
            (format!("{name}:done"), done_retention),
            (format!("{name}:dead"), dead_retention),
        ] {
            let cutoff = now - retention.as_secs() as i64;
            let mut cursor: u64 = 0;
            loop {
                let (next, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
                    .arg(&set)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await?;
                let mut finished = Vec::new();
                for id in ids {
                    let done_at: Option<i64> = redis::cmd("HGET")
                        .arg(format!("{name}:meta:{id}"))
                        .arg("done_at")
                        .query_async(&mut conn)
                        .await?;
                    if done_at.is_none_or(|t| t < cutoff) {
                        finished.push(id);
                    }
                }
                if !finished.is_empty() {
                    let mut pipe = redis::pipe();
                    for id in &finished {
                        pipe.cmd("HDEL")
                            .arg(format!("{name}:data"))
                            .arg(id)
                            .ignore();
                        pipe.cmd("DEL").arg(format!("{name}:meta:{id}")).ignore();
                        pipe.cmd("SREM").arg(&set).arg(id).ignore();
                    }
                    let () = pipe.query_async(&mut conn).await?;
                    removed += finished.len() as u64;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "vacuumed finished jobs from Redis");
    }
    Ok(removed)
}
