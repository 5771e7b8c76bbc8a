//! Test support shared by the API and worker test suites: real PostgreSQL
//! databases per test, unique Redis namespaces, a real SMTP listener and
//! helpers to run the real binaries.

#![allow(clippy::unwrap_used)]

#[cfg(feature = "browser")]
pub mod browser;
pub mod db;
pub mod process;
pub mod services;
pub mod smtp;

pub use db::TestDb;
pub use smtp::{MailSink, ReceivedMail};

/// Server URL of the PostgreSQL used by tests, without a database name:
/// `TEST_PG_URL` (default the local trust-auth server) if it answers, else
/// a private server started for this test process (see [`services`]).
pub fn pg_server_url() -> String {
    services::pg_url()
}

/// Redis used by tests: `TEST_REDIS_URL` (default the local server) if it
/// answers, else a private server started for this test process.
pub fn redis_url() -> String {
    services::redis_url()
}

/// A Redis key namespace unique to one test.
pub fn redis_namespace() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// Delete every key of a namespace (best effort).
pub async fn clear_redis_namespace(url: &str, namespace: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

/// A Redis key namespace of one test; its keys are deleted when dropped.
pub struct Namespace(pub String);

impl Namespace {
    pub fn new() -> Self {
        Self(redis_namespace())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let (url, ns) = (redis_url(), self.0.clone());
        // Drop may run inside a runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(clear_redis_namespace(&url, &ns));
            }
        })
        .join();
    }
}

/// Arguments for a binary under test on its own database and Redis
/// namespace (`--database-url`, `--redis-url`, `--redis-namespace`, a small
/// pool), then `defaults` and `overrides` as in [`cli_args`].
pub fn isolated_args(
    program: &str,
    db: &TestDb,
    namespace: &Namespace,
    defaults: &[(&str, &str)],
    overrides: &[(&str, &str)],
) -> Vec<String> {
    let redis = redis_url();
    let mut all = vec![
        ("database-url", db.url.as_str()),
        ("redis-url", redis.as_str()),
        ("redis-namespace", namespace.as_str()),
        ("db-pool-size", "4"),
    ];
    all.extend_from_slice(defaults);
    cli_args(program, &all, overrides)
}

/// GET `url` and return the body as text (metrics pages and the like).
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Command-line arguments for `program`: `--name value` for each of
/// `defaults`, except those named again in `overrides`, then `overrides`.
pub fn cli_args(
    program: &str,
    defaults: &[(&str, &str)],
    overrides: &[(&str, &str)],
) -> Vec<String> {
    let mut args = vec![program.to_owned()];
    let kept = defaults
        .iter()
        .filter(|(name, _)| !overrides.iter().any(|(o, _)| o == name));
    for (name, value) in kept.chain(overrides) {
        args.push(format!("--{name}"));
        args.push((*value).to_owned());
    }
    args
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` until it returns `Some`, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A private redis-server on a free port, stopped and started at will
/// (the shared Redis is never stopped).
pub struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let mut this = Self {
            port: free_port(),
            child: None,
        };
        this.up();
        this
    }

    /// Not started yet: `up()` it later.
    pub fn reserved() -> Self {
        Self {
            port: free_port(),
            child: None,
        }
    }

    pub fn up(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("private redis did not start");
    }

    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freeze the server (SIGSTOP): connections stay open, nothing answers,
    /// like a Redis stalled by a long command or a paused VM.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Let a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let status = std::process::Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {sig} redis-server");
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
    }
}
