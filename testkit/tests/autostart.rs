//! Issue 16 item 1: `cargo test` on a machine where nothing is running.
//!
//! Each test re-runs this test binary as a child process with environment
//! variables that point nowhere (a process's environment cannot be changed
//! safely from inside it), and checks what the child did and left behind.
//! The `child_*` tests are `#[ignore]`d: they only do something useful as
//! that child.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

/// Nothing listens on ports 1 and 2 of the loopback.
const DEAD_PG: &str = "postgres://postgres@127.0.0.1:1";
const DEAD_REDIS: &str = "redis://127.0.0.1:2";

fn run_child(filter: &str, exact: bool, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--nocapture", "--test-threads=2", filter]);
    if exact {
        cmd.arg("--exact");
    }
    cmd.env("TEST_PG_URL", DEAD_PG)
        .env("TEST_REDIS_URL", DEAD_REDIS)
        .env_remove("TEST_PG_BINDIR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value after `key=` on the child's `CHILD ...` report line.
fn report(out: &Output, key: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("CHILD "))
        .unwrap_or_else(|| panic!("no CHILD line:\n{}", text(out)));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .to_owned()
}

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn private_servers_start_when_the_urls_do_not_answer_and_vanish_at_exit() {
    let out = run_child("child_uses_the_services", true, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TEST_PG_URL=postgres://postgres@127.0.0.1:1 does not answer")
            && stderr.contains("TEST_REDIS_URL=redis://127.0.0.1:2 does not answer"),
        "{}",
        text(&out)
    );

    let dir = PathBuf::from(report(&out, "dir"));
    let (pg_pid, redis_pid) = (report(&out, "pg_pid"), report(&out, "redis_pid"));
    assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
    // The child has exited: its watchdog stops both servers and removes
    // the directory within seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (dir.exists() || alive(&pg_pid) || alive(&redis_pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!alive(&pg_pid), "postgres {pg_pid} left running");
    assert!(!alive(&redis_pid), "redis-server {redis_pid} left running");
}

#[test]
fn missing_binaries_give_one_message_naming_both_variables() {
    // A PATH without initdb, pg_ctl or redis-server, and an empty
    // PostgreSQL search directory.
    let empty = std::env::temp_dir().join(format!(
        "gatehouse-testkit-empty-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&empty).unwrap();
    let out = run_child(
        "child_",
        false,
        &[
            ("PATH", empty.to_str().unwrap()),
            ("TEST_PG_BINDIR", empty.to_str().unwrap()),
        ],
    );
    std::fs::remove_dir(&empty).unwrap();

    // Exit status 1 from the one message, not 101 from panicking tests.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("the tests need PostgreSQL and Redis")
            .count(),
        1,
        "{}",
        text(&out)
    );
    for needle in [
        "TEST_PG_URL=postgres://postgres@127.0.0.1:1 does not answer",
        "no initdb + pg_ctl were found in TEST_PG_BINDIR=",
        "TEST_REDIS_URL=redis://127.0.0.1:2 does not answer",
        "no redis-server is on PATH",
        "apt-get install postgresql redis-server",
    ] {
        assert!(
            stderr.contains(needle),
            "missing {needle:?}:\n{}",
            text(&out)
        );
    }
    assert!(!stderr.contains("panicked"), "{}", text(&out));
}

/// Run as a child by the tests above.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run as a child process by the autostart tests"]
async fn child_uses_the_services() {
    let (pg, redis_url) = (
        gatehouse_testkit::pg_server_url(),
        gatehouse_testkit::redis_url(),
    );
    assert!(!pg.ends_with(":1") && !redis_url.ends_with(":2"));

    // A migrated database cloned from the template, on the private server.
    let db = gatehouse_testkit::TestDb::new().await;
    let mut conn = db.conn().await;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        t: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT to_regclass('public.users')::text AS t UNION ALL SELECT current_user::text",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows[0].t, "users");
    assert_eq!(rows[1].t, "postgres");

    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let ns = gatehouse_testkit::redis_namespace();
    let _: () = redis::cmd("SET")
        .arg(format!("{ns}:k"))
        .arg("v")
        .query_async(&mut r)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg(format!("{ns}:k"))
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(got, "v");

    let dir = gatehouse_testkit::services::private_dir().expect("private servers started");
    let pid = |file: &Path| {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_owned()
    };
    println!(
        "CHILD dir={} pg_pid={} redis_pid={}",
        dir.display(),
        pid(&dir.join("pg/postmaster.pid")),
        pid(&dir.join("redis.pid"))
    );
}

/// A second test asking for the services at the same time as the first
/// (the missing-binaries message must still appear once).
#[test]
#[ignore = "run as a child process by the autostart tests"]
fn child_second_caller() {
    let _ = gatehouse_testkit::pg_server_url();
}
