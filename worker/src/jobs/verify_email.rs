//! `SendVerificationEmail`: create a fresh code and link, store their
//! hashes, send one email.

use chrono::{Duration as ChronoDuration, Utc};
use diesel_async::AsyncConnection;
use gatehouse_shared::jobs::SendVerificationEmail;
use gatehouse_shared::models::verification::{self, EmailVerification};
use gatehouse_shared::models::{OutboxEntry, User};
use rand::Rng;

use super::Handler;
use crate::mailer::VerificationEmail;
use crate::state::WorkerState;

impl Handler for SendVerificationEmail {
    async fn run(self, state: &WorkerState) -> anyhow::Result<()> {
        send(&self, state).await.map(|_| ())
    }
}

/// What the job did; the tests assert on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The user is gone, verified, or a newer request superseded this one.
    Skipped,
    /// This job's email already went out (a redelivery).
    AlreadySent,
}

/// A uniform 6-digit code (20 bits of entropy, as ASVS 6.5.x asks).
pub(crate) fn new_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// A 256-bit URL-safe link token.
pub(crate) fn new_link_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// What the transaction decided: send this code and link, or nothing.
enum Prepared {
    Send {
        email: String,
        code: String,
        token: String,
    },
    Done(Outcome),
}

/// Send the email unless the user is gone or verified, a newer request
/// superseded this one, or this job already sent it.
pub async fn send(job: &SendVerificationEmail, state: &WorkerState) -> anyhow::Result<Outcome> {
    let mut conn = state.db.get().await?;
    // Lock the user first (the order every writer of these rows uses, see
    // `EmailVerification::lock`) and decide under that lock: a user verified
    // or purged meanwhile gets nothing (issue 11 item 7).
    let prepared = conn
        .transaction::<_, anyhow::Error, _>(async |conn| {
            let Some(user) = User::lock(conn, job.user_id).await? else {
                tracing::info!(user = %job.user_id, "skipping verification email: user is gone");
                return Ok(Prepared::Done(Outcome::Skipped));
            };
            if user.is_verified {
                return Ok(Prepared::Done(Outcome::Skipped));
            }
            if let Some(existing) = EmailVerification::find(conn, user.id).await? {
                if existing.job_id == job.outbox_id && existing.sent_at.is_some() {
                    return Ok(Prepared::Done(Outcome::AlreadySent));
                }
                if existing.requested_at > job.requested_at {
                    return Ok(Prepared::Done(Outcome::Skipped));
                }
            }
            let code = new_code();
            let token = new_link_token();
            let now = Utc::now();
            let code_ttl = ChronoDuration::from_std(state.config.verify_code_ttl)?;
            let link_ttl = ChronoDuration::from_std(state.config.verify_link_ttl)?;
            let row = EmailVerification {
                user_id: user.id,
                code_hash: verification::code_hash(&state.secrets, user.id, &code),
                code_expires_at: now + code_ttl,
                link_hash: verification::link_hash(&state.secrets, &token),
                link_expires_at: now + link_ttl,
                attempts: 0,
                job_id: job.outbox_id,
                requested_at: job.requested_at,
                sent_at: None,
                created_at: now,
            };
            if !row.replace(conn).await? {
                return Ok(Prepared::Done(Outcome::Skipped));
            }
            Ok(Prepared::Send {
                email: user.email,
                code,
                token,
            })
        })
        .await?;
    let outcome = match prepared {
        Prepared::Done(outcome) => outcome,
        Prepared::Send { email, code, token } => {
            let link = format!("{}/verify?token={token}", state.config.public_url);
            state
                .mailer
                .send_verification(&VerificationEmail {
                    to: &email,
                    code: &code,
                    link: &link,
                    code_minutes: state.config.verify_code_ttl.as_secs() / 60,
                    link_hours: state.config.verify_link_ttl.as_secs() / 3600,
                })
                .await?;
            EmailVerification::mark_sent(&mut conn, job.user_id, job.outbox_id).await?;
            tracing::info!(user = %job.user_id, job = %job.outbox_id, "verification email sent");
            Outcome::Sent
        }
    };
    OutboxEntry::mark_completed(&mut conn, job.outbox_id).await?;
    Ok(outcome)
}
