//! `RunPurge`: an admin's on-demand purge. (The scheduled purge is a cron
//! tick in the worker, not a queued job.)

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, v1};

/// Run the purge now (admin request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPurge {
    #[serde(default = "v1")]
    pub v: u16,
    /// The outbox row; also the id of the recorded run.
    pub outbox_id: Uuid,
    pub dry_run: bool,
    pub requested_by: Option<Uuid>,
}

impl RunPurge {
    pub fn new(dry_run: bool, requested_by: Option<Uuid>) -> Self {
        Self {
            v: Self::VERSION,
            outbox_id: Uuid::now_v7(),
            dry_run,
            requested_by,
        }
    }
}

impl Job for RunPurge {
    const QUEUE: &'static str = "purge";
    const VERSION: u16 = 1;

    fn outbox_id(&self) -> Uuid {
        self.outbox_id
    }

    fn version(&self) -> u16 {
        self.v
    }

    fn user_id(&self) -> Option<Uuid> {
        self.requested_by
    }
}
