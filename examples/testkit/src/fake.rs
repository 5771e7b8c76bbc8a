//! A stand-in for Gatehouse, in process, that follows the public contract
//! the apps rely on (docs/tokens.md, PRODUCT.md "Tokens for other
//! services"): EdDSA access tokens (`typ: at+jwt`, `kid`) from its own
//! Ed25519 key, `/.well-known/jwks.json`, the revocation feed over HTTP and
//! on Redis (`{ns}:revocations`), and the account endpoints the chat page
//! and Swagger UI call (`/auth/signup`, `/auth/verify`, `/auth/login`,
//! `/auth/token`, `/auth/refresh` with the cookie, `/auth/logout`, `/me`),
//! with CORS for the apps' origins like Gatehouse's `CORS_ALLOWED_ORIGINS`.
//!
//! It lets the apps be tested fully before and independently of the real
//! Gatehouse's EdDSA keys; the same scenarios also run against the real
//! `gatehouse-api` binary (see `Gatehouse::real`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};
use uuid::Uuid;

const COOKIE: &str = "gatehouse_refresh";

/// Settings of a fake Gatehouse.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Origins allowed by CORS (with credentials), e.g. an app's page.
    pub cors_origins: Vec<String>,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Whether login needs a verified email (Gatehouse's default: yes).
    pub require_verified: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            access_ttl: Duration::from_secs(900),
            require_verified: false,
        }
    }
}

#[derive(Debug, Clone)]
struct User {
    id: Uuid,
    email: String,
    password: String,
    verified: bool,
    code: String,
}

#[derive(Debug, Clone)]
struct Session {
    user_id: Uuid,
    refresh: String,
    revoked: bool,
    not_before: i64,
}

#[derive(Debug, Clone, Serialize)]
struct FeedItem {
    cursor: i64,
    sid: Uuid,
    not_before: i64,
}

struct Inner {
    encoding: EncodingKey,
    kid: String,
    jwks: Value,
    options: FakeOptions,
    users: Mutex<HashMap<String, User>>,
    sessions: Mutex<HashMap<Uuid, Session>>,
    feed: Mutex<Vec<FeedItem>>,
    redis: redis::Client,
    namespace: String,
}

/// A running fake Gatehouse; stops when dropped.
pub struct FakeGatehouse {
    pub url: String,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

/// Tokens as `POST /auth/login` returns them, plus the session id.
#[derive(Debug, Clone)]
pub struct Login {
    pub access_token: String,
    pub user_id: Uuid,
    pub session_id: Uuid,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let mut res = (
        status,
        Json(json!({
            "type": format!("urn:gatehouse:problem:{code}"),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
        })),
    )
        .into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: Uuid,
    sid: Uuid,
    role: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: Uuid,
}

impl Inner {
    /// An access token for a session, minted like Gatehouse does
    /// (`iat = nbf = max(now, session.not_before)`).
    fn mint(&self, user_id: Uuid, sid: Uuid, not_before: i64, ttl: Duration) -> String {
        let iat = now().max(not_before);
        let claims = Claims {
            iss: "gatehouse",
            aud: "gatehouse",
            sub: user_id,
            sid,
            role: "user",
            iat,
            nbf: iat,
            exp: iat + ttl.as_secs() as i64,
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap_or_default()
    }

    fn open_session(&self, user_id: Uuid) -> (Uuid, Session) {
        let sid = Uuid::now_v7();
        let session = Session {
            user_id,
            refresh: random_token(),
            revoked: false,
            not_before: 0,
        };
        lock(&self.sessions).insert(sid, session.clone());
        (sid, session)
    }

    /// Revoke a session: feed entry + Redis publish, like Gatehouse.
    async fn revoke(&self, sid: Uuid) {
        // `ceil(now)`: every token minted before the change has iat < it.
        let not_before = now() + 1;
        if let Some(s) = lock(&self.sessions).get_mut(&sid) {
            s.revoked = true;
            s.not_before = not_before;
        }
        let item = {
            let mut feed = lock(&self.feed);
            let cursor = feed.last().map_or(1, |i| i.cursor + 1);
            let item = FeedItem {
                cursor,
                sid,
                not_before,
            };
            feed.push(item.clone());
            item
        };
        if let Ok(mut conn) = self.redis.get_multiplexed_async_connection().await {
            let _: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(format!("{}:revocations", self.namespace))
                .arg(serde_json::to_string(&item).unwrap_or_default())
                .query_async(&mut conn)
                .await;
        }
    }

    fn token_response(&self, user_id: Uuid, sid: Uuid, session: &Session) -> Response {
        let access = self.mint(user_id, sid, session.not_before, self.options.access_ttl);
        let body = json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.options.access_ttl.as_secs(),
            "refresh_token": session.refresh,
            "user_id": user_id,
        });
        let cookie = format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/auth",
            session.refresh
        );
        let mut res = Json(body).into_response();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    /// The session of a valid bearer access token.
    fn bearer(&self, headers: &HeaderMap) -> Option<(Uuid, Uuid)> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let payload = token.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let sid = Uuid::parse_str(claims["sid"].as_str()?).ok()?;
        let sub = Uuid::parse_str(claims["sub"].as_str()?).ok()?;
        let iat = claims["iat"].as_i64()?;
        let sessions = lock(&self.sessions);
        let s = sessions.get(&sid)?;
        (!s.revoked && iat >= s.not_before && claims["exp"].as_i64()? > now()).then_some((sub, sid))
    }
}

