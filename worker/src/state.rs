//! What every job handler gets.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// Whether each consumer and scheduled job runs right now.
    pub workers: Workers,
    /// Keyed hash of stored one-time secrets (codes, link tokens).
    pub secrets: gatehouse_shared::keys::SecretHasher,
}

impl std::ops::Deref for WorkerState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The real state of each of the process's workers (one queue consumer per
/// job type, one timer per scheduled job), by slot name. A slot is one
/// worker whatever its restarts: the old count of Start minus Exit events
/// drifted upwards across Redis restarts and hid dead workers (issue 11
/// item 12).
#[derive(Default)]
pub struct Workers(Mutex<BTreeMap<String, bool>>);

impl Workers {
    fn map(&self) -> MutexGuard<'_, BTreeMap<String, bool>> {
        // A panic elsewhere cannot leave a map of bools inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Register a slot that must run (down until it starts).
    pub fn expect(&self, slot: &str) {
        self.map().entry(slot.to_owned()).or_insert(false);
        self.publish();
    }

    pub fn set(&self, slot: &str, running: bool) {
        self.map().insert(slot.to_owned(), running);
        self.publish();
    }

    /// (running, expected).
    pub fn count(&self) -> (usize, usize) {
        let map = self.map();
        (map.values().filter(|up| **up).count(), map.len())
    }

    /// Slots that are expected but not running.
    pub fn down(&self) -> Vec<String> {
        self.map()
            .iter()
            .filter(|(_, up)| !**up)
            .map(|(slot, _)| slot.clone())
            .collect()
    }

    fn publish(&self) {
        let (running, _) = self.count();
        metrics::gauge!("gatehouse_workers_running").set(running as f64);
    }
}
