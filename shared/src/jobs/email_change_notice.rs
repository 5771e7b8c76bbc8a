//! `SendEmailChangeNotice`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, v1};

/// Tell the old address that a change was requested, with a revert link valid 7 days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendEmailChangeNotice {
    #[serde(default = "v1")]
    pub v: u16,
    /// The outbox row this job was relayed from (idempotency key).
    pub outbox_id: Uuid,
    pub user_id: Uuid,
    pub change_id: Uuid,
}

impl SendEmailChangeNotice {
    pub fn new(user_id: Uuid, change_id: Uuid) -> Self {
        Self {
            v: Self::VERSION,
            outbox_id: Uuid::now_v7(),
            user_id,
            change_id,
        }
    }
}

impl Job for SendEmailChangeNotice {
    const QUEUE: &'static str = "email-change-notice";
    const VERSION: u16 = 1;

    fn outbox_id(&self) -> Uuid {
        self.outbox_id
    }

    fn version(&self) -> u16 {
        self.v
    }

    fn user_id(&self) -> Option<Uuid> {
        Some(self.user_id)
    }
}
