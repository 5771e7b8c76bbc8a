//! `SendAccountDeleted`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, v1};

/// Tell a user their account was deleted at their request. Unlike the
/// other jobs it carries the address: the user row is gone by the time it
/// runs, and there is nothing left to re-read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAccountDeleted {
    #[serde(default = "v1")]
    pub v: u16,
    /// The outbox row this job was relayed from (idempotency key).
    pub outbox_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
}

impl SendAccountDeleted {
    pub fn new(user_id: Uuid, email: String) -> Self {
        Self {
            v: Self::VERSION,
            outbox_id: Uuid::now_v7(),
            user_id,
            email,
        }
    }
}

impl Job for SendAccountDeleted {
    const QUEUE: &'static str = "account-deleted";
    const VERSION: u16 = 1;

    fn outbox_id(&self) -> Uuid {
        self.outbox_id
    }

    fn version(&self) -> u16 {
        self.v
    }
}
