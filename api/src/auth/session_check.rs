//! The session check behind every authenticated request, coalesced. One
//! call: [`SessionCheck::active_user`]. The lookups that arrive while the
//! database is busy with earlier ones go out together as one query
//! (`sessions.id = ANY($1)`): under load this turns many round trips,
//! statement executions and backend wake-ups into one (measured in
//! BENCHMARKS.md, section 1). When a slot is free and nobody waits, a
//! lookup runs at once in the request's own task, with no hand-off.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_shared::db::DbPool;
use gatehouse_shared::models::{Session, User};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Most sessions looked up by one query.
const MAX_BATCH: usize = 64;
/// Lookups waiting for a batch; beyond this callers wait to enqueue.
const QUEUE: usize = 4096;

/// Why a batch failed; each waiting request turns it into its own error.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// No pooled connection in time (503).
    Pool,
    /// The query failed (500).
    Query,
}

type Reply = Result<Option<User>, Failure>;

struct Lookup {
    session_id: Uuid,
    user_id: Uuid,
    reply: oneshot::Sender<Reply>,
}

/// Handle to the batching task; cheap to clone.
#[derive(Clone)]
pub struct SessionCheck {
    db: DbPool,
    tx: mpsc::Sender<Lookup>,
    /// Connections the session checks may hold at once. The semaphore is
    /// fair: while the batching task waits for a slot, no request can take
    /// one directly, so queued lookups are never overtaken for long.
    slots: Arc<Semaphore>,
}

impl SessionCheck {
    /// Start the batching task. At most `in_flight` batches use a database
    /// connection at once; lookups arriving meanwhile join the next batch.
    /// The task ends when the last handle is dropped.
    pub fn start(db: DbPool, in_flight: usize) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(batch_lookups(db.clone(), rx, slots.clone()));
        Self { db, tx, slots }
    }

    /// The user behind a live session `session_id` of `user_id`, or `None`
    /// when the session is revoked, expired, gone or someone else's.
    pub async fn active_user(&self, session_id: Uuid, user_id: Uuid) -> ApiResult<Option<User>> {
        if let Ok(_slot) = self.slots.clone().try_acquire_owned() {
            let found = query(&self.db, &[session_id]).await;
            return into_result(pick(&found, session_id, user_id));
        }
        let (reply, rx) = oneshot::channel();
        let lookup = Lookup {
            session_id,
            user_id,
            reply,
        };
        let stopped = || ApiError::unavailable("The service is shutting down.");
        self.tx.send(lookup).await.map_err(|_| stopped())?;
        into_result(rx.await.map_err(|_| stopped())?)
    }
}

fn into_result(reply: Reply) -> ApiResult<Option<User>> {
    match reply {
        Ok(user) => Ok(user),
        Err(Failure::Pool) => Err(ApiError::unavailable(
            "The database is temporarily unavailable.",
        )),
        Err(Failure::Query) => Err(ApiError::internal(anyhow::anyhow!("session lookup failed"))),
    }
}

async fn batch_lookups(db: DbPool, mut rx: mpsc::Receiver<Lookup>, slots: Arc<Semaphore>) {
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: whatever queues up meanwhile joins
        // this batch, so batches grow with the load and only with it.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            answer(&db, batch).await;
            drop(slot);
        });
    }
}

async fn answer(db: &DbPool, batch: Vec<Lookup>) {
    let ids: Vec<Uuid> = batch.iter().map(|l| l.session_id).collect();
    let found = query(db, &ids).await;
    for lookup in batch {
        // The caller may have gone (client disconnected): nothing to do.
        let _ = lookup
            .reply
            .send(pick(&found, lookup.session_id, lookup.user_id));
    }
}

/// Live sessions among `ids`, with their users.
async fn query(db: &DbPool, ids: &[Uuid]) -> Result<HashMap<Uuid, User>, Failure> {
    metrics::histogram!("gatehouse_session_lookup_batch_size").record(ids.len() as f64);
    let mut conn = db.get().await.map_err(|e| {
        tracing::warn!(error = %e, "database pool unavailable");
        Failure::Pool
    })?;
    let rows = Session::active_users(&mut conn, ids).await.map_err(|e| {
        tracing::error!(error = %e, "session lookup failed");
        Failure::Query
    })?;
    Ok(rows.into_iter().collect())
}

/// One caller's answer. Only the session's own user: a token naming
/// another user with a valid session id is refused like an unknown session.
fn pick(found: &Result<HashMap<Uuid, User>, Failure>, session_id: Uuid, user_id: Uuid) -> Reply {
    match found {
        Err(f) => Err(*f),
        Ok(users) => Ok(users.get(&session_id).filter(|u| u.id == user_id).cloned()),
    }
}
