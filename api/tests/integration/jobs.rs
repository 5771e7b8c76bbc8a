//! Admin jobs: purge requests through the outbox, and the purge history.

use crate::common::{TestApp, ids, json_ok, problem};
use gatehouse_shared::models::{OutboxEntry, PurgeRun};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn purge_requests_are_queued_through_the_outbox() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let post = |body: Option<&'static str>, content_type: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url("/admin/jobs/purge"))
            .bearer_auth(&root.access);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        req.send()
    };
    let mut conn = app.db.conn().await;
    for (body, ct, dry_run) in [
        (None, None, false),
        (Some(""), Some("application/json"), false),
        (Some("{}"), Some("application/json"), false),
        (Some(r#"{"dry_run": true}"#), Some("application/json"), true),
        (
            Some(r#"{"dry_run": false}"#),
            Some("application/json"),
            false,
        ),
    ] {
        let res = post(body, ct).await.unwrap();
        let v = json_ok(res, StatusCode::ACCEPTED).await;
        let run_id: Uuid = v["run_id"].as_str().unwrap().parse().unwrap();
        let entry = OutboxEntry::find(&mut conn, run_id).await.unwrap().unwrap();
        assert_eq!(entry.queue, "purge");
        assert_eq!(entry.payload["dry_run"], dry_run, "{body:?}");
        assert_eq!(entry.payload["outbox_id"], run_id.to_string());
        assert_eq!(entry.payload["requested_by"], root.user_id.to_string());
    }
    for (body, ct, status, code) in [
        (
            r#"{"dry_run": "yes"}"#,
            "application/json",
            422,
            "validation_failed",
        ),
        (
            r#"{"force": true}"#,
            "application/json",
            422,
            "validation_failed",
        ),
        ("{", "application/json", 400, "malformed_json"),
        (
            "dry_run=true",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
    ] {
        let res = post(Some(body), Some(ct)).await.unwrap();
        problem(res, StatusCode::from_u16(status).unwrap(), code).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_history_is_listed_newest_first() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let mut conn = app.db.conn().await;
    let tick = chrono::Utc::now() - chrono::Duration::hours(1);
    let scheduled = PurgeRun::start(
        "schedule",
        Some(tick),
        false,
        "worker-a",
        None,
        Uuid::now_v7(),
    );
    assert!(scheduled.claim(&mut conn).await.unwrap());
    let counts = gatehouse_shared::models::purge_run::PurgeCounts {
        users: 3,
        sessions: 5,
        codes: 7,
        reminders: 0,
    };
    PurgeRun::finish(&mut conn, scheduled.id, counts, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let manual = PurgeRun::start(
        "manual",
        None,
        true,
        "worker-b",
        Some(root.user_id),
        Uuid::now_v7(),
    );
    assert!(manual.claim(&mut conn).await.unwrap());

    let v = json_ok(
        app.get_auth("/admin/jobs/runs", &root.access).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["total"], 2);
    assert_eq!(ids(&v), vec![manual.id, scheduled.id]);
    let running = &v["items"][0];
    assert_eq!(running["trigger"], "manual");
    assert_eq!(running["status"], "running");
    assert_eq!(running["dry_run"], true);
    assert_eq!(running["scheduled_for"], Value::Null);
    assert_eq!(running["finished_at"], Value::Null);
    assert_eq!(running["error"], Value::Null);
    assert_eq!(running["requested_by"], root.user_id.to_string());
    assert_eq!(running["worker"], "worker-b");
    let done = &v["items"][1];
    assert_eq!(done["status"], "succeeded");
    // Runs of every scheduled job are listed; these are purges (their
    // details count the purge reminders they queued).
    assert_eq!(
        (done["job"].as_str(), &done["details"]),
        (Some("purge"), &serde_json::json!({"reminders_queued": 0}))
    );
    assert_eq!(done["requested_by"], Value::Null);
    assert_eq!(
        (
            done["users_deleted"].as_i64(),
            done["sessions_deleted"].as_i64(),
            done["codes_deleted"].as_i64()
        ),
        (Some(3), Some(5), Some(7))
    );
    for field in ["scheduled_for", "started_at", "finished_at"] {
        let t = done[field].as_str().unwrap();
        assert!(t.ends_with('Z'), "{field}: {t}");
        chrono::DateTime::parse_from_rfc3339(t).unwrap();
    }
    let mut keys: Vec<&str> = done
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "codes_deleted",
            "details",
            "dry_run",
            "error",
            "finished_at",
            "id",
            "job",
            "requested_by",
            "scheduled_for",
            "sessions_deleted",
            "started_at",
            "status",
            "trigger",
            "users_deleted",
            "worker",
        ]
    );
    let v = json_ok(
        app.get_auth("/admin/jobs/runs?limit=1&offset=1", &root.access)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&v), vec![scheduled.id]);
    assert_eq!(v["total"], 2);
    let v = json_ok(
        app.get_auth("/admin/jobs/runs?offset=9", &root.access)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (v["items"].as_array().unwrap().len(), v["total"].as_i64()),
        (0, Some(2))
    );
}
