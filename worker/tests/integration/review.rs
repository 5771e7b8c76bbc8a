//! Findings of the adversarial review (issue 11) that live in the worker:
//! lock order with the purge, one email per outbox entry, no user text in
//! emails, untrusted payloads. Outage behaviour is in `outages.rs`.

use std::time::Duration;

use apalis::prelude::AbortError;
use chrono::Utc;
use diesel_async::AsyncConnection;
use gatehouse_shared::models::verification::code_hash;
use gatehouse_shared::models::{EmailVerification, OutboxEntry, User};
use gatehouse_testkit::MailSink;
use gatehouse_worker::jobs::verify_email;
use gatehouse_worker::monitor::{JobOutcome, run_job};
use uuid::Uuid;

use crate::common::Ctx;

/// A code row for `user`, as the verification job writes it.
async fn code_row(ctx: &Ctx, user: Uuid, code: &str) {
    let mut conn = ctx.db.conn().await;
    let now = Utc::now();
    let row = EmailVerification {
        user_id: user,
        code_hash: code_hash(&ctx.state.secrets, user, code),
        code_expires_at: now + chrono::Duration::minutes(15),
        link_hash: format!("link-{user}"),
        link_expires_at: now + chrono::Duration::hours(24),
        attempts: 0,
        job_id: Uuid::now_v7(),
        requested_at: now,
        sent_at: Some(now),
        created_at: now,
    };
    assert!(row.replace(&mut conn).await.unwrap());
}

/// The API's code check (`accounts::verify_code`) races the purge of the
/// same stale account. The verification holds its locks for a while
/// (as it does while it compares the code) while the purge deletes. Before
/// the fix the verification locked the code row, then the user; the
/// purge's DELETE locked the user, then (cascade) the code row: PostgreSQL
/// killed one of them with "deadlock detected".
#[tokio::test(flavor = "multi_thread")]
async fn item_7_verify_and_purge_run_concurrently_without_deadlock() {
    let ctx = Ctx::new().await;
    let stale = Utc::now() - chrono::Duration::days(3);
    for round in 0..15 {
        let user = ctx
            .user(&format!("race{round}@example.com"), false, stale)
            .await;
        code_row(&ctx, user, "123456").await;
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel::<()>();
        let verify = async {
            let mut conn = ctx.db.conn().await;
            conn.transaction::<_, diesel::result::Error, _>(async |c| {
                // The same model calls as `accounts::verify_code`.
                let row = EmailVerification::lock(c, user).await?;
                let _ = locked_tx.send(());
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(_row) = row else {
                    return Ok(false);
                };
                EmailVerification::spend_code(c, user).await?;
                Ok(User::mark_verified(c, user).await?.is_some())
            })
            .await
        };
        let purge = async {
            let _ = locked_rx.await;
            gatehouse_worker::jobs::purge::purge(&ctx.state, false).await
        };
        let (verified, purged) = tokio::join!(verify, purge);
        let verified = verified.unwrap_or_else(|e| panic!("round {round}: verify failed: {e}"));
        let purged = purged.unwrap_or_else(|e| panic!("round {round}: purge failed: {e:#}"));
        // The verification held the user first: it wins, and the purge,
        // re-checking `is_verified` on the row it waited for, keeps the
        // account.
        assert!(verified, "round {round}");
        assert_eq!(purged.users, 0, "round {round}");
        let user = ctx
            .find_user(user)
            .await
            .expect("the verified user is kept");
        assert!(user.is_verified);
    }
}

