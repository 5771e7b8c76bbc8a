//! The stale-session functions and the revocation feed they write, at the
//! model level: which sessions each change touches, `not_before`, deletion
//! through the trigger, and cursor order = commit order.

use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use gatehouse_shared::models::{NewSession, Revocation, Session, User};
use gatehouse_testkit::TestDb;
use uuid::Uuid;

async fn user(conn: &mut AsyncPgConnection, email: &str) -> Uuid {
    gatehouse_shared::models::NewUser {
        id: Uuid::now_v7(),
        email: email.into(),
        password_hash: "x".into(),
        first_name: None,
        last_name: None,
        role: "user".into(),
        is_verified: true,
        verified_at: None,
    }
    .insert(conn)
    .await
    .unwrap()
    .id
}

async fn session(conn: &mut AsyncPgConnection, user_id: Uuid) -> Uuid {
    NewSession {
        id: Uuid::now_v7(),
        user_id,
        refresh_jti: Uuid::new_v4(),
        expires_at: Utc::now() + chrono::Duration::days(1),
        user_agent: None,
        ip: None,
    }
    .insert(conn)
    .await
    .unwrap()
    .id
}

async fn row(conn: &mut AsyncPgConnection, id: Uuid) -> Session {
    Session::lock(conn, id).await.unwrap().unwrap()
}

async fn feed(conn: &mut AsyncPgConnection) -> Vec<Revocation> {
    Revocation::page(conn, None, 1000).await.unwrap()
}

fn next_second() -> i64 {
    Utc::now().timestamp() + 1
}

