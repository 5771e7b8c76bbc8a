use chrono::{DateTime, Utc};
use clap::Parser;
use gatehouse_shared::jobs::{self, SendVerificationEmail};
use gatehouse_shared::models::{NewUser, User};
use gatehouse_testkit::process::Proc;
use gatehouse_testkit::{MailSink, Namespace, TestDb};
use gatehouse_worker::config::WorkerConfig;
use gatehouse_worker::state::WorkerState;
use uuid::Uuid;

pub struct Ctx {
    pub db: TestDb,
    pub namespace: Namespace,
    pub mail: MailSink,
    pub state: WorkerState,
}

impl Ctx {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(extra: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let namespace = Namespace::new();
        let mail = MailSink::start().await;
        let smtp = mail.url();
        let defaults = [
            ("mail-transport", "smtp"),
            ("smtp-url", &smtp),
            ("public-url", "https://app.example.com"),
            ("jwt-secret", E2E_SECRET),
            // The fixture secret is published (deploy/known-secrets.txt).
            ("dev-allow-known-secrets", "true"),
        ];
        let args =
            gatehouse_testkit::isolated_args("gatehouse-worker", &db, &namespace, &defaults, extra);
        let config = WorkerConfig::try_parse_from(args).unwrap();
        let state = gatehouse_worker::build_state(config).unwrap();
        Self {
            db,
            namespace,
            mail,
            state,
        }
    }

    /// Insert a user directly (the API's job, done here without it).
    pub async fn user(&self, email: &str, verified: bool, created_at: DateTime<Utc>) -> Uuid {
        let mut conn = self.db.conn().await;
        let user = NewUser {
            id: Uuid::now_v7(),
            email: email.to_owned(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
            first_name: Some("Test".into()),
            last_name: None,
            role: "user".into(),
            is_verified: verified,
            verified_at: verified.then(Utc::now),
        }
        .insert(&mut conn)
        .await
        .unwrap();
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query("UPDATE users SET created_at = $1 WHERE id = $2")
                .bind::<diesel::sql_types::Timestamptz, _>(created_at)
                .bind::<diesel::sql_types::Uuid, _>(user.id),
            &mut conn,
        )
        .await
        .unwrap();
        user.id
    }

    /// Write the outbox row of a verification email and return its job.
    pub async fn verification_job(&self, user_id: Uuid) -> SendVerificationEmail {
        let mut conn = self.db.conn().await;
        let entry = jobs::enqueue(&mut conn, &SendVerificationEmail::new(user_id))
            .await
            .unwrap();
        serde_json::from_value(entry.payload).unwrap()
    }

    pub async fn find_user(&self, id: Uuid) -> Option<User> {
        let mut conn = self.db.conn().await;
        User::find(&mut conn, id).await.unwrap()
    }

    /// Environment for a worker binary on this context's database and queue.
    pub fn worker_env(&self, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> = vec![
            ("DATABASE_URL", self.db.url.clone()),
            ("REDIS_URL", gatehouse_testkit::redis_url()),
            ("REDIS_NAMESPACE", self.namespace.0.clone()),
            ("MAIL_TRANSPORT", "smtp".into()),
            ("SMTP_URL", self.mail.url()),
            ("PUBLIC_URL", "https://app.example.com".into()),
            (
                "WORKER_ADDR",
                format!("127.0.0.1:{}", gatehouse_testkit::free_port()),
            ),
            ("DB_POOL_SIZE", "4".into()),
            ("JWT_SECRET", E2E_SECRET.into()),
            ("OUTBOX_SWEEP_INTERVAL", "500ms".into()),
            ("QUEUE_HEARTBEAT", "1s".into()),
            ("QUEUE_MISSED_HEARTBEATS", "2".into()),
            ("OUTBOX_REDELIVER_AFTER", "5s".into()),
        ];
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((leak(k), (*v).to_owned()));
        }
        env
    }
}

/// `JWT_SECRET` of the API and worker of one test: they must agree, the
/// worker encrypts the signing keys the API decrypts.
pub const E2E_SECRET: &str = "e2e-secret-0123456789-0123456789-xyz";

/// Start the real API binary on this context's database; return it and its
/// base URL once `/health/ready` answers 200.
pub async fn spawn_api(ctx: &Ctx, redis_url: &str) -> (Proc, String) {
    let port = gatehouse_testkit::free_port();
    let env: Vec<(&'static str, String)> = vec![
        ("DATABASE_URL", ctx.db.url.clone()),
        ("REDIS_URL", redis_url.to_owned()),
        ("REDIS_NAMESPACE", ctx.namespace.0.clone()),
        ("JWT_SECRET", E2E_SECRET.into()),
        ("API_ADDR", format!("127.0.0.1:{port}")),
        ("COOKIE_SECURE", "false".into()),
    ];
    let api = Proc::spawn("gatehouse-api", &env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    gatehouse_testkit::eventually(std::time::Duration::from_secs(30), "API ready", || async {
        let res = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .ok()?;
        (res.status() == 200).then_some(())
    })
    .await;
    (api, base)
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}
