//! The real `gatehouse-api` binary's operator commands (`admin …`,
//! `config check`) and its `--help`, against a test database.

use std::process::Output;

use gatehouse_shared::domain::Role;
use gatehouse_shared::models::{AuditEvent, AuditFilter, PageRequest, User};
use gatehouse_testkit::{MailSink, TestDb};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestApp, refresh};

const SECRET: &str = "cli-test-secret-0123456789-0123456789-abcdef";

/// Run the binary with only `envs` (and PATH) in its environment, stdin
/// not a terminal.
async fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .stdin(std::process::Stdio::null())
        // No `.env` of the repository is picked up.
        .current_dir(std::env::temp_dir());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Only DATABASE_URL: no REDIS_URL, no JWT_SECRET.
async fn admin(db: &TestDb, args: &[&str]) -> Output {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    run(&all, &[("DATABASE_URL", &db.url)]).await
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

async fn events(db: &TestDb, action: gatehouse_shared::models::AuditAction) -> Vec<AuditEvent> {
    let mut conn = db.conn().await;
    let filter = AuditFilter {
        action: Some(action),
        ..Default::default()
    };
    AuditEvent::list(
        &mut conn,
        &filter,
        PageRequest {
            limit: 100,
            offset: 0,
        },
    )
    .await
    .unwrap()
    .items
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_admin_create_without_terminal_names_the_variable() {
    let db = TestDb::new().await;
    let out = admin(&db, &["create", "--email", "root@example.com"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("GATEHOUSE_ADMIN_PASSWORD"), "{err}");
    assert!(err.contains("no terminal"), "{err}");
    let mut conn = db.conn().await;
    assert_eq!(User::count(&mut conn).await.unwrap(), 0);
}

/// Read the pty master until `marker` has appeared (or 20 s passed).
fn read_until(rx: &std::sync::mpsc::Receiver<Vec<u8>>, seen: &mut String, marker: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !seen.contains(marker) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => panic!("no {marker:?} on the terminal; got {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_admin_create_prompts_on_a_terminal_without_echo() {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use std::io::{Read, Write};
    let db = TestDb::new().await;
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    // The terminal is stdin and stderr (where the prompts go).
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-api"))
        .args(["admin", "create", "--email", "tty@example.com"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .current_dir(std::env::temp_dir())
        .stdin(slave.try_clone().unwrap())
        .stderr(slave)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(master);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        // Ends with EIO once the child has closed the terminal.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    read_until(&rx, &mut seen, "Password: ");
    master.write_all(b"a typed admin passphrase\n").unwrap();
    read_until(&rx, &mut seen, "Repeat the password: ");
    master.write_all(b"a typed admin passphrase\n").unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(out.status.success(), "{seen}");
    assert_eq!(text(&out.stdout), "created admin tty@example.com\n");
    // Echo was off: the password never appeared on the terminal.
    assert!(!seen.contains("passphrase"), "{seen:?}");
    let mut conn = db.conn().await;
    let email = gatehouse_shared::domain::Email::parse("tty@example.com").unwrap();
    let user = User::find_by_email(&mut conn, &email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.role(), Role::Admin);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_admin_create_needs_only_database_url_and_is_audited() {
    let db = TestDb::new().await;
    let envs = [
        ("DATABASE_URL", db.url.as_str()),
        ("GATEHOUSE_ADMIN_PASSWORD", "a long admin passphrase"),
    ];
    let out = run(&["admin", "create", "--email", "Root@Example.com"], &envs).await;
    assert_success(&out);
    assert!(text(&out.stdout).contains("created admin root@example.com"));
    // The password never reaches the output.
    assert!(!text(&out.stdout).contains("passphrase") && !text(&out.stderr).contains("passphrase"));
    let mut conn = db.conn().await;
    let email = gatehouse_shared::domain::Email::parse("root@example.com").unwrap();
    let user = User::find_by_email(&mut conn, &email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.role(), Role::Admin);
    assert!(user.is_verified);
    let created = events(&db, gatehouse_shared::models::AuditAction::Signup).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].subject_id, Some(user.id));
    assert_eq!(created[0].actor_id, None);
    assert_eq!(created[0].details, json!({"actor": "cli", "role": "admin"}));
    // Twice: refused, nothing more written.
    let again = run(&["admin", "create", "--email", "root@example.com"], &envs).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exists"));
    assert_eq!(
        events(&db, gatehouse_shared::models::AuditAction::Signup)
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_users_list_show_verify() {
    let app = TestApp::spawn().await;
    let ada = app
        .insert_user_named("ada@example.com", Role::User, false, Some("Ada"), None)
        .await;
    app.insert_user("bob@example.com", Role::Admin, true).await;

    let out = admin(&app.db, &["users", "list"]).await;
    assert_success(&out);
    let listed = text(&out.stdout);
    assert!(
        listed.starts_with("id\temail\trole\tverified\tcreated\n"),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{ada}\tada@example.com\tuser\tfalse\t")),
        "{listed}"
    );
    assert!(listed.contains("bob@example.com\tadmin\ttrue"), "{listed}");
    assert!(text(&out.stderr).contains("2 of 2 user(s)"));

    let out = admin(&app.db, &["users", "list", "--role", "admin"]).await;
    assert_success(&out);
    assert!(!text(&out.stdout).contains("ada@example.com"));
    let out = admin(
        &app.db,
        &["users", "list", "--verified", "false", "--search", "ADA"],
    )
    .await;
    assert!(text(&out.stdout).contains("ada@example.com"));
    assert!(!text(&out.stdout).contains("bob@example.com"));

    let out = admin(&app.db, &["users", "show", "ada@example.com"]).await;
    assert_success(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("id:          {ada}")), "{shown}");
    assert!(shown.contains("first_name:  Ada"), "{shown}");
    assert!(shown.contains("verified:    false"), "{shown}");
    assert!(!shown.contains("argon2"), "no password hash: {shown}");
    let by_id = admin(&app.db, &["users", "show", &ada.to_string()]).await;
    assert_eq!(text(&by_id.stdout), shown);
    let missing = admin(&app.db, &["users", "show", "nobody@example.com"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no user nobody@example.com"));

    let out = admin(&app.db, &["users", "verify", "ada@example.com"]).await;
    assert_success(&out);
    assert_eq!(text(&out.stdout), "verified ada@example.com\n");
    let mut conn = app.db.conn().await;
    let user = User::find(&mut conn, ada).await.unwrap().unwrap();
    assert!(user.is_verified && user.verified_at.is_some());
    let updated = events(&app.db, gatehouse_shared::models::AuditAction::UserUpdated).await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].subject_id, Some(ada));
    assert_eq!(updated[0].details["actor"], "cli");
    assert_eq!(updated[0].details["fields"], json!(["is_verified"]));
    // Again: nothing to change, nothing recorded.
    let out = admin(&app.db, &["users", "verify", &ada.to_string()]).await;
    assert_success(&out);
    assert!(text(&out.stdout).contains("already verified"));
    assert_eq!(
        events(&app.db, gatehouse_shared::models::AuditAction::UserUpdated)
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_admin_promote_is_audited_as_cli() {
    let app = TestApp::spawn().await;
    let ada = app.insert_user("ada@example.com", Role::User, true).await;
    let out = admin(&app.db, &["promote", "--email", "ada@example.com"]).await;
    assert_success(&out);
    assert_eq!(text(&out.stdout), "promoted ada@example.com to admin\n");
    let mut conn = app.db.conn().await;
    assert_eq!(
        User::find(&mut conn, ada).await.unwrap().unwrap().role(),
        Role::Admin
    );
    let updated = events(&app.db, gatehouse_shared::models::AuditAction::UserUpdated).await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].subject_id, Some(ada));
    assert_eq!(updated[0].actor_id, None);
    assert_eq!(updated[0].details["actor"], "cli");
    assert_eq!(updated[0].details["fields"], json!(["role"]));
    let out = admin(&app.db, &["promote", "--email", "nobody@example.com"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no account with email nobody@example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_sessions_revoke_ends_every_session_and_is_audited() {
    let app = TestApp::spawn().await;
    let ada = app.insert_user("ada@example.com", Role::User, true).await;
    let first = app.session_for(ada).await;
    let second = app.session_for(ada).await;
    let out = admin(
        &app.db,
        &["sessions", "revoke", "--user", "ada@example.com"],
    )
    .await;
    assert_success(&out);
    assert_eq!(
        text(&out.stdout),
        "revoked 2 session(s) of ada@example.com\n"
    );
    for tokens in [&first, &second] {
        assert_eq!(
            refresh(&app, &tokens.refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
        app.assert_token_refused(&tokens.access).await;
    }
    let revoked = events(&app.db, gatehouse_shared::models::AuditAction::LogoutAll).await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].subject_id, Some(ada));
    assert_eq!(
        revoked[0].details,
        json!({"actor": "cli", "sessions_revoked": 2})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_migrate_migrates_an_empty_database() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let server = gatehouse_testkit::pg_server_url();
    let name = format!("gatehouse_cli_{}", uuid::Uuid::new_v4().simple());
    let mut root = AsyncPgConnection::establish(&format!("{server}/postgres"))
        .await
        .unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut root)
        .await
        .unwrap();
    let url = format!("{server}/{name}");
    let out = run(&["admin", "migrate"], &[("DATABASE_URL", &url)]).await;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let users = User::count(&mut conn).await;
    drop(conn);
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut root)
        .await
        .unwrap();
    assert_success(&out);
    assert_eq!(text(&out.stdout), "database schema is up to date\n");
    assert_eq!(users.unwrap(), 0, "the users table exists");
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_admin_without_database_url_names_it() {
    let out = run(&["admin", "users", "list"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("DATABASE_URL"));
}

#[tokio::test(flavor = "multi_thread")]
async fn item_6_config_check_reports_each_service() {
    let db = TestDb::new().await;
    let sink = MailSink::start().await;
    let redis = gatehouse_testkit::redis_url();
    let smtp = sink.url();
    let good = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("JWT_SECRET", SECRET),
        ("SMTP_URL", smtp.as_str()),
    ];
    let out = run(&["config", "check"], &good).await;
    assert_success(&out);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("ok   settings: "), "{lines:?}");
    assert!(lines[1].starts_with("ok   postgres: "), "{lines:?}");
    assert!(lines[2].starts_with("ok   redis: "), "{lines:?}");
    assert!(lines[3].starts_with("ok   smtp: 127.0.0.1:"), "{lines:?}");

    // A short secret, a bad duration, Redis and SMTP that do not answer.
    let dead_redis = format!(
        "redis://:hunter2-redis@127.0.0.1:{}",
        gatehouse_testkit::free_port()
    );
    let dead_smtp = format!(
        "smtp://mailer:hunter2-smtp@127.0.0.1:{}",
        gatehouse_testkit::free_port()
    );
    let bad = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", dead_redis.as_str()),
        ("JWT_SECRET", "hunter2-short"),
        ("ACCESS_TOKEN_TTL", "soon"),
        ("SMTP_URL", dead_smtp.as_str()),
    ];
    let out = run(&["config", "check"], &bad).await;
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let line = |prefix: &str| {
        all.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in {all}"))
            .to_owned()
    };
    assert!(line("fail JWT_SECRET: ").contains("at least 32 bytes"));
    assert!(line("fail ACCESS_TOKEN_TTL: ").contains("soon"));
    assert!(line("ok   postgres: ").contains("answered"));
    let redis_line = line("fail redis: ");
    assert!(
        redis_line.contains("127.0.0.1:") && redis_line.contains("REDIS_URL"),
        "{redis_line}"
    );
    let smtp_line = line("fail smtp: ");
    assert!(smtp_line.contains("SMTP_URL"), "{smtp_line}");
    // No secret is echoed: neither the rejected JWT_SECRET nor URL passwords.
    assert!(!all.contains("hunter2"), "{all}");

    // Nothing set at all: every required setting named, each service failed.
    let out = run(&["config", "check"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let all = text(&out.stdout);
    for needed in [
        "fail DATABASE_URL: not set",
        "fail REDIS_URL: not set",
        "fail JWT_SECRET: not set",
        "fail postgres: DATABASE_URL is not set",
        "fail redis: REDIS_URL is not set",
    ] {
        assert!(all.contains(needed), "{needed} in {all}");
    }
}

/// The lines under a `Heading:` of a help text, up to the next heading.
pub fn section_of(help: &str, heading: &str) -> String {
    help.lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every option of a command (and its subcommands) has a description.
fn undescribed(cmd: &clap::Command) -> Vec<String> {
    let mut missing: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_id() != "help" && a.get_id() != "version")
        .filter(|a| a.get_help().is_none() && a.get_long_help().is_none())
        .map(|a| format!("{} {}", cmd.get_name(), a.get_id()))
        .collect();
    for sub in cmd.get_subcommands() {
        if sub.get_about().is_none() && sub.get_name() != "help" {
            missing.push(format!("subcommand {}", sub.get_name()));
        }
        missing.extend(undescribed(sub));
    }
    missing
}

#[tokio::test(flavor = "multi_thread")]
async fn item_5_api_help_is_grouped_and_every_option_described() {
    use clap::CommandFactory;
    let out = run(&["--help"], &[]).await;
    assert_success(&out);
    let help = text(&out.stdout);
    for heading in [
        "Database:",
        "Redis:",
        "Logging:",
        "Server:",
        "Tokens:",
        "Accounts:",
        "Limits:",
    ] {
        assert!(
            help.lines().any(|l| l == heading),
            "heading {heading} in\n{help}"
        );
    }
    // Settings sit under their heading, not under a catch-all "Options:".
    let section = |name: &str| section_of(&help, name);
    assert!(section("Database:").contains("--database-url"));
    assert!(section("Limits:").contains("--rate-limit-login-ip"));
    assert!(section("Tokens:").contains("--jwt-secret"));
    let loose: Vec<String> = section("Options:")
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter(|l| !l.contains("--help") && !l.contains("--version"))
        .map(str::to_owned)
        .collect();
    assert!(loose.is_empty(), "without a heading: {loose:?}");
    let missing = undescribed(&gatehouse_api::config::Cli::command());
    assert!(missing.is_empty(), "without a description: {missing:?}");
    let missing = undescribed(&gatehouse_api::cli::AdminCli::command());
    assert!(missing.is_empty(), "without a description: {missing:?}");

    // `admin --help` needs no configuration and lists the commands.
    let out = run(&["admin", "--help"], &[]).await;
    assert_success(&out);
    let help = text(&out.stdout);
    for cmd in ["create", "promote", "users", "sessions", "migrate"] {
        assert!(help.contains(&format!("  {cmd} ")), "{cmd} in {help}");
    }
}
