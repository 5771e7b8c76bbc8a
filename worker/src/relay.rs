//! The outbox sweeper: relays jobs that did not reach Redis at commit time
//! (Redis down, API crashed) and re-relays jobs that were never completed
//! (lost with a worker). Also publishes queue-depth gauges.

use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use gatehouse_shared::jobs::{self, queue_name};
use gatehouse_shared::models::{OutboxEntry, PurgeRun};
use tokio::sync::watch;

use crate::state::WorkerState;

/// Jobs younger than this are left to the API's own push.
const FRESH_GRACE: i64 = 2;
const BATCH: i64 = 200;

/// One sweep; returns how many entries were relayed.
pub async fn sweep(state: &WorkerState) -> anyhow::Result<usize> {
    let now = Utc::now();
    let stale = ChronoDuration::from_std(state.config.outbox_redeliver_after)?;
    let mut relayed = 0;
    loop {
        let mut conn = state.db.get().await?;
        let due = OutboxEntry::claim_due(
            &mut conn,
            now - ChronoDuration::seconds(FRESH_GRACE),
            now - stale,
            BATCH,
        )
        .await?;
        drop(conn);
        let n = due.len();
        for (i, entry) in due.iter().enumerate() {
            if let Err(e) = state.queues.dispatch(entry).await {
                // Redis is unreachable: release this and the rest of the
                // batch so the next sweep tries them again.
                let mut conn = state.db.get().await?;
                for rest in &due[i..] {
                    OutboxEntry::unclaim(&mut conn, rest.id).await?;
                }
                return Err(e);
            }
            relayed += 1;
        }
        if n < BATCH as usize {
            break;
        }
    }
    if relayed > 0 {
        metrics::counter!("gatehouse_outbox_relayed_total").increment(relayed as u64);
        tracing::info!(relayed, "outbox sweeper relayed jobs");
    }
    Ok(relayed)
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
    loop {
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "outbox sweep failed; will retry");
        }
        if let Ok(depths) = queue_depths(&state).await {
            for (queue, depth) in depths {
                metrics::gauge!("gatehouse_queue_depth", "queue" => queue).set(depth as f64);
            }
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
