//! Application state, shared by every handler.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use gatehouse_shared::db::DbPool;
use gatehouse_shared::models::OutboxEntry;
use gatehouse_shared::queue::Queues;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::audit::AuditWriter;
use crate::auth::session_check::SessionCheck;
use crate::auth::tokens::TokenKeys;
use crate::config::ApiConfig;
use crate::hashing::PasswordHasher;
use crate::ratelimit::Limiter;

pub struct App {
    pub config: ApiConfig,
    pub db: DbPool,
    pub tokens: TokenKeys,
    pub hasher: PasswordHasher,
    /// The per-request check that a token's session is live (coalesced).
    pub session_check: SessionCheck,
    pub queues: Queues,
    pub trusted_proxies: Vec<IpNet>,
    pub allowed_origins: Vec<String>,
    pub audit: AuditWriter,
    pub limits: Limiter,
    /// Keyed hash of stored one-time secrets (codes, link tokens).
    pub secrets: gatehouse_shared::keys::SecretHasher,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    /// Push committed outbox entries (from `gatehouse_shared::jobs::enqueue`)
    /// to Redis in the background. A failure only delays the job: the
    /// worker's sweeper relays it later.
    pub fn dispatch(&self, entries: Vec<OutboxEntry>) {
        let state = self.clone();
        tokio::spawn(async move {
            for entry in entries {
                match state.queues.dispatch(&entry).await {
                    Ok(()) => {
                        if let Ok(mut conn) = state.db.get().await {
                            let _ = OutboxEntry::mark_enqueued(&mut conn, entry.id).await;
                        }
                    }
                    Err(e) => {
                        metrics::counter!("gatehouse_outbox_dispatch_failures_total").increment(1);
                        tracing::warn!(error = %e, job = %entry.id, queue = %entry.queue, "job not pushed; the sweeper will relay it");
                    }
                }
            }
        });
    }
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(crate::meters::install).clone()
}
