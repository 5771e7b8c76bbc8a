//! Operator commands of `gatehouse-api`:
//!
//! - `admin …` acts on the database directly and needs only `DATABASE_URL`
//!   (`main.rs` parses it with [`AdminCli`] alone, so a missing `REDIS_URL`
//!   or `JWT_SECRET` does not stop an operator);
//! - `config check` validates every setting of the API and reaches
//!   PostgreSQL, Redis and SMTP, one `ok`/`fail` line each.
//!
//! Every command that changes data writes an audit event whose details
//! carry `"actor": "cli"` (there is no user behind the console).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use gatehouse_shared::config::parse_bool;
use gatehouse_shared::domain::{Email, Password, Role};
use gatehouse_shared::models::{PageRequest, User, UserFilter};
use uuid::Uuid;

use crate::error::ApiError;

/// Where `admin create` reads the password when there is no terminal.
pub const PASSWORD_VAR: &str = "GATEHOUSE_ADMIN_PASSWORD";

/// `gatehouse-api admin …`, parsed on its own (see the module docs).
#[derive(Debug, Parser)]
#[command(
    name = "gatehouse-api admin",
    bin_name = "gatehouse-api admin",
    version,
    about = "Operator commands on the database: admins, users, sessions, migrations. Needs only DATABASE_URL."
)]
pub struct AdminCli {
    #[command(flatten)]
    pub args: AdminArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// PostgreSQL connection URL: the only setting admin commands read.
    #[arg(
        long,
        help_heading = "Database",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: String,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Create a verified admin account. The password is read from
    /// GATEHOUSE_ADMIN_PASSWORD if set, else prompted for on a terminal.
    Create {
        /// Email of the new admin.
        #[arg(long)]
        email: String,
    },
    /// Give an existing account the admin role.
    Promote {
        /// Email of the account.
        #[arg(long)]
        email: String,
    },
    /// List, show and verify users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// End sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Apply pending database migrations, then exit.
    Migrate,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UsersCommand {
    /// Users, newest first: id, email, role, verified, created.
    List {
        /// Only users with this role (`user` or `admin`).
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Only verified (`true`) or unverified (`false`) users.
        #[arg(long, value_parser = parse_bool)]
        verified: Option<bool>,
        /// Case-insensitive substring of the email or a name.
        #[arg(long)]
        search: Option<String>,
        /// Rows to print.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        /// Rows to skip.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
        offset: i64,
    },
    /// Every field of one user (except the password hash).
    Show {
        /// The user's email or id.
        user: String,
    },
    /// Mark a user's email verified (e.g. after checking it by other means).
    Verify {
        /// The user's email or id.
        user: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum SessionsCommand {
    /// End every session of a user: their refresh tokens stop working and
    /// their access tokens are published on the revocation feed.
    Revoke {
        /// The user's email or id.
        #[arg(long)]
        user: String,
    },
}

/// `gatehouse-api config check …`, parsed on its own: the settings it
/// checks are read by the check itself, so it can report every bad one.
#[derive(Debug, Parser)]
#[command(
    name = "gatehouse-api config",
    bin_name = "gatehouse-api config",
    version,
    about = "Check the configuration"
)]
pub struct ConfigCli {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Validate every API setting, then connect to PostgreSQL, Redis and
    /// SMTP (`SMTP_URL`, if set). Prints one ok/fail line each; exits 1 if
    /// anything failed.
    Check,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn cli_error(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.detail)
}

/// Run one admin command: migrations first (every command needs the
/// current schema; they are a no-op when up to date), then the command.
pub async fn run_admin(args: AdminArgs) -> anyhow::Result<()> {
    gatehouse_shared::db::run_migrations(&args.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#} (check DATABASE_URL)"))?;
    let mut conn = AsyncPgConnection::establish(&args.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e} (check DATABASE_URL)"))?;
    let conn = &mut conn;
    match args.command {
        AdminCommand::Migrate => println!("database schema is up to date"),
        AdminCommand::Create { email } => create(conn, &email).await?,
        AdminCommand::Promote { email } => {
            let email =
                Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
            crate::users::promote(conn, &email)
                .await
                .map_err(cli_error)?
                .ok_or_else(|| anyhow::anyhow!("no account with email {email}"))?;
            println!("promoted {email} to admin");
        }
        AdminCommand::Users(cmd) => users(conn, cmd).await?,
        AdminCommand::Sessions(SessionsCommand::Revoke { user }) => {
            let user = find_user(conn, &user).await?;
            let ended = crate::sessions::revoke_all_from_cli(conn, user.id)
                .await
                .map_err(cli_error)?;
            println!("revoked {ended} session(s) of {}", user.email);
        }
    }
    Ok(())
}

async fn create(conn: &mut AsyncPgConnection, email: &str) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
    let password = read_password()?;
    let password = Password::parse(password, Some(&email))
        .map_err(|e| anyhow::anyhow!("password: {}", e.message()))?;
    // One hashing thread at the process's own priority: a console
    // command hashes once.
    let hasher = crate::hashing::PasswordHasher::new(1, 0, 1)?;
    let hash = hasher.hash(&password).await?;
    let created = crate::accounts::create_admin_from_cli(conn, email.clone(), hash)
        .await
        .map_err(cli_error)?;
    anyhow::ensure!(
        created,
        "an account with email {email} already exists (use `admin promote`)"
    );
    println!("created admin {email}");
    Ok(())
}

/// The password of `admin create`: `GATEHOUSE_ADMIN_PASSWORD` when set (an
/// explicit choice, also in scripts that run in a terminal), else a prompt
/// without echo on a terminal, else an error naming the variable.
fn read_password() -> anyhow::Result<String> {
    if let Some(p) = std::env::var(PASSWORD_VAR).ok().filter(|p| !p.is_empty()) {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "no terminal to prompt for the password: set {PASSWORD_VAR} to the new admin's password"
        );
    }
    let first = prompt_hidden("Password: ")?;
    let second = prompt_hidden("Repeat the password: ")?;
    anyhow::ensure!(first == second, "the two passwords differ");
    Ok(first)
}

