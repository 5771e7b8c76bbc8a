//! Signing keys in the database: first start under the key lock, rotation
//! timing, retirement, and what an API replica loads.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_api::auth::keys::{KeyRing, SigningAlgorithm};
use gatehouse_shared::keys::{KeySealer, KeyTiming};
use gatehouse_shared::models::SigningKey;
use gatehouse_shared::models::signing_key::{KeyStoreError, Rotation};
use gatehouse_testkit::TestDb;
use serde_json::Value;

const SECRET: &[u8] = b"test-secret-0123456789-0123456789-abcdef";

fn timing() -> KeyTiming {
    KeyTiming {
        refresh_interval: Duration::from_secs(30),
        jwks_max_age: Duration::from_secs(300),
        access_token_ttl: Duration::from_secs(900),
    }
}

async fn states(db: &TestDb) -> Vec<(String, String, bool)> {
    let mut conn = db.conn().await;
    let page = SigningKey::list(&mut conn, 100, 0).await.unwrap();
    page.items
        .into_iter()
        .map(|k| (k.kid, k.state, k.private_key.is_some()))
        .collect()
}

fn count(states: &[(String, String, bool)], state: &str) -> usize {
    states.iter().filter(|(_, s, _)| s == state).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_starting_together_create_one_current_and_one_next_key() {
    let db = TestDb::new().await;
    let sealer = KeySealer::new(SECRET);
    let starts = (0..6).map(|_| {
        let (url, sealer) = (db.url.clone(), sealer.clone());
        tokio::spawn(async move {
            use diesel_async::AsyncConnection;
            let mut conn = diesel_async::AsyncPgConnection::establish(&url)
                .await
                .unwrap();
            SigningKey::ensure(&mut conn, &sealer).await.unwrap()
        })
    });
    let created: Vec<Vec<String>> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // Exactly one start created both keys; the others found them.
    assert_eq!(created.iter().filter(|c| !c.is_empty()).count(), 1);
    assert_eq!(created.iter().map(Vec::len).sum::<usize>(), 2);
    let s = states(&db).await;
    assert_eq!(
        (count(&s, "current"), count(&s, "next"), s.len()),
        (1, 1, 2)
    );
    assert!(s.iter().all(|(_, _, private)| *private));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_different_jwt_secret_stops_the_start() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    SigningKey::ensure(&mut conn, &KeySealer::new(SECRET))
        .await
        .unwrap();
    let err = SigningKey::ensure(
        &mut conn,
        &KeySealer::new(b"another-secret-0123456789-0123456789-xyz"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeyStoreError::Key(_)), "{err}");
    assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    // Nothing was created or changed.
    assert_eq!(states(&db).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_waits_one_cache_period_then_rotates_and_later_retires() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let sealer = KeySealer::new(SECRET);
    SigningKey::ensure(&mut conn, &sealer).await.unwrap();
    let before = states(&db).await;
    let kid_of = |s: &[(String, String, bool)], state: &str| {
        s.iter().find(|(_, st, _)| st == state).unwrap().0.clone()
    };
    let (first_current, first_next) = (kid_of(&before, "current"), kid_of(&before, "next"));
    let t = timing();
    let now = Utc::now();

    // The next key was published a moment ago: it may not sign yet.
    let waiting = SigningKey::rotate(&mut conn, &sealer, &t, now)
        .await
        .unwrap();
    let Rotation::Waiting {
        next, usable_from, ..
    } = waiting
    else {
        panic!("rotated too early: {waiting:?}");
    };
    assert_eq!(next, first_next);
    assert!(usable_from >= now + chrono::Duration::seconds(329));
    assert_eq!(states(&db).await, before);

    // One refresh period plus one max-age later it rotates.
    let rotated = SigningKey::rotate(&mut conn, &sealer, &t, usable_from)
        .await
        .unwrap();
    let Rotation::Rotated {
        activated,
        deactivated,
        created,
        retired,
    } = rotated
    else {
        panic!("did not rotate: {rotated:?}");
    };
    assert_eq!(activated, first_next);
    assert_eq!(deactivated.as_deref(), Some(first_current.as_str()));
    assert!(retired.is_empty());
    let s = states(&db).await;
    assert_eq!(kid_of(&s, "current"), first_next);
    assert_eq!(kid_of(&s, "previous"), first_current);
    assert_eq!(kid_of(&s, "next"), created);

    // The previous key stays until its last token expired (a second
    // rotation meanwhile keeps it)...
    let almost = usable_from + chrono::Duration::seconds(30 + 900 + 60 - 1);
    let r = SigningKey::rotate(&mut conn, &sealer, &t, almost)
        .await
        .unwrap();
    assert!(
        matches!(&r, Rotation::Rotated { retired, .. } if retired.is_empty()),
        "{r:?}"
    );
    // ...then is retired, its private half erased.
    let after = almost + chrono::Duration::seconds(1);
    let r = SigningKey::rotate(&mut conn, &sealer, &t, after)
        .await
        .unwrap();
    assert!(
        matches!(&r, Rotation::Waiting { retired, .. } if retired == &vec![first_current.clone()]),
        "{r:?}"
    );
    let s = states(&db).await;
    let old = s.iter().find(|(kid, _, _)| *kid == first_current).unwrap();
    assert_eq!((old.1.as_str(), old.2), ("retired", false));
}

fn jwks_kids(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_picks_up_a_rotation_on_reload() {
    let db = TestDb::new().await;
    let args = gatehouse_shared::config::DatabaseArgs {
        database_url: db.url.clone(),
        db_pool_size: 2,
        db_pool_timeout: Duration::from_secs(5),
    };
    let pool = gatehouse_shared::db::build_pool(&args).unwrap();
    let ring = KeyRing::load(&pool, SigningAlgorithm::EdDsa, SECRET, timing())
        .await
        .unwrap();
    let first = ring.snapshot();
    let s = states(&db).await;
    let current = s.iter().find(|k| k.1 == "current").unwrap().0.clone();
    let next = s.iter().find(|k| k.1 == "next").unwrap().0.clone();
    assert_eq!(first.signer.kid, current);
    assert_eq!(
        jwks_kids(&first.jwks.body),
        vec![current.clone(), next.clone()]
    );
    assert!(first.verifier(&next).is_some() && first.verifier("nope").is_none());

    let mut conn = db.conn().await;
    let later: DateTime<Utc> = Utc::now() + chrono::Duration::minutes(10);
    SigningKey::rotate(&mut conn, &KeySealer::new(SECRET), &timing(), later)
        .await
        .unwrap();
    // Unchanged until the reload, then the new set.
    assert_eq!(ring.snapshot().signer.kid, current);
    ring.reload(&pool).await.unwrap();
    let second = ring.snapshot();
    assert_eq!(second.signer.kid, next);
    let kids = jwks_kids(&second.jwks.body);
    assert_eq!(kids.len(), 3);
    assert_eq!(kids[0], next);
    assert_eq!(kids[2], current);
    assert_ne!(second.jwks.etag, first.jwks.etag);

    // HS256 mode publishes nothing and signs under the secret's kid.
    let hs = KeyRing::load(&pool, SigningAlgorithm::Hs256, SECRET, timing())
        .await
        .unwrap();
    assert_eq!(&hs.snapshot().jwks.body[..], br#"{"keys":[]}"#);
    assert!(hs.snapshot().signer.kid.starts_with("hs256-"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_tick_runs_once_however_many_workers_fire_it() {
    let db = TestDb::new().await;
    let args = gatehouse_shared::config::DatabaseArgs {
        database_url: db.url.clone(),
        db_pool_size: 4,
        db_pool_timeout: Duration::from_secs(5),
    };
    let pool = gatehouse_shared::db::build_pool(&args).unwrap();
    let sealer = KeySealer::new(SECRET);
    SigningKey::ensure(&mut db.conn().await, &sealer)
        .await
        .unwrap();
    // Publication waits are zero-length here, so the tick really rotates.
    let t = KeyTiming {
        refresh_interval: Duration::from_millis(1),
        jwks_max_age: Duration::from_millis(1),
        access_token_ttl: Duration::from_secs(900),
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let tick = DateTime::<Utc>::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let runs = (0..4).map(|i| {
        let (pool, sealer) = (pool.clone(), sealer.clone());
        tokio::spawn(async move {
            gatehouse_shared::rotation::run_scheduled(&pool, &sealer, &t, &format!("w{i}"), tick)
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<Option<Rotation>> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ran: Vec<&Rotation> = outcomes.iter().flatten().collect();
    assert_eq!(ran.len(), 1, "{outcomes:?}");
    assert!(matches!(ran[0], Rotation::Rotated { .. }));
    let s = states(&db).await;
    assert_eq!(
        (
            count(&s, "current"),
            count(&s, "next"),
            count(&s, "previous")
        ),
        (1, 1, 1)
    );
    // One run recorded, with what it did.
    let mut conn = db.conn().await;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use gatehouse_shared::schema::job_runs;
    let rows: Vec<(String, String, String, Option<Value>)> = job_runs::table
        .select((
            job_runs::job,
            job_runs::trigger,
            job_runs::status,
            job_runs::details,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let (job, trigger, status, details) = &rows[0];
    assert_eq!(
        (job.as_str(), trigger.as_str(), status.as_str()),
        ("rotate-keys", "schedule", "succeeded")
    );
    assert_eq!(details.as_ref().unwrap()["outcome"], "rotated");
}
