//! What every job handler gets.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use gatehouse_shared::db::DbPool;
use gatehouse_shared::queue::Queues;

use crate::config::WorkerConfig;
use crate::mailer::Mailer;

#[derive(Clone)]
pub struct WorkerState(pub Arc<Inner>);

pub struct Inner {
    pub config: WorkerConfig,
    pub db: DbPool,
    pub queues: Queues,
    pub mailer: Mailer,
    /// Base name of this process's workers (`worker-{host}-{ulid}`).
    pub name: String,
    /// apalis workers currently running (Start minus Exit events).
    pub live_workers: AtomicI64,
    /// Keyed hash of stored one-time secrets (codes, link tokens).
    pub secrets: gatehouse_shared::keys::SecretHasher,
}

impl std::ops::Deref for WorkerState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