/// Read one line from the terminal with echo off (restored on every path,
/// including errors, by the guard).
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};

    struct Restore(rustix::termios::Termios);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.0);
        }
    }

    let stdin = std::io::stdin();
    let original = tcgetattr(&stdin)?;
    let mut silent = original.clone();
    silent.local_modes.remove(LocalModes::ECHO);
    // Still echo the newline, so the next prompt starts on its own line.
    silent.local_modes.insert(LocalModes::ECHONL);
    // Echo off before the prompt shows: nothing typed after it is echoed.
    tcsetattr(&stdin, OptionalActions::Now, &silent)?;
    let _restore = Restore(original);
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// A user by id or email.
async fn find_user(conn: &mut AsyncPgConnection, user: &str) -> anyhow::Result<User> {
    let found = if let Ok(id) = user.parse::<Uuid>() {
        User::find(conn, id).await?
    } else {
        let email = Email::parse(user).map_err(|e| {
            anyhow::anyhow!("{user:?} is neither a user id nor an email: {}", e.message)
        })?;
        User::find_by_email(conn, &email).await?
    };
    found.ok_or_else(|| anyhow::anyhow!("no user {user}"))
}

async fn users(conn: &mut AsyncPgConnection, cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::List {
            role,
            verified,
            search,
            limit,
            offset,
        } => {
            let filter = UserFilter {
                role,
                is_verified: verified,
                is_active: None,
                q: search.filter(|s| !s.is_empty()),
            };
            let page = User::list(conn, &filter, PageRequest { limit, offset }).await?;
            println!("id\temail\trole\tverified\tcreated");
            for u in &page.items {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.id,
                    u.email,
                    u.role,
                    u.is_verified,
                    u.created_at.to_rfc3339()
                );
            }
            eprintln!(
                "{} of {} user(s) shown (offset {offset})",
                page.items.len(),
                page.total
            );
        }
        UsersCommand::Show { user } => {
            let u = find_user(conn, &user).await?;
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            println!("id:          {}", u.id);
            println!("email:       {}", u.email);
            println!("first_name:  {}", or_dash(&u.first_name));
            println!("last_name:   {}", or_dash(&u.last_name));
            println!("role:        {}", u.role);
            println!("verified:    {}", u.is_verified);
            println!(
                "verified_at: {}",
                or_dash(&u.verified_at.map(|t| t.to_rfc3339()))
            );
            println!("created_at:  {}", u.created_at.to_rfc3339());
            println!("updated_at:  {}", u.updated_at.to_rfc3339());
        }
        UsersCommand::Verify { user } => {
            let u = find_user(conn, &user).await?;
            if u.is_verified {
                println!("{} is already verified", u.email);
            } else {
                crate::users::verify_from_cli(conn, u.id)
                    .await
                    .map_err(cli_error)?;
                println!("verified {}", u.email);
            }
        }
    }
    Ok(())
}

/// One line of `config check`.
fn report(ok: bool, what: &str, detail: &str) -> bool {
    println!("{} {what}: {detail}", if ok { "ok  " } else { "fail" });
    ok
}

/// `host:port` of a connection URL, without scheme, credentials or path:
/// what a check may print (a URL's password never is).
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or("");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if host.is_empty() {
        "(no host)".into()
    } else {
        host.to_owned()
    }
}

