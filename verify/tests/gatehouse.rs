//! gatehouse-verify against the real `gatehouse-api` binary (built by
//! `cargo test --workspace`): its JWKS, its key rotation and its revocation
//! feed over Redis and HTTP. Each test starts its own Gatehouse on a
//! database of its own (testkit) and its own Redis namespace (a private
//! `redis-server` where Redis is stopped mid-test).

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use gatehouse_testkit::process::binary;
use gatehouse_testkit::{Namespace, PrivateRedis, TestDb, free_port};
use gatehouse_verify::{Config, Verifier, VerifyError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

const SECRET: &str = "verify-test-secret-0123456789-0123456789-abc";
const ADMIN: &str = "root@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// A running `gatehouse-api` on a database of its own.
struct Gatehouse {
    child: Child,
    base: String,
    _db: TestDb,
    namespace: Namespace,
    redis_url: String,
    http: reqwest::Client,
}

impl Gatehouse {
    async fn start(redis_url: &str, extra: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let port = free_port();
        let namespace = Namespace::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(binary("gatehouse-api"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", redis_url)
            .env("REDIS_NAMESPACE", namespace.as_str())
            .env("JWT_SECRET", SECRET)
            // A fixture secret, published in deploy/known-secrets.txt.
            .env("GATEHOUSE_DEV_ALLOW_KNOWN_SECRETS", "true")
            .env("API_ADDR", format!("127.0.0.1:{port}"))
            .env("PUBLIC_URL", &base)
            .env("COOKIE_SECURE", "false")
            .env("RATE_LIMITS", "off")
            .env("BOOTSTRAP_ADMIN_EMAIL", ADMIN)
            .env("BOOTSTRAP_ADMIN_PASSWORD", PASSWORD)
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = http
                .get(format!("{base}/health/live"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "gatehouse-api did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            child,
            base,
            _db: db,
            namespace,
            redis_url: redis_url.to_owned(),
            http,
        }
    }

    /// A verifier for this Gatehouse: over Redis, or HTTP polling only.
    async fn verifier(&self, redis: bool) -> Verifier {
        let mut config = Config::new(&self.base)
            .with_poll_interval(Duration::from_millis(200))
            .with_jwks_min_refetch_interval(Duration::from_millis(200))
            .with_leeway(Duration::from_secs(1));
        if redis {
            config = config.with_redis(&self.redis_url, self.namespace.as_str());
        }
        Verifier::start(config).await.unwrap()
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `(access, refresh)` of a new session.
    async fn login(&self, email: &str) -> (String, String) {
        let (status, v) = self
            .post(
                "/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "login {email}: {v}");
        (
            v["access_token"].as_str().unwrap().to_owned(),
            v["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn refresh(&self, refresh: &str) -> (String, String) {
        let (status, v) = self
            .post("/auth/refresh", None, json!({"refresh_token": refresh}))
            .await;
        assert_eq!(status, 200, "refresh: {v}");
        (
            v["access_token"].as_str().unwrap().to_owned(),
            v["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A verified user (signed up, verified by the admin); returns its id.
    async fn user(&self, admin: &str, email: &str) -> Uuid {
        let (status, v) = self
            .post(
                "/auth/signup",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 201, "signup: {v}");
        let id: Uuid = v["id"].as_str().unwrap().parse().unwrap();
        let (status, v) = self
            .send(
                reqwest::Method::PATCH,
                &format!("/users/{id}"),
                admin,
                Some(json!({"is_verified": true})),
            )
            .await;
        assert_eq!(status, 200, "verify: {v}");
        id
    }

    async fn logout(&self, access: &str) {
        let (status, v) = self.post("/auth/logout", Some(access), Value::Null).await;
        assert_eq!(status, 204, "logout: {v}");
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        // Before the database is dropped (`_db`, after this).
        let _ = self.child.start_kill();
    }
}

/// Poll until `verifier` refuses `token` as revoked (or `limit` passes).
async fn refused_within(verifier: &Verifier, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match verifier.verify(token).await {
            Err(VerifyError::Revoked) => return started.elapsed(),
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => {}
        }
        assert!(
            started.elapsed() < limit,
            "still accepted {limit:?} after the change"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// An attacker's own Ed25519 key.
fn attacker_key() -> EncodingKey {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes())
}

fn eddsa_header(kid: &str) -> Header {
    let mut h = Header::new(Algorithm::EdDSA);
    h.typ = Some("at+jwt".into());
    h.kid = Some(kid.into());
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_holding_no_secret_accepts_valid_tokens_and_refuses_forged_expired_revoked_and_stale_ones()
 {
    let gh = Gatehouse::start(
        &gatehouse_testkit::redis_url(),
        &[("ACCESS_TOKEN_TTL", "4s")],
    )
    .await;
    let verifier = gh.verifier(true).await;
    let (admin, _) = gh.login(ADMIN).await;
    let ada = gh.user(&admin, "ada@example.com").await;
    let (token, refresh) = gh.login("ada@example.com").await;

    // Valid: accepted, with the claims Gatehouse signed.
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.sub, ada);
    assert_eq!(claims.role, "user");
    assert_eq!(claims.client_id(), Some("gatehouse"));
    let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
    let body = claims_of(&token);

    // Forged: payload changed under the real signature.
    let mut escalated = body.clone();
    escalated["role"] = json!("admin");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(escalated.to_string()),
        parts[2]
    );
    assert!(matches!(
        verifier.verify(&tampered).await,
        Err(VerifyError::BadSignature)
    ));
    // Forged: the attacker's key under the real kid, and under its own kid.
    let forged = sign(&eddsa_header(&kid), &escalated, &attacker_key());
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(VerifyError::BadSignature)
    ));
    let unknown = sign(&eddsa_header("attacker-kid"), &escalated, &attacker_key());
    assert!(matches!(
        verifier.verify(&unknown).await,
        Err(VerifyError::UnknownKey)
    ));
    // Forged: alg confusion, HS256 keyed with the public key, real kid.
    let jwks: Value = gh
        .http
        .get(format!("{}/.well-known/jwks.json", gh.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    let confused = sign(&hs, &escalated, &EncodingKey::from_secret(x.as_bytes()));
    assert!(verifier.verify(&confused).await.is_err());
    let raw = URL_SAFE_NO_PAD.decode(x).unwrap();
    let confused = sign(&hs, &escalated, &EncodingKey::from_secret(&raw));
    assert!(verifier.verify(&confused).await.is_err());
    // Forged: alg none; a refresh token offered as an access token.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
        parts[1]
    );
    assert!(verifier.verify(&none).await.is_err());
    assert!(verifier.verify(&refresh).await.is_err());

    // Stale: an admin changes the role; the old token dies at the app, and
    // a refresh carries the new role and is accepted at once.
    let (status, v) = gh
        .send(
            reqwest::Method::PATCH,
            &format!("/users/{ada}"),
            &admin,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    refused_within(&verifier, &token, Duration::from_secs(1)).await;
    let (fresh, fresh_refresh) = gh.refresh(&refresh).await;
    let claims = verifier.verify(&fresh).await.unwrap();
    assert_eq!(claims.role, "admin");

    // Revoked: logout.
    gh.logout(&fresh).await;
    refused_within(&verifier, &fresh, Duration::from_secs(1)).await;
    let _ = fresh_refresh;

    // Expired: a valid token once its 4 s (plus the 1 s leeway) are over.
    let (other, _) = gh.login(ADMIN).await;
    verifier.verify(&other).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(matches!(
        verifier.verify(&other).await,
        Err(VerifyError::Expired)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_while_an_app_runs_keeps_old_and_new_tokens_valid() {
    let gh = Gatehouse::start(
        &gatehouse_testkit::redis_url(),
        &[("JWKS_MAX_AGE", "1s"), ("KEY_REFRESH_INTERVAL", "1s")],
    )
    .await;
    let verifier = gh.verifier(true).await;
    let (admin, _) = gh.login(ADMIN).await;
    let before = gh.login(ADMIN).await.0;
    verifier.verify(&before).await.unwrap();
    let old_kid = header_of(&before)["kid"].as_str().unwrap().to_owned();

    // The next key may sign one refresh period + one max-age after it was
    // published (at start).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, rotation) = gh
        .post("/admin/keys/rotate", Some(&admin), Value::Null)
        .await;
    assert_eq!(status, 200, "{rotation}");
    assert_eq!(rotation["deactivated"], old_kid);
    let new_kid = rotation["activated"].as_str().unwrap().to_owned();

    let after = gh.login(ADMIN).await.0;
    assert_eq!(header_of(&after)["kid"], new_kid);
    // The app knew the new key before it signed (it was published as
    // next) or fetches it now; the old key stays published.
    verifier.verify(&after).await.unwrap();
    verifier.verify(&before).await.unwrap();
    let jwks: Value = gh
        .http
        .get(format!("{}/.well-known/jwks.json", gh.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));
    assert!(kids.contains(&rotation["created"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn after_logout_the_app_refuses_the_old_token() {
    let gh = Gatehouse::start(&gatehouse_testkit::redis_url(), &[]).await;
    let verifier = gh.verifier(true).await;
    let (token, _) = gh.login(ADMIN).await;
    verifier.verify(&token).await.unwrap();
    gh.logout(&token).await;
    let took = refused_within(&verifier, &token, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_dropped_mid_stream_polling_takes_over_and_nothing_is_missed() {
    let mut redis = PrivateRedis::start();
    let gh = Gatehouse::start(&redis.url(), &[]).await;
    let verifier = gh.verifier(true).await;
    let sessions: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(gh.login(ADMIN).await.0);
        }
        v
    };
    for token in &sessions {
        verifier.verify(token).await.unwrap();
    }
    // Over Redis.
    gh.logout(&sessions[0]).await;
    refused_within(&verifier, &sessions[0], Duration::from_secs(1)).await;

    // Redis goes away: logouts still succeed at once, and the app learns
    // of them by polling.
    redis.down();
    let started = Instant::now();
    gh.logout(&sessions[1]).await;
    gh.logout(&sessions[2]).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "logout waited for Redis"
    );
    refused_within(&verifier, &sessions[1], Duration::from_secs(5)).await;
    refused_within(&verifier, &sessions[2], Duration::from_secs(1)).await;
    verifier.verify(&sessions[3]).await.unwrap();

    // Redis comes back on the same port: pushes resume.
    redis.up();
    tokio::time::sleep(Duration::from_secs(2)).await;
    gh.logout(&sessions[3]).await;
    refused_within(&verifier, &sessions[3], Duration::from_secs(2)).await;
    for token in &sessions {
        assert!(matches!(
            verifier.verify(token).await,
            Err(VerifyError::Revoked)
        ));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_kid_is_refused() {
    let gh = Gatehouse::start(&gatehouse_testkit::redis_url(), &[]).await;
    let verifier = gh.verifier(false).await;
    let (token, _) = gh.login(ADMIN).await;
    let claims = claims_of(&token);
    let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
    // The real kid on a token signed by another key.
    let forged = sign(&eddsa_header(&kid), &claims, &attacker_key());
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(VerifyError::BadSignature)
    ));
    // Kids that name no published key, many times: refused, and the JWKS
    // refetch stays rate limited.
    for i in 0..20 {
        let bogus = sign(
            &eddsa_header(&format!("bogus-{i}")),
            &claims,
            &attacker_key(),
        );
        assert!(matches!(
            verifier.verify(&bogus).await,
            Err(VerifyError::UnknownKey)
        ));
    }
    verifier.verify(&token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hs256_token_is_refused_by_an_eddsa_verifier() {
    let eddsa = Gatehouse::start(&gatehouse_testkit::redis_url(), &[]).await;
    let hs256 = Gatehouse::start(
        &gatehouse_testkit::redis_url(),
        &[("JWT_ALGORITHM", "HS256")],
    )
    .await;
    let verifier = eddsa.verifier(false).await;
    let (token, _) = hs256.login(ADMIN).await;
    assert_eq!(header_of(&token)["alg"], "HS256");
    assert!(header_of(&token)["kid"].is_string());
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::UnsupportedAlgorithm)
    ));
    // The HS256 Gatehouse publishes no key at all.
    let jwks: Value = hs256
        .http
        .get(format!("{}/.well-known/jwks.json", hs256.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, json!({"keys": []}));
    // An HS256 token under the EdDSA key's kid, keyed with the secret.
    let (real, _) = eddsa.login(ADMIN).await;
    let mut h = Header::new(Algorithm::HS256);
    h.typ = Some("at+jwt".into());
    h.kid = header_of(&real)["kid"].as_str().map(str::to_owned);
    let confused = sign(
        &h,
        &claims_of(&real),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    assert!(verifier.verify(&confused).await.is_err());
}
