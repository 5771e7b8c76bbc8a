//! The socket protocol: authentication by the first frame, messages,
//! errors, re-authentication, expiry, revocation and heartbeats.

use std::time::{Duration, Instant};

use example_testkit::tokio_tungstenite::tungstenite::Message;
use example_testkit::ws::Frame;
use example_testkit::{FakeGatehouse, FakeOptions, Gatehouse, Setup, WsClient};
use serde_json::json;

use crate::common::{Chat, WAIT, metric};

#[tokio::test(flavor = "multi_thread")]
async fn auth_then_messages_reach_the_sender_and_are_stored() {
    let chat = Chat::new().await;
    let alice = chat.gatehouse.login_new_user().await;
    let mut ws = WsClient::connect(&chat.replicas[0].ws_url("lobby")).await;
    let hello = ws.auth(&alice.access_token).await;
    assert_eq!(hello["user_id"], alice.user_id.to_string());
    assert_eq!(hello["room"], "lobby");
    let hex = alice.user_id.simple().to_string();
    let name = format!("user-{}", &hex[24..]);
    assert_eq!(hello["author_name"], name);
    assert!(hello["expires_at"].as_str().unwrap().ends_with('Z'));

    ws.say("  hello,\nworld  ").await;
    let m = ws.next_message(WAIT).await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["room"], "lobby");
    assert_eq!(m["author_id"], alice.user_id.to_string());
    assert_eq!(m["author_name"], name);
    assert_eq!(m["body"], "hello,\nworld", "trimmed, newlines kept");
    assert!(m["id"].as_i64().unwrap() > 0);
    assert!(m["created_at"].as_str().unwrap().ends_with('Z'));
    // Exactly once.
    ws.expect_silence(Duration::from_millis(500)).await;

    let stored = chat.stored("lobby").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, m["id"].as_i64().unwrap());
    assert_eq!(stored[0].1, alice.user_id);
    assert_eq!(stored[0].2, "hello,\nworld");
}

