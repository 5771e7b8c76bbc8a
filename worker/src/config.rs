//! Worker settings. `gatehouse-worker --help` lists them all.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use gatehouse_shared::config::{DatabaseArgs, LogArgs, RedisArgs, TokenArgs, parse_duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MailTransport {
    /// Send through `SMTP_URL` (pooled).
    Smtp,
    /// Print emails to stdout (local development only).
    Log,
}

fn parse_schedule(s: &str) -> Result<String, String> {
    cron::Schedule::from_str(s)
        .map_err(|e| format!("invalid cron expression {s:?} (6 fields, seconds first): {e}"))?;
    Ok(s.to_owned())
}

fn parse_public_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(format!(
            "PUBLIC_URL must start with http:// or https://, got {s:?}"
        ));
    }
    Ok(s.to_owned())
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gatehouse-worker",
    version,
    about = "Gatehouse background worker: sends the emails, purges unverified accounts, rotates signing keys"
)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// Address of the worker's /health and /metrics.
    #[arg(
        long,
        help_heading = "Worker",
        env = "WORKER_ADDR",
        default_value = "0.0.0.0:9000"
    )]
    pub worker_addr: SocketAddr,
    /// Base URL of emailed links; the link is `{PUBLIC_URL}/verify?token=…`.
    #[arg(long, help_heading = "Mail", env = "PUBLIC_URL", default_value = "http://localhost:8000", value_parser = parse_public_url)]
    pub public_url: String,
    /// How emails leave: `smtp` or `log`.
    #[arg(long, help_heading = "Mail", env = "MAIL_TRANSPORT", value_enum, default_value_t = MailTransport::Smtp)]
    pub mail_transport: MailTransport,
    /// `smtp://host:port`, `smtp://user:pass@host:587?tls=required` or `smtps://user:pass@host`.
    #[arg(long, help_heading = "Mail", env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of every email.
    #[arg(
        long,
        help_heading = "Mail",
        env = "MAIL_FROM",
        default_value = "Gatehouse <no-reply@gatehouse.local>"
    )]
    pub mail_from: String,

    /// `JWT_SECRET` (encrypts new signing keys), `ACCESS_TOKEN_TTL` (key
    /// retirement, revocation-feed retention), `JWKS_MAX_AGE` and
    /// `KEY_REFRESH_INTERVAL` (when a new key may sign).
    #[command(flatten)]
    pub tokens: TokenArgs,

    /// Unverified accounts older than this are purged.
    #[arg(long, help_heading = "Scheduled jobs", env = "UNVERIFIED_TTL", default_value = "48h", value_parser = parse_duration)]
    pub unverified_ttl: Duration,
    /// Purge schedule: cron with 6 fields, seconds first (hourly by default).
    #[arg(long, help_heading = "Scheduled jobs", env = "PURGE_SCHEDULE", default_value = "0 0 * * * *", value_parser = parse_schedule)]
    pub purge_schedule: String,
    /// Signing-key rotation schedule: cron with 6 fields, seconds first
    /// (monthly by default: the 1st at 03:00 UTC).
    #[arg(long, help_heading = "Scheduled jobs", env = "KEY_ROTATION_SCHEDULE", default_value = "0 0 3 1 * *", value_parser = parse_schedule)]
    pub key_rotation_schedule: String,
    /// Rows deleted per purge statement (short locks).
    #[arg(long, help_heading = "Scheduled jobs", env = "PURGE_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub purge_batch_size: i64,
    /// Lifetime of the emailed 6-digit code.
    #[arg(long, help_heading = "Mail", env = "VERIFY_CODE_TTL", default_value = "15m", value_parser = parse_duration)]
    pub verify_code_ttl: Duration,
    /// Lifetime of the emailed link.
    #[arg(long, help_heading = "Mail", env = "VERIFY_LINK_TTL", default_value = "24h", value_parser = parse_duration)]
    pub verify_link_ttl: Duration,
    /// Lifetime of an emailed password-reset link (single use).
    #[arg(long, env = "PASSWORD_RESET_TTL", default_value = "30m", value_parser = parse_duration)]
    pub password_reset_ttl: Duration,
    /// Lifetime of the link and 6-digit code that confirm a new email address.
    #[arg(long, env = "EMAIL_CHANGE_TTL", default_value = "1h", value_parser = parse_duration)]
    pub email_change_ttl: Duration,
    /// How long before its purge an unverified account gets its one
    /// reminder (sent by the scheduled purge run).
    #[arg(long, env = "PURGE_REMINDER_LEAD", default_value = "24h", value_parser = parse_duration)]
    pub purge_reminder_lead: Duration,

    /// Jobs processed at once per queue.
    #[arg(long, help_heading = "Worker", env = "WORKER_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub worker_concurrency: u32,
    /// Time limit of one job attempt.
    #[arg(long, help_heading = "Worker", env = "JOB_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub job_timeout: Duration,
    /// In-process retries of a failed attempt (exponential backoff).
    #[arg(
        long,
        help_heading = "Worker",
        env = "JOB_RETRIES",
        default_value_t = 3
    )]
    pub job_retries: usize,
    /// Worker heartbeat; a worker silent for `QUEUE_MISSED_HEARTBEATS`
    /// beats has its in-flight jobs re-queued by the others.
    #[arg(long, help_heading = "Worker", env = "QUEUE_HEARTBEAT", default_value = "30s", value_parser = parse_duration)]
    pub queue_heartbeat: Duration,
    /// Missed heartbeats after which a worker counts as gone.
    #[arg(
        long,
        help_heading = "Worker",
        env = "QUEUE_MISSED_HEARTBEATS",
        default_value_t = 2
    )]
    pub queue_missed_heartbeats: usize,
    /// How often the outbox sweeper relays jobs that are not in Redis yet.
    #[arg(long, help_heading = "Worker", env = "OUTBOX_SWEEP_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub outbox_sweep_interval: Duration,
    /// A relayed job not completed after this long is relayed again.
    #[arg(long, help_heading = "Worker", env = "OUTBOX_REDELIVER_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub outbox_redeliver_after: Duration,
    /// Time given to in-flight jobs on SIGTERM.
    #[arg(long, help_heading = "Worker", env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Base name of this process's workers (default `worker-{hostname}-{ulid}`).
    #[arg(long, help_heading = "Worker", env = "WORKER_NAME")]
    pub worker_name: Option<String>,
    /// `STARTUP_TIMEOUT`.
    #[command(flatten)]
    pub startup: gatehouse_shared::config::StartupArgs,
}

impl WorkerConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.tokens.check_secret()?;
        // smtp is the default: a forgotten variable must not send codes to stdout.
        if self.mail_transport == MailTransport::Smtp
            && self.smtp_url.as_deref().unwrap_or("").is_empty()
        {
            return Err("SMTP_URL is not set: the worker sends email through it (MAIL_TRANSPORT defaults to smtp). Set SMTP_URL=smtp://host:port, or MAIL_TRANSPORT=log for local development (prints emails, codes included, to the log)".into());
        }
        if self.purge_reminder_lead >= self.unverified_ttl {
            return Err("PURGE_REMINDER_LEAD must be shorter than UNVERIFIED_TTL".into());
        }
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "MAIL_FROM is not a valid mailbox: {:?}",
                self.mail_from
            ));
        }
        Ok(())
    }
}
