//! A client that stops reading is dropped; the room keeps going.

use std::time::{Duration, Instant};

use example_testkit::ws::Frame;
use example_testkit::{Gatehouse, Setup, WsClient};

use crate::common::{Chat, WAIT, metric};

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_dropped_and_the_others_keep_receiving() {
    let chat = Chat::start(
        Gatehouse::fake(Setup::default()).await,
        1,
        &[("WS_SEND_QUEUE", "16"), ("WS_WRITE_TIMEOUT", "2s")],
    )
    .await;
    let (alice, bob, carol) = (
        chat.gatehouse.login_new_user().await,
        chat.gatehouse.login_new_user().await,
        chat.gatehouse.login_new_user().await,
    );
    // Carol's phone: a tiny receive buffer, and she stops reading.
    let mut stalled =
        WsClient::connect_with_recv_buffer(&chat.replicas[0].ws_url("lobby"), 4096).await;
    stalled.auth(&carol.access_token).await;
    let mut sender = chat.join(0, "lobby", &alice).await;
    let mut reader = chat.join(0, "lobby", &bob).await;

    const N: usize = 300;
    let line = "x".repeat(1500);
    let started = Instant::now();
    // Alice sends and keeps reading her own socket, like a healthy client.
    let send = async {
        let mut echoed = 0;
        for i in 0..N {
            sender.say(&format!("{i:03} {line}")).await;
            echoed += sender.drain_messages().await;
        }
        while echoed < N {
            sender.next_message(WAIT).await;
            echoed += 1;
        }
        sender
    };
    let read = async {
        let mut seen = Vec::with_capacity(N);
        while seen.len() < N {
            let m = reader.next_message(WAIT).await;
            seen.push(m["body"].as_str().unwrap()[..3].parse::<usize>().unwrap());
        }
        seen
    };
    let (_sender, seen) = tokio::join!(send, read);
    assert_eq!(
        seen,
        (0..N).collect::<Vec<_>>(),
        "Bob got every message, in order"
    );
    eprintln!(
        "{N} messages through a room with a stalled client in {:?}",
        started.elapsed()
    );

    // Only Carol was dropped (her close frame may take up to a second).
    let metrics = gatehouse_testkit::eventually(
        Duration::from_secs(5),
        "the stalled socket dropped",
        || async {
            let m = chat.metrics(0).await;
            (metric(&m, "chat_ws_connections") == 2.0).then_some(m)
        },
    )
    .await;
    assert_eq!(
        metric(&metrics, "chat_slow_clients_dropped_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "chat_ws_closed_total{reason=\"slow\"}"),
        1.0
    );
    assert_eq!(chat.stored("lobby").await.len(), N);

    // Carol, reading again, finds a truncated stream that ends with 1013
    // (or, if even the close frame could not be written, a cut connection).
    let mut got = 0;
    let end = loop {
        match stalled.next(WAIT).await {
            Frame::Json(v) if v["type"] == "message" => got += 1,
            Frame::Json(_) => {}
            other => break other,
        }
    };
    assert!(got < N, "the stalled client was cut off ({got} of {N})");
    assert!(
        matches!(end, Frame::Close(1013, _) | Frame::Ended),
        "ended with {end:?}"
    );
}