impl FakeGatehouse {
    /// Start on a free port. Revocations are published on
    /// `{redis_namespace}:revocations` of the test Redis.
    pub async fn start(redis_namespace: &str, options: FakeOptions) -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        let der = key.to_pkcs8_der().expect("pkcs8");
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let kid = format!("fake-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let jwks = json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"
        }]});
        let inner = Arc::new(Inner {
            encoding,
            kid,
            jwks,
            users: Mutex::default(),
            sessions: Mutex::default(),
            feed: Mutex::default(),
            redis: redis::Client::open(gatehouse_testkit::redis_url()).expect("redis url"),
            namespace: redis_namespace.to_owned(),
            options,
        });
        let origins: Vec<HeaderValue> = inner
            .options
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        // The same CORS policy as Gatehouse's (api/src/lib.rs).
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .allow_credentials(true);
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .route("/.well-known/revocations", get(serve_feed))
            .route("/auth/signup", post(signup))
            .route("/auth/verify", post(verify))
            .route("/auth/login", post(login))
            .route("/auth/token", post(token))
            .route("/auth/refresh", post(refresh))
            .route("/auth/logout", post(logout))
            .route("/me", get(me))
            .layer(cors)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner, task }
    }

    /// A new verified user with a session: what a login returns.
    pub fn login_new_user(&self) -> Login {
        let id = Uuid::now_v7();
        let email = format!("{}@example.com", id.simple());
        lock(&self.inner.users).insert(
            email.clone(),
            User {
                id,
                email,
                password: "not used".into(),
                verified: true,
                code: String::new(),
            },
        );
        self.login_user(id)
    }

    /// A new session of an existing user.
    pub fn login_user(&self, user_id: Uuid) -> Login {
        let (sid, session) = self.inner.open_session(user_id);
        Login {
            access_token: self.inner.mint(
                user_id,
                sid,
                session.not_before,
                self.inner.options.access_ttl,
            ),
            user_id,
            session_id: sid,
        }
    }

    /// A token of this session with another lifetime (e.g. about to expire).
    pub fn mint(&self, login: &Login, ttl: Duration) -> String {
        self.inner.mint(login.user_id, login.session_id, 0, ttl)
    }

    /// Revoke a session, as a logout does.
    pub async fn revoke(&self, session_id: Uuid) {
        self.inner.revoke(session_id).await;
    }

    /// The 6-digit code Gatehouse would have emailed.
    pub fn verification_code(&self, email: &str) -> Option<String> {
        lock(&self.inner.users).get(email).map(|u| u.code.clone())
    }

    /// How many revocations the feed holds.
    pub fn revocations(&self) -> usize {
        lock(&self.inner.feed).len()
    }
}

impl Drop for FakeGatehouse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type St = State<Arc<Inner>>;

