//! Following the revocation feed: Redis, HTTP polling, a Redis outage,
//! cursor resume, bounded memory, events and shutdown.

use std::time::{Duration, Instant};

use gatehouse_verify::{FeedMode, Revocation, Verifier, VerifyError};
use uuid::Uuid;

use crate::support::{
    FakeGatehouse, Keypair, PrivateRedis, claims_at, eventually, now, publish, shared_redis,
    unique_namespace,
};

/// Until this returns, `verify(token)` must fail with `Revoked`.
async fn refused(verifier: &Verifier, token: &str) -> bool {
    verifier.verify(token).await == Err(VerifyError::Revoked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_published_on_redis_is_enforced_within_100_ms() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let ns = unique_namespace();
    // The safety-net poll is far away: only Redis can deliver in time.
    let verifier = Verifier::start(
        gh.config()
            .with_redis(shared_redis(), &ns)
            .with_safety_poll_interval(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    assert_eq!(verifier.status().mode, FeedMode::Redis);
    let mut events = verifier.revocations();

    let sid = Uuid::new_v4();
    let iat = now();
    let token = key.sign(&claims_at(sid, iat));
    let other = key.token(Uuid::new_v4());
    let claims = verifier.verify(&token).await.unwrap();
    // A chat socket of this session, and one of another session.
    let socket = {
        let v = verifier.clone();
        let claims = claims.clone();
        tokio::spawn(async move {
            v.revoked(&claims).await;
            Instant::now()
        })
    };
    let other_socket = {
        let v = verifier.clone();
        let claims = verifier.verify(&other).await.unwrap();
        tokio::spawn(async move { v.revoked(&claims).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!socket.is_finished());

    let feed_requests = gh.feed_requests();
    let start = Instant::now();
    publish(&shared_redis(), &ns, 1, sid, iat + 1).await;
    let took = eventually(Duration::from_secs(2), "revoked via Redis", async || {
        refused(&verifier, &token).await
    })
    .await;
    let took = took.max(start.elapsed());
    assert!(took < Duration::from_millis(100), "took {took:?}");
    let closed_at = tokio::time::timeout(Duration::from_secs(1), socket)
        .await
        .unwrap()
        .unwrap();
    let close = closed_at - start;
    assert!(
        close < Duration::from_millis(100),
        "socket closed after {close:?}"
    );
    // Already revoked: resolves at once.
    tokio::time::timeout(Duration::from_millis(50), verifier.revoked(&claims))
        .await
        .unwrap();
    assert!(!other_socket.is_finished(), "other sessions unaffected");
    assert_eq!(
        gh.feed_requests(),
        feed_requests,
        "Redis alone delivered it"
    );
    assert!(
        verifier.verify(&other).await.is_ok(),
        "other sessions unaffected"
    );
    // A token minted at the new not_before (a refresh after a role change) is fine.
    let fresh = key.sign(&claims_at(sid, iat + 1));
    assert!(verifier.verify(&fresh).await.is_ok());

    let event = events.recv().await.unwrap();
    assert_eq!(
        event,
        Revocation {
            sid,
            not_before: iat + 1
        }
    );
    let claims = verifier.verify(&fresh).await.unwrap();
    assert!(!event.applies_to(&claims));
    assert_eq!(verifier.status().redis_messages, 1);

    // A message that is not ours makes the verifier catch up over HTTP.
    let client = redis::Client::open(shared_redis()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let sid2 = Uuid::new_v4();
    let token2 = key.sign(&claims_at(sid2, iat));
    gh.revoke(sid2, iat + 1);
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{ns}:revocations"))
        .arg("garbage")
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(2),
        "catch-up after a bad message",
        async || refused(&verifier, &token2).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_polling_enforces_revocations_within_the_interval() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = Verifier::start(gh.config().with_poll_interval(Duration::from_millis(250)))
        .await
        .unwrap();
    assert_eq!(verifier.status().mode, FeedMode::Polling);
    let mut events = verifier.revocations();

    let sid = Uuid::new_v4();
    let iat = now();
    let token = key.sign(&claims_at(sid, iat));
    let claims = verifier.verify(&token).await.unwrap();
    let socket = {
        let v = verifier.clone();
        tokio::spawn(async move { v.revoked(&claims).await })
    };
    // Gatehouse's logout: not_before = the next whole second.
    let start = Instant::now();
    let cursor = gh.revoke(sid, iat + 1);
    let took = eventually(Duration::from_secs(3), "revoked via polling", async || {
        refused(&verifier, &token).await
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    tokio::time::timeout(Duration::from_secs(1), socket)
        .await
        .unwrap()
        .unwrap();
    let close = start.elapsed();
    assert!(
        close < Duration::from_secs(1),
        "the socket closed after {close:?}"
    );
    assert_eq!(
        events.recv().await.unwrap(),
        Revocation {
            sid,
            not_before: iat + 1
        }
    );
    let status = verifier.status();
    assert_eq!(status.cursor, Some(cursor));
    assert_eq!(status.revoked_sessions, 1);
    assert!(status.ready);
    assert!(status.last_sync_age.unwrap() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dropped_mid_stream_polling_takes_over_and_nothing_is_missed() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let mut redis = PrivateRedis::start();
    let ns = unique_namespace();
    let verifier = Verifier::start(
        gh.config()
            .with_redis(redis.url(), &ns)
            .with_poll_interval(Duration::from_millis(200))
            .with_safety_poll_interval(Duration::from_secs(600))
            .with_redis_max_backoff(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert_eq!(verifier.status().mode, FeedMode::Redis);
    let iat = now();
    let sids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let tokens: Vec<String> = sids.iter().map(|&s| key.sign(&claims_at(s, iat))).collect();
    for t in &tokens {
        assert!(verifier.verify(t).await.is_ok());
    }

    // 0: committed and published while Redis is up.
    let c = gh.revoke(sids[0], iat + 1);
    publish(&redis.url(), &ns, c, sids[0], iat + 1).await;
    eventually(Duration::from_secs(1), "0 via Redis", async || {
        refused(&verifier, &tokens[0]).await
    })
    .await;

    // 1: committed, but its publish is lost as Redis dies.
    gh.revoke(sids[1], iat + 1);
    redis.down();
    eventually(Duration::from_secs(2), "fall back to polling", async || {
        verifier.status().mode == FeedMode::Polling
    })
    .await;
    eventually(
        Duration::from_secs(2),
        "1 caught up over HTTP",
        async || refused(&verifier, &tokens[1]).await,
    )
    .await;
    assert!(verifier.is_ready(), "polling keeps the verifier ready");

    // 2: committed while Redis is down (Gatehouse cannot publish it).
    gh.revoke(sids[2], iat + 1);
    let took = eventually(Duration::from_secs(2), "2 via polling", async || {
        refused(&verifier, &tokens[2]).await
    })
    .await;
    assert!(took < Duration::from_secs(1), "polling took {took:?}");

    // 3: committed just before Redis comes back, never published.
    gh.revoke(sids[3], iat + 1);
    redis.up();
    eventually(Duration::from_secs(5), "resubscribed", async || {
        verifier.status().mode == FeedMode::Redis
    })
    .await;
    eventually(
        Duration::from_secs(2),
        "3 caught up after resubscribe",
        async || refused(&verifier, &tokens[3]).await,
    )
    .await;

    // 4: published only on Redis: proves the new subscription is live.
    let before = Instant::now();
    publish(&redis.url(), &ns, 999, sids[4], iat + 1).await;
    eventually(
        Duration::from_secs(1),
        "4 via the new subscription",
        async || refused(&verifier, &tokens[4]).await,
    )
    .await;
    assert!(before.elapsed() < Duration::from_millis(500));

    for t in &tokens {
        assert_eq!(verifier.verify(t).await, Err(VerifyError::Revoked));
    }
    // The cursor only follows the HTTP feed (4 entries), never Redis's 999.
    assert_eq!(verifier.status().cursor, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_not_fatal_and_is_subscribed_once_up() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let mut redis = PrivateRedis::reserved();
    let ns = unique_namespace();
    let verifier = Verifier::start(
        gh.config()
            .with_redis(redis.url(), &ns)
            .with_http_timeout(Duration::from_secs(1))
            .with_redis_max_backoff(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert_eq!(verifier.status().mode, FeedMode::Polling);
    assert!(verifier.is_ready());
    redis.up();
    eventually(Duration::from_secs(5), "subscribed", async || {
        verifier.status().mode == FeedMode::Redis
    })
    .await;
    let sid = Uuid::new_v4();
    let token = key.sign(&claims_at(sid, now()));
    publish(&redis.url(), &ns, 1, sid, now() + 1).await;
    eventually(Duration::from_secs(1), "revoked via Redis", async || {
        refused(&verifier, &token).await
    })
    .await;
}

#[tokio::test]
async fn the_cursor_resumes_without_gaps_across_pages() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    gh.set_page_size(2);
    let iat = now();
    let sids: Vec<Uuid> = (0..7).map(|_| Uuid::new_v4()).collect();
    for s in &sids[..5] {
        gh.revoke(*s, iat + 1);
    }
    let verifier = Verifier::start(gh.config().with_poll_interval(Duration::from_millis(100)))
        .await
        .unwrap();
    // The start read every page before returning.
    assert_eq!(&gh.feed_sinces()[..4], &[None, Some(2), Some(4), Some(5)]);
    for s in &sids[..5] {
        let t = key.sign(&claims_at(*s, iat));
        assert_eq!(verifier.verify(&t).await, Err(VerifyError::Revoked));
    }
    assert_eq!(verifier.status().cursor, Some(5));

    for s in &sids[5..] {
        gh.revoke(*s, iat + 1);
    }
    eventually(Duration::from_secs(2), "cursor 7", async || {
        verifier.status().cursor == Some(7)
    })
    .await;
    for s in &sids {
        let t = key.sign(&claims_at(*s, iat));
        assert_eq!(verifier.verify(&t).await, Err(VerifyError::Revoked));
    }
    // Every request resumed where the previous answer ended: no gap, and
    // never back to the start.
    eventually(
        Duration::from_secs(2),
        "a request from cursor 7",
        async || gh.feed_sinces().contains(&Some(7)),
    )
    .await;
    let sinces = gh.feed_sinces();
    let resumed: Vec<i64> = sinces.iter().skip(1).map(|s| s.unwrap()).collect();
    assert!(resumed.windows(2).all(|w| w[0] <= w[1]), "{sinces:?}");
    assert!(resumed.contains(&5) && resumed.contains(&7), "{sinces:?}");

    // Re-applying, or an older not_before for the same session, changes nothing.
    gh.revoke(sids[0], iat - 100);
    eventually(Duration::from_secs(2), "cursor 8", async || {
        verifier.status().cursor == Some(8)
    })
    .await;
    let t = key.sign(&claims_at(sids[0], iat));
    assert_eq!(verifier.verify(&t).await, Err(VerifyError::Revoked));
    assert_eq!(verifier.status().revoked_sessions, 7);
}

#[tokio::test]
async fn entries_are_forgotten_once_their_tokens_expired() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = Verifier::start(
        gh.config()
            .with_max_token_lifetime(Duration::from_secs(2))
            .with_leeway(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let t = now();
    // Already older than lifetime + leeway when it arrives: never stored.
    gh.revoke(Uuid::new_v4(), t - 100);
    let sid = Uuid::new_v4();
    gh.revoke(sid, t + 1);
    eventually(Duration::from_secs(2), "one entry", async || {
        verifier.status().revoked_sessions == 1
    })
    .await;
    let token = key.sign(&serde_json::json!({
        "iss": "gatehouse", "aud": "gatehouse", "sub": Uuid::new_v4(), "sid": sid,
        "role": "user", "iat": t, "nbf": t, "exp": t + 2, "jti": Uuid::new_v4()
    }));
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::Revoked));
    // A token living longer than the max lifetime would outlive its entry.
    let long = key.sign(&claims_at(Uuid::new_v4(), t));
    assert_eq!(
        verifier.verify(&long).await,
        Err(VerifyError::LifetimeTooLong)
    );

    eventually(Duration::from_secs(8), "the entry forgotten", async || {
        verifier.status().revoked_sessions == 0
    })
    .await;
    // By then the token it concerned has expired too.
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::Expired));
}

#[tokio::test]
async fn the_background_tasks_stop_on_shutdown_and_when_the_last_handle_drops() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = Verifier::start(gh.config().with_poll_interval(Duration::from_millis(20)))
        .await
        .unwrap();
    let clone = verifier.clone();
    drop(verifier);
    // A clone keeps it alive.
    let n = gh.feed_requests();
    eventually(Duration::from_secs(2), "still polling", async || {
        gh.feed_requests() > n + 2
    })
    .await;
    drop(clone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = gh.feed_requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gh.feed_requests(),
        n,
        "polling stopped with the last handle"
    );

    let verifier = gh.verifier().await;
    verifier.shutdown().await;
    let status = verifier.status();
    assert_eq!(status.mode, FeedMode::Stopped);
    assert!(!status.ready);
    let n = gh.feed_requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gh.feed_requests(), n);
}

#[tokio::test]
async fn readiness_turns_false_while_the_feed_is_unreachable() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = Verifier::start(
        gh.config()
            .with_poll_interval(Duration::from_millis(50))
            .with_stale_after(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(verifier.is_ready());
    gh.set_feed_down(true);
    eventually(Duration::from_secs(3), "not ready", async || {
        !verifier.is_ready()
    })
    .await;
    gh.set_feed_down(false);
    eventually(Duration::from_secs(3), "ready again", async || {
        verifier.is_ready()
    })
    .await;
    // Tokens keep verifying meanwhile (the app decides what readiness means).
    assert!(verifier.verify(&key.token(Uuid::new_v4())).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resubscribe_catches_up_from_the_cursor() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let mut redis = PrivateRedis::start();
    let ns = unique_namespace();
    // No timed polling at all: only the catch-ups on (re)subscribe and on
    // disconnect read the feed.
    let verifier = Verifier::start(
        gh.config()
            .with_redis(redis.url(), &ns)
            .with_poll_interval(Duration::from_secs(600))
            .with_safety_poll_interval(Duration::from_secs(600))
            .with_redis_max_backoff(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert_eq!(verifier.status().mode, FeedMode::Redis);
    let requests_at_start = gh.feed_requests();

    redis.down();
    eventually(Duration::from_secs(2), "polling mode", async || {
        verifier.status().mode == FeedMode::Polling
    })
    .await;
    eventually(
        Duration::from_secs(2),
        "the catch-up on disconnect",
        async || gh.feed_requests() > requests_at_start,
    )
    .await;

    // Committed during the outage, never published.
    let sid = Uuid::new_v4();
    let iat = now();
    let token = key.sign(&claims_at(sid, iat));
    gh.revoke(sid, iat + 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(verifier.verify(&token).await.is_ok(), "no poll in between");

    redis.up();
    eventually(
        Duration::from_secs(5),
        "revoked by the catch-up after resubscribe",
        async || refused(&verifier, &token).await,
    )
    .await;
    assert_eq!(verifier.status().mode, FeedMode::Redis);
}
