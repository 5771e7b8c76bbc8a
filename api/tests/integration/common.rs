use clap::Parser;
use gatehouse_api::config::Cli;
use gatehouse_api::state::AppState;
use gatehouse_shared::models::User;
use gatehouse_testkit::{Namespace, TestDb};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

/// `JWT_SECRET` of every test app (a worker binary started by a test needs
/// the same one: the stored link hashes are keyed with it).
pub const JWT_SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub state: AppState,
    pub db: TestDb,
    /// Kept for its `Drop`: the Redis keys of this test go with the app.
    _namespace: Namespace,
    server: tokio::task::JoinHandle<()>,
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub user_id: Uuid,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Start the app; `extra` are additional `--flag value` arguments.
    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let namespace = Namespace::new();
        let defaults = [
            ("jwt-secret", JWT_SECRET),
            ("cookie-secure", "false"),
            // The fixture secret is published (deploy/known-secrets.txt).
            ("dev-allow-known-secrets", "true"),
        ];
        let args =
            gatehouse_testkit::isolated_args("gatehouse-api", &db, &namespace, &defaults, extra);
        let cli = Cli::try_parse_from(args).unwrap();
        let state = gatehouse_api::build_state(cli.config).await.unwrap();
        gatehouse_api::accounts::bootstrap_admin(&state)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn({
            let state = state.clone();
            async move {
                let _ = gatehouse_api::serve(state, listener, std::future::pending()).await;
            }
        });
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            base,
            client,
            state,
            db,
            _namespace: namespace,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST `body` and assert a problem response.
    pub async fn post_problem(&self, path: &str, body: Value, status: StatusCode, code: &str) {
        problem(self.post(path, body).await, status, code).await;
    }

    /// GET without credentials.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// POST without a body, with extra request headers.
    pub async fn post_headers(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = self.client.post(self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.unwrap()
    }

    /// `POST /auth/login` from a client behind `X-Forwarded-For: xff`.
    pub async fn login_from(&self, email: &str, password: &str, xff: &str) -> Response {
        self.client
            .post(self.url("/auth/login"))
            .header("x-forwarded-for", xff)
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// `PATCH /users/{id}` changing only the role, as `token`.
    pub async fn set_role(&self, token: &str, id: Uuid, role: &str) -> Response {
        self.patch_auth(&format!("/users/{id}"), token, json!({"role": role}))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `GET /me` with `token` is refused: 401 `invalid_token`.
    pub async fn assert_token_refused(&self, token: &str) {
        problem(
            self.get_auth("/me", token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }

    /// The session's next pair, through `POST /auth/refresh`.
    pub async fn refreshed(&self, tokens: &Tokens) -> Tokens {
        let res = self
            .post("/auth/refresh", json!({"refresh_token": tokens.refresh}))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "refresh");
        let v: Value = res.json().await.unwrap();
        Tokens {
            access: v["access_token"].as_str().unwrap().to_owned(),
            refresh: v["refresh_token"].as_str().unwrap().to_owned(),
            user_id: tokens.user_id,
        }
    }

    /// POST without a body, authenticated with `token` (logout and the like).
    pub async fn post_auth(&self, path: &str, token: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch_auth(&self, path: &str, token: &str, body: Value) -> Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn signup(&self, email: &str) -> Value {
        let res = self
            .post(
                "/auth/signup",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "signup {email}");
        res.json().await.unwrap()
    }

    /// Sign up and mark verified through the shared query layer.
    pub async fn verified_user(&self, email: &str) -> Uuid {
        let user = self.signup(email).await;
        let id: Uuid = user["id"].as_str().unwrap().parse().unwrap();
        let mut conn = self.db.conn().await;
        User::mark_verified(&mut conn, id).await.unwrap().unwrap();
        id
    }

    pub async fn login(&self, email: &str, password: &str) -> Tokens {
        let res = self
            .post("/auth/login", json!({"email": email, "password": password}))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "login {email}");
        let v: Value = res.json().await.unwrap();
        Tokens {
            access: v["access_token"].as_str().unwrap().to_owned(),
            refresh: v["refresh_token"].as_str().unwrap().to_owned(),
            user_id: v["user_id"].as_str().unwrap().parse().unwrap(),
        }
    }

    pub async fn logged_in(&self, email: &str) -> Tokens {
        self.verified_user(email).await;
        self.login(email, PASSWORD).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The namespace's keys go when its field drops, after this.
        self.server.abort();
    }
}

/// Assert a problem+json response and return its body.
pub async fn problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, "application/problem+json");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["code"], code, "body: {v}");
    assert_eq!(v["status"], status.as_u16());
    assert!(v["type"].as_str().unwrap().ends_with(code));
    assert!(v["title"].is_string() && v["detail"].is_string());
    v
}

