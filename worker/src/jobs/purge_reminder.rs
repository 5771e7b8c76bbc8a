//! `SendPurgeReminder`: one email, a lead time before the purge, with a
//! fresh verification link (and code). Queued by the scheduled purge run
//! (see `purge::remind`), once per account.

use chrono::{Duration as ChronoDuration, Utc};
use gatehouse_shared::jobs::SendPurgeReminder;
use gatehouse_shared::models::verification::{self, EmailVerification};
use gatehouse_shared::models::{AuditAction, AuditEvent, User};
use minijinja::context;

use super::Handler;
use super::notices::{already_done, complete};
use super::verify_email::{Outcome, new_code, new_link_token};
use crate::mailer::Email;
use crate::state::WorkerState;

impl Handler for SendPurgeReminder {
    async fn run(self, state: &WorkerState) -> anyhow::Result<()> {
        send(&self, state).await.map(|_| ())
    }
}

pub async fn send(job: &SendPurgeReminder, state: &WorkerState) -> anyhow::Result<Outcome> {
    if already_done(state, job.outbox_id).await? {
        return Ok(Outcome::AlreadySent);
    }
    let outcome = async {
        let mut conn = state.db.get().await?;
        let Some(user) = User::find(&mut conn, job.user_id)
            .await?
            .filter(|u| !u.is_verified)
        else {
            // Verified or purged meanwhile: nothing to remind.
            return Ok(Outcome::Skipped);
        };
        let (code, token) = (new_code(), new_link_token());
        let now = Utc::now();
        let row = EmailVerification {
            user_id: user.id,
            code_hash: verification::code_hash(&state.secrets, user.id, &code),
            code_expires_at: now + ChronoDuration::from_std(state.config.verify_code_ttl)?,
            link_hash: verification::link_hash(&state.secrets, &token),
            link_expires_at: now + ChronoDuration::from_std(state.config.verify_link_ttl)?,
            attempts: 0,
            job_id: job.outbox_id,
            requested_at: now,
            sent_at: None,
            created_at: now,
        };
        if !row.replace(&mut conn).await? {
            return Ok(Outcome::Skipped);
        }
        let link = format!("{}/verify?token={token}", state.config.public_url);
        let hours = state.config.purge_reminder_lead.as_secs().div_ceil(3600);
        state
            .mailer
            .send(Email {
                to: &user.email,
                subject: format!("Verify your email within {hours} hours: code {code}"),
                template: "purge_reminder",
                context: context! { link => link, hours => hours },
            })
            .await?;
        EmailVerification::mark_sent(&mut conn, user.id, job.outbox_id).await?;
        AuditEvent::new(AuditAction::PurgeReminderSent)
            .subject(user.id)
            .details(serde_json::json!({"job": job.outbox_id}))
            .insert(&mut conn)
            .await?;
        metrics::counter!("gatehouse_purge_reminders_sent_total").increment(1);
        Ok::<_, anyhow::Error>(Outcome::Sent)
    }
    .await?;
    complete(state, job.outbox_id).await?;
    Ok(outcome)
}