/// Redis delivered the same job twice (a push that timed out but landed,
/// plus the relay's push). Both deliveries run at once against a slow mail
/// server: one wins the outbox claim and sends; the other sends nothing.
/// Before the fix both sent, and the first code no longer worked.
#[tokio::test(flavor = "multi_thread")]
async fn item_8_the_same_job_delivered_twice_at_once_sends_one_email() {
    let mail = MailSink::start_with_delay(Duration::from_millis(500)).await;
    let url = mail.url();
    let ctx = Ctx::with(&[("smtp-url", url.as_str())]).await;
    let user = ctx.user("twice@example.com", false, Utc::now()).await;
    let job = ctx.verification_job(user).await;
    let (a, b) = tokio::join!(
        run_job(job.clone(), &ctx.state),
        run_job(job.clone(), &ctx.state)
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o == JobOutcome::Duplicate);
    assert_eq!(outcomes, [JobOutcome::Ran, JobOutcome::Duplicate]);
    // A third, late delivery finds the entry completed.
    assert_eq!(
        run_job(job.clone(), &ctx.state).await.unwrap(),
        JobOutcome::Duplicate
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mails = mail.to("twice@example.com").await;
    assert_eq!(mails.len(), 1, "exactly one email");
    // The code in that email is the stored one: it works.
    let mut conn = ctx.db.conn().await;
    let row = EmailVerification::find(&mut conn, user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.code_hash,
        code_hash(&ctx.state.secrets, user, &mails[0].code().unwrap())
    );
    let entry = OutboxEntry::find(&mut conn, job.outbox_id)
        .await
        .unwrap()
        .unwrap();
    assert!(entry.completed_at.is_some());
    assert!(entry.claimed_by.unwrap().starts_with(&ctx.state.name));
}

/// A failed attempt gives its claim back: the retry runs at once instead of
/// waiting for the lease to expire.
#[tokio::test(flavor = "multi_thread")]
async fn item_8_a_failed_attempt_releases_its_claim() {
    let port = gatehouse_testkit::free_port().to_string();
    let url = format!("smtp://127.0.0.1:{port}");
    let ctx = Ctx::with(&[("smtp-url", url.as_str())]).await;
    let user = ctx.user("release@example.com", false, Utc::now()).await;
    let job = ctx.verification_job(user).await;
    assert!(run_job(job.clone(), &ctx.state).await.is_err());
    let mut conn = ctx.db.conn().await;
    let entry = OutboxEntry::find(&mut conn, job.outbox_id)
        .await
        .unwrap()
        .unwrap();
    assert!(entry.claimed_at.is_none() && entry.completed_at.is_none());
    // The retry is not taken for a duplicate: it runs (and fails again).
    assert!(run_job(job, &ctx.state).await.is_err());
}

/// A first name holding a phishing message is stored, but no email shows
/// it: emails carry no user-supplied text.
#[tokio::test(flavor = "multi_thread")]
async fn item_13_a_phishing_name_never_reaches_the_email() {
    let ctx = Ctx::new().await;
    let user = ctx.user("victim@example.com", false, Utc::now()).await;
    let name = "Your account is locked. Visit https://evil.example/unlock now";
    let mut conn = ctx.db.conn().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE users SET first_name = $1 WHERE id = $2")
            .bind::<diesel::sql_types::Text, _>(name)
            .bind::<diesel::sql_types::Uuid, _>(user),
        &mut conn,
    )
    .await
    .unwrap();
    let job = ctx.verification_job(user).await;
    assert_eq!(
        verify_email::send(&job, &ctx.state).await.unwrap(),
        verify_email::Outcome::Sent
    );
    let mail = ctx
        .mail
        .wait_for("victim@example.com", 1, Duration::from_secs(5))
        .await
        .remove(0);
    for fragment in ["evil.example", "account is locked", "Visit"] {
        assert!(
            !mail.data.contains(fragment),
            "{fragment:?} is in the email:\n{}",
            mail.data
        );
    }
    assert!(mail.code().is_some(), "the email still carries its code");
}

/// Payloads are not trusted: an unknown version, or a `requested_at` in
/// the future (which would supersede every real request), is refused
/// without running: no email, no code row, the entry not claimed. The
/// error is an `AbortError`, so apalis does not retry it (the job goes to
/// the dead set).
#[tokio::test(flavor = "multi_thread")]
async fn item_17_unknown_versions_and_future_timestamps_are_refused() {
    let ctx = Ctx::new().await;
    let user = ctx.user("forged@example.com", false, Utc::now()).await;
    let mut conn = ctx.db.conn().await;

    let mut newer = ctx.verification_job(user).await;
    newer.v = 2;
    let mut future = ctx.verification_job(user).await;
    future.requested_at = Utc::now() + chrono::Duration::days(365);
    for job in [newer, future] {
        let err = run_job(job.clone(), &ctx.state).await.unwrap_err();
        assert!(err.downcast_ref::<AbortError>().is_some(), "{err}");
        let entry = OutboxEntry::find(&mut conn, job.outbox_id)
            .await
            .unwrap()
            .unwrap();
        assert!(entry.claimed_at.is_none() && entry.completed_at.is_none());
    }
    // A job with no outbox entry (forged in Redis) is refused too.
    let mut stray = ctx.verification_job(user).await;
    stray.outbox_id = Uuid::now_v7();
    let err = run_job(stray, &ctx.state).await.unwrap_err();
    assert!(err.downcast_ref::<AbortError>().is_some(), "{err}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ctx.mail.all().await.is_empty(), "nothing was sent");
    assert!(
        EmailVerification::find(&mut conn, user)
            .await
            .unwrap()
            .is_none()
    );
}
