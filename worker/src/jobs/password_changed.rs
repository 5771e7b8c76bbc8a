//! `SendPasswordChanged`: the notice after a password reset.

use gatehouse_shared::jobs::SendPasswordChanged;
use gatehouse_shared::models::User;
use minijinja::context;

use super::Handler;
use super::notices::{already_done, complete};
use super::verify_email::Outcome;
use crate::mailer::Email;
use crate::state::WorkerState;

impl Handler for SendPasswordChanged {
    async fn run(self, state: &WorkerState) -> anyhow::Result<()> {
        send(&self, state).await.map(|_| ())
    }
}

pub async fn send(job: &SendPasswordChanged, state: &WorkerState) -> anyhow::Result<Outcome> {
    if already_done(state, job.outbox_id).await? {
        return Ok(Outcome::AlreadySent);
    }
    let user = {
        let mut conn = state.db.get().await?;
        User::find(&mut conn, job.user_id).await?
    };
    let outcome = match user {
        None => Outcome::Skipped,
        Some(user) => {
            state
                .mailer
                .send(Email {
                    to: &user.email,
                    subject: "Your Gatehouse password was changed".into(),
                    template: "password_changed",
                    context: context! {},
                })
                .await?;
            Outcome::Sent
        }
    };
    complete(state, job.outbox_id).await?;
    Ok(outcome)
}