#[tokio::test(flavor = "multi_thread")]
async fn each_change_touches_the_right_sessions_and_writes_the_feed() {
    let db = TestDb::new().await;
    let c = &mut db.conn().await;
    let (ada, bob) = (
        user(c, "ada@example.com").await,
        user(c, "bob@example.com").await,
    );
    let (a1, a2, a3) = (
        session(c, ada).await,
        session(c, ada).await,
        session(c, ada).await,
    );
    let b1 = session(c, bob).await;

    // One session ends.
    let lower = next_second();
    let entries = Session::end(c, a1, "logout").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].sid, a1);
    let ended = row(c, a1).await;
    assert_eq!(ended.revoked_reason.as_deref(), Some("logout"));
    assert!(ended.not_before >= lower && ended.not_before <= next_second());
    assert_eq!(entries[0].not_before, ended.not_before);
    // Ending it again changes nothing and writes nothing.
    assert!(Session::end(c, a1, "logout").await.unwrap().is_empty());

    // A role change: every live session survives with tokens stale.
    let entries = Session::stale_all_for_user(c, ada).await.unwrap();
    let mut sids: Vec<Uuid> = entries.iter().map(|e| e.sid).collect();
    sids.sort();
    assert_eq!(sids, vec![a2, a3]);
    for id in [a2, a3] {
        let s = row(c, id).await;
        assert!(s.revoked_at.is_none() && s.not_before >= lower);
    }

    // Everything but the caller's session ends; the other user is untouched.
    let entries = Session::end_all_for_user(c, ada, Some(a3), "password_changed")
        .await
        .unwrap();
    assert_eq!(entries.iter().map(|e| e.sid).collect::<Vec<_>>(), vec![a2]);
    assert!(row(c, a3).await.revoked_at.is_none());
    assert_eq!(
        row(c, a2).await.revoked_reason.as_deref(),
        Some("password_changed")
    );
    assert_eq!(row(c, b1).await.not_before, 0);

    // The feed holds every entry in order, cursors increasing.
    let all = feed(c).await;
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let tail = Revocation::page(c, Some(all[1].cursor), 1000)
        .await
        .unwrap();
    assert_eq!(tail, all[2..].to_vec());
    assert_eq!(Revocation::last_cursor(c).await.unwrap(), all[3].cursor);

    // The purge forgets old entries.
    let n = Revocation::delete_before(c, Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(n, 4);
    assert!(feed(c).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_publishes_its_live_sessions_only() {
    let db = TestDb::new().await;
    let c = &mut db.conn().await;
    let ada = user(c, "ada@example.com").await;
    let (live, ended) = (session(c, ada).await, session(c, ada).await);
    Session::end(c, ended, "logout").await.unwrap();
    let before = feed(c).await.len();
    assert!(User::delete(c, ada).await.unwrap());
    let after = feed(c).await;
    assert_eq!(after.len(), before + 1);
    let last = after.last().unwrap();
    assert_eq!(last.sid, live);
    assert!(last.not_before >= Utc::now().timestamp());
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_order_is_commit_order() {
    let db = TestDb::new().await;
    let c = &mut db.conn().await;
    let ada = user(c, "ada@example.com").await;
    let (s1, s2) = (session(c, ada).await, session(c, ada).await);

    // A ends s1 and keeps its transaction open; B ends s2 meanwhile.
    let mut a = db.conn().await;
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(async move {
        a.transaction::<_, diesel::result::Error, _>(async |conn| {
            let e = Session::end(conn, s1, "logout").await?;
            let _ = hold_rx.await;
            Ok(e)
        })
        .await
        .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = db.conn().await;
    let second = tokio::spawn(async move { Session::end(&mut b, s2, "logout").await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // B waits for A's commit rather than taking a cursor A could still
    // commit below.
    assert!(!second.is_finished());
    assert!(feed(c).await.is_empty());
    hold_tx.send(()).unwrap();
    let (a_entries, b_entries) = (first.await.unwrap(), second.await.unwrap());
    assert!(a_entries[0].cursor < b_entries[0].cursor);
    assert_eq!(feed(c).await.len(), 2);
}

/// Subscribe to the feed channel of `namespace`.
async fn subscribe(namespace: &str) -> redis::aio::PubSub {
    let client = redis::Client::open(gatehouse_testkit::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(gatehouse_shared::feed::channel(namespace))
        .await
        .unwrap();
    pubsub
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_entries_are_published_once_by_several_replicas() {
    use futures::StreamExt;
    let db = TestDb::new().await;
    let namespace = gatehouse_testkit::redis_namespace();
    let args = gatehouse_shared::config::DatabaseArgs {
        database_url: db.url.clone(),
        db_pool_size: 2,
        db_pool_timeout: Duration::from_secs(5),
    };
    let redis_args = gatehouse_shared::config::RedisArgs {
        redis_url: gatehouse_testkit::redis_url(),
        redis_namespace: namespace.clone(),
        redis_response_timeout: Duration::from_secs(5),
    };
    let c = &mut db.conn().await;
    let ada = user(c, "ada@example.com").await;
    let sessions = [
        session(c, ada).await,
        session(c, ada).await,
        session(c, ada).await,
    ];
    // An entry from before the publishers started is not pushed again.
    Session::end(c, sessions[0], "logout").await.unwrap();

    let mut pubsub = subscribe(&namespace).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for _ in 0..3 {
        let pool = gatehouse_shared::db::build_pool(&args).unwrap();
        let redis = gatehouse_shared::queue::Redis::new(&redis_args).unwrap();
        tokio::spawn(gatehouse_shared::feed::run_publisher(
            db.url.clone(),
            pool,
            redis,
            namespace.clone(),
            stop_rx.clone(),
        ));
    }
    // Let the publishers start listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let one = Session::end(c, sessions[1], "logout").await.unwrap();
    let all = Session::end_all_for_user(c, ada, None, "logout_all")
        .await
        .unwrap();

    let mut messages = pubsub.on_message();
    let mut got = Vec::new();
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(1500), messages.next()).await
    {
        let v: serde_json::Value =
            serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
        got.push(v);
    }
    let expected: Vec<serde_json::Value> = one
        .iter()
        .chain(&all)
        .map(|e| serde_json::json!({"cursor": e.cursor, "sid": e.sid, "not_before": e.not_before}))
        .collect();
    // Each entry exactly once, in commit order, promptly.
    assert_eq!(got, expected);
    assert!(started.elapsed() < Duration::from_secs(3));
    let _ = stop_tx.send(true);
    drop(messages);
    gatehouse_testkit::clear_redis_namespace(&gatehouse_testkit::redis_url(), &namespace).await;
}

// ---------------------------------------------------------------------------
// Over HTTP: `GET /.well-known/revocations`, and which routes write it.

use crate::common::{PASSWORD, TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn get_feed(app: &TestApp, query: &str) -> Value {
    let res = app
        .client
        .get(app.url(&format!("/.well-known/revocations{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{query}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

fn sid_of(token: &str) -> String {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_pages_from_a_cursor_and_lists_every_stale_making_change() {
    let app = TestApp::spawn().await;
    // Empty: next_cursor 0, or `since` itself.
    assert_eq!(
        get_feed(&app, "").await,
        json!({"items": [], "next_cursor": 0, "has_more": false})
    );
    assert_eq!(
        get_feed(&app, "?since=42").await,
        json!({"items": [], "next_cursor": 42, "has_more": false})
    );

    let a = app.logged_in("ada@example.com").await;
    let b = app.login("ada@example.com", PASSWORD).await;
    let c = app.login("ada@example.com", PASSWORD).await;
    // Logout: one entry.
    assert_eq!(
        app.post_auth("/auth/logout", &a.access).await.status(),
        StatusCode::NO_CONTENT
    );
    // Password change: the other session ends (c keeps its token).
    let res = app
        .patch_auth(
            "/me",
            &c.access,
            json!({"password": "a brand new passphrase", "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.get_auth("/me", &c.access).await.status(),
        StatusCode::OK
    );
    app.assert_token_refused(&b.access).await;

    let all = get_feed(&app, "").await;
    let items = all["items"].as_array().unwrap();
    let sids: Vec<&str> = items.iter().map(|e| e["sid"].as_str().unwrap()).collect();
    assert_eq!(sids, [sid_of(&a.access), sid_of(&b.access)]);
    for e in items {
        let members: Vec<&str> = {
            let mut m: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
            m.sort_unstable();
            m
        };
        assert_eq!(members, ["cursor", "not_before", "sid"]);
        assert!(e["not_before"].as_i64().unwrap() > chrono::Utc::now().timestamp() - 60);
    }
    let first = items[0]["cursor"].as_i64().unwrap();
    assert_eq!(all["next_cursor"], items[1]["cursor"]);
    assert_eq!(all["has_more"], false);
    // Paging.
    let page = get_feed(&app, "?limit=1").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        (page["next_cursor"].as_i64(), &page["has_more"]),
        (Some(first), &json!(true))
    );
    let rest = get_feed(&app, &format!("?since={first}")).await;
    assert_eq!(rest["items"], json!([items[1]]));
    assert_eq!(rest["next_cursor"], items[1]["cursor"]);

    // Bad parameters name themselves.
    for (query, field) in [
        ("?since=-1", "since"),
        ("?limit=0", "limit"),
        ("?limit=10001", "limit"),
        ("?since=x", "since"),
        ("?other=1", "other"),
    ] {
        let res = app
            .client
            .get(app.url(&format!("/.well-known/revocations{query}")))
            .send()
            .await
            .unwrap();
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], field, "{query}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_everywhere_reuse_and_deletion_are_on_the_feed() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let a = app.logged_in("ada@example.com").await;
    let b = app.login("ada@example.com", PASSWORD).await;
    let res = app.post_auth("/auth/logout?scope=all", &a.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let feed = get_feed(&app, "").await;
    let mut sids: Vec<String> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sid"].as_str().unwrap().to_owned())
        .collect();
    sids.sort();
    let mut expected = vec![sid_of(&a.access), sid_of(&b.access)];
    expected.sort();
    assert_eq!(sids, expected);
    let since = feed["next_cursor"].as_i64().unwrap();

    // Refresh-token reuse ends the session: `d.refresh` is two
    // generations old when it is replayed.
    let d = app.login("ada@example.com", PASSWORD).await;
    let d2 = app.refreshed(&d).await;
    let _d3 = app.refreshed(&d2).await;
    let res = app
        .post("/auth/refresh", json!({"refresh_token": d.refresh}))
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let feed = get_feed(&app, &format!("?since={since}")).await;
    assert!(
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["sid"] == sid_of(&d.access)),
        "{feed}"
    );
    let since = feed["next_cursor"].as_i64().unwrap();

    // Deletion by an admin: every live session of the user.
    let e = app.login("ada@example.com", PASSWORD).await;
    let res = app
        .delete_auth(&format!("/users/{}", e.user_id), &root.access)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let feed = get_feed(&app, &format!("?since={since}")).await;
    let sids: Vec<&str> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sid"].as_str().unwrap())
        .collect();
    assert!(sids.contains(&sid_of(&e.access).as_str()), "{feed}");
}
