//! The audit log: an event for every kind of authentication and admin
//! action, with actor, subject, details and client IP; the admin listing;
//! and (ignored by default) the cost of recording.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use gatehouse_shared::domain::Role;
use gatehouse_shared::models::{AuditAction, AuditEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{PASSWORD, TestApp, Tokens, problem};

/// Events of one action for one user (actor or subject), newest first.
async fn events(app: &TestApp, admin: &Tokens, user: Option<Uuid>, action: &str) -> Vec<Value> {
    app.flush_audit().await;
    let mut path = format!("/admin/audit?action={action}&limit=200");
    if let Some(user) = user {
        path.push_str(&format!("&user_id={user}"));
    }
    let res = app.get_auth(&path, &admin.access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    v["items"].as_array().unwrap().clone()
}

async fn one_event(app: &TestApp, admin: &Tokens, user: Option<Uuid>, action: &str) -> Value {
    let mut found = events(app, admin, user, action).await;
    assert_eq!(found.len(), 1, "{action} for {user:?}: {found:?}");
    let event = found.remove(0);
    assert_eq!(event["action"], action);
    assert!(event["occurred_at"].as_str().unwrap().ends_with('Z'));
    assert!(event["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    event
}

/// The one `action` event of `user` acting on their own account, from the
/// test client's address.
async fn own_event(app: &TestApp, admin: &Tokens, user: Uuid, action: &str) -> Value {
    let e = one_event(app, admin, Some(user), action).await;
    assert_eq!(
        (uuid(&e["actor_id"]), uuid(&e["subject_id"])),
        (Some(user), Some(user))
    );
    assert_eq!(e["ip"], "127.0.0.1");
    e
}

fn uuid(v: &Value) -> Option<Uuid> {
    v.as_str().map(|s| s.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_events_are_recorded_with_ip() {
    let app = TestApp::spawn().await;
    let admin = app.admin("auditor@example.com").await;

    // signup
    let signed: Value = app.signup("ada@example.com").await;
    let ada = uuid(&signed["id"]).unwrap();
    own_event(&app, &admin, ada, "signup").await;

    // login_failed before verification (correct password)
    let res = app
        .post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let e = one_event(&app, &admin, Some(ada), "login_failed").await;
    assert_eq!(e["actor_id"], Value::Null);
    assert_eq!(uuid(&e["subject_id"]), Some(ada));
    assert_eq!(e["details"]["reason"], "email_not_verified");

    // email_verified, by code; a repeat records nothing new
    app.issue_verification(
        ada,
        "123456",
        &"k".repeat(64),
        chrono::Duration::minutes(15),
    )
    .await;
    for _ in 0..2 {
        let res = app
            .post(
                "/auth/verify",
                json!({"email": "ada@example.com", "code": "123456"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let e = one_event(&app, &admin, Some(ada), "email_verified").await;
    assert_eq!(
        (uuid(&e["actor_id"]), uuid(&e["subject_id"])),
        (Some(ada), Some(ada))
    );
    assert_eq!(e["details"]["method"], "code");
    assert_eq!(e["ip"], "127.0.0.1");

    // login
    let t = app.login("ada@example.com", PASSWORD).await;
    own_event(&app, &admin, ada, "login").await;

    // login_failed: wrong password of a known account
    let res = app
        .post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": "not my password"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let failed = events(&app, &admin, Some(ada), "login_failed").await;
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["details"]["reason"], "wrong_password");
    assert_eq!(uuid(&failed[0]["subject_id"]), Some(ada));

    // refresh (rotation), then a replay of a spent token
    let r2 = refresh(&app, &t.refresh).await;
    let _r3 = refresh(&app, &r2).await;
    let e = events(&app, &admin, Some(ada), "refresh").await;
    assert_eq!(e.len(), 2);
    assert_eq!(e[0]["ip"], "127.0.0.1");
    assert_eq!(uuid(&e[0]["actor_id"]), Some(ada));
    let res = app
        .post("/auth/refresh", json!({"refresh_token": t.refresh}))
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let e = one_event(&app, &admin, Some(ada), "refresh_reuse_detected").await;
    assert_eq!(e["actor_id"], Value::Null);
    assert_eq!(uuid(&e["subject_id"]), Some(ada));
    assert!(uuid(&e["details"]["session_id"]).is_some());
    assert_eq!(e["ip"], "127.0.0.1");

    // logout, then logout of every session
    let t = app.login("ada@example.com", PASSWORD).await;
    let res = app.post_auth("/auth/logout", &t.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let e = one_event(&app, &admin, Some(ada), "logout").await;
    assert_eq!(e["details"]["sessions_revoked"], 1);
    assert_eq!(e["ip"], "127.0.0.1");
    let t = app.login("ada@example.com", PASSWORD).await;
    app.login("ada@example.com", PASSWORD).await;
    let res = app.post_auth("/auth/logout?scope=all", &t.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let e = one_event(&app, &admin, Some(ada), "logout_all").await;
    assert_eq!(e["details"]["sessions_revoked"], 2);
    assert_eq!(
        (uuid(&e["actor_id"]), uuid(&e["subject_id"])),
        (Some(ada), Some(ada))
    );
}

async fn refresh(app: &TestApp, token: &str) -> String {
    let res = app
        .post("/auth/refresh", json!({"refresh_token": token}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    v["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_email_failures_keep_only_a_hash() {
    let app = TestApp::spawn().await;
    let admin = app.admin("auditor@example.com").await;
    let secret = "hunter2 but longer";
    let res = app
        .post(
            "/auth/login",
            json!({"email": " Nobody@Example.com", "password": secret}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let e = one_event(&app, &admin, None, "login_failed").await;
    assert_eq!(e["actor_id"], Value::Null);
    assert_eq!(e["subject_id"], Value::Null);
    assert_eq!(e["details"]["reason"], "unknown_email");
    assert_eq!(
        e["details"]["email_hash"],
        gatehouse_shared::sha256_hex(b"nobody@example.com")
    );
    assert_eq!(e["ip"], "127.0.0.1");
    let text = e.to_string();
    assert!(
        !text.contains(secret) && !text.contains("password"),
        "{text}"
    );
    assert!(!text.contains("nobody@example.com"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn link_verification_is_recorded_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin("auditor@example.com").await;
    let id = uuid(&app.signup("link@example.com").await["id"]).unwrap();
    let token = "L".repeat(64);
    app.issue_verification(id, "654321", &token, chrono::Duration::minutes(15))
        .await;
    for _ in 0..2 {
        let res = app.post("/auth/verify", json!({"token": token})).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let e = one_event(&app, &admin, Some(id), "email_verified").await;
    assert_eq!(e["details"]["method"], "link");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_ip_comes_from_trusted_proxies_only() {
    let app = TestApp::spawn_with(&[("trusted-proxies", "127.0.0.1/32")]).await;
    let admin = app.admin("auditor@example.com").await;
    let id = app
        .insert_user("proxied@example.com", Role::User, true)
        .await;
    let res = app
        .login_from("proxied@example.com", PASSWORD, "203.0.113.7")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let e = one_event(&app, &admin, Some(id), "login").await;
    assert_eq!(e["ip"], "203.0.113.7");

    // Without trust, the header is ignored.
    let app = TestApp::spawn().await;
    let admin = app.admin("auditor@example.com").await;
    let id = app
        .insert_user("direct@example.com", Role::User, true)
        .await;
    let res = app
        .login_from("direct@example.com", PASSWORD, "203.0.113.7")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let e = one_event(&app, &admin, Some(id), "login").await;
    assert_eq!(e["ip"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_changes_are_recorded_in_their_transaction() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    let id = app
        .insert_user("target@example.com", Role::User, false)
        .await;
    let path = format!("/users/{id}");

    let res = app
        .patch_auth(
            &path,
            &admin.access,
            json!({"first_name": "Tess", "role": "admin", "is_verified": true, "email": "tess@example.com"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Written with the change: visible without flushing the writer.
    let res = app
        .get_auth(
            &format!("/admin/audit?action=user_updated&user_id={id}"),
            &admin.access,
        )
        .await;
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["total"], 1);
    let e = &v["items"][0];
    assert_eq!(uuid(&e["actor_id"]), Some(admin.user_id));
    assert_eq!(uuid(&e["subject_id"]), Some(id));
    assert_eq!(e["ip"], "127.0.0.1");
    let d = &e["details"];
    assert_eq!(
        d["fields"],
        json!(["first_name", "email", "role", "is_verified"])
    );
    assert_eq!(d["role"], json!({"old": "user", "new": "admin"}));
    assert_eq!(d["is_verified"], json!({"old": false, "new": true}));
    assert_eq!(
        d["email"],
        json!({"old": "target@example.com", "new": "tess@example.com"})
    );
    assert!(
        d.get("first_name").is_none(),
        "names are listed, not copied"
    );

    // A refused change records nothing; a no-op change records nothing.
    let lonely = app.session_for(id).await;
    let res = app
        .delete_auth(&format!("/users/{}", admin.user_id), &admin.access)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .patch_auth(&path, &lonely.access, json!({"role": "user"}))
        .await;
    problem(res, StatusCode::CONFLICT, "last_admin").await;
    let res = app
        .patch_auth(&path, &lonely.access, json!({"first_name": "Tess"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let updates = events(&app, &lonely, Some(id), "user_updated").await;
    assert_eq!(updates.len(), 1);

    // user_deleted: the deleted admin is the subject, the survivor can read it.
    let e = one_event(&app, &lonely, Some(admin.user_id), "user_deleted").await;
    assert_eq!(uuid(&e["actor_id"]), Some(admin.user_id));
    assert_eq!(uuid(&e["subject_id"]), Some(admin.user_id));
    assert_eq!(e["details"]["email"], "root@example.com");
    assert_eq!(e["details"]["role"], "admin");

    // purge_requested
    let res = app
        .client
        .post(app.url("/admin/jobs/purge"))
        .bearer_auth(&lonely.access)
        .json(&json!({"dry_run": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let run_id = uuid(&res.json::<Value>().await.unwrap()["run_id"]).unwrap();
    let e = one_event(&app, &lonely, Some(id), "purge_requested").await;
    assert_eq!(uuid(&e["actor_id"]), Some(id));
    assert_eq!(e["subject_id"], Value::Null);
    assert_eq!(uuid(&e["details"]["run_id"]), Some(run_id));
    assert_eq!(e["details"]["dry_run"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_list_filters_pages_and_validates() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    let a = app.insert_user("a@example.com", Role::User, true).await;
    let b = app.insert_user("b@example.com", Role::User, true).await;
    for (user, name) in [(a, "A1"), (b, "B1"), (a, "A2")] {
        let res = app
            .patch_auth(
                &format!("/users/{user}"),
                &admin.access,
                json!({"first_name": name}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    app.flush_audit().await;
    let get = async |query: &str| -> Value {
        let res = app
            .get_auth(&format!("/admin/audit{query}"), &admin.access)
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{query}");
        res.json().await.unwrap()
    };
    // Newest first; the admin's login is there too.
    let all = get("").await;
    let actions: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["user_updated", "user_updated", "user_updated", "login"]
    );
    assert_eq!(all["total"], 4);
    let times: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    // By subject, by actor.
    let only_a = get(&format!("?user_id={a}")).await;
    assert_eq!(only_a["total"], 2);
    assert!(
        only_a["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| uuid(&e["subject_id"]) == Some(a))
    );
    assert_eq!(
        get(&format!("?user_id={}", admin.user_id)).await["total"],
        4
    );
    assert_eq!(
        get(&format!("?user_id={}", Uuid::now_v7())).await["total"],
        0
    );
    // By action, combined, paged.
    assert_eq!(get("?action=login").await["total"], 1);
    assert_eq!(get("?action=user_deleted").await["total"], 0);
    let page = get(&format!(
        "?action=user_updated&user_id={a}&limit=1&offset=1"
    ))
    .await;
    assert_eq!(
        (page["total"].as_i64(), page["limit"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(page["items"][0]["details"]["fields"], json!(["first_name"]));
    let past = get("?offset=50").await;
    assert_eq!(
        (
            past["items"].as_array().unwrap().len(),
            past["total"].as_i64()
        ),
        (0, Some(4))
    );

    for (query, field) in [
        ("action=hacked", "action"),
        ("user_id=42", "user_id"),
        ("limit=500", "limit"),
        ("actor=me", "actor"),
    ] {
        let res = app
            .get_auth(&format!("/admin/audit?{query}"), &admin.access)
            .await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], field, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_action_round_trips_through_the_table() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    for action in AuditAction::ALL {
        app.state
            .audit
            .record(AuditEvent::new(action).subject(admin.user_id));
    }
    for action in AuditAction::ALL {
        let found = events(&app, &admin, Some(admin.user_id), action.as_str()).await;
        assert!(!found.is_empty(), "{}", action.as_str());
    }
    assert_eq!(app.state.audit.dropped(), 0);
}

// ---------------------------------------------------------------------------
// Cost of recording (ignored by default; run with
// `cargo test -p gatehouse-api --test integration audit::bench -- --ignored --nocapture`)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_enqueue_path() {
    let app = TestApp::spawn().await;
    let audit = &app.state.audit;
    let template = AuditEvent::new(AuditAction::Refresh)
        .by_self(Uuid::now_v7())
        .ip(Some("203.0.113.7".into()))
        .details(json!({"session_id": Uuid::now_v7()}));
    let build = || {
        let mut e = template.clone();
        e.id = Uuid::now_v7();
        e.occurred_at = Utc::now();
        e
    };
    // Below the queue capacity: what one request pays. Rounds of 5,000
    // with a flush in between so the queue never fills.
    let n = 5_000u32;
    for round in 0..3 {
        let events: Vec<AuditEvent> = (0..n).map(|_| build()).collect();
        let started = Instant::now();
        for e in events {
            audit.record(e);
        }
        let send = started.elapsed();
        let started = Instant::now();
        for _ in 0..n {
            audit.record(build());
        }
        let build_and_send = started.elapsed();
        let started = Instant::now();
        audit.flush().await;
        println!(
            "round {round}: record() {:.0} ns/event; build + record() {:.0} ns/event; \
             writer drained {} events in {:?}",
            send.as_nanos() as f64 / f64::from(n),
            build_and_send.as_nanos() as f64 / f64::from(n),
            2 * n,
            started.elapsed(),
        );
    }
    assert_eq!(audit.dropped(), 0);
    // A burst far beyond the queue: the request path still never waits;
    // the excess is dropped and counted.
    let burst = 100_000u32;
    let started = Instant::now();
    for _ in 0..burst {
        audit.record(build());
    }
    let elapsed = started.elapsed();
    audit.flush().await;
    println!(
        "burst of {burst}: {:.0} ns/event, dropped {} (queue capacity {})",
        elapsed.as_nanos() as f64 / f64::from(burst),
        audit.dropped(),
        gatehouse_api::audit::writer::QUEUE_CAPACITY,
    );
}

/// The same app state without an audit writer, served on its own port.
async fn unaudited_server(app: &TestApp) -> String {
    let state = gatehouse_api::build_state(app.state.config.clone()).unwrap();
    let Ok(mut inner) = Arc::try_unwrap(state.0) else {
        panic!("state shared")
    };
    inner.audit = gatehouse_api::audit::AuditWriter::disabled();
    let state = gatehouse_api::state::AppState(Arc::new(inner));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = gatehouse_api::serve(state, listener, std::future::pending()).await;
    });
    base
}

async fn refresh_loop(
    client: &reqwest::Client,
    base: &str,
    mut token: String,
    n: usize,
) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let res = client
            .post(format!("{base}/auth/refresh"))
            .json(&json!({"refresh_token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let v: Value = res.json().await.unwrap();
        token = v["refresh_token"].as_str().unwrap().to_owned();
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_refresh_with_and_without_audit() {
    let app = TestApp::spawn_with(&[("rate-limits", "off"), ("db-pool-size", "8")]).await;
    let plain = unaudited_server(&app).await;
    let id = app.insert_user("bench@example.com", Role::User, true).await;
    let n = 2000;
    // Warm up both servers, then alternate to spread noise evenly.
    refresh_loop(
        &app.client,
        &app.base,
        app.session_for(id).await.refresh,
        100,
    )
    .await;
    refresh_loop(&app.client, &plain, app.session_for(id).await.refresh, 100).await;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        on.push(refresh_loop(&app.client, &app.base, app.session_for(id).await.refresh, n).await);
        app.flush_audit().await;
        off.push(refresh_loop(&app.client, &plain, app.session_for(id).await.refresh, n).await);
    }
    let per = |d: &Duration| d.as_secs_f64() * 1e6 / n as f64;
    let fmt = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", per(d)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!("{n} sequential POST /auth/refresh, µs per request (3 rounds):");
    println!("  audited:   {}", fmt(&on));
    println!("  unaudited: {}", fmt(&off));
    let best_on = on.iter().map(per).fold(f64::MAX, f64::min);
    let best_off = off.iter().map(per).fold(f64::MAX, f64::min);
    println!(
        "  best: audited {best_on:.0} µs, unaudited {best_off:.0} µs, difference {:+.1}%",
        (best_on / best_off - 1.0) * 100.0
    );
    app.flush_audit().await;
    assert_eq!(app.state.audit.dropped(), 0);
}
