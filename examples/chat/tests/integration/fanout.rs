//! Fan-out across replicas, persistence and history.

use std::collections::HashSet;
use std::time::Duration;

use example_testkit::{Gatehouse, Login, Setup, WsClient};
use serde_json::Value;

use crate::common::{Chat, WAIT};

/// Collect `n` message frames (and then make sure no extra one follows).
async fn collect(ws: &mut WsClient, n: usize) -> Vec<Value> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        got.push(ws.next_message(WAIT).await);
    }
    ws.expect_silence(Duration::from_millis(700)).await;
    got
}

/// Two replicas, three clients (one on the first, two on the second) and a
/// bystander in another room: every message reaches every socket of the
/// room exactly once, in the same order everywhere, and is stored.
pub async fn fan_out_exactly_once(gatehouse: Gatehouse) {
    let chat = Chat::start(gatehouse, 2, &[]).await;
    let users: Vec<Login> = three_users(&chat).await;
    let mut a = chat.join(0, "lobby", &users[0]).await;
    let mut b = chat.join(1, "lobby", &users[1]).await;
    let mut c = chat.join(1, "lobby", &users[2]).await;
    let mut bystander = chat.join(0, "other", &users[0]).await;

    const EACH: usize = 15;
    // All three talk at once.
    let send = |mut ws: WsClient, who: &'static str| async move {
        for i in 0..EACH {
            ws.say(&format!("{who}-{i}")).await;
        }
        ws
    };
    let (a2, b2, c2) = tokio::join!(send(a, "a"), send(b, "b"), send(c, "c"));
    (a, b, c) = (a2, b2, c2);

    let total = EACH * 3;
    let (ga, gb, gc) = tokio::join!(
        collect(&mut a, total),
        collect(&mut b, total),
        collect(&mut c, total)
    );
    let ids =
        |got: &[Value]| -> Vec<i64> { got.iter().map(|m| m["id"].as_i64().unwrap()).collect() };
    for got in [&ga, &gb, &gc] {
        let unique: HashSet<i64> = ids(got).into_iter().collect();
        assert_eq!(unique.len(), total, "each message exactly once");
        // Each sender's messages arrive in the order sent.
        for who in ["a", "b", "c"] {
            let mine: Vec<&str> = got
                .iter()
                .map(|m| m["body"].as_str().unwrap())
                .filter(|b| b.starts_with(who))
                .collect();
            let want: Vec<String> = (0..EACH).map(|i| format!("{who}-{i}")).collect();
            assert_eq!(mine, want);
        }
    }
    // The same order on every socket, whatever its replica.
    assert_eq!(ids(&ga), ids(&gb));
    assert_eq!(ids(&gb), ids(&gc));
    bystander.expect_silence(Duration::from_millis(200)).await;

    // Stored once each, per sender in order, with the authors' ids.
    let stored = chat.stored("lobby").await;
    assert_eq!(stored.len(), total);
    let stored_ids: HashSet<i64> = stored.iter().map(|s| s.0).collect();
    assert_eq!(stored_ids, ids(&ga).into_iter().collect());
    for (who, user) in ["a", "b", "c"].iter().zip(&users) {
        let mine: Vec<&str> = stored
            .iter()
            .filter(|s| s.2.starts_with(who))
            .map(|s| {
                assert_eq!(s.1, user.user_id);
                s.2.as_str()
            })
            .collect();
        assert_eq!(mine.len(), EACH);
        assert!(mine.windows(2).all(|w| w[0] != w[1]));
        let want: Vec<String> = (0..EACH).map(|i| format!("{who}-{i}")).collect();
        assert_eq!(mine, want);
    }

    // History from either replica: the same messages, newest first.
    for r in 0..2 {
        let (status, page) = chat
            .get(
                r,
                "/rooms/lobby/messages?limit=200",
                Some(&users[1].access_token),
            )
            .await;
        assert_eq!(status, 200);
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), total);
        let history: Vec<i64> = items.iter().map(|m| m["id"].as_i64().unwrap()).collect();
        let mut sorted = history.clone();
        sorted.sort_unstable_by(|x, y| y.cmp(x));
        assert_eq!(history, sorted, "newest first");
        let by_id: std::collections::HashMap<i64, &Value> =
            ga.iter().map(|m| (m["id"].as_i64().unwrap(), m)).collect();
        for item in items {
            let live = by_id[&item["id"].as_i64().unwrap()];
            for field in ["room", "author_id", "author_name", "body", "created_at"] {
                assert_eq!(item[field], live[field], "{field}");
            }
            assert!(item.get("type").is_none());
        }
    }
}

