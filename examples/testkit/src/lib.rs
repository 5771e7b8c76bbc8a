//! Test support for the example apps (BotFactory, chat): a Gatehouse to
//! run against (the in-process [`FakeGatehouse`] that follows the public
//! token contract, or the real `gatehouse-api` binary), scratch databases,
//! app processes and a WebSocket client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fake;
pub mod ws;

use std::time::Duration;

use base64::Engine;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use gatehouse_testkit::process::Proc;
use gatehouse_testkit::{MailSink, TestDb};
use serde_json::{Value, json};
use uuid::Uuid;

pub use fake::{FakeGatehouse, FakeOptions, Login};
pub use gatehouse_testkit::PrivateRedis;
pub use tokio_tungstenite;
pub use ws::WsClient;

/// Password of every test user.
pub const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------- databases

/// An empty database of its own (the app migrates it), dropped on drop.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
}

async fn admin_conn() -> AsyncPgConnection {
    let url = format!("{}/postgres", gatehouse_testkit::pg_server_url());
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"))
}

impl ScratchDb {
    pub async fn new(prefix: &str) -> Self {
        let name = format!("{prefix}_t_{}", Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin_conn().await)
            .await
            .unwrap();
        let url = format!("{}/{name}", gatehouse_testkit::pg_server_url());
        Self { name, url }
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DB").is_some() {
            return;
        }
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin_conn().await)
                    .await;
            });
        })
        .join();
    }
}

// ---------------------------------------------------------------- Gatehouse

/// What the apps' tests need from a Gatehouse.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Origins Gatehouse's CORS allows (the apps' pages).
    pub cors_origins: Vec<String>,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Login needs a verified email; the real one then runs the worker and
    /// emails codes to a test SMTP sink.
    pub require_verified: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            access_ttl: Duration::from_secs(900),
            require_verified: false,
        }
    }
}

/// The real `gatehouse-api` (and, when verification is required, the
/// worker) on a database and Redis namespace of their own.
pub struct RealGatehouse {
    pub url: String,
    pub mail: Option<MailSink>,
    _api: Proc,
    _worker: Option<Proc>,
    _db: TestDb,
}

pub enum Backend {
    Fake(FakeGatehouse),
    Real(Box<RealGatehouse>),
}

/// A Gatehouse for a test, and its Redis namespace (`{ns}:revocations`;
/// its keys are deleted on drop).
pub struct Gatehouse {
    pub backend: Backend,
    pub namespace: gatehouse_testkit::Namespace,
    http: reqwest::Client,
}

impl Gatehouse {
    /// The in-process stand-in.
    pub async fn fake(setup: Setup) -> Self {
        let namespace = gatehouse_testkit::Namespace::new();
        let fake = FakeGatehouse::start(
            namespace.as_str(),
            FakeOptions {
                cors_origins: setup.cors_origins,
                access_ttl: setup.access_ttl,
                require_verified: setup.require_verified,
            },
        )
        .await;
        Self {
            backend: Backend::Fake(fake),
            namespace,
            http: reqwest::Client::new(),
        }
    }

    /// The real binaries.
    pub async fn real(setup: Setup) -> Self {
        let namespace = gatehouse_testkit::Namespace::new();
        let db = TestDb::new().await;
        let port = gatehouse_testkit::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mail = if setup.require_verified {
            Some(MailSink::start().await)
        } else {
            None
        };
        let mut env: Vec<(&str, String)> = vec![
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", gatehouse_testkit::redis_url()),
            ("REDIS_NAMESPACE", namespace.as_str().to_owned()),
            ("JWT_SECRET", "apps-e2e-secret-0123456789-0123456789".into()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("PUBLIC_URL", url.clone()),
            ("COOKIE_SECURE", "false".into()),
            ("RATE_LIMITS", "off".into()),
            (
                "ACCESS_TOKEN_TTL",
                format!("{}s", setup.access_ttl.as_secs()),
            ),
            ("REQUIRE_VERIFIED_LOGIN", setup.require_verified.to_string()),
            ("CORS_ALLOWED_ORIGINS", setup.cors_origins.join(",")),
            ("DB_POOL_SIZE", "4".into()),
        ];
        let worker = mail.as_ref().map(|mail| {
            env.push(("MAIL_TRANSPORT", "smtp".into()));
            env.push(("SMTP_URL", mail.url()));
            let mut worker_env = env.clone();
            worker_env.push((
                "WORKER_ADDR",
                format!("127.0.0.1:{}", gatehouse_testkit::free_port()),
            ));
            worker_env.push(("OUTBOX_SWEEP_INTERVAL", "500ms".into()));
            Proc::spawn("gatehouse-worker", &worker_env)
        });
        let api = Proc::spawn("gatehouse-api", &env);
        wait_ready(&format!("{url}/health/ready"), "gatehouse-api").await;
        Self {
            backend: Backend::Real(Box::new(RealGatehouse {
                url,
                mail,
                _api: api,
                _worker: worker,
                _db: db,
            })),
            namespace,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> &str {
        match &self.backend {
            Backend::Fake(f) => &f.url,
            Backend::Real(r) => &r.url,
        }
    }

    pub fn as_fake(&self) -> Option<&FakeGatehouse> {
        match &self.backend {
            Backend::Fake(f) => Some(f),
            Backend::Real(_) => None,
        }
    }

    /// The settings an app needs to trust this Gatehouse.
    pub fn app_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GATEHOUSE_URL", self.url().to_owned()),
            ("GATEHOUSE_REDIS_URL", gatehouse_testkit::redis_url()),
            (
                "GATEHOUSE_REDIS_NAMESPACE",
                self.namespace.as_str().to_owned(),
            ),
        ]
    }

    /// Sign up a new user and log in (over HTTP, like a client).
    pub async fn login_new_user(&self) -> Login {
        let email = format!("u{}@example.com", Uuid::new_v4().simple());
        let res = self
            .http
            .post(format!("{}/auth/signup", self.url()))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            201,
            "signup: {}",
            res.text().await.unwrap_or_default()
        );
        self.login(&email).await
    }

