//! The lifecycle emails (issue 13 item 6) through the real SMTP listener,
//! and the purge reminder (item 7).

use std::time::Duration;

use chrono::Utc;
use gatehouse_shared::jobs::{
    self, Job, SendAccountDeleted, SendEmailChangeConfirm, SendEmailChangeNotice,
    SendPasswordChanged, SendPasswordReset, SendPurgeReminder,
};
use gatehouse_shared::models::PasswordReset;
use gatehouse_shared::models::email_change::{self, EmailChange, NewEmailChange};
use gatehouse_shared::models::password_reset::token_hash as reset_token_hash;
use gatehouse_shared::models::verification::{self, EmailVerification};
use gatehouse_shared::models::{AuditAction, AuditEvent, AuditFilter, OutboxEntry, PageRequest};
use gatehouse_testkit::ReceivedMail;
use gatehouse_worker::jobs::verify_email::Outcome;
use gatehouse_worker::jobs::{
    account_deleted, email_change_confirm, email_change_notice, password_changed, password_reset,
    purge, purge_reminder,
};
use uuid::Uuid;

use crate::common::Ctx;

/// Write `job`'s outbox row (as the API does) and return it.
async fn enqueued<J: Job>(ctx: &Ctx, job: J) -> J {
    let mut conn = ctx.db.conn().await;
    let entry = jobs::enqueue(&mut conn, &job).await.unwrap();
    serde_json::from_value(entry.payload).unwrap()
}

async fn one_mail(ctx: &Ctx, to: &str) -> ReceivedMail {
    let mails = ctx.mail.wait_for(to, 1, Duration::from_secs(5)).await;
    assert_eq!(mails.len(), 1, "one email to {to}");
    let mail = mails.into_iter().next().unwrap();
    assert_eq!(mail.to, vec![to.to_owned()]);
    assert!(mail.data.contains("text/plain") && mail.data.contains("text/html"));
    assert!(
        !mail.data.contains("Test"),
        "no user-supplied names in emails"
    );
    mail
}