async fn three_users(chat: &Chat) -> Vec<Login> {
    let mut users = Vec::new();
    for _ in 0..3 {
        users.push(chat.gatehouse.login_new_user().await);
    }
    users
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_fan_out_exactly_once_across_replicas_and_are_stored_in_order() {
    fan_out_exactly_once(Gatehouse::fake(Setup::default()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pages_newest_first() {
    let chat = Chat::new().await;
    let alice = chat.gatehouse.login_new_user().await;
    let t = alice.access_token.as_str();
    let mut ws = chat.join(0, "history", &alice).await;
    for i in 1..=7 {
        ws.say(&format!("m{i}")).await;
        ws.next_message(WAIT).await;
    }
    let bodies = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, page) = chat
        .get(0, "/rooms/history/messages?limit=3", Some(t))
        .await;
    assert_eq!(status, 200);
    assert_eq!(bodies(&page), ["m7", "m6", "m5"]);
    let oldest = page["items"][2]["id"].as_i64().unwrap();
    let (_, page) = chat
        .get(
            0,
            &format!("/rooms/history/messages?limit=3&before={oldest}"),
            Some(t),
        )
        .await;
    assert_eq!(bodies(&page), ["m4", "m3", "m2"]);
    let oldest = page["items"][2]["id"].as_i64().unwrap();
    let (_, page) = chat
        .get(
            0,
            &format!("/rooms/history/messages?before={oldest}"),
            Some(t),
        )
        .await;
    assert_eq!(bodies(&page), ["m1"]);
    let (_, page) = chat.get(0, "/rooms/history/messages", Some(t)).await;
    assert_eq!(bodies(&page).len(), 7);
    let (_, page) = chat.get(0, "/rooms/empty/messages", Some(t)).await;
    assert_eq!(page, serde_json::json!({"items": []}));

    // Authenticated only; bad input is a 422 naming the parameter.
    let (status, body) = chat.get(0, "/rooms/history/messages", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "missing_token");
    let (status, _) = chat.get(0, "/rooms/history/messages", Some("nope")).await;
    assert_eq!(status, 401);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("before=0", "before"),
        ("before=x", "before"),
        ("after=1", "after"),
    ] {
        let (status, body) = chat
            .get(0, &format!("/rooms/history/messages?{query}"), Some(t))
            .await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{query}");
    }
    let (status, body) = chat.get(0, "/rooms/NOT_OK/messages", Some(t)).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "room");
}

/// The chat's Redis goes away: messages are still stored (the sender hears
/// they were not delivered live); when Redis is back, every replica
/// resubscribes and delivers what its sockets missed from PostgreSQL,
/// exactly once and in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_is_caught_up_from_postgres_exactly_once() {
    let mut redis = example_testkit::PrivateRedis::start();
    let url = redis.url();
    let chat = Chat::start(
        Gatehouse::fake(Setup::default()).await,
        2,
        &[("REDIS_URL", &url)],
    )
    .await;
    let alice = chat.gatehouse.login_new_user().await;
    let bob = chat.gatehouse.login_new_user().await;
    let mut a = chat.join(0, "lobby", &alice).await;
    let mut b = chat.join(1, "lobby", &bob).await;
    a.say("before").await;
    assert_eq!(a.next_message(WAIT).await["body"], "before");
    assert_eq!(b.next_message(WAIT).await["body"], "before");

    redis.down();
    for r in 0..2 {
        gatehouse_testkit::eventually(WAIT, "readiness reports Redis down", || async {
            let (status, body) = chat.get(r, "/health/ready", None).await;
            (status == 503 && body["checks"]["redis"] == "down").then_some(())
        })
        .await;
    }
    for body in ["during-1", "during-2"] {
        a.say(body).await;
        let v = a.next_json(Duration::from_secs(15)).await;
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str()),
            (Some("error"), Some("not_delivered")),
            "{v}"
        );
    }
    assert_eq!(chat.stored("lobby").await.len(), 3, "stored anyway");

    redis.up();
    for ws in [&mut a, &mut b] {
        let got = collect(ws, 2).await;
        let bodies: Vec<&str> = got.iter().map(|m| m["body"].as_str().unwrap()).collect();
        assert_eq!(bodies, ["during-1", "during-2"]);
    }
    a.say("after").await;
    for ws in [&mut a, &mut b] {
        assert_eq!(collect(ws, 1).await[0]["body"], "after");
    }
    let caught: f64 = crate::common::metric(&chat.metrics(1).await, "chat_catch_up_messages_total");
    assert_eq!(caught, 2.0);
}
