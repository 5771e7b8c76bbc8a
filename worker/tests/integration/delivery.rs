//! Nothing is lost: a worker killed mid-batch, and Redis down at signup.

use std::time::Duration;

use chrono::Utc;
use gatehouse_shared::models::OutboxEntry;
use gatehouse_testkit::process::Proc;
use gatehouse_testkit::{MailSink, PrivateRedis, eventually};

use crate::common::Ctx;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_batch_still_delivers_every_email() {
    let mut ctx = Ctx::new().await;
    // A slow mail server keeps jobs in flight when the worker dies.
    ctx.mail = MailSink::start_with_delay(Duration::from_millis(300)).await;
    let n = 12;
    let mut emails = Vec::new();
    for i in 0..n {
        let email = format!("k{i}@example.com");
        let user = ctx.user(&email, false, Utc::now()).await;
        let job = ctx.verification_job(user).await;
        let mut conn = ctx.db.conn().await;
        let entry = OutboxEntry::find(&mut conn, job.outbox_id)
            .await
            .unwrap()
            .unwrap();
        ctx.state.queues.dispatch(&entry).await.unwrap();
        OutboxEntry::mark_enqueued(&mut conn, entry.id)
            .await
            .unwrap();
        emails.push(email);
    }
    // The dead worker's claims expire with their lease (JOB_TIMEOUT + 5 s);
    // a short limit keeps the test short.
    let env = ctx.worker_env(&[("WORKER_CONCURRENCY", "3"), ("JOB_TIMEOUT", "5s")]);
    let mut first = Proc::spawn("gatehouse-worker", &env);
    eventually(Duration::from_secs(20), "the first email", || async {
        (!ctx.mail.all().await.is_empty()).then_some(())
    })
    .await;
    first.signal("KILL");
    first.wait().await;
    let delivered_before = ctx.mail.all().await.len();
    assert!(
        delivered_before < n,
        "the kill happened mid-batch ({delivered_before} of {n} sent)"
    );

    let mut second = Proc::spawn("gatehouse-worker", &env);
    for email in &emails {
        ctx.mail.wait_for(email, 1, Duration::from_secs(45)).await;
    }
    // Every outbox entry ends completed (marked right after each send).
    eventually(
        Duration::from_secs(20),
        "all outbox entries completed",
        || async {
            let mut conn = ctx.db.conn().await;
            (OutboxEntry::pending_count(&mut conn).await.unwrap() == 0).then_some(())
        },
    )
    .await;
    second.signal("TERM");
    assert!(second.wait().await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_during_signup_still_ends_in_a_delivered_email() {
    let ctx = Ctx::new().await;
    let mut redis = PrivateRedis::start();
    let mut env = ctx.worker_env(&[("REDIS_URL", &redis.url())]);
    env.push(("RUST_LOG", "info".into()));
    let _worker = Proc::spawn("gatehouse-worker", &env);
    let (_api, base) = crate::common::spawn_api(&ctx, &redis.url()).await;
    let client = reqwest::Client::new();

    redis.down();
    let res = client
        .post(format!("{base}/auth/signup"))
        .json(&serde_json::json!({"email": "offline@example.com", "password": "a long enough passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "signup succeeds while Redis is down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(ctx.mail.to("offline@example.com").await.is_empty());

    redis.up();
    let mails = ctx
        .mail
        .wait_for("offline@example.com", 1, Duration::from_secs(40))
        .await;
    assert!(mails[0].code().is_some());
}