/// Hash of `PASSWORD`, computed once per test binary (argon2 is slow).
static PASSWORD_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// Helpers for administration tests: users inserted directly, sessions
/// opened without the login route, requests with a bearer token.
impl TestApp {
    pub async fn password_hash(&self) -> String {
        PASSWORD_HASH
            .get_or_init(|| async {
                let password =
                    gatehouse_shared::domain::Password::parse(PASSWORD.to_owned(), None).unwrap();
                self.state.hasher.hash(&password).await.unwrap()
            })
            .await
            .clone()
    }

    /// Insert a user with password `PASSWORD` (no signup, no email job).
    pub async fn insert_user(
        &self,
        email: &str,
        role: gatehouse_shared::domain::Role,
        verified: bool,
    ) -> Uuid {
        self.insert_user_named(email, role, verified, None, None)
            .await
    }

    pub async fn insert_user_named(
        &self,
        email: &str,
        role: gatehouse_shared::domain::Role,
        verified: bool,
        first_name: Option<&str>,
        last_name: Option<&str>,
    ) -> Uuid {
        let new = gatehouse_shared::models::NewUser {
            id: Uuid::now_v7(),
            email: email.to_lowercase(),
            password_hash: self.password_hash().await,
            first_name: first_name.map(str::to_owned),
            last_name: last_name.map(str::to_owned),
            role: role.as_str().to_owned(),
            is_verified: verified,
            verified_at: verified.then(chrono::Utc::now),
        };
        let mut conn = self.db.conn().await;
        new.insert(&mut conn).await.unwrap().id
    }

    /// Open a session for a user directly (no login route, no rate limit).
    pub async fn session_for(&self, user_id: Uuid) -> Tokens {
        let mut conn = self.db.conn().await;
        let user = User::find(&mut conn, user_id).await.unwrap().unwrap();
        let pair = gatehouse_api::sessions::open_session(
            &self.state,
            &user,
            gatehouse_api::sessions::ClientInfo {
                ip: None,
                user_agent: None,
            },
        )
        .await
        .unwrap();
        Tokens {
            access: pair.access_token,
            refresh: pair.refresh_token,
            user_id,
        }
    }

    /// A verified admin created like `gatehouse-api admin create`, logged in
    /// through `/auth/login`.
    pub async fn admin(&self, email: &str) -> Tokens {
        let email = gatehouse_shared::domain::Email::parse(email).unwrap();
        let mut conn = self.state.db.get().await.unwrap();
        let created = gatehouse_api::accounts::create_admin(
            &mut conn,
            email.clone(),
            self.password_hash().await,
        )
        .await
        .unwrap();
        assert!(created, "admin {email} already exists");
        drop(conn);
        self.login(email.as_str(), PASSWORD).await
    }

