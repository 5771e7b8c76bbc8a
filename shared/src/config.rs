//! Settings shared by both binaries. Each binary composes these groups into
//! its own `clap::Parser`, so `--help` lists every variable it reads.

use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

/// Load `.env` (if present) before clap reads the environment.
pub fn load_dotenv() {
    // A missing .env is normal; a malformed one is reported by clap later
    // as a missing setting, so the error is ignored here on purpose.
    let _ = dotenvy::dotenv();
}

/// Parse a human duration such as `15m`, `30d` or `48h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    if d.is_zero() {
        return Err("duration must be greater than zero".into());
    }
    Ok(d)
}

/// Parse `true`/`false`/`on`/`off`/`1`/`0`/`yes`/`no`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        other => Err(format!("expected true/false or on/off, got {other:?}")),
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL, e.g. `postgres://gatehouse:secret@localhost/gatehouse`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Maximum connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,
    /// How long to wait for a pooled connection before giving up.
    #[arg(long, env = "DB_POOL_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_pool_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Redis")]
pub struct RedisArgs {
    /// Redis connection URL, e.g. `redis://localhost:6379`.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    /// Prefix of every Redis key Gatehouse reads or writes; the same in both binaries.
    #[arg(long, env = "REDIS_NAMESPACE", default_value = "gatehouse")]
    pub redis_namespace: String,
    /// How long to wait for a Redis reply; generous, so a load spike is not fatal.
    #[arg(long, env = "REDIS_RESPONSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub redis_response_timeout: Duration,
}

/// How long a binary waits for its dependencies at startup.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Startup")]
pub struct StartupArgs {
    /// At startup, retry an unreachable PostgreSQL or Redis (with backoff)
    /// for this long before exiting; containers start in any order.
    #[arg(long, env = "STARTUP_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub startup_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log output format: one JSON object per line, or human-readable text.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info,gatehouse_api=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
}

/// `JWT_SECRET`: the master secret, at least 32 bytes; never printed. It
/// is the HS256 key, the key (through HKDF) that encrypts the EdDSA private
/// keys at rest, and the root of other keyed hashes. Both binaries read it.
#[derive(Clone)]
pub struct JwtSecret(std::sync::Arc<[u8]>);

impl JwtSecret {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() < 32 {
            return Err(format!(
                "JWT_SECRET must be at least 32 bytes (got {}); generate one with `openssl rand -base64 48`",
                s.len()
            ));
        }
        Ok(Self(s.as_bytes().into()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

/// Token and signing-key settings both binaries need: the API signs and
/// serves keys, the worker rotates them and trims the revocation feed.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tokens")]
pub struct TokenArgs {
    /// Master secret (at least 32 bytes), the same in both binaries: it
    /// encrypts the signing keys stored in PostgreSQL and keys the hashes of
    /// emailed codes.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = JwtSecret::parse)]
    pub jwt_secret: JwtSecret,
    /// Lifetime of access tokens (also how long revoked sessions stay on the feed).
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,
    /// How long clients may cache the public keys (JWKS); a new key is
    /// published at least this long (plus one refresh period) before it signs.
    #[arg(long, env = "JWKS_MAX_AGE", default_value = "5m", value_parser = parse_duration)]
    pub jwks_max_age: Duration,
    /// How often API replicas reload the signing keys: a rotated key is
    /// picked up within this period, without a restart.
    #[arg(long, env = "KEY_REFRESH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub key_refresh_interval: Duration,
    /// Development and tests only: accept a JWT_SECRET (or bootstrap admin
    /// password) published in the repository (deploy/known-secrets.txt).
    #[arg(long, env = "GATEHOUSE_DEV_ALLOW_KNOWN_SECRETS", default_value = "false", value_parser = parse_bool, action = ArgAction::Set)]
    pub dev_allow_known_secrets: bool,
}

/// Every secret-looking value published in this repository (examples,
/// placeholders, test fixtures): never acceptable as a real secret.
const KNOWN_SECRETS: &str = include_str!("../data/known-secrets.txt");

/// True when `value` is one of the published values of `KNOWN_SECRETS`.
pub fn is_known_secret(value: &[u8]) -> bool {
    KNOWN_SECRETS
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|l| l.as_bytes() == value)
}

/// Refuse a published secret unless the development flag is set. The
/// message names the variable and the flag, never the value.
pub fn check_not_known_secret(variable: &str, value: &[u8], allow: bool) -> Result<(), String> {
    if allow || !is_known_secret(value) {
        return Ok(());
    }
    Err(format!(
        "{variable} is a value published in the Gatehouse repository (deploy/known-secrets.txt), so anyone can forge tokens with it: generate a new one (`openssl rand -base64 48`, or scripts/dev-secrets.sh), or set {ALLOW_KNOWN_SECRETS_VAR}=true for local development only"
    ))
}

/// The development flag that lets a published secret through.
pub const ALLOW_KNOWN_SECRETS_VAR: &str = "GATEHOUSE_DEV_ALLOW_KNOWN_SECRETS";

impl TokenArgs {
    /// `JWT_SECRET` must not be a published value (unless the development
    /// flag allows it).
    pub fn check_secret(&self) -> Result<(), String> {
        check_not_known_secret(
            "JWT_SECRET",
            self.jwt_secret.bytes(),
            self.dev_allow_known_secrets,
        )
    }

    pub fn key_timing(&self) -> crate::keys::KeyTiming {
        crate::keys::KeyTiming {
            refresh_interval: self.key_refresh_interval,
            jwks_max_age: self.jwks_max_age,
            access_token_ttl: self.access_token_ttl,
        }
    }
}

/// Parse the command line and environment. `--help` and `--version` print
/// as usual; any other error becomes one line on stderr and exit code 2.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(v) => v,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            if e.kind() == ErrorKind::ValueValidation {
                // clap quotes the rejected value; for JWT_SECRET or a URL
                // with a password that would print the secret. Name the
                // setting and the reason only.
                use clap::error::{ContextKind, ContextValue};
                let arg = match e.get(ContextKind::InvalidArg) {
                    Some(ContextValue::String(a)) => a.clone(),
                    _ => "a setting".to_owned(),
                };
                let reason = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "invalid value".to_owned());
                eprintln!("error: invalid value for {arg}: {}", one_line(&reason));
                std::process::exit(2);
            }
            eprintln!("{}", one_line(&e.to_string()));
            std::process::exit(2);
        }
    }
}

/// Fold clap's multi-line message into one line, without the usage hints.
fn one_line(message: &str) -> String {
    message
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_clap_errors() {
        let msg = "error: the following required arguments were not provided:\n  --database-url <DATABASE_URL>\n\nUsage: x\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(msg),
            "error: the following required arguments were not provided: --database-url <DATABASE_URL>"
        );
    }

    #[test]
    fn parses_durations_and_bools() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_bool("ON"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }
}