/// A socket that sends `first` first is closed with 4401.
async fn refused(chat: &Chat, first: Message) -> (u16, String) {
    let mut ws = WsClient::connect(&chat.replicas[0].ws_url("lobby")).await;
    ws.send_raw(first).await;
    ws.expect_close(WAIT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_without_a_good_token_first_are_closed_with_4401() {
    let chat = Chat::start(
        Gatehouse::fake(Setup::default()).await,
        1,
        &[("WS_AUTH_TIMEOUT", "1s")],
    )
    .await;
    let alice = chat.gatehouse.login_new_user().await;
    let text = |v: serde_json::Value| Message::Text(v.to_string().into());

    let cases = [
        text(json!({"type": "auth", "token": "not.a.token"})),
        text(json!({"type": "message", "body": "let me in"})),
        text(json!({"type": "auth"})),
        Message::Text("hello".into()),
        Message::Binary(vec![1, 2, 3].into()),
    ];
    for first in cases {
        let (code, _) = refused(&chat, first.clone()).await;
        assert_eq!(code, 4401, "{first:?}");
    }
    // A token signed by a key Gatehouse never published.
    let stranger = FakeGatehouse::start("unused", FakeOptions::default()).await;
    let forged = stranger.login_new_user();
    let (code, _) = refused(
        &chat,
        text(json!({"type": "auth", "token": forged.access_token})),
    )
    .await;
    assert_eq!(code, 4401);
    // An expired one.
    let fake = chat.gatehouse.as_fake().unwrap();
    let expired = fake.mint(&alice, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (code, _) = refused(&chat, text(json!({"type": "auth", "token": expired}))).await;
    assert_eq!(code, 4401);
    // A revoked session's.
    chat.gatehouse.logout(&alice.access_token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _) = refused(
        &chat,
        text(json!({"type": "auth", "token": alice.access_token})),
    )
    .await;
    assert_eq!(code, 4401);

    // Silence: closed when WS_AUTH_TIMEOUT passes.
    let started = Instant::now();
    let mut ws = WsClient::connect(&chat.replicas[0].ws_url("lobby")).await;
    let (code, reason) = ws.expect_close(WAIT).await;
    assert_eq!((code, reason.as_str()), (4401, "no auth frame in time"));
    assert!(started.elapsed() >= Duration::from_millis(900));

    // None of them joined or stored anything.
    assert!(chat.stored("lobby").await.is_empty());
    // (Counted once each socket's task has finished.)
    let metrics = gatehouse_testkit::eventually(WAIT, "nine refused sockets counted", || async {
        let m = chat.metrics(0).await;
        (metric(&m, "chat_ws_closed_total{reason=\"auth_failed\"}") == 9.0).then_some(m)
    })
    .await;
    assert_eq!(metric(&metrics, "chat_ws_authenticated_total"), 0.0);
    assert_eq!(metric(&metrics, "chat_ws_connections"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_are_checked_before_the_upgrade() {
    let chat = Chat::new().await;
    for query in [
        "room=Lobby",
        "room=",
        "room=a%20b",
        "",
        "room=lobby&token=x",
    ] {
        let (status, body) = chat.get(0, &format!("/ws?{query}"), None).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["code"], "validation_failed");
    }
    let long = "a".repeat(65);
    let (status, _) = chat.get(0, &format!("/ws?room={long}"), None).await;
    assert_eq!(status, 422);
    // A plain GET (no upgrade) on a good room.
    let (status, body) = chat.get(0, "/ws?room=lobby", None).await;
    assert_eq!(status, 426, "{body}");
    assert_eq!(body["code"], "upgrade_required");
    assert_eq!(body["type"], "urn:chat:problem:upgrade_required");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_get_error_frames_and_the_socket_stays() {
    let chat = Chat::new().await;
    let alice = chat.gatehouse.login_new_user().await;
    let mut ws = chat.join(0, "lobby", &alice).await;
    let long = "x".repeat(2001);
    for (frame, code) in [
        (json!({"type": "message", "body": ""}), "invalid_body"),
        (json!({"type": "message", "body": "   "}), "invalid_body"),
        (json!({"type": "message", "body": long}), "invalid_body"),
        (
            json!({"type": "message", "body": "nul\u{0}"}),
            "invalid_body",
        ),
        (
            json!({"type": "message", "body": "bell\u{7}"}),
            "invalid_body",
        ),
        (json!({"type": "message"}), "invalid_frame"),
        (json!({"type": "shout", "body": "hi"}), "invalid_frame"),
        (json!("hello"), "invalid_frame"),
    ] {
        ws.send_json(frame.clone()).await;
        let v = ws.next_json(WAIT).await;
        assert_eq!(v["type"], "error", "{frame}");
        assert_eq!(v["code"], code, "{frame}");
        assert!(v["message"].is_string());
    }
    ws.send_raw(Message::Text("{not json".into())).await;
    assert_eq!(ws.next_json(WAIT).await["code"], "invalid_frame");
    // 2,000 characters (of 2 bytes each) are fine.
    let full = "é".repeat(2000);
    ws.say(&full).await;
    assert_eq!(ws.next_message(WAIT).await["body"], full);
    let stored = chat.stored("lobby").await;
    assert_eq!(stored.len(), 1);
    // A binary frame breaks the protocol: 1008.
    ws.send_raw(Message::Binary(vec![0u8; 4].into())).await;
    assert_eq!(ws.expect_close(WAIT).await.0, 1008);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_over_its_message_rate_gets_rate_limited_errors() {
    let chat = Chat::start(
        Gatehouse::fake(Setup::default()).await,
        1,
        &[("WS_MESSAGE_RATE", "2")],
    )
    .await;
    let alice = chat.gatehouse.login_new_user().await;
    let mut ws = chat.join(0, "lobby", &alice).await;
    for i in 0..10 {
        ws.say(&format!("spam {i}")).await;
    }
    let (mut delivered, mut limited) = (0, 0);
    for _ in 0..10 {
        let v = ws.next_json(WAIT).await;
        match v["type"].as_str().unwrap() {
            "message" => delivered += 1,
            "error" => {
                assert_eq!(v["code"], "rate_limited");
                limited += 1;
            }
            other => panic!("{other}"),
        }
    }
    // A burst of twice the rate passes, the rest is refused.
    assert!((4..=5).contains(&delivered), "{delivered}");
    assert_eq!(delivered + limited, 10);
    assert_eq!(chat.stored("lobby").await.len(), delivered);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_token_extends_the_socket_and_expiry_closes_it() {
    let chat = Chat::new().await;
    let alice = chat.gatehouse.login_new_user().await;
    let fake = chat.gatehouse.as_fake().unwrap();

    // Without re-auth: closed with 4401 when the token expires.
    let short = fake.mint(&alice, Duration::from_secs(3));
    let mut lapsing = WsClient::connect(&chat.replicas[0].ws_url("lobby")).await;
    lapsing.auth(&short).await;
    let started = Instant::now();
    let (code, reason) = lapsing.expect_close(WAIT).await;
    assert_eq!((code, reason.as_str()), (4401, "token expired"));
    assert!(
        started.elapsed() <= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // With re-auth before expiry: the socket lives on.
    let mut ws = WsClient::connect(&chat.replicas[0].ws_url("lobby")).await;
    let first = ws.auth(&fake.mint(&alice, Duration::from_secs(3))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = ws.auth(&alice.access_token).await;
    assert!(second["expires_at"].as_str() > first["expires_at"].as_str());
    tokio::time::sleep(Duration::from_secs(4)).await;
    ws.say("still here").await;
    assert_eq!(ws.next_message(WAIT).await["body"], "still here");

    // Re-auth as someone else, or with a bad token: 4401.
    let bob = chat.gatehouse.login_new_user().await;
    ws.send_json(json!({"type": "auth", "token": bob.access_token}))
        .await;
    assert_eq!(
        ws.expect_close(WAIT).await,
        (4401, "token of another user".into())
    );
    let mut ws = chat.join(0, "lobby", &alice).await;
    ws.send_json(json!({"type": "auth", "token": "garbage"}))
        .await;
    assert_eq!(ws.expect_close(WAIT).await.0, 4401);
}

/// Logout at Gatehouse closes that session's sockets (4401) within a
/// second, on every replica; other users' sockets are unaffected.
pub async fn logout_closes_sockets(gatehouse: Gatehouse) {
    let chat = Chat::start(gatehouse, 2, &[]).await;
    let alice = chat.gatehouse.login_new_user().await;
    let bob = chat.gatehouse.login_new_user().await;
    let mut alice_ws = chat.join(0, "lobby", &alice).await;
    let mut alice_elsewhere = chat.join(1, "other", &alice).await;
    let mut bob_ws = chat.join(1, "lobby", &bob).await;

    assert_eq!(chat.gatehouse.logout(&alice.access_token).await, 204);
    let started = Instant::now();
    let (code, reason) = alice_ws.expect_close(Duration::from_secs(1)).await;
    assert_eq!((code, reason.as_str()), (4401, "session revoked"));
    assert_eq!(
        alice_elsewhere.expect_close(Duration::from_secs(1)).await.0,
        4401
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    eprintln!("logout closed the sockets in {took:?}");

    // Bob is unaffected.
    bob_ws.say("alone now").await;
    assert_eq!(bob_ws.next_message(WAIT).await["body"], "alone now");
    let closed = metric(
        &chat.metrics(0).await,
        "chat_ws_closed_total{reason=\"revoked\"}",
    ) + metric(
        &chat.metrics(1).await,
        "chat_ws_closed_total{reason=\"revoked\"}",
    );
    assert_eq!(closed, 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_closes_that_session_s_sockets_with_4401_within_a_second() {
    logout_closes_sockets(Gatehouse::fake(Setup::default()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_answers_no_pings_is_dropped() {
    let chat = Chat::start(
        Gatehouse::fake(Setup::default()).await,
        1,
        &[("WS_PING_INTERVAL", "1s")],
    )
    .await;
    let alice = chat.gatehouse.login_new_user().await;
    // A reading client answers pings (tungstenite pongs as it reads): kept.
    let mut awake = chat.join(0, "lobby", &alice).await;
    let mut asleep = chat.join(0, "lobby", &alice).await;
    awake.expect_silence(Duration::from_millis(3500)).await;
    // The other one read nothing for 3.5 s: it was closed (1013).
    match asleep.next(WAIT).await {
        Frame::Close(code, reason) => {
            assert_eq!((code, reason.as_str()), (1013, "no answer to pings"))
        }
        other => panic!("expected a close, got {other:?}"),
    }
    awake.say("awake").await;
    assert_eq!(awake.next_message(WAIT).await["body"], "awake");
}