async fn serve_jwks(State(inner): St) -> Response {
    let mut res = Json(inner.jwks.clone()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    res
}

#[derive(Deserialize)]
struct Since {
    since: Option<i64>,
}

async fn serve_feed(State(inner): St, Query(q): Query<Since>) -> Json<Value> {
    let feed = lock(&inner.feed);
    let since = q.since.unwrap_or(0);
    let items: Vec<&FeedItem> = feed.iter().filter(|i| i.cursor > since).collect();
    let next = items
        .last()
        .map(|i| i.cursor)
        .or(q.since)
        .unwrap_or_else(|| feed.last().map_or(0, |i| i.cursor));
    Json(json!({"items": items, "next_cursor": next}))
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

async fn signup(State(inner): St, Json(c): Json<Credentials>) -> Response {
    let email = c.email.trim().to_lowercase();
    if !email.contains('@') || c.password.chars().count() < 8 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Invalid email or weak password.",
        );
    }
    let mut users = lock(&inner.users);
    if users.contains_key(&email) {
        return problem(
            StatusCode::CONFLICT,
            "email_taken",
            "An account with this email already exists.",
        );
    }
    let id = Uuid::now_v7();
    let code = format!("{:06}", rand::rng().next_u32() % 1_000_000);
    users.insert(
        email.clone(),
        User {
            id,
            email: email.clone(),
            password: c.password,
            verified: false,
            code,
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "email": email, "is_verified": false})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct VerifyBody {
    email: String,
    code: String,
}

async fn verify(State(inner): St, Json(b): Json<VerifyBody>) -> Response {
    let mut users = lock(&inner.users);
    match users.get_mut(&b.email.trim().to_lowercase()) {
        Some(u) if u.code == b.code.trim() => {
            u.verified = true;
            Json(json!({"id": u.id, "email": u.email, "is_verified": true})).into_response()
        }
        _ => problem(
            StatusCode::BAD_REQUEST,
            "invalid_code",
            "The code is wrong or expired.",
        ),
    }
}

enum Refused {
    Credentials,
    NotVerified,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::NotVerified => problem(
                StatusCode::FORBIDDEN,
                "email_not_verified",
                "Verify your email first.",
            ),
            Self::Credentials => problem(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "The email or password is incorrect.",
            ),
        }
    }
}

fn check_login(inner: &Inner, email: &str, password: &str) -> Result<Uuid, Refused> {
    let users = lock(&inner.users);
    match users.get(&email.trim().to_lowercase()) {
        Some(u) if u.password == password => {
            if inner.options.require_verified && !u.verified {
                Err(Refused::NotVerified)
            } else {
                Ok(u.id)
            }
        }
        _ => Err(Refused::Credentials),
    }
}

async fn login(State(inner): St, Json(c): Json<Credentials>) -> Response {
    match check_login(&inner, &c.email, &c.password) {
        Ok(user_id) => {
            let (sid, session) = inner.open_session(user_id);
            inner.token_response(user_id, sid, &session)
        }
        Err(refused) => refused.into_response(),
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    username: Option<String>,
    password: Option<String>,
}

/// OAuth2 password grant (Swagger UI's Authorize).
async fn token(State(inner): St, Form(f): Form<TokenForm>) -> Response {
    let oauth_error =
        |code: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": code}))).into_response();
    if f.grant_type != "password" {
        return oauth_error("unsupported_grant_type");
    }
    match check_login(
        &inner,
        f.username.as_deref().unwrap_or_default(),
        f.password.as_deref().unwrap_or_default(),
    ) {
        Ok(user_id) => {
            let (sid, session) = inner.open_session(user_id);
            inner.token_response(user_id, sid, &session)
        }
        Err(_) => oauth_error("invalid_grant"),
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Refresh from the cookie (the page) with rotation.
async fn refresh(State(inner): St, headers: HeaderMap) -> Response {
    let Some(presented) = cookie(&headers) else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "No refresh token.",
        );
    };
    let found = {
        let mut sessions = lock(&inner.sessions);
        sessions
            .iter_mut()
            .find(|(_, s)| s.refresh == presented && !s.revoked)
            .map(|(sid, s)| {
                s.refresh = random_token();
                (*sid, s.clone())
            })
    };
    match found {
        Some((sid, session)) => inner.token_response(session.user_id, sid, &session),
        None => problem(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The refresh token is invalid.",
        ),
    }
}

async fn logout(State(inner): St, headers: HeaderMap) -> Response {
    let Some((_, sid)) = inner.bearer(&headers) else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is invalid.",
        );
    };
    inner.revoke(sid).await;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "gatehouse_refresh=; HttpOnly; SameSite=Strict; Path=/auth; Max-Age=0",
        ),
    );
    res
}

async fn me(State(inner): St, headers: HeaderMap) -> Response {
    let Some((sub, _)) = inner.bearer(&headers) else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is invalid.",
        );
    };
    let users = lock(&inner.users);
    match users.values().find(|u| u.id == sub) {
        Some(u) => {
            Json(json!({"id": u.id, "email": u.email, "is_verified": u.verified})).into_response()
        }
        None => problem(StatusCode::UNAUTHORIZED, "invalid_token", "Unknown user."),
    }
}