async fn completed(ctx: &Ctx, outbox_id: Uuid) -> bool {
    let mut conn = ctx.db.conn().await;
    OutboxEntry::find(&mut conn, outbox_id)
        .await
        .unwrap()
        .unwrap()
        .completed_at
        .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_reset_email_carries_a_single_use_link_whose_hash_is_stored() {
    let ctx = Ctx::new().await;
    let user = ctx.user("reset@example.com", true, Utc::now()).await;
    let job = SendPasswordReset::new(user);
    {
        let mut conn = ctx.db.conn().await;
        PasswordReset::request(&mut conn, user, job.outbox_id)
            .await
            .unwrap();
    }
    let job = enqueued(&ctx, job).await;
    assert_eq!(
        password_reset::send(&job, &ctx.state).await.unwrap(),
        Outcome::Sent
    );
    let mail = one_mail(&ctx, "reset@example.com").await;
    let token = mail.link_token().unwrap();
    assert!(mail.data.contains(&format!(
        "https://app.example.com/reset-password?token={token}"
    )));
    assert!(mail.data.contains("30 minutes"));
    let mut conn = ctx.db.conn().await;
    let row = PasswordReset::find(&mut conn, user).await.unwrap().unwrap();
    assert_eq!(
        row.token_hash.as_deref(),
        Some(reset_token_hash(&ctx.state.secrets, &token).as_str())
    );
    assert!(row.sent_at.is_some() && completed(&ctx, job.outbox_id).await);
    let ttl = row.expires_at.unwrap() - Utc::now();
    assert!(ttl > chrono::Duration::minutes(29) && ttl <= chrono::Duration::minutes(30));
    // A redelivery sends nothing more; a superseded job sends nothing.
    assert_eq!(
        password_reset::send(&job, &ctx.state).await.unwrap(),
        Outcome::AlreadySent
    );
    let newer = SendPasswordReset::new(user);
    PasswordReset::request(&mut conn, user, newer.outbox_id)
        .await
        .unwrap();
    let stale = enqueued(&ctx, SendPasswordReset::new(user)).await;
    assert_eq!(
        password_reset::send(&stale, &ctx.state).await.unwrap(),
        Outcome::Skipped
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ctx.mail.to("reset@example.com").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_password_changed_and_account_deleted_notices() {
    let ctx = Ctx::new().await;
    let user = ctx.user("notice@example.com", true, Utc::now()).await;
    let job = enqueued(&ctx, SendPasswordChanged::new(user)).await;
    assert_eq!(
        password_changed::send(&job, &ctx.state).await.unwrap(),
        Outcome::Sent
    );
    let mail = one_mail(&ctx, "notice@example.com").await;
    assert!(
        mail.data
            .contains("password of your Gatehouse account was just changed")
    );
    assert!(mail.link_token().is_none(), "a notice carries no token");
    assert_eq!(
        password_changed::send(&job, &ctx.state).await.unwrap(),
        Outcome::AlreadySent
    );

    let job = enqueued(
        &ctx,
        SendAccountDeleted::new(Uuid::now_v7(), "gone@example.com".into()),
    )
    .await;
    assert_eq!(
        account_deleted::send(&job, &ctx.state).await.unwrap(),
        Outcome::Sent
    );
    let mail = one_mail(&ctx, "gone@example.com").await;
    assert!(mail.data.contains("deleted at your request"));
    assert!(completed(&ctx, job.outbox_id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_email_change_confirm_goes_to_the_new_address_and_the_notice_to_the_old() {
    let ctx = Ctx::new().await;
    let user = ctx.user("before@example.com", true, Utc::now()).await;
    let change_id = Uuid::now_v7();
    let confirm = SendEmailChangeConfirm::new(user, change_id);
    let notice = SendEmailChangeNotice::new(user, change_id);
    {
        let mut conn = ctx.db.conn().await;
        NewEmailChange {
            id: change_id,
            user_id: user,
            old_email: "before@example.com".into(),
            new_email: "after@example.com".into(),
            confirm_job_id: confirm.outbox_id,
            notice_job_id: notice.outbox_id,
        }
        .insert(&mut conn)
        .await
        .unwrap();
    }
    let confirm = enqueued(&ctx, confirm).await;
    let notice = enqueued(&ctx, notice).await;
    assert_eq!(
        email_change_confirm::send(&confirm, &ctx.state)
            .await
            .unwrap(),
        Outcome::Sent
    );
    assert_eq!(
        email_change_notice::send(&notice, &ctx.state)
            .await
            .unwrap(),
        Outcome::Sent
    );
    let to_new = one_mail(&ctx, "after@example.com").await;
    let token = to_new.link_token().unwrap();
    let code = to_new.code().unwrap();
    assert!(to_new.data.contains(&format!(
        "https://app.example.com/email/confirm?token={token}"
    )));
    let to_old = one_mail(&ctx, "before@example.com").await;
    let revert = to_old.link_token().unwrap();
    assert!(to_old.data.contains(&format!(
        "https://app.example.com/email/revert?token={revert}"
    )));
    assert!(to_old.data.contains("within 7 days"));
    assert!(!to_old.data.contains(&token) && !to_new.data.contains(&revert));
    let mut conn = ctx.db.conn().await;
    let row = EmailChange::find(&mut conn, change_id)
        .await
        .unwrap()
        .unwrap();
    let s = &ctx.state.secrets;
    assert_eq!(row.token_hash.unwrap(), email_change::token_hash(s, &token));
    assert_eq!(
        row.code_hash.unwrap(),
        email_change::code_hash(s, change_id, &code)
    );
    assert_eq!(
        row.revert_hash.unwrap(),
        email_change::revert_hash(s, &revert)
    );
    // Redeliveries send nothing more.
    assert_eq!(
        email_change_confirm::send(&confirm, &ctx.state)
            .await
            .unwrap(),
        Outcome::AlreadySent
    );
    assert_eq!(
        email_change_notice::send(&notice, &ctx.state)
            .await
            .unwrap(),
        Outcome::AlreadySent
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_purge_reminder_carries_a_fresh_verification_link() {
    let ctx = Ctx::new().await;
    let user = ctx.user("late@example.com", false, Utc::now()).await;
    let job = enqueued(&ctx, SendPurgeReminder::new(user)).await;
    assert_eq!(
        purge_reminder::send(&job, &ctx.state).await.unwrap(),
        Outcome::Sent
    );
    let mail = one_mail(&ctx, "late@example.com").await;
    let token = mail.link_token().unwrap();
    let code = mail.code().unwrap();
    assert!(
        mail.data
            .contains(&format!("https://app.example.com/verify?token={token}"))
    );
    assert!(
        mail.data
            .contains("within 24 hours or the account and its data are deleted")
    );
    let mut conn = ctx.db.conn().await;
    let row = EmailVerification::find(&mut conn, user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.link_hash,
        verification::link_hash(&ctx.state.secrets, &token)
    );
    assert_eq!(
        row.code_hash,
        verification::code_hash(&ctx.state.secrets, user, &code)
    );
    assert_eq!(
        purge_reminder::send(&job, &ctx.state).await.unwrap(),
        Outcome::AlreadySent
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn item_7_the_purge_reminds_each_due_account_exactly_once() {
    let ctx = Ctx::new().await;
    let hours = |h: i64| Utc::now() - chrono::Duration::hours(h);
    // UNVERIFIED_TTL 48 h, lead 24 h: due = created 24..48 h ago.
    let due = ctx.user("due@example.com", false, hours(30)).await;
    let fresh = ctx.user("fresh@example.com", false, hours(2)).await;
    let verified = ctx.user("fine@example.com", true, hours(30)).await;
    let expired = ctx.user("expired@example.com", false, hours(50)).await;

    // Three workers at once, then a later run: one reminder in total.
    let cutoff = Utc::now() - chrono::Duration::hours(48);
    let (a, b, c) = tokio::join!(
        purge::remind(&ctx.state, cutoff),
        purge::remind(&ctx.state, cutoff),
        purge::remind(&ctx.state, cutoff)
    );
    assert_eq!(a.unwrap() + b.unwrap() + c.unwrap(), 1);
    let run = purge::run_scheduled(&ctx.state, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.details.unwrap()["reminders_queued"], 0);
    assert_eq!(run.users_deleted, 1, "the expired account is purged");
    let mut conn = ctx.db.conn().await;
    let entries: Vec<serde_json::Value> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use gatehouse_shared::schema::outbox;
        outbox::table
            .filter(outbox::queue.eq(SendPurgeReminder::QUEUE))
            .select(outbox::payload)
            .load(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["user_id"], due.to_string());
    assert!(ctx.find_user(due).await.unwrap().reminded_at.is_some());
    for id in [fresh, verified] {
        assert!(ctx.find_user(id).await.unwrap().reminded_at.is_none());
    }
    assert!(ctx.find_user(expired).await.is_none());

    // A run that queues a reminder records it.
    let other = ctx.user("due2@example.com", false, hours(40)).await;
    let run = purge::run_scheduled(&ctx.state, Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.details.unwrap()["reminders_queued"], 1);
    let job: SendPurgeReminder = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use gatehouse_shared::schema::outbox;
        let payloads: Vec<serde_json::Value> = outbox::table
            .filter(outbox::queue.eq(SendPurgeReminder::QUEUE))
            .filter(outbox::user_id.eq(Some(other)))
            .select(outbox::payload)
            .load(&mut conn)
            .await
            .unwrap();
        assert_eq!(payloads.len(), 1);
        serde_json::from_value(payloads[0].clone()).unwrap()
    };
    // Sending it is audited.
    purge_reminder::send(&job, &ctx.state).await.unwrap();
    let events = AuditEvent::list(
        &mut conn,
        &AuditFilter {
            user_id: Some(other),
            action: Some(AuditAction::PurgeReminderSent),
        },
        PageRequest {
            limit: 10,
            offset: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(events.items.len(), 1);
}
