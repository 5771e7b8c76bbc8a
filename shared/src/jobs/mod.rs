//! Background jobs: the one abstraction every job goes through.
//!
//! A job type (one file here) is a payload that carries ids, not data, plus
//! an `impl Job` naming its queue and payload version. The worker adds its
//! handler (`gatehouse_worker::jobs::Handler`). [`for_each_job!`] lists every
//! job type once; the dispatch table below and the worker's consumers are
//! both expanded from it, so a job cannot be dispatched without a consumer,
//! nor consumed without being dispatchable.
//!
//! The life of a job:
//! 1. [`enqueue`] inserts its outbox row inside the caller's transaction, so
//!    the job exists if and only if the change that causes it commits;
//! 2. after commit, [`crate::queue::Queues::dispatch`] pushes the row onto
//!    its Redis queue (the API right away, the worker's relay for anything
//!    left behind);
//! 3. the worker runs its handler, at least once; handlers are idempotent
//!    (they re-read the rows and use the outbox id as their key).

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::models::outbox::{NewOutboxEntry, OutboxEntry};

/// One job about one user: the payload struct `{v, outbox_id, user_id,
/// extra fields}`, its `new(user_id, extra fields)` and its `impl Job`
/// (payload version 1, the user's id on the outbox row). The payload shape
/// is exactly that of the hand-written structs it replaced, so jobs already
/// queued still decode. Prefix `detached` when the outbox row must not
/// name the user (the user row is deleted before the job runs).
macro_rules! user_job {
    (
        $(#[$attr:meta])*
        detached $name:ident, $queue:literal $(, $field:ident: $ty:ty)* $(,)?
    ) => {
        user_job!(@impl [$(#[$attr])*] $name, $queue, [$($field: $ty),*], {});
    };
    (
        $(#[$attr:meta])*
        $name:ident, $queue:literal $(, $field:ident: $ty:ty)* $(,)?
    ) => {
        user_job!(@impl [$(#[$attr])*] $name, $queue, [$($field: $ty),*], {
            fn user_id(&self) -> Option<::uuid::Uuid> {
                Some(self.user_id)
            }
        });
    };
    (@impl [$(#[$attr:meta])*] $name:ident, $queue:literal, [$($field:ident: $ty:ty),*], { $($user_id:tt)* }) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        pub struct $name {
            #[serde(default = "crate::jobs::v1")]
            pub v: u16,
            /// The outbox row this job was relayed from (idempotency key).
            pub outbox_id: ::uuid::Uuid,
            pub user_id: ::uuid::Uuid,
            $(pub $field: $ty,)*
        }

        impl $name {
            pub fn new(user_id: ::uuid::Uuid $(, $field: $ty)*) -> Self {
                Self {
                    v: <Self as $crate::jobs::Job>::VERSION,
                    outbox_id: ::uuid::Uuid::now_v7(),
                    user_id,
                    $($field,)*
                }
            }
        }

        impl $crate::jobs::Job for $name {
            const QUEUE: &'static str = $queue;
            const VERSION: u16 = 1;

            fn outbox_id(&self) -> ::uuid::Uuid {
                self.outbox_id
            }

            fn version(&self) -> u16 {
                self.v
            }

            $($user_id)*
        }
    };
}

pub mod account_deleted;
pub mod email_change_confirm;
pub mod email_change_notice;
pub mod password_changed;
pub mod password_reset;
pub mod purge;
pub mod purge_reminder;
pub mod verify_email;

pub use account_deleted::SendAccountDeleted;
pub use email_change_confirm::SendEmailChangeConfirm;
pub use email_change_notice::SendEmailChangeNotice;
pub use password_changed::SendPasswordChanged;
pub use password_reset::SendPasswordReset;
pub use purge::RunPurge;
pub use purge_reminder::SendPurgeReminder;
pub use verify_email::SendVerificationEmail;

/// Every job type, once: adding a job adds one line here. Expands to
/// `$callback!(Type, Type, ...)`; the dispatch table of this crate and the
/// worker's consumers are built from it.
#[macro_export]
macro_rules! for_each_job {
    ($callback:ident) => {
        $callback!(
            $crate::jobs::SendVerificationEmail,
            $crate::jobs::RunPurge,
            $crate::jobs::SendPasswordReset,
            $crate::jobs::SendPasswordChanged,
            $crate::jobs::SendEmailChangeConfirm,
            $crate::jobs::SendEmailChangeNotice,
            $crate::jobs::SendAccountDeleted,
            $crate::jobs::SendPurgeReminder,
        )
    };
}

/// A job payload. Modelled on the package registry's `BackgroundJob`: the
/// type names its queue and payload version; the worker supplies its
/// handler. Payloads carry a `v` field (serde default 1) so a new version
/// can roll out while old jobs are still queued: a handler accepts every
/// version that may still be in Redis. (`Clone`: the worker's retry layer
/// keeps a copy of each attempt's payload.)
pub trait Job: Clone + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    /// The Redis queue, under the namespace (`{namespace}:{QUEUE}`).
    /// Explicit, so renaming the Rust type never strands queued jobs.
    const QUEUE: &'static str;
    /// The payload version new jobs are written with.
    const VERSION: u16;

    /// The outbox row this job is relayed from: its idempotency key.
    fn outbox_id(&self) -> Uuid;

    /// The payload version this job was written with (its `v`).
    fn version(&self) -> u16;

    /// When the job was requested, if its payload says.
    fn requested_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// The user the job is about, if any (per-user cooldowns and caps
    /// read it from the outbox row).
    fn user_id(&self) -> Option<Uuid> {
        None
    }
}

/// Clock difference tolerated between the replica that wrote a job and the
/// one that runs it.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(60);

/// Why a payload is refused without running (issue 11 item 17).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPayload {
    #[error("payload version {found} is not one this worker knows (1..={known})")]
    UnknownVersion { found: u16, known: u16 },
    #[error("{field} is {ahead_secs} s in the future")]
    FromTheFuture {
        field: &'static str,
        ahead_secs: i64,
    },
}

/// Refuse a payload this worker cannot trust: a version newer than it
/// knows (or 0), or a timestamp (`requested_at`, or the time inside the
/// UUIDv7 outbox id) ahead of `now` by more than [`MAX_CLOCK_SKEW`]. A
/// future `requested_at` would otherwise supersede every real request.
pub fn check_payload<J: Job>(
    job: &J,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), BadPayload> {
    let v = job.version();
    if v == 0 || v > J::VERSION {
        return Err(BadPayload::UnknownVersion {
            found: v,
            known: J::VERSION,
        });
    }
    let limit = now + MAX_CLOCK_SKEW;
    let ahead = |field, at: chrono::DateTime<chrono::Utc>| {
        (at > limit).then(|| BadPayload::FromTheFuture {
            field,
            ahead_secs: (at - now).num_seconds(),
        })
    };
    if let Some(e) = job.requested_at().and_then(|at| ahead("requested_at", at)) {
        return Err(e);
    }
    let id_time = job.outbox_id().get_timestamp().and_then(|t| {
        let (secs, nanos) = t.to_unix();
        chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
    });
    if let Some(e) = id_time.and_then(|at| ahead("outbox_id", at)) {
        return Err(e);
    }
    Ok(())
}

/// Insert `job`'s outbox row, inside the caller's transaction when there is
/// one. Dispatch the returned entry after commit.
pub async fn enqueue<J: Job>(conn: &mut AsyncPgConnection, job: &J) -> QueryResult<OutboxEntry> {
    let payload = serde_json::to_value(job)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    NewOutboxEntry {
        id: job.outbox_id(),
        queue: J::QUEUE.into(),
        payload,
        user_id: job.user_id(),
        created_at: chrono::Utc::now(),
    }
    .insert(conn)
    .await
}

/// The Redis queue name under a namespace, e.g. `gatehouse:verify-email`.
pub fn queue_name(namespace: &str, queue: &str) -> String {
    format!("{namespace}:{queue}")
}

/// A job type as the dispatcher sees it: its queue and how to push a
/// stored payload as that type.
pub struct Kind {
    pub queue: &'static str,
    pub(crate) push: crate::queue::PushFn,
}

impl Kind {
    const fn of<J: Job>() -> Self {
        Self {
            queue: J::QUEUE,
            push: crate::queue::push_payload::<J>,
        }
    }
}

macro_rules! kinds {
    ($($job:ty),* $(,)?) => {
        &[$(Kind::of::<$job>()),*]
    };
}

/// Every job type (from [`for_each_job!`]).
pub static KINDS: &[Kind] = for_each_job!(kinds);

/// The job type of a queue, if any.
pub fn kind(queue: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.queue == queue)
}

/// Every queue, in registration order (gauges, the Redis vacuum).
pub fn queues() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.queue)
}

fn v1() -> u16 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_without_version_default_to_v1() {
        let id = Uuid::nil();
        let json = serde_json::json!({
            "outbox_id": id, "user_id": id, "requested_at": "2026-01-01T00:00:00Z"
        });
        let job: SendVerificationEmail = serde_json::from_value(json).expect("parse");
        assert_eq!(job.v, 1);
        assert_eq!(
            queue_name("gh", SendVerificationEmail::QUEUE),
            "gh:verify-email"
        );
    }

    #[test]
    fn payloads_with_unknown_versions_or_future_times_are_refused() {
        let now = chrono::Utc::now();
        let mut job = SendVerificationEmail::new(Uuid::now_v7());
        assert_eq!(check_payload(&job, now), Ok(()));
        job.v = 2;
        assert!(matches!(
            check_payload(&job, now),
            Err(BadPayload::UnknownVersion { found: 2, .. })
        ));
        job.v = 1;
        job.requested_at = now + chrono::Duration::hours(1);
        assert!(matches!(
            check_payload(&job, now),
            Err(BadPayload::FromTheFuture {
                field: "requested_at",
                ..
            })
        ));
        // A little skew is fine.
        job.requested_at = now + chrono::Duration::seconds(5);
        assert_eq!(check_payload(&job, now), Ok(()));
        let mut purge = RunPurge::new(false, None);
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, now.timestamp() as u64 + 3600, 0);
        purge.outbox_id = Uuid::new_v7(ts);
        assert!(matches!(
            check_payload(&purge, now),
            Err(BadPayload::FromTheFuture {
                field: "outbox_id",
                ..
            })
        ));
    }

    /// The `user_job!` payloads keep the shape of the hand-written structs
    /// they replaced: jobs already in Redis or the outbox still decode.
    #[test]
    fn user_job_macro_keeps_the_payload_shape() {
        let (u, o, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let old = serde_json::json!({"outbox_id": o, "user_id": u, "change_id": c});
        let job: SendEmailChangeConfirm = serde_json::from_value(old).expect("parse");
        assert_eq!(
            (job.v, job.outbox_id, job.user_id, job.change_id),
            (1, o, u, c)
        );
        assert_eq!(Job::user_id(&job), Some(u));
        let job = SendPasswordReset::new(u);
        assert_eq!(
            serde_json::to_value(&job).expect("json"),
            serde_json::json!({"v": 1, "outbox_id": job.outbox_id, "user_id": u})
        );
        assert_eq!(
            (SendPasswordReset::QUEUE, SendPasswordReset::VERSION),
            ("password-reset", 1)
        );
        // The deleted user is not named on the outbox row.
        let gone = SendAccountDeleted::new(u, "a@example.com".into());
        assert_eq!(Job::user_id(&gone), None);
        assert_eq!(
            serde_json::to_value(&gone).expect("json"),
            serde_json::json!({"v": 1, "outbox_id": gone.outbox_id, "user_id": u, "email": "a@example.com"})
        );
    }

    #[test]
    fn every_job_has_its_own_queue() {
        let names: Vec<_> = queues().collect();
        assert_eq!(
            names,
            [
                "verify-email",
                "purge",
                "password-reset",
                "password-changed",
                "email-change-confirm",
                "email-change-notice",
                "account-deleted",
                "purge-reminder"
            ]
        );
        assert!(kind("purge").is_some() && kind("nope").is_none());
    }
}
