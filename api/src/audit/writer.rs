//! The asynchronous audit writer: use cases hand authentication events to
//! a bounded in-process channel; one background task drains it and
//! inserts them in batches.
//!
//! Recording costs a `try_send` on the request path, never a database round
//! trip. The trade-off: the trail is best effort. When the channel is full
//! (the database is slow or down) new events are dropped, with a warning and
//! `gatehouse_audit_dropped_total`; events still in the channel are lost if
//! the process dies. With more time this would go through the outbox (a row
//! in the same transaction as the change, relayed later), which is what the
//! rare security-relevant admin changes already do: they insert their event
//! in their own transaction (see `crate::users`), so they commit together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_shared::db::DbPool;
use gatehouse_shared::models::AuditEvent;
use tokio::sync::{mpsc, oneshot};

/// Events waiting to be written, at most.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Rows per INSERT.
pub const BATCH_SIZE: usize = 100;
/// Attempts to write one batch before it is dropped.
const WRITE_ATTEMPTS: u32 = 3;

enum Message {
    Event(AuditEvent),
    /// Answered once every event sent before it has been written (or dropped).
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer; cheap to clone.
#[derive(Clone)]
pub struct AuditWriter {
    tx: Option<mpsc::Sender<Message>>,
    dropped: Arc<AtomicU64>,
}

impl AuditWriter {
    /// Start the writer on the current tokio runtime.
    pub fn start(db: DbPool) -> Self {
        Self::with_capacity(db, QUEUE_CAPACITY)
    }

    pub fn with_capacity(db: DbPool, capacity: usize) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: audit events will not be written");
            return Self { tx: None, dropped };
        };
        let (tx, rx) = mpsc::channel(capacity.max(1));
        runtime.spawn(write_batches(db, rx, dropped.clone()));
        Self {
            tx: Some(tx),
            dropped,
        }
    }

    /// A writer that records nothing (tooling, benchmarks).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queue an event without waiting. Never fails the request: a full
    /// queue drops the event and counts it.
    pub fn record(&self, event: AuditEvent) {
        let Some(tx) = &self.tx else { return };
        if let Err(e) = tx.try_send(Message::Event(event)) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "writer_stopped",
            };
            note_dropped(&self.dropped, 1, reason);
        }
    }

    /// Wait until every event recorded before this call is written (tests,
    /// graceful shutdown).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, done) = oneshot::channel();
        if tx.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Events dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Count dropped events; warn on the 1st, 2nd, 4th, 8th… so a flood of
/// drops does not flood the log as well.
fn note_dropped(counter: &AtomicU64, n: u64, reason: &'static str) {
    metrics::counter!("gatehouse_audit_dropped_total", "reason" => reason).increment(n);
    let before = counter.fetch_add(n, Ordering::Relaxed);
    let after = before + n;
    if before == 0 || (before + 1..=after).any(u64::is_power_of_two) {
        tracing::warn!(dropped_total = after, reason, "audit events dropped");
    }
}

async fn write_batches(db: DbPool, mut rx: mpsc::Receiver<Message>, dropped: Arc<AtomicU64>) {
    let mut messages = Vec::with_capacity(BATCH_SIZE);
    let mut events = Vec::with_capacity(BATCH_SIZE);
    let mut acks = Vec::new();
    // `recv_many` waits for the first message, then takes whatever else is
    // already queued, up to a batch: one INSERT per burst.
    while rx.recv_many(&mut messages, BATCH_SIZE).await > 0 {
        for message in messages.drain(..) {
            match message {
                Message::Event(event) => events.push(event),
                Message::Flush(ack) => acks.push(ack),
            }
        }
        if !events.is_empty() {
            write(&db, &events, &dropped).await;
            events.clear();
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

async fn write(db: &DbPool, events: &[AuditEvent], dropped: &AtomicU64) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=WRITE_ATTEMPTS {
        let result = match db.get().await {
            Ok(mut conn) => AuditEvent::insert_batch(&mut conn, events)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        match result {
            Ok(n) => {
                metrics::counter!("gatehouse_audit_written_total").increment(n as u64);
                return;
            }
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "audit batch not written; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "audit batch dropped");
                note_dropped(dropped, events.len() as u64, "write_failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_shared::models::AuditAction;

    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // A queue of 2 that nobody drains: the 3rd to 5th events are dropped
        // at once, and the caller never waits.
        let (tx, mut rx) = mpsc::channel(2);
        let audit = AuditWriter {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..5 {
            audit.record(AuditEvent::new(AuditAction::Login));
        }
        assert_eq!(audit.dropped(), 3);
        let mut queued = Vec::new();
        assert_eq!(rx.recv_many(&mut queued, 10).await, 2);
        // A stopped writer also counts as dropped.
        drop(rx);
        audit.record(AuditEvent::new(AuditAction::Login));
        assert_eq!(audit.dropped(), 4);
    }

    #[tokio::test]
    async fn disabled_records_nothing_and_flushes_at_once() {
        let audit = AuditWriter::disabled();
        audit.record(AuditEvent::new(AuditAction::Signup));
        audit.flush().await;
        assert_eq!(audit.dropped(), 0);
    }
}