    pub async fn send_auth(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    pub async fn delete_auth(&self, path: &str, token: &str) -> Response {
        self.send_auth(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// Wait until every audit event recorded so far is in the database.
    pub async fn flush_audit(&self) {
        self.state.audit.flush().await;
    }
}

impl TestApp {
    /// Store a known code (valid for `code_ttl`) and link (24 h) for a
    /// user, as the worker would after sending the email.
    pub async fn issue_verification(
        &self,
        user_id: Uuid,
        code: &str,
        token: &str,
        code_ttl: chrono::Duration,
    ) {
        use gatehouse_shared::models::EmailVerification;
        use gatehouse_shared::models::verification::{code_hash, link_hash};
        let now = chrono::Utc::now();
        let row = EmailVerification {
            user_id,
            code_hash: code_hash(&self.state.secrets, user_id, code),
            code_expires_at: now + code_ttl,
            link_hash: link_hash(&self.state.secrets, token),
            link_expires_at: now + chrono::Duration::hours(24),
            attempts: 0,
            job_id: Uuid::now_v7(),
            requested_at: now,
            sent_at: Some(now),
            created_at: now,
        };
        let mut conn = self.db.conn().await;
        assert!(row.replace(&mut conn).await.unwrap());
    }
}

/// The `id` of a JSON object.
pub fn id_of(v: &Value) -> Uuid {
    v["id"].as_str().unwrap().parse().unwrap()
}

/// The ids of a page's items, in order.
pub fn ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

/// Assert the status and return the JSON body.
pub async fn json_ok(res: Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    res.json().await.unwrap()
}

/// `POST /auth/refresh` with `token` in the body.
pub async fn refresh(app: &TestApp, token: &str) -> Response {
    app.post("/auth/refresh", json!({"refresh_token": token}))
        .await
}

/// `POST /auth/refresh` with `token` is refused with 401 `code`.
pub async fn assert_refresh_refused(app: &TestApp, token: &str, code: &str) {
    problem(refresh(app, token).await, StatusCode::UNAUTHORIZED, code).await;
}

/// Lifecycle helpers: secrets stored as the worker would after emailing
/// them, so API tests know the clear values.
impl TestApp {
    /// Start a reset for `user_id` (as `forgot` does) and give it `token`,
    /// valid for `ttl` (negative: already expired).
    pub async fn issue_reset(&self, user_id: Uuid, token: &str, ttl: chrono::Duration) {
        use gatehouse_shared::models::PasswordReset;
        use gatehouse_shared::models::password_reset::token_hash;
        let job = Uuid::now_v7();
        let mut conn = self.db.conn().await;
        PasswordReset::request(&mut conn, user_id, job)
            .await
            .unwrap();
        let hash = token_hash(&self.state.secrets, token);
        let set =
            PasswordReset::set_token(&mut conn, user_id, job, &hash, chrono::Utc::now() + ttl)
                .await
                .unwrap();
        assert!(set);
    }

    /// Give the newest email change of `user_id` a known link token, code
    /// and revert token; returns the change id.
    pub async fn issue_email_change(
        &self,
        user_id: Uuid,
        token: &str,
        code: &str,
        revert: &str,
    ) -> Uuid {
        use gatehouse_shared::models::EmailChange;
        use gatehouse_shared::models::email_change::{code_hash, revert_hash, token_hash};
        let mut conn = self.db.conn().await;
        let change = EmailChange::lock_pending_of_user(&mut conn, user_id)
            .await
            .unwrap()
            .expect("a pending change");
        let s = &self.state.secrets;
        assert!(
            EmailChange::set_confirm_secrets(
                &mut conn,
                change.id,
                change.confirm_job_id,
                &token_hash(s, token),
                &code_hash(s, change.id, code),
                chrono::Utc::now() + chrono::Duration::hours(1),
            )
            .await
            .unwrap()
        );
        assert!(
            EmailChange::set_revert_secret(
                &mut conn,
                change.id,
                change.notice_job_id,
                &revert_hash(s, token_revert_check(revert)),
            )
            .await
            .unwrap()
        );
        change.id
    }

    /// Outbox rows of `queue` (payloads), oldest first.
    pub async fn outbox_payloads(&self, queue: &str) -> Vec<Value> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use gatehouse_shared::schema::outbox;
        let mut conn = self.db.conn().await;
        outbox::table
            .filter(outbox::queue.eq(queue))
            .order(outbox::created_at.asc())
            .select(outbox::payload)
            .load(&mut conn)
            .await
            .unwrap()
    }

    /// Audit events of `action` (flushed first), newest first.
    pub async fn audit_of(
        &self,
        action: gatehouse_shared::models::AuditAction,
    ) -> Vec<gatehouse_shared::models::AuditEvent> {
        use gatehouse_shared::models::{AuditEvent, AuditFilter, PageRequest};
        self.flush_audit().await;
        let mut conn = self.db.conn().await;
        AuditEvent::list(
            &mut conn,
            &AuditFilter {
                user_id: None,
                action: Some(action),
            },
            PageRequest {
                limit: 200,
                offset: 0,
            },
        )
        .await
        .unwrap()
        .items
    }

    pub async fn delete_json(&self, path: &str, token: &str, body: Value) -> Response {
        self.send_auth(reqwest::Method::DELETE, path, Some(token), Some(body))
            .await
    }

    pub async fn post_json_auth(&self, path: &str, token: &str, body: Value) -> Response {
        self.send_auth(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }
}

fn token_revert_check(t: &str) -> &str {
    assert_eq!(t.len(), 64, "tokens are 64 hex characters");
    t
}

/// A fresh 64-hex-character token, as the worker makes them.
pub fn hex_token(seed: u8) -> String {
    format!("{:02x}", seed).repeat(32)
}
