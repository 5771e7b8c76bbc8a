use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use diesel_async::RunQueryDsl;
use gatehouse_shared::models::{NewSession, PageRequest, PurgeRun, Session};
use gatehouse_testkit::process::Proc;
use gatehouse_worker::jobs::purge;
use uuid::Uuid;

use crate::common::Ctx;

async fn expired_session(ctx: &Ctx, user: Uuid) -> Uuid {
    let mut conn = ctx.db.conn().await;
    NewSession {
        id: Uuid::now_v7(),
        user_id: user,
        refresh_jti: Uuid::new_v4(),
        expires_at: Utc::now() - ChronoDuration::minutes(1),
        user_agent: None,
        ip: None,
    }
    .insert(&mut conn)
    .await
    .unwrap()
    .id
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_exactly_the_stale_unverified_rows_and_is_idempotent() {
    // A small batch size exercises the batching loop.
    let ctx = Ctx::with(&[("purge-batch-size", "2")]).await;
    let old = Utc::now() - ChronoDuration::hours(49);
    let young = Utc::now() - ChronoDuration::hours(47);
    let mut stale = Vec::new();
    for i in 0..5 {
        stale.push(ctx.user(&format!("stale{i}@example.com"), false, old).await);
    }
    let fresh = ctx.user("fresh@example.com", false, young).await;
    let old_verified = ctx.user("kept@example.com", true, old).await;
    let dead_session = expired_session(&ctx, old_verified).await;

    // A dry run counts and deletes nothing.
    let counts = purge::purge(&ctx.state, true).await.unwrap();
    assert_eq!((counts.users, counts.sessions), (5, 1));
    assert!(ctx.find_user(stale[0]).await.is_some());

    let counts = purge::purge(&ctx.state, false).await.unwrap();
    assert_eq!(counts.users, 5);
    assert_eq!(counts.sessions, 1);
    for id in &stale {
        assert!(ctx.find_user(*id).await.is_none());
    }
    assert!(ctx.find_user(fresh).await.is_some());
    assert!(ctx.find_user(old_verified).await.is_some());
    let mut conn = ctx.db.conn().await;
    assert!(
        Session::lock(&mut conn, dead_session)
            .await
            .unwrap()
            .is_none()
    );

    let again = purge::purge(&ctx.state, false).await.unwrap();
    assert_eq!((again.users, again.sessions, again.codes), (0, 0, 0));
    assert!(ctx.find_user(fresh).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_run_per_tick_among_concurrent_replicas() {
    let ctx = Ctx::new().await;
    ctx.user(
        "x@example.com",
        false,
        Utc::now() - ChronoDuration::hours(72),
    )
    .await;
    let tick = Utc::now();
    let (a, b, c) = tokio::join!(
        purge::run_scheduled(&ctx.state, tick),
        purge::run_scheduled(&ctx.state, tick),
        purge::run_scheduled(&ctx.state, tick),
    );
    let runs: Vec<PurgeRun> = [a, b, c].into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(runs.len(), 1, "exactly one replica runs the tick");
    let run = &runs[0];
    assert_eq!(run.status, "succeeded");
    assert_eq!(run.users_deleted, 1);
    assert_eq!(run.trigger, "schedule");
    assert!(run.finished_at.is_some());
    let mut conn = ctx.db.conn().await;
    assert_eq!(
        PurgeRun::list(
            &mut conn,
            PageRequest {
                limit: 50,
                offset: 0
            }
        )
        .await
        .unwrap()
        .total,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requested_runs_are_recorded_and_dry_runs_delete_nothing() {
    let ctx = Ctx::new().await;
    let stale = ctx
        .user(
            "old@example.com",
            false,
            Utc::now() - ChronoDuration::hours(72),
        )
        .await;
    let mut conn = ctx.db.conn().await;
    let entry = gatehouse_shared::jobs::enqueue(
        &mut conn,
        &gatehouse_shared::jobs::RunPurge::new(true, None),
    )
    .await
    .unwrap();
    let job: gatehouse_shared::jobs::RunPurge = serde_json::from_value(entry.payload).unwrap();
    let run = purge::run_requested(&ctx.state, &job)
        .await
        .unwrap()
        .unwrap();
    assert!(run.dry_run);
    assert_eq!(
        run.users_deleted, 1,
        "a dry run reports what it would delete"
    );
    assert!(ctx.find_user(stale).await.is_some());
    // Delivered twice: recorded once.
    assert!(
        purge::run_requested(&ctx.state, &job)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        PurgeRun::last_success(&mut conn).await.unwrap(),
        None,
        "a dry run is not a successful purge"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_worker_processes_record_one_run_per_tick() {
    let ctx = Ctx::new().await;
    // Each replica gets its own health port (worker_env picks a free one).
    let mut workers: Vec<Proc> = (0..3)
        .map(|_| {
            Proc::spawn(
                "gatehouse-worker",
                &ctx.worker_env(&[("PURGE_SCHEDULE", "*/2 * * * * *")]),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(9)).await;
    for w in &workers {
        w.signal("TERM");
    }
    for w in &mut workers {
        assert!(
            w.wait().await.success(),
            "{} exits cleanly on SIGTERM",
            w.name
        );
    }
    let mut conn = ctx.db.conn().await;
    #[derive(diesel::QueryableByName, Debug)]
    struct Tick {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let ticks: Vec<Tick> = diesel::sql_query(
        "SELECT count(*) AS n FROM purge_runs WHERE trigger = 'schedule' GROUP BY scheduled_for",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(ticks.len() >= 2, "several ticks fired: {ticks:?}");
    assert!(
        ticks.iter().all(|t| t.n == 1),
        "one run per tick: {ticks:?}"
    );
    let runs = PurgeRun::list(
        &mut conn,
        PageRequest {
            limit: 50,
            offset: 0,
        },
    )
    .await
    .unwrap();
    assert!(
        runs.items
            .iter()
            .all(|r| r.status == "succeeded" && r.users_deleted == 0)
    );
}
