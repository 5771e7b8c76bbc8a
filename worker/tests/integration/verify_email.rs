use std::time::Duration;

use chrono::Utc;
use gatehouse_shared::models::EmailVerification;
use gatehouse_shared::models::verification::{code_hash, link_hash};
use gatehouse_worker::jobs::verify_email::{self, Outcome};

use crate::common::Ctx;

#[tokio::test(flavor = "multi_thread")]
async fn sends_one_email_whose_code_and_link_match_the_stored_hashes() {
    let ctx = Ctx::new().await;
    let user = ctx.user("ada@example.com", false, Utc::now()).await;
    let job = ctx.verification_job(user).await;
    assert_eq!(
        verify_email::send(&job, &ctx.state).await.unwrap(),
        Outcome::Sent
    );

    let mails = ctx
        .mail
        .wait_for("ada@example.com", 1, Duration::from_secs(5))
        .await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.data.contains("multipart/alternative"), "text + HTML");
    assert!(mail.data.contains("text/html") && mail.data.contains("text/plain"));
    assert!(mail.data.contains("Hello,"));
    assert!(
        !mail.data.contains("Test"),
        "no user-supplied names (first_name) in emails"
    );
    let code = mail.code().unwrap();
    let token = mail.link_token().unwrap();
    assert!(
        mail.data
            .contains(&format!("https://app.example.com/verify?token={token}"))
    );

    let mut conn = ctx.db.conn().await;
    let row = EmailVerification::find(&mut conn, user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.code_hash, code_hash(&ctx.state.secrets, user, &code));
    assert_eq!(row.link_hash, link_hash(&ctx.state.secrets, &token));
    assert!(row.sent_at.is_some());
    let code_ttl = row.code_expires_at - Utc::now();
    assert!(code_ttl > chrono::Duration::minutes(14) && code_ttl <= chrono::Duration::minutes(15));
    let link_ttl = row.link_expires_at - Utc::now();
    assert!(link_ttl > chrono::Duration::hours(23) && link_ttl <= chrono::Duration::hours(24));
    // Neither secret is stored in clear.
    assert!(!row.code_hash.contains(&code) && row.link_hash != token);
    // The outbox entry is complete.
    let entry = gatehouse_shared::models::OutboxEntry::find(&mut conn, job.outbox_id)
        .await
        .unwrap()
        .unwrap();
    assert!(entry.completed_at.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_is_idempotent_and_a_resend_replaces_the_code() {
    let ctx = Ctx::new().await;
    let user = ctx.user("grace@example.com", false, Utc::now()).await;
    let first = ctx.verification_job(user).await;
    assert_eq!(
        verify_email::send(&first, &ctx.state).await.unwrap(),
        Outcome::Sent
    );
    // The same job delivered again sends nothing.
    assert_eq!(
        verify_email::send(&first, &ctx.state).await.unwrap(),
        Outcome::AlreadySent
    );
    assert_eq!(ctx.mail.to("grace@example.com").await.len(), 1);

    let second = ctx.verification_job(user).await;
    assert_eq!(
        verify_email::send(&second, &ctx.state).await.unwrap(),
        Outcome::Sent
    );
    let mails = ctx
        .mail
        .wait_for("grace@example.com", 2, Duration::from_secs(5))
        .await;
    let (old, new) = (mails[0].code().unwrap(), mails[1].code().unwrap());
    let mut conn = ctx.db.conn().await;
    let row = EmailVerification::find(&mut conn, user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.code_hash, code_hash(&ctx.state.secrets, user, &new));
    if old != new {
        assert_ne!(
            row.code_hash,
            code_hash(&ctx.state.secrets, user, &old),
            "the old code is replaced"
        );
    }
    assert_eq!(
        row.link_hash,
        link_hash(&ctx.state.secrets, &mails[1].link_token().unwrap())
    );
    // The older job arriving late does not overwrite the newer code.
    let mut late = first.clone();
    late.outbox_id = uuid::Uuid::now_v7();
    assert_eq!(
        verify_email::send(&late, &ctx.state).await.unwrap(),
        Outcome::Skipped
    );
    assert_eq!(ctx.mail.to("grace@example.com").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_or_verified_users_get_nothing() {
    let ctx = Ctx::new().await;
    let verified = ctx.user("done@example.com", true, Utc::now()).await;
    let job = ctx.verification_job(verified).await;
    assert_eq!(
        verify_email::send(&job, &ctx.state).await.unwrap(),
        Outcome::Skipped
    );
    let gone = ctx.user("gone@example.com", false, Utc::now()).await;
    let job = ctx.verification_job(gone).await;
    let mut conn = ctx.db.conn().await;
    gatehouse_shared::models::User::delete(&mut conn, gone)
        .await
        .unwrap();
    assert_eq!(
        verify_email::send(&job, &ctx.state).await.unwrap(),
        Outcome::Skipped
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ctx.mail.all().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_failure_is_an_error_so_the_job_retries() {
    let port = gatehouse_testkit::free_port().to_string();
    let url = format!("smtp://127.0.0.1:{port}");
    let ctx = Ctx::with(&[("smtp-url", url.as_str())]).await;
    let user = ctx.user("retry@example.com", false, Utc::now()).await;
    let job = ctx.verification_job(user).await;
    assert!(verify_email::send(&job, &ctx.state).await.is_err());
    let mut conn = ctx.db.conn().await;
    let entry = gatehouse_shared::models::OutboxEntry::find(&mut conn, job.outbox_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        entry.completed_at.is_none(),
        "an unsent email is not complete"
    );
}
