//! The worker binary against a private Redis that the tests stop, stall
//! and restart empty (issue 11 items 12, 20, 21, 22, 23).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use gatehouse_shared::models::OutboxEntry;
use gatehouse_shared::schema::job_runs;
use gatehouse_testkit::process::Proc;
use gatehouse_testkit::{PrivateRedis, eventually};
use serde_json::Value;

use crate::common::Ctx;

fn addr_of(env: &[(&'static str, String)]) -> String {
    env.iter()
        .find(|(k, _)| *k == "WORKER_ADDR")
        .map(|(_, v)| v.clone())
        .unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let res = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    Some((status, res.json().await.ok()?))
}

/// Health counts each worker once, whatever its restarts: after Redis
/// restarts it reports exactly the consumers and timers it runs (it said
/// 14 for 3 before), a consumer that is down turns readiness red, and
/// liveness stays green through the outage.
#[tokio::test(flavor = "multi_thread")]
async fn item_12_health_tracks_each_workers_real_state_across_redis_restarts() {
    let ctx = Ctx::new().await;
    let mut redis = PrivateRedis::start();
    let env = ctx.worker_env(&[("REDIS_URL", &redis.url())]);
    let base = format!("http://{}", addr_of(&env));
    let _worker = Proc::spawn("gatehouse-worker", &env);
    let client = reqwest::Client::new();
    let ready = format!("{base}/health/ready");
    let live = format!("{base}/health/live");
    // 2 consumers (verify-email, purge) + 2 timers (purge, key rotation).
    let expected = gatehouse_shared::jobs::KINDS.len() as u64 + 2;

    let body = eventually(Duration::from_secs(30), "ready", || async {
        let (status, body) = get(&client, &ready).await?;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body["live_workers"], expected);
    assert_eq!(body["expected_workers"], expected);

    for round in 0..3 {
        redis.down();
        let body = eventually(
            Duration::from_secs(20),
            "consumers down while Redis is",
            || async {
                let (status, body) = get(&client, &ready).await?;
                (status == 503 && body["checks"]["workers"] == "down").then_some(body)
            },
        )
        .await;
        assert!(body["live_workers"].as_u64().unwrap() < expected, "{body}");
        let (status, _) = get(&client, &live).await.unwrap();
        assert_eq!(status, 200, "liveness ignores Redis");
        tokio::time::sleep(Duration::from_secs(2)).await;

        redis.up();
        eventually(
            Duration::from_secs(30),
            "ready after the restart",
            || async {
                let (status, _) = get(&client, &ready).await?;
                (status == 200).then_some(())
            },
        )
        .await;
        for _ in 0..5 {
            let (_, body) = get(&client, &ready).await.unwrap();
            assert_eq!(body["live_workers"], expected, "round {round}: {body}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Every counter exists from the first scrape, at 0, for every queue, and
/// every metric has HELP text.
#[tokio::test(flavor = "multi_thread")]
async fn item_20_every_counter_is_present_at_zero_from_the_first_scrape() {
    let ctx = Ctx::new().await;
    let env = ctx.worker_env(&[]);
    let base = format!("http://{}", addr_of(&env));
    let _worker = Proc::spawn("gatehouse-worker", &env);
    let client = reqwest::Client::new();
    let text = eventually(Duration::from_secs(30), "metrics", || async {
        let res = client.get(format!("{base}/metrics")).send().await.ok()?;
        res.text().await.ok()
    })
    .await;
    for queue in gatehouse_shared::jobs::queues() {
        for name in [
            "gatehouse_jobs_done_total",
            "gatehouse_jobs_failed_total",
            "gatehouse_jobs_retried_total",
            "gatehouse_jobs_rejected_total",
            "gatehouse_jobs_duplicates_total",
        ] {
            let line = format!("{name}{{queue=\"{queue}\"}} 0");
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }
    for line in [
        "gatehouse_outbox_relayed_total 0",
        "gatehouse_outbox_recovered_total 0",
        "gatehouse_purge_rows_total{kind=\"users\"} 0",
        "gatehouse_purge_runs_total{status=\"failed\",dry_run=\"false\"} 0",
        "gatehouse_purge_last_success_timestamp_seconds 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    // HELP and TYPE for every family.
    let families: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for family in families {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
    }
}

/// Ticks of the scheduled purge recorded in `job_runs`.
async fn purge_ticks(ctx: &Ctx) -> Vec<DateTime<Utc>> {
    let mut conn = ctx.db.conn().await;
    job_runs::table
        .filter(job_runs::job.eq("purge"))
        .filter(job_runs::trigger.eq("schedule"))
        .select(job_runs::scheduled_for.assume_not_null())
        .order(job_runs::scheduled_for.asc())
        .load(&mut conn)
        .await
        .unwrap()
}

/// The scheduled purge needs only PostgreSQL: with Redis down, every tick
/// runs exactly once across two replicas, none late; a worker started
/// during the outage runs the ticks on its own once the other stops.
#[tokio::test(flavor = "multi_thread")]
async fn item_21_the_scheduled_purge_runs_every_tick_while_redis_is_down() {
    let ctx = Ctx::new().await;
    let mut redis = PrivateRedis::start();
    let schedule = [
        ("REDIS_URL", redis.url()),
        ("PURGE_SCHEDULE", "*/2 * * * * *".into()),
    ];
    let schedule: Vec<(&str, &str)> = schedule.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first_env = ctx.worker_env(&schedule);
    let mut first = Proc::spawn("gatehouse-worker", &first_env);
    eventually(Duration::from_secs(30), "a first run", || async {
        (!purge_ticks(&ctx).await.is_empty()).then_some(())
    })
    .await;

    redis.down();
    let outage = Utc::now();
    // A second replica started during the outage.
    let second_env = ctx.worker_env(&schedule);
    let mut second = Proc::spawn("gatehouse-worker", &second_env);
    tokio::time::sleep(Duration::from_secs(8)).await;
    first.signal("TERM");
    first.wait().await;
    let alone = Utc::now();
    tokio::time::sleep(Duration::from_secs(7)).await;

    let ticks: Vec<_> = purge_ticks(&ctx)
        .await
        .into_iter()
        .filter(|t| *t > outage)
        .collect();
    // Exactly one run per tick (the unique index), and no tick missed.
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(2),
            "a tick was missed: {ticks:?}"
        );
    }
    assert!(ticks.len() >= 6, "{ticks:?}");
    // Runs started on time (not 24 s late), and the worker started during
    // the outage ran the ticks after the first one stopped.
    let mut conn = ctx.db.conn().await;
    let runs: Vec<(DateTime<Utc>, DateTime<Utc>, String)> = job_runs::table
        .filter(job_runs::job.eq("purge"))
        .filter(job_runs::scheduled_for.gt(alone))
        .select((
            job_runs::scheduled_for.assume_not_null(),
            job_runs::started_at,
            job_runs::status,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert!(runs.len() >= 2, "{runs:?}");
    for (tick, started, status) in &runs {
        assert_eq!(status, "succeeded");
        assert!(
            *started - *tick < chrono::Duration::seconds(2),
            "late run: {runs:?}"
        );
    }
    second.signal("TERM");
    assert!(second.wait().await.success());
}

/// Jobs pushed into Redis that restarts empty before any worker takes them
/// are pushed again within seconds of Redis coming back, not after
/// `OUTBOX_REDELIVER_AFTER` (10 minutes here, as in production).
#[tokio::test(flavor = "multi_thread")]
async fn item_22_emails_lost_with_a_redis_restart_arrive_within_seconds() {
    let ctx = Ctx::new().await;
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let env = ctx.worker_env(&[("REDIS_URL", &url), ("OUTBOX_REDELIVER_AFTER", "10m")]);
    let base = format!("http://{}", addr_of(&env));
    let worker = Proc::spawn("gatehouse-worker", &env);
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), "ready", || async {
        let (status, _) = get(&client, &format!("{base}/health/ready")).await?;
        (status == 200).then_some(())
    })
    .await;
    // Let its relay see Redis once.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Freeze the worker, push jobs it cannot take, and lose them.
    worker.signal("STOP");
    let queues = {
        let args = gatehouse_testkit::isolated_args(
            "gatehouse-worker",
            &ctx.db,
            &ctx.namespace,
            &[
                ("jwt-secret", crate::common::E2E_SECRET),
                // A published fixture secret; this state only pushes jobs.
                ("dev-allow-known-secrets", "true"),
                // Only its queues are used: it sends nothing.
                ("mail-transport", "log"),
            ],
            &[("redis-url", url.as_str())],
        );
        let config =
            <gatehouse_worker::config::WorkerConfig as clap::Parser>::try_parse_from(args).unwrap();
        gatehouse_worker::build_state(config).unwrap()
    };
    let mut emails = Vec::new();
    for i in 0..4 {
        let email = format!("lost{i}@example.com");
        let user = ctx.user(&email, false, Utc::now()).await;
        let job = ctx.verification_job(user).await;
        let mut conn = ctx.db.conn().await;
        let entry = OutboxEntry::find(&mut conn, job.outbox_id)
            .await
            .unwrap()
            .unwrap();
        queues.queues.dispatch(&entry).await.unwrap();
        OutboxEntry::mark_enqueued(&mut conn, entry.id)
            .await
            .unwrap();
        emails.push(email);
    }
    redis.down();
    redis.up();
    worker.signal("CONT");
    let back = Instant::now();
    for email in &emails {
        ctx.mail.wait_for(email, 1, Duration::from_secs(60)).await;
    }
    assert!(
        back.elapsed() < Duration::from_secs(30),
        "took {:?}",
        back.elapsed()
    );
    // One email each, and every entry completed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for email in &emails {
        assert_eq!(ctx.mail.to(email).await.len(), 1, "{email}");
    }
    let mut conn = ctx.db.conn().await;
    assert_eq!(OutboxEntry::pending_count(&mut conn).await.unwrap(), 0);
}

/// SIGTERM ends the worker within `SHUTDOWN_TIMEOUT` while Redis is down,
/// and while it is stalled (it kept restarting its consumers for 45 s
/// before).
#[tokio::test(flavor = "multi_thread")]
async fn item_23_sigterm_exits_within_the_shutdown_timeout_whatever_redis_does() {
    let ctx = Ctx::new().await;
    for stalled in [false, true] {
        let mut redis = PrivateRedis::start();
        let env = ctx.worker_env(&[("REDIS_URL", &redis.url()), ("SHUTDOWN_TIMEOUT", "3s")]);
        let base = format!("http://{}", addr_of(&env));
        let mut worker = Proc::spawn("gatehouse-worker", &env);
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(30), "ready", || async {
            let (status, _) = get(&client, &format!("{base}/health/ready")).await?;
            (status == 200).then_some(())
        })
        .await;
        if stalled {
            redis.pause();
        } else {
            redis.down();
        }
        // Long enough for consumers to fail and restart a few times.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let start = Instant::now();
        worker.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(10), worker.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit 10 s after SIGTERM (stalled: {stalled})"));
        let took = start.elapsed();
        assert!(status.success(), "{status:?}");
        // SHUTDOWN_TIMEOUT plus the 2 s grace of the HTTP port and relay.
        assert!(
            took < Duration::from_secs(6),
            "took {took:?} (stalled: {stalled})"
        );
        redis.resume();
    }
}
