//! `SendEmailChangeConfirm`: a link and a 6-digit code to the new address.

use chrono::{Duration as ChronoDuration, Utc};
use gatehouse_shared::jobs::SendEmailChangeConfirm;
use gatehouse_shared::models::email_change::{self, EmailChange};
use minijinja::context;

use super::Handler;
use super::notices::once;
use super::verify_email::{Outcome, new_code, new_link_token};
use crate::mailer::Email;
use crate::state::WorkerState;

impl Handler for SendEmailChangeConfirm {
    async fn run(self, state: &WorkerState) -> anyhow::Result<()> {
        send(&self, state).await.map(|_| ())
    }
}

pub async fn send(job: &SendEmailChangeConfirm, state: &WorkerState) -> anyhow::Result<Outcome> {
    once(state, job.outbox_id, async {
        let mut conn = state.db.get().await?;
        let Some(change) = EmailChange::find(&mut conn, job.change_id).await? else {
            return Ok(Outcome::Skipped);
        };
        let (token, code) = (new_link_token(), new_code());
        let ttl = ChronoDuration::from_std(state.config.email_change_ttl)?;
        if !EmailChange::set_confirm_secrets(
            &mut conn,
            change.id,
            job.outbox_id,
            &email_change::token_hash(&state.secrets, &token),
            &email_change::code_hash(&state.secrets, change.id, &code),
            Utc::now() + ttl,
        )
        .await?
        {
            // Confirmed, superseded or reverted meanwhile.
            return Ok(Outcome::Skipped);
        }
        let link = format!("{}/email/confirm?token={token}", state.config.public_url);
        state
            .mailer
            .send(Email {
                to: &change.new_email,
                subject: format!("Confirm your new Gatehouse email address: {code}"),
                template: "email_change_confirm",
                context: context! {
                    link => link,
                    code => code,
                    minutes => state.config.email_change_ttl.as_secs() / 60,
                },
            })
            .await?;
        Ok(Outcome::Sent)
    })
    .await
}
