//! Issue 11 item 17: Redis AUTH and TLS (`rediss://`) work through our own
//! connection handle (`gatehouse_shared::queue::Redis`, used by the API and
//! the worker) and through apalis-redis on top of it.
//!
//! Each test starts a private `redis-server` on a free port (never the
//! shared one). The TLS certificates are made with `openssl`: a test CA and
//! a `localhost` server certificate it signs. Certificates are verified
//! against the platform roots, to which `SSL_CERT_FILE` adds a private CA;
//! the environment cannot be changed safely inside a running test process,
//! so the verified connection runs in a child process of this test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use apalis_core::backend::TaskSink;
use gatehouse_shared::config::RedisArgs;
use gatehouse_shared::queue::Redis;

const PASSWORD: &str = "pw-for-this-test-only";

struct PrivateRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PrivateRedis {
    /// `tls`: listen with TLS only, using the certificates in `dir`.
    fn start(dir: PathBuf, tls: bool) -> Self {
        let port = gatehouse_testkit::free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--requirepass", PASSWORD])
            // An ACL user, as managed Redis services hand out.
            .args([
                "--user",
                "gatehouse",
                "on",
                ">acl-pw-for-this-test",
                "~*",
                "&*",
                "+@all",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if tls {
            cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.crt"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &port.to_string()]);
        }
        let child = cmd
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-redis-tls-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&dir).unwrap();
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ca.crt (a test CA) and server.crt/server.key for localhost/127.0.0.1.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"],
        &["-subj", "/CN=gatehouse-test-ca"],
    ]
    .concat();
    openssl(dir, &ca);
    let csr = [
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat();
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

fn redis(url: &str) -> Option<Redis> {
    Redis::new(&RedisArgs {
        redis_url: url.to_owned(),
        redis_namespace: "unused".into(),
        redis_response_timeout: Duration::from_secs(2),
    })
    .ok()
}

async fn pings(url: &str) -> bool {
    match redis(url) {
        Some(r) => r.ping().await,
        None => false,
    }
}

/// Push a job through apalis-redis on our connection, and find its keys.
async fn apalis_push_works(url: &str) {
    let conn = redis(url).unwrap().get().await.unwrap();
    let queue = format!("{}:probe", gatehouse_testkit::redis_namespace());
    let mut storage = apalis_redis::RedisStorage::<serde_json::Value>::new(conn.clone())
        .with_config(apalis_redis::Config::default().queue(queue.clone()));
    storage.push(serde_json::json!({"v": 1})).await.unwrap();
    let mut conn = conn;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{queue}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "no apalis keys for {queue}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_auth_password_and_acl_user_from_the_url() {
    let server = PrivateRedis::start(temp_dir(), false);
    let p = server.port;

    assert!(pings(&format!("redis://:{PASSWORD}@127.0.0.1:{p}/0")).await);
    assert!(
        pings(&format!(
            "redis://gatehouse:acl-pw-for-this-test@127.0.0.1:{p}/0"
        ))
        .await
    );
    apalis_push_works(&format!("redis://:{PASSWORD}@127.0.0.1:{p}/0")).await;

    // Refused without the password, or with a wrong one.
    assert!(!pings(&format!("redis://127.0.0.1:{p}/0")).await);
    assert!(!pings(&format!("redis://:wrong@127.0.0.1:{p}/0")).await);
    assert!(!pings(&format!("redis://gatehouse:wrong@127.0.0.1:{p}/0")).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_tls_rediss_url_is_encrypted_and_verified() {
    let dir = temp_dir();
    make_certificates(&dir);
    let server = PrivateRedis::start(dir.clone(), true);
    let p = server.port;
    let url = format!("rediss://:{PASSWORD}@localhost:{p}/0");

    // The certificate is verified: our test CA is not a platform root...
    assert!(!pings(&url).await);
    // ... and `#insecure` (no verification) is refused: the feature that
    // allows it is not compiled in.
    assert!(!pings(&format!("{url}#insecure")).await);
    // Plain text to a TLS port gets nowhere.
    assert!(!pings(&format!("redis://:{PASSWORD}@localhost:{p}/0")).await);

    // With the CA added through SSL_CERT_FILE (as an operator would for a
    // private CA), the same URL connects and apalis works over it.
    let out: Output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_rediss_with_private_ca",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", dir.join("ca.crt"))
        .env("GATEHOUSE_TEST_REDISS_URL", &url)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    // A wrong password over TLS is still refused.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_rediss_with_private_ca"])
        .env("SSL_CERT_FILE", dir.join("ca.crt"))
        .env(
            "GATEHOUSE_TEST_REDISS_URL",
            format!("rediss://:wrong@localhost:{p}/0"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Run as a child by the TLS test, with SSL_CERT_FILE set.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run as a child process by redis_tls_rediss_url_is_encrypted_and_verified"]
async fn child_rediss_with_private_ca() {
    let url = std::env::var("GATEHOUSE_TEST_REDISS_URL").unwrap();
    assert!(pings(&url).await, "no PONG over {url}");
    apalis_push_works(&url).await;
}
