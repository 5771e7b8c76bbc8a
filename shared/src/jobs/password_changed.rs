//! `SendPasswordChanged`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, v1};

/// Tell a user their password was changed (after a reset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendPasswordChanged {
    #[serde(default = "v1")]
    pub v: u16,
    /// The outbox row this job was relayed from (idempotency key).
    pub outbox_id: Uuid,
    pub user_id: Uuid,
}

impl SendPasswordChanged {
    pub fn new(user_id: Uuid) -> Self {
        Self {
            v: Self::VERSION,
            outbox_id: Uuid::now_v7(),
            user_id,
        }
    }
}

impl Job for SendPasswordChanged {
    const QUEUE: &'static str = "password-changed";
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