    /// Log in an existing user; a new session.
    pub async fn login(&self, email: &str) -> Login {
        let res = self
            .http
            .post(format!("{}/auth/login", self.url()))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "login: {}",
            res.text().await.unwrap_or_default()
        );
        let body: Value = res.json().await.unwrap();
        let access_token = body["access_token"].as_str().unwrap().to_owned();
        let claims = token_claims(&access_token);
        Login {
            user_id: Uuid::parse_str(claims["sub"].as_str().unwrap()).unwrap(),
            session_id: Uuid::parse_str(claims["sid"].as_str().unwrap()).unwrap(),
            access_token,
        }
    }

    /// `POST /auth/logout` with the token; returns the status.
    pub async fn logout(&self, access_token: &str) -> u16 {
        self.http
            .post(format!("{}/auth/logout", self.url()))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The verification code sent to `email` (fake: read directly; real:
    /// from the test SMTP sink).
    pub async fn verification_code(&self, email: &str) -> String {
        match &self.backend {
            Backend::Fake(f) => f.verification_code(email).unwrap(),
            Backend::Real(r) => r
                .mail
                .as_ref()
                .expect("a real Gatehouse with require_verified")
                .wait_for(email, 1, Duration::from_secs(30))
                .await
                .remove(0)
                .code()
                .unwrap(),
        }
    }
}

/// The claims of a JWT, unverified (tests read `sub` and `sid`).
pub fn token_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

// ---------------------------------------------------------------- apps

/// Poll `url` until it answers 200.
pub async fn wait_ready(url: &str, what: &str) {
    let client = reqwest::Client::new();
    gatehouse_testkit::eventually(
        Duration::from_secs(60),
        &format!("{what} ready"),
        || async {
            let res = client.get(url).send().await.ok()?;
            (res.status() == 200).then_some(())
        },
    )
    .await;
}

/// A running app binary (`botfactory`, `chat`).
pub struct App {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub proc: Proc,
}

impl App {
    /// Start `binary` on a free port with `env` (plus `APP_ADDR`) and wait
    /// for `/health/ready`.
    pub async fn spawn(binary: &str, env: &[(&str, String)]) -> Self {
        let port = gatehouse_testkit::free_port();
        Self::spawn_on(binary, port, env).await
    }

    /// Start on a given port (e.g. one Gatehouse's CORS already allows).
    pub async fn spawn_on(binary: &str, port: u16, env: &[(&str, String)]) -> Self {
        let mut env = env.to_vec();
        env.push(("APP_ADDR", format!("127.0.0.1:{port}")));
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            env.push((
                "RUST_LOG",
                format!("warn,{}=info", binary.replace('-', "_")),
            ));
        }
        let proc = Proc::spawn(binary, &env);
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{url}/health/ready"), binary).await;
        Self { url, proc }
    }

    /// `ws://…/ws?room=<room>`.
    pub fn ws_url(&self, room: &str) -> String {
        format!(
            "{}/ws?room={room}",
            self.url.replacen("http://", "ws://", 1)
        )
    }

    /// SIGTERM, then wait for the exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        self.proc.signal("TERM");
        tokio::time::timeout(Duration::from_secs(20), self.proc.wait())
            .await
            .expect("the app exits within 20 s of SIGTERM")
    }
}

/// `http://127.0.0.1:<port>` for a port chosen now.
pub fn local_origin(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}
