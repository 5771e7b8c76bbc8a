//! `SendEmailChangeNotice`: tell the old address, with a revert link.

use gatehouse_shared::jobs::SendEmailChangeNotice;
use gatehouse_shared::models::email_change::{self, EmailChange, REVERT_DAYS};
use minijinja::context;

use super::Handler;
use super::notices::once;
use super::verify_email::{Outcome, new_link_token};
use crate::mailer::Email;
use crate::state::WorkerState;

impl Handler for SendEmailChangeNotice {
    async fn run(self, state: &WorkerState) -> anyhow::Result<()> {
        send(&self, state).await.map(|_| ())
    }
}

pub async fn send(job: &SendEmailChangeNotice, state: &WorkerState) -> anyhow::Result<Outcome> {
    once(state, job.outbox_id, async {
        let mut conn = state.db.get().await?;
        let Some(change) = EmailChange::find(&mut conn, job.change_id).await? else {
            return Ok(Outcome::Skipped);
        };
        let token = new_link_token();
        let hash = email_change::revert_hash(&state.secrets, &token);
        if !EmailChange::set_revert_secret(&mut conn, change.id, job.outbox_id, &hash).await? {
            return Ok(Outcome::Skipped);
        }
        let link = format!("{}/email/revert?token={token}", state.config.public_url);
        state
            .mailer
            .send(Email {
                to: &change.old_email,
                subject: "Your Gatehouse email address is being changed".into(),
                template: "email_change_notice",
                context: context! { link => link, days => REVERT_DAYS },
            })
            .await?;
        Ok(Outcome::Sent)
    })
    .await
}
