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

// ---------------------------------------------------------------------------
// Over HTTP: discovery, the admin endpoints, both signing modes.

use crate::common::{TestApp, problem};
use reqwest::StatusCode;

async fn get_json(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, Value) {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let headers = res.headers().clone();
    (headers, res.json().await.unwrap())
}

fn header_of(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_serves_the_published_keys_with_caching_headers() {
    let app = TestApp::spawn_with(&[("jwks-max-age", "7m")]).await;
    let (headers, jwks) = get_json(&app, "/.well-known/jwks.json").await;
    assert_eq!(headers["cache-control"], "public, max-age=420");
    assert_eq!(headers["content-type"], "application/json");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong: {etag}"
    );
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "current and next: {jwks}");
    for key in keys {
        let members: Vec<&str> = {
            let mut m: Vec<&str> = key
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            m.sort_unstable();
            m
        };
        assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        assert_eq!(
            (key["alg"].as_str(), key["use"].as_str()),
            (Some("EdDSA"), Some("sig"))
        );
        // The kid is the RFC 7638 thumbprint, as jsonwebtoken computes it.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
        assert_eq!(
            key["kid"],
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap()
        );
    }

    // A token verifies with the published key its kid names, and nothing
    // secret is needed.
    let t = app.logged_in("ada@example.com").await;
    let header = header_of(&t.access);
    assert_eq!(
        (header["alg"].as_str(), header["typ"].as_str()),
        (Some("EdDSA"), Some("at+jwt"))
    );
    let key = keys
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid published");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["gatehouse"]);
    validation.set_issuer(&["gatehouse"]);
    let data = jsonwebtoken::decode::<Value>(
        &t.access,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .unwrap();
    // RFC 9068's required claims are all there.
    for claim in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
        assert!(data.claims.get(claim).is_some(), "{claim}");
    }
    assert_eq!(data.claims["client_id"], "gatehouse");

    // If-None-Match: 304 with the same validators, no body.
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(res.headers()["cache-control"], "public, max-age=420");
    assert!(res.bytes().await.unwrap().is_empty());
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_names_the_issuer_keys_token_endpoint_and_feed() {
    let app = TestApp::spawn_with(&[("public-url", "https://auth.example.com/")]).await;
    let (_, doc) = get_json(&app, "/.well-known/openid-configuration").await;
    assert_eq!(
        doc,
        serde_json::json!({
            "issuer": "gatehouse",
            "jwks_uri": "https://auth.example.com/.well-known/jwks.json",
            "token_endpoint": "https://auth.example.com/auth/token",
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "token_endpoint_auth_methods_supported": ["none"],
            "grant_types_supported": ["password", "refresh_token"],
            "revocation_feed_uri": "https://auth.example.com/.well-known/revocations",
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_mode_signs_with_the_secret_under_a_kid_and_publishes_nothing() {
    let app = TestApp::spawn_with(&[("jwt-algorithm", "HS256")]).await;
    let (_, jwks) = get_json(&app, "/.well-known/jwks.json").await;
    assert_eq!(jwks, serde_json::json!({"keys": []}));
    let (_, doc) = get_json(&app, "/.well-known/openid-configuration").await;
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["HS256"])
    );
    let t = app.logged_in("ada@example.com").await;
    let header = header_of(&t.access);
    assert_eq!(header["alg"], "HS256");
    assert!(header["kid"].as_str().unwrap().starts_with("hs256-"));
    assert_eq!(
        app.get_auth("/me", &t.access).await.status(),
        StatusCode::OK
    );
    // Refresh, logout and staleness work the same.
    let fresh = app.refreshed(&t).await;
    assert_eq!(
        app.get_auth("/me", &fresh.access).await.status(),
        StatusCode::OK
    );
    let res = app.post_auth("/auth/logout", &fresh.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    app.assert_token_refused(&fresh.access).await;

    // Tokens of the other mode are refused both ways (their sessions are
    // unknown there too, but the algorithm is checked first).
    let eddsa = TestApp::spawn().await;
    let other = eddsa.logged_in("bob@example.com").await;
    app.assert_token_refused(&other.access).await;
    let t = app.logged_in("carol@example.com").await;
    eddsa.assert_token_refused(&t.access).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_list_and_rotate_keys_audited_and_recorded() {
    let app = TestApp::spawn_with(&[("jwks-max-age", "1s"), ("key-refresh-interval", "1s")]).await;
    let root = app.admin("root@example.com").await;
    let user = app.logged_in("ada@example.com").await;
    for (method, path) in [
        (reqwest::Method::GET, "/admin/keys"),
        (reqwest::Method::POST, "/admin/keys/rotate"),
    ] {
        let res = app
            .send_auth(method.clone(), path, Some(&user.access), None)
            .await;
        problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.send_auth(method, path, None, None).await;
        problem(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    }

    let res = app.get_auth("/admin/keys", &root.access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page: Value = res.json().await.unwrap();
    assert_eq!(
        (page["total"].as_i64(), page["limit"].as_i64()),
        (Some(2), Some(50))
    );
    let state_of = |page: &Value, state: &str| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["state"] == state)
            .cloned()
            .unwrap()
    };
    let (current, next) = (state_of(&page, "current"), state_of(&page, "next"));
    // Public parts, states and dates only.
    let text = page.to_string();
    for secret in ["private", "\"d\"", "pkcs8"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(current["public_jwk"]["kid"], current["kid"]);
    assert!(current["activated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(next["activated_at"], Value::Null);

    // Within one refresh period + max-age of its publication, the next key
    // may not sign yet: 409 with Retry-After, nothing changed.
    let res = app.post_auth("/admin/keys/rotate", &root.access).await;
    let retry = res.headers().get("retry-after").cloned();
    problem(res, StatusCode::CONFLICT, "rotation_too_soon").await;
    assert!(retry.is_some());
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let res = app.post_auth("/admin/keys/rotate", &root.access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotation: Value = res.json().await.unwrap();
    assert_eq!(rotation["activated"], next["kid"]);
    assert_eq!(rotation["deactivated"], current["kid"]);
    // This replica signs with the new key at once; old tokens stay valid.
    let t = app.login("ada@example.com", crate::common::PASSWORD).await;
    assert_eq!(header_of(&t.access)["kid"], next["kid"]);
    assert_eq!(
        app.get_auth("/me", &user.access).await.status(),
        StatusCode::OK
    );
    let (_, jwks) = get_json(&app, "/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);

    // Recorded as a run of the rotate-keys job and audited.
    let runs: Value = app
        .get_auth("/admin/jobs/runs", &root.access)
        .await
        .json()
        .await
        .unwrap();
    let run = &runs["items"][0];
    assert_eq!(
        (run["job"].as_str(), run["trigger"].as_str()),
        (Some("rotate-keys"), Some("manual"))
    );
    assert_eq!(run["id"], rotation["run_id"]);
    assert_eq!(run["requested_by"], root.user_id.to_string());
    assert_eq!(run["details"]["outcome"], "rotated");
    let audit: Value = app
        .get_auth("/admin/audit?action=keys_rotated", &root.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["total"], 1);
    assert_eq!(audit["items"][0]["actor_id"], root.user_id.to_string());
    assert_eq!(audit["items"][0]["details"]["run_id"], rotation["run_id"]);
    let audit: Value = app
        .get_auth("/admin/audit?action=keys_listed", &root.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["total"], 1);

    // The current key's age is on /metrics.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gatehouse_signing_key_age_seconds"),
        "{metrics}"
    );
    assert!(metrics.contains("gatehouse_key_rotations_total"));
}
