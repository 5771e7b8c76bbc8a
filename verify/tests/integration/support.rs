//! Test support: a tiny in-process server speaking Gatehouse's public
//! contract (JWKS and revocation feed; docs/tokens.md), Ed25519 keys
//! to sign tokens with, Redis helpers and a private redis-server.
//!
//! The server stands in for Gatehouse until its side lands; the verifier is
//! only ever given a base URL, so the same tests can point at the real
//! `gatehouse-api` later.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use gatehouse_verify::{Config, Verifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// The shared Redis of the test run: `TEST_REDIS_URL` if it answers, else a
/// private server testkit starts for this test process.
pub fn shared_redis() -> String {
    gatehouse_testkit::redis_url()
}

pub fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// An Ed25519 key pair with its JWK, as Gatehouse publishes it.
pub struct Keypair {
    pub kid: String,
    pub encoding: EncodingKey,
    pub public: [u8; 32],
}

impl Keypair {
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let signing = SigningKey::from_bytes(&seed);
        let der = signing.to_pkcs8_der().unwrap();
        Self {
            kid: format!("k-{}", Uuid::new_v4()),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public: signing.verifying_key().to_bytes(),
        }
    }

    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// A valid access token of `sid` (a fresh user), minted now.
    pub fn token(&self, sid: Uuid) -> String {
        self.sign(&claims(sid))
    }

    /// Sign `claims` as an access token (`EdDSA`, `at+jwt`, this kid).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(self.kid.clone());
        self.sign_with(header, claims)
    }

    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The claims of a fresh access token of session `sid`, as Gatehouse mints
/// them (15 min lifetime).
pub fn claims(sid: Uuid) -> Value {
    claims_at(sid, now())
}

/// The same, issued at `iat`.
pub fn claims_at(sid: Uuid, iat: i64) -> Value {
    json!({
        "iss": "gatehouse",
        "aud": "gatehouse",
        "sub": Uuid::new_v4(),
        "sid": sid,
        "role": "user",
        "iat": iat,
        "nbf": iat,
        "exp": iat + 900,
        "jti": Uuid::new_v4(),
    })
}

/// A token built by hand from raw JSON segments (for `alg: none` and friends).
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

struct Jwks {
    keys: Vec<Value>,
    version: u64,
    max_age: u64,
}

struct FakeState {
    jwks: Mutex<Jwks>,
    /// (cursor, sid, not_before), in cursor order.
    feed: Mutex<Vec<(i64, Uuid, i64)>>,
    page_size: AtomicUsize,
    jwks_requests: AtomicU64,
    jwks_down: AtomicBool,
    feed_down: AtomicBool,
    /// The `since` of every feed request, in order.
    feed_sinces: Mutex<VecDeque<Option<i64>>>,
}

/// Gatehouse's JWKS and revocation feed, in process, on a real socket.
pub struct FakeGatehouse {
    base_url: String,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGatehouse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Deserialize)]
struct FeedQuery {
    since: Option<i64>,
}