/// Error text of a failed connection, without the URL it may contain.
fn scrub(message: String, url: &str) -> String {
    if url.is_empty() {
        message
    } else {
        message.replace(url, &host_of(url))
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `config check`: every setting, then each service. Exit code 1 on any
/// failure, so it can gate a deploy.
pub async fn config_check() -> ExitCode {
    let mut all_ok = check_settings();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());

    all_ok &= match env("DATABASE_URL") {
        None => report(false, "postgres", "DATABASE_URL is not set"),
        Some(url) => {
            let host = host_of(&url);
            let result = tokio::time::timeout(CHECK_TIMEOUT, async {
                let mut conn = AsyncPgConnection::establish(&url).await?;
                use diesel_async::RunQueryDsl;
                diesel::sql_query("SELECT 1").execute(&mut conn).await?;
                anyhow::Ok(())
            })
            .await;
            match result {
                Ok(Ok(())) => report(true, "postgres", &format!("{host} answered")),
                Ok(Err(e)) => report(
                    false,
                    "postgres",
                    &format!(
                        "{host}: {} (check DATABASE_URL)",
                        scrub(e.to_string(), &url)
                    ),
                ),
                Err(_) => report(
                    false,
                    "postgres",
                    &format!("{host}: no answer within 5s (check DATABASE_URL)"),
                ),
            }
        }
    };

    all_ok &= match env("REDIS_URL") {
        None => report(false, "redis", "REDIS_URL is not set"),
        Some(url) => {
            let host = host_of(&url);
            let result = tokio::time::timeout(CHECK_TIMEOUT, async {
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                anyhow::Ok(())
            })
            .await;
            match result {
                Ok(Ok(())) => report(true, "redis", &format!("{host} answered PING")),
                Ok(Err(e)) => report(
                    false,
                    "redis",
                    &format!("{host}: {} (check REDIS_URL)", scrub(e.to_string(), &url)),
                ),
                Err(_) => report(
                    false,
                    "redis",
                    &format!("{host}: no answer within 5s (check REDIS_URL)"),
                ),
            }
        }
    };

    all_ok &= match env("SMTP_URL") {
        // The worker sends mail; the API only needs SMTP checked when the
        // deployment sends through it.
        None => match env("MAIL_TRANSPORT").as_deref() {
            Some(t) if t.eq_ignore_ascii_case("log") => {
                report(true, "smtp", "skipped: MAIL_TRANSPORT=log prints emails")
            }
            _ => report(
                false,
                "smtp",
                "SMTP_URL is not set (the worker sends mail through it)",
            ),
        },
        Some(url) => check_smtp(&url).await,
    };

    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn check_smtp(url: &str) -> bool {
    use lettre::{AsyncSmtpTransport, Tokio1Executor};
    let host = host_of(url);
    let transport: AsyncSmtpTransport<Tokio1Executor> =
        match AsyncSmtpTransport::<Tokio1Executor>::from_url(url) {
            Ok(b) => b.timeout(Some(CHECK_TIMEOUT)).build(),
            Err(e) => {
                return report(
                    false,
                    "smtp",
                    &format!(
                        "SMTP_URL is not a valid smtp:// or smtps:// URL: {}",
                        scrub(e.to_string(), url)
                    ),
                );
            }
        };
    match tokio::time::timeout(CHECK_TIMEOUT * 2, transport.test_connection()).await {
        Ok(Ok(true)) => report(true, "smtp", &format!("{host} answered")),
        Ok(Ok(false)) => report(
            false,
            "smtp",
            &format!("{host}: connection refused by the server (check SMTP_URL)"),
        ),
        Ok(Err(e)) => report(
            false,
            "smtp",
            &format!("{host}: {} (check SMTP_URL)", scrub(e.to_string(), url)),
        ),
        Err(_) => report(
            false,
            "smtp",
            &format!("{host}: no answer within 10s (check SMTP_URL)"),
        ),
    }
}

/// Parse every API setting on its own (so each bad one gets its line),
/// then the rules that span several.
fn check_settings() -> bool {
    use clap::CommandFactory;
    let mut cmd = crate::config::Cli::command();
    cmd.build();
    let mut ok = true;
    let mut checked = 0;
    for arg in cmd.get_arguments() {
        let Some(var) = arg.get_env().and_then(|v| v.to_str()) else {
            continue;
        };
        checked += 1;
        // The setting alone in a command of its own: clap reads its
        // variable (or default) and runs its parser, as at startup.
        let single = clap::Command::new("check")
            .no_binary_name(true)
            .arg(arg.clone());
        let Err(e) = single.try_get_matches_from(std::iter::empty::<String>()) else {
            continue;
        };
        let message = match e.kind() {
            clap::error::ErrorKind::MissingRequiredArgument => "not set (required)".to_owned(),
            // A hidden value (a secret or a URL with credentials) is never
            // echoed: only the parser's own message, which names no value.
            _ if arg.is_hide_env_values_set() => std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "invalid value (not shown)".into()),
            _ => e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid value")
                .trim_start_matches("error: ")
                .to_owned(),
        };
        ok &= report(false, var, &message);
    }
    if ok {
        // Every value parses on its own; now the whole set and the rules
        // that span several settings.
        let parsed = crate::config::Cli::try_parse_from(["gatehouse-api"])
            .map_err(|e| e.to_string().lines().next().unwrap_or("").to_owned())
            .and_then(|cli| cli.config.validate().map(|_| ()));
        match parsed {
            Ok(()) => report(true, "settings", &format!("{checked} checked")),
            Err(e) => report(false, "settings", &e),
        }
    } else {
        false
    }
}
