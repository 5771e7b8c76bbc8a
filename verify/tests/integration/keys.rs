//! The key cache: refetch on an unknown `kid` (rate-limited), on `max-age`
//! expiry, and key rotation while the verifier runs.

use std::time::{Duration, Instant};

use gatehouse_verify::{Verifier, VerifyError};
use jsonwebtoken::{Algorithm, Header};
use uuid::Uuid;

use crate::support::{FakeGatehouse, Keypair, claims, eventually};

#[tokio::test]
async fn an_unknown_kid_costs_one_refetch_then_is_refused() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;
    assert_eq!(gh.jwks_requests(), 1);

    let stranger = Keypair::generate();
    let token = stranger.token(Uuid::new_v4());
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
    assert_eq!(gh.jwks_requests(), 2, "one refetch for the unknown kid");
    // Within the minimum interval (5 s by default): no more requests.
    for _ in 0..20 {
        assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
    }
    assert_eq!(gh.jwks_requests(), 2);
    // Known keys are unaffected.
    assert!(verifier.verify(&key.token(Uuid::new_v4())).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bogus_kids_costs_at_most_one_refetch_per_interval() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let interval = Duration::from_millis(500);
    let verifier = Verifier::start(gh.config().with_jwks_min_refetch_interval(interval))
        .await
        .unwrap();
    let attacker = Keypair::generate();
    let c = claims(Uuid::new_v4());
    let bogus: Vec<String> = (0..1000)
        .map(|i| {
            let mut header = Header::new(Algorithm::EdDSA);
            header.typ = Some("at+jwt".into());
            header.kid = Some(format!("bogus-{i}-{}", Uuid::new_v4()));
            attacker.sign_with(header, &c)
        })
        .collect();
    let good = key.token(Uuid::new_v4());

    let before = gh.jwks_requests();
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_millis(1600) {
        // 1,000 bogus kids at once, then a valid token in the middle of it.
        let results = futures::future::join_all(bogus.iter().map(|t| verifier.verify(t))).await;
        assert!(results.iter().all(|r| *r == Err(VerifyError::UnknownKey)));
        assert!(verifier.verify(&good).await.is_ok());
        rounds += 1;
    }
    let elapsed = start.elapsed();
    let refetches = gh.jwks_requests() - before;
    let allowed = elapsed.as_millis().div_ceil(interval.as_millis()) as u64 + 1;
    assert!(rounds >= 2, "the flood ran {rounds} rounds");
    assert!(refetches >= 1, "the first unknown kid does refetch");
    assert!(
        refetches <= allowed,
        "{refetches} JWKS fetches in {elapsed:?} ({rounds} rounds of 1,000 bogus kids), at most {allowed} allowed"
    );
}

#[tokio::test]
async fn a_key_rotated_in_while_running_is_picked_up() {
    let old = Keypair::generate();
    let gh = FakeGatehouse::start(&[&old]).await;
    let verifier = gh.verifier().await;
    let old_token = old.token(Uuid::new_v4());
    assert!(verifier.verify(&old_token).await.is_ok());

    // Gatehouse rotates: the new key is published, then signs.
    let new = Keypair::generate();
    gh.publish_key(&new);
    let new_token = new.token(Uuid::new_v4());
    assert!(
        verifier.verify(&new_token).await.is_ok(),
        "picked up by the unknown-kid refetch"
    );
    assert_eq!(gh.jwks_requests(), 2);
    // The previous key stays published, so its tokens live on.
    assert!(verifier.verify(&old_token).await.is_ok());
    assert_eq!(verifier.status().jwks_keys, 2);
}

#[tokio::test]
async fn the_jwks_is_refreshed_when_its_max_age_runs_out() {
    let old = Keypair::generate();
    let gh = FakeGatehouse::start(&[&old]).await;
    gh.set_max_age(1);
    let verifier = Verifier::start(
        gh.config()
            .with_jwks_min_refetch_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let old_token = old.token(Uuid::new_v4());
    assert!(verifier.verify(&old_token).await.is_ok());

    // An unchanged set is revalidated by ETag (304) without losing keys.
    eventually(
        Duration::from_secs(5),
        "a refresh after max-age",
        async || gh.jwks_requests() >= 2,
    )
    .await;
    assert!(verifier.verify(&old_token).await.is_ok());
    assert_eq!(verifier.status().jwks_keys, 1);

    // A new key is published (not signing yet): seen without any unknown kid.
    let next = Keypair::generate();
    gh.publish_key(&next);
    eventually(
        Duration::from_secs(5),
        "the next key in the cache",
        async || verifier.status().jwks_keys == 2,
    )
    .await;

    // The old key is retired and unpublished: its tokens die on refresh.
    gh.unpublish_key(&old.kid);
    eventually(Duration::from_secs(5), "the old key gone", async || {
        verifier.status().jwks_keys == 1
    })
    .await;
    assert_eq!(
        verifier.verify(&old_token).await,
        Err(VerifyError::UnknownKey)
    );
    assert!(verifier.verify(&next.token(Uuid::new_v4())).await.is_ok());
}

#[tokio::test]
async fn a_failing_refresh_keeps_the_cached_keys() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    gh.set_max_age(1);
    let verifier = Verifier::start(
        gh.config()
            .with_jwks_min_refetch_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    gh.set_jwks_down(true);
    let before = gh.jwks_requests();
    eventually(Duration::from_secs(5), "failed refreshes", async || {
        gh.jwks_requests() >= before + 2
    })
    .await;
    assert!(verifier.verify(&key.token(Uuid::new_v4())).await.is_ok());
    assert_eq!(verifier.status().jwks_keys, 1);
}