impl FakeGatehouse {
    /// A server publishing `keys`.
    pub async fn start(keys: &[&Keypair]) -> Self {
        let state = Arc::new(FakeState {
            jwks: Mutex::new(Jwks {
                keys: keys.iter().map(|k| k.jwk()).collect(),
                version: 1,
                max_age: 300,
            }),
            feed: Mutex::new(Vec::new()),
            page_size: AtomicUsize::new(100),
            jwks_requests: AtomicU64::new(0),
            jwks_down: AtomicBool::new(false),
            feed_down: AtomicBool::new(false),
            feed_sinces: Mutex::new(VecDeque::new()),
        });
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/revocations", get(revocations))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Settings for a verifier of this server (polling only, 100 ms).
    pub fn config(&self) -> Config {
        Config::new(self.base_url()).with_poll_interval(Duration::from_millis(100))
    }

    pub async fn verifier(&self) -> Verifier {
        Verifier::start(self.config()).await.unwrap()
    }

    pub fn publish_key(&self, key: &Keypair) {
        self.set_keys(|keys| keys.push(key.jwk()));
    }

    pub fn unpublish_key(&self, kid: &str) {
        self.set_keys(|keys| keys.retain(|k| k["kid"] != kid));
    }

    pub fn set_keys(&self, f: impl FnOnce(&mut Vec<Value>)) {
        let mut jwks = self.state.jwks.lock().unwrap();
        f(&mut jwks.keys);
        jwks.version += 1;
    }

    pub fn set_max_age(&self, secs: u64) {
        self.state.jwks.lock().unwrap().max_age = secs;
    }

    pub fn jwks_requests(&self) -> u64 {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    pub fn set_jwks_down(&self, down: bool) {
        self.state.jwks_down.store(down, Ordering::SeqCst);
    }

    pub fn set_feed_down(&self, down: bool) {
        self.state.feed_down.store(down, Ordering::SeqCst);
    }

    pub fn set_page_size(&self, n: usize) {
        self.state.page_size.store(n, Ordering::SeqCst);
    }

    /// Append a feed entry (the row Gatehouse commits); returns its cursor.
    pub fn revoke(&self, sid: Uuid, not_before: i64) -> i64 {
        let mut feed = self.state.feed.lock().unwrap();
        let cursor = feed.last().map_or(1, |e| e.0 + 1);
        feed.push((cursor, sid, not_before));
        cursor
    }

    /// Every `since` the feed was asked for, in order.
    pub fn feed_sinces(&self) -> Vec<Option<i64>> {
        self.state
            .feed_sinces
            .lock()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    pub fn feed_requests(&self) -> usize {
        self.state.feed_sinces.lock().unwrap().len()
    }
}

async fn jwks(State(state): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    if state.jwks_down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (body, etag, max_age) = {
        let jwks = state.jwks.lock().unwrap();
        (
            json!({ "keys": jwks.keys }),
            format!("\"v{}\"", jwks.version),
            jwks.max_age,
        )
    };
    let cache = format!("public, max-age={max_age}");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::CACHE_CONTROL, cache), (header::ETAG, etag)],
        )
            .into_response();
    }
    (
        [(header::CACHE_CONTROL, cache), (header::ETAG, etag)],
        Json(body),
    )
        .into_response()
}

/// `GET /.well-known/revocations?since=<cursor>`, as docs/tokens.md describes
/// says, in pages of at most `page_size` items.
async fn revocations(State(state): State<Arc<FakeState>>, Query(q): Query<FeedQuery>) -> Response {
    state.feed_sinces.lock().unwrap().push_back(q.since);
    if state.feed_down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let page_size = state.page_size.load(Ordering::SeqCst);
    let feed = state.feed.lock().unwrap();
    let items: Vec<_> = feed
        .iter()
        .filter(|e| q.since.is_none_or(|s| e.0 > s))
        .take(page_size)
        .map(|&(cursor, sid, not_before)| json!({"cursor": cursor, "sid": sid, "not_before": not_before}))
        .collect();
    let next_cursor = match (items.last(), q.since) {
        (Some(last), _) => last["cursor"].as_i64().unwrap(),
        (None, Some(since)) => since,
        (None, None) => feed.last().map_or(0, |e| e.0),
    };
    Json(json!({ "items": items, "next_cursor": next_cursor })).into_response()
}

/// A Redis namespace of this test's own on the shared Redis.
pub fn unique_namespace() -> String {
    format!("verify-test-{}", Uuid::new_v4().simple())
}

/// Publish one feed item on `{ns}:revocations`, as Gatehouse does after commit.
pub async fn publish(redis_url: &str, ns: &str, cursor: i64, sid: Uuid, not_before: i64) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let payload = json!({"cursor": cursor, "sid": sid, "not_before": not_before}).to_string();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{ns}:revocations"))
        .arg(payload)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Poll `f` every 5 ms until it is true; panic after `timeout`. Returns the
/// time it took.
pub async fn eventually(
    timeout: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub use gatehouse_testkit::{PrivateRedis, free_port};
