//! `SendPasswordReset`: make a single-use 256-bit token, store its keyed
//! hash on the user's current reset, email the link.

use chrono::{Duration as ChronoDuration, Utc};
use gatehouse_shared::jobs::SendPasswordReset;
use gatehouse_shared::models::User;
use gatehouse_shared::models::password_reset::{self, PasswordReset};
use minijinja::context;

use super::Handler;
use super::notices::{already_done, complete};
use super::verify_email::{Outcome, new_link_token};
use crate::mailer::Email;
use crate::state::WorkerState;

impl Handler for SendPasswordReset {
    async fn run(self, state: &WorkerState) -> anyhow::Result<()> {
        send(&self, state).await.map(|_| ())
    }
}

/// Send the reset email unless the user is gone, a newer request replaced
/// this one, or this job already sent it.
pub async fn send(job: &SendPasswordReset, state: &WorkerState) -> anyhow::Result<Outcome> {
    if already_done(state, job.outbox_id).await? {
        return Ok(Outcome::AlreadySent);
    }
    let outcome = async {
        let mut conn = state.db.get().await?;
        let Some(user) = User::find(&mut conn, job.user_id).await? else {
            tracing::info!(user = %job.user_id, "skipping password reset: user is gone");
            return Ok(Outcome::Skipped);
        };
        let token = new_link_token();
        let ttl = ChronoDuration::from_std(state.config.password_reset_ttl)?;
        let hash = password_reset::token_hash(&state.secrets, &token);
        if !PasswordReset::set_token(&mut conn, user.id, job.outbox_id, &hash, Utc::now() + ttl)
            .await?
        {
            // A newer request replaced this reset (its own job emails it).
            return Ok(Outcome::Skipped);
        }
        let link = format!("{}/reset-password?token={token}", state.config.public_url);
        state
            .mailer
            .send(Email {
                to: &user.email,
                subject: "Reset your Gatehouse password".into(),
                template: "password_reset",
                context: context! {
                    link => link,
                    minutes => state.config.password_reset_ttl.as_secs() / 60,
                },
            })
            .await?;
        PasswordReset::mark_sent(&mut conn, user.id, job.outbox_id).await?;
        tracing::info!(user = %user.id, job = %job.outbox_id, "password reset email sent");
        Ok::<_, anyhow::Error>(Outcome::Sent)
    }
    .await?;
    complete(state, job.outbox_id).await?;
    Ok(outcome)
}
