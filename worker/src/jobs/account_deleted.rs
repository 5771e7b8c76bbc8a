//! `SendAccountDeleted`: the notice after a user deleted their account.

use gatehouse_shared::jobs::SendAccountDeleted;
use minijinja::context;

use super::Handler;
use super::notices::{already_done, complete};
use super::verify_email::Outcome;
use crate::mailer::Email;
use crate::state::WorkerState;

impl Handler for SendAccountDeleted {
    async fn run(self, state: &WorkerState) -> anyhow::Result<()> {
        send(&self, state).await.map(|_| ())
    }
}

pub async fn send(job: &SendAccountDeleted, state: &WorkerState) -> anyhow::Result<Outcome> {
    if already_done(state, job.outbox_id).await? {
        return Ok(Outcome::AlreadySent);
    }
    state
        .mailer
        .send(Email {
            to: &job.email,
            subject: "Your Gatehouse account was deleted".into(),
            template: "account_deleted",
            context: context! {},
        })
        .await?;
    complete(state, job.outbox_id).await?;
    Ok(Outcome::Sent)
}
