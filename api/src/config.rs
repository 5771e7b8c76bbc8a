//! API settings. Every field reads an environment variable (or `.env`);
//! `gatehouse-api --help` lists them all.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use gatehouse_shared::config::{
    DatabaseArgs, LogArgs, RedisArgs, TokenArgs, parse_bool, parse_duration,
};
use ipnet::IpNet;

use crate::auth::keys::SigningAlgorithm;
use crate::ratelimit::{Resilience, Rule, Rules};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse-api",
    version,
    about = "Gatehouse HTTP API: accounts, tokens, sessions and administration"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: ApiConfig,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Operator commands on the database (need only DATABASE_URL; see
    /// `gatehouse-api admin --help`).
    Admin(crate::cli::AdminArgs),
    /// Configuration: `config check` validates every setting and reaches
    /// PostgreSQL, Redis and SMTP.
    #[command(subcommand)]
    Config(crate::cli::ConfigCommand),
    /// Print the OpenAPI document (JSON) and exit; needs no configuration.
    Openapi,
}

/// `JWT_SECRET` (shared by both binaries).
pub use gatehouse_shared::config::JwtSecret;

/// `PUBLIC_URL`: an `http(s)://` base, without a trailing slash.
fn parse_public_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(format!(
            "PUBLIC_URL must start with http:// or https://, got {s:?}"
        ));
    }
    Ok(s.to_owned())
}

/// `http://{addr}`, naming an unspecified address (listen on all
/// interfaces) `localhost`, where a browser on this machine reaches it.
fn default_public_url(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let host = if ip.is_unspecified() {
        "localhost".to_owned()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("http://{host}:{}", addr.port())
}

fn parse_origin_list(s: &str) -> Result<String, String> {
    Ok(s.trim().trim_end_matches('/').to_owned())
}

#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// Address the HTTP server listens on.
    #[arg(
        long,
        help_heading = "Server",
        env = "API_ADDR",
        default_value = "0.0.0.0:8000"
    )]
    pub api_addr: SocketAddr,

    /// `JWT_SECRET`, `ACCESS_TOKEN_TTL`, `JWKS_MAX_AGE`, `KEY_REFRESH_INTERVAL`.
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// How access tokens are signed: `EdDSA` (Ed25519 keys published at
    /// /.well-known/jwks.json) or `HS256` (JWT_SECRET; one-service setups).
    #[arg(
        long,
        help_heading = "Tokens",
        env = "JWT_ALGORITHM",
        value_enum,
        default_value = "EdDSA",
        ignore_case = true
    )]
    pub jwt_algorithm: SigningAlgorithm,
    /// `client_id` claim of access tokens (RFC 9068).
    #[arg(
        long,
        help_heading = "Tokens",
        env = "JWT_CLIENT_ID",
        default_value = "gatehouse"
    )]
    pub jwt_client_id: String,
    /// Public base URL of this API, as browsers reach it: absolute URLs in
    /// discovery documents (the worker's `PUBLIC_URL` is the base of the
    /// emailed links, served by the hosted pages here). Default:
    /// `http://{API_ADDR}`, with `localhost` for 0.0.0.0 or [::]; read it
    /// through `ApiConfig::public_url()`.
    #[arg(long, help_heading = "Server", env = "PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// `iss` claim of issued tokens.
    #[arg(
        long,
        help_heading = "Tokens",
        env = "JWT_ISSUER",
        default_value = "gatehouse"
    )]
    pub jwt_issuer: String,
    /// `aud` claim of issued tokens.
    #[arg(
        long,
        help_heading = "Tokens",
        env = "JWT_AUDIENCE",
        default_value = "gatehouse"
    )]
    pub jwt_audience: String,
    /// Absolute lifetime of a session and its refresh tokens.
    #[arg(long, help_heading = "Tokens", env = "REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,
    /// Window in which the parent of the current refresh token still
    /// returns the current one (two tabs refreshing at once).
    #[arg(long, help_heading = "Tokens", env = "REFRESH_REUSE_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub refresh_reuse_grace: Duration,

    /// Refuse login until the email is verified.
    #[arg(long, help_heading = "Accounts", env = "REQUIRE_VERIFIED_LOGIN", default_value = "true", value_parser = parse_bool, action = ArgAction::Set)]
    pub require_verified_login: bool,
    /// Mark the refresh cookie `Secure` (set false only for local http).
    #[arg(long, help_heading = "Server", env = "COOKIE_SECURE", default_value = "true", value_parser = parse_bool, action = ArgAction::Set)]
    pub cookie_secure: bool,
    /// Largest accepted request body.
    #[arg(long, help_heading = "Server", env = "MAX_BODY_BYTES", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    pub max_body_bytes: u64,
    /// Requests taking longer are answered 408.
    #[arg(long, help_heading = "Server", env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Redis-backed rate limits (`on` | `off`; off only for benchmarks).
    #[arg(long, help_heading = "Limits", env = "RATE_LIMITS", default_value = "on", value_parser = parse_bool, action = ArgAction::Set)]
    pub rate_limits: bool,
    /// Login attempts per client IP.
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_LOGIN_IP", default_value = "30/1m", value_parser = Rule::parse)]
    pub rate_limit_login_ip: Rule,
    /// Login attempts per account (email) and client (known device, or IP).
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_LOGIN_ACCOUNT", default_value = "10/1m", value_parser = Rule::parse)]
    pub rate_limit_login_account: Rule,
    /// Failed logins per account from all clients; over it only known
    /// devices may log in until the window ends (ASVS 6.3.1: 100 an hour).
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_LOGIN_ACCOUNT_CEILING", default_value = "100/1h", value_parser = Rule::parse)]
    pub rate_limit_login_account_ceiling: Rule,
    /// Signups per client IP.
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_SIGNUP_IP", default_value = "20/1h", value_parser = Rule::parse)]
    pub rate_limit_signup_ip: Rule,
    /// Verification attempts per account.
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_VERIFY_ACCOUNT", default_value = "10/15m", value_parser = Rule::parse)]
    pub rate_limit_verify_account: Rule,
    /// Verification attempts per client IP.
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_VERIFY_IP", default_value = "30/15m", value_parser = Rule::parse)]
    pub rate_limit_verify_ip: Rule,
    /// Resend requests per account.
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_RESEND_ACCOUNT", default_value = "5/1h", value_parser = Rule::parse)]
    pub rate_limit_resend_account: Rule,
    /// Refreshes per client IP.
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_REFRESH_IP", default_value = "120/1m", value_parser = Rule::parse)]
    pub rate_limit_refresh_ip: Rule,
    /// Password-reset requests (`forgot`) per client IP.
    #[arg(long, env = "RATE_LIMIT_FORGOT_IP", default_value = "20/1h", value_parser = Rule::parse)]
    pub rate_limit_forgot_ip: Rule,
    /// Password-reset requests (`forgot`) per email address.
    #[arg(long, env = "RATE_LIMIT_FORGOT_ACCOUNT", default_value = "5/1h", value_parser = Rule::parse)]
    pub rate_limit_forgot_account: Rule,
    /// Consecutive failed logins on one account before delays start.
    #[arg(
        long,
        help_heading = "Limits",
        env = "LOGIN_LOCKOUT_THRESHOLD",
        default_value_t = 5
    )]
    pub login_lockout_threshold: u64,
    /// First delay after the threshold; doubles with each further failure.
    #[arg(long, help_heading = "Limits", env = "LOGIN_LOCKOUT_BASE", default_value = "2s", value_parser = parse_duration)]
    pub login_lockout_base: Duration,
    /// Longest delay (the soft lock never lasts longer).
    #[arg(long, help_heading = "Limits", env = "LOGIN_LOCKOUT_MAX", default_value = "5m", value_parser = parse_duration)]
    pub login_lockout_max: Duration,
    /// How long a device stays known (its login soft-lock is its own)
    /// after a successful login.
    #[arg(long, help_heading = "Limits", env = "LOGIN_DEVICE_TTL", default_value = "90d", value_parser = parse_duration)]
    pub login_device_ttl: Duration,
    /// Deadline of one rate-limiter call to Redis; past it the per-process
    /// limiter decides.
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_REDIS_TIMEOUT", default_value = "100ms", value_parser = parse_duration)]
    pub rate_limit_redis_timeout: Duration,
    /// Consecutive failed rate-limiter calls that open the circuit breaker.
    #[arg(
        long,
        help_heading = "Limits",
        env = "RATE_LIMIT_BREAKER_FAILURES",
        default_value_t = 3
    )]
    pub rate_limit_breaker_failures: u32,
    /// How long the open breaker skips Redis before one call probes it.
    #[arg(long, help_heading = "Limits", env = "RATE_LIMIT_BREAKER_COOLDOWN", default_value = "5s", value_parser = parse_duration)]
    pub rate_limit_breaker_cooldown: Duration,
    /// Most keys the per-process fallback limiter keeps.
    #[arg(
        long,
        help_heading = "Limits",
        env = "RATE_LIMIT_FALLBACK_KEYS",
        default_value_t = 100_000
    )]
    pub rate_limit_fallback_keys: usize,
    /// Comma-separated CIDRs of proxies whose `X-Forwarded-For` is trusted.
    #[arg(
        long,
        help_heading = "Server",
        env = "TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub trusted_proxies: Vec<String>,
    /// Comma-separated origins allowed by CORS and cookie-authenticated POSTs.
    #[arg(long, help_heading = "Server", env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', default_value = "", value_parser = parse_origin_list)]
    pub cors_allowed_origins: Vec<String>,

    /// Concurrent password hashes (defaults to the number of cores).
    #[arg(long, help_heading = "Accounts", env = "PASSWORD_HASH_CONCURRENCY")]
    pub password_hash_concurrency: Option<usize>,
    /// Password hashes waiting or running at once (default 64 per hashing
    /// thread: about 1 s of backlog at release-build speed); beyond it,
    /// 503 `overloaded` with `Retry-After`.
    #[arg(long, help_heading = "Accounts", env = "PASSWORD_HASH_QUEUE", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub password_hash_queue: Option<u64>,
    /// Scheduling priority (nice, 0..=19) of the hashing threads: above 0,
    /// request handling runs first and a login flood only gets the CPU
    /// time left over. 0 leaves them at the process's priority.
    #[arg(long, help_heading = "Accounts", env = "PASSWORD_HASH_NICE", default_value_t = 19, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub password_hash_nice: i32,
    /// Minimum time between two verification emails of one account.
    #[arg(long, help_heading = "Limits", env = "VERIFY_RESEND_COOLDOWN", default_value = "60s", value_parser = parse_duration)]
    pub verify_resend_cooldown: Duration,
    /// Verification emails per account per hour.
    #[arg(
        long,
        help_heading = "Limits",
        env = "VERIFY_RESEND_HOURLY_CAP",
        default_value_t = 5
    )]
    pub verify_resend_hourly_cap: usize,

    /// Create this verified admin at startup if the email has no account.
    #[arg(long, help_heading = "Accounts", env = "BOOTSTRAP_ADMIN_EMAIL")]
    pub bootstrap_admin_email: Option<String>,
    /// Password of the bootstrap admin.
    #[arg(
        long,
        help_heading = "Accounts",
        env = "BOOTSTRAP_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    pub bootstrap_admin_password: Option<String>,

    /// Connection limits of the HTTP server (see `crate::server`).
    #[command(flatten)]
    pub serving: ServingArgs,
    /// `STARTUP_TIMEOUT`.
    #[command(flatten)]
    pub startup: gatehouse_shared::config::StartupArgs,
    /// How long browsers may cache a CORS preflight (`Access-Control-Max-Age`;
    /// browsers cap it, Chromium at 2 h).
    #[arg(long, help_heading = "Server", env = "CORS_MAX_AGE", default_value = "10m", value_parser = parse_duration)]
    pub cors_max_age: Duration,
}

/// How the HTTP server treats connections: timeouts against slow or idle
/// clients, a cap on open connections, the header size limit, and the
/// separate metrics address.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServingArgs {
    /// A client must send a request's complete headers within this time
    /// (also the longest wait for the first request of a new connection).
    #[arg(long, help_heading = "Server", env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this time.
    #[arg(long, help_heading = "Server", env = "IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    #[arg(long, help_heading = "Server", env = "MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Largest total size of a request's headers (names + values); larger
    /// requests get a problem+json 431.
    #[arg(long, help_heading = "Server", env = "MAX_HEADER_BYTES", default_value_t = 32_768, value_parser = clap::value_parser!(u32).range(1024..=262_144))]
    pub max_header_bytes: u32,
    /// Serve `/metrics` on this address instead of the API's (keep it off
    /// the public network). Unset: `/metrics` is on API_ADDR.
    #[arg(long, help_heading = "Server", env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl ApiConfig {
    /// Checks that span several fields; returns a one-line message.
    /// `PUBLIC_URL`, or this API's own address when it is not set.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| default_public_url(self.api_addr))
    }

    pub fn validate(&self) -> Result<Vec<IpNet>, String> {
        let proxies = self
            .trusted_proxies
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("TRUSTED_PROXIES: {s:?} is not an IP address or CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        match (
            set(&self.bootstrap_admin_email).then_some(()),
            set(&self.bootstrap_admin_password).then_some(()),
        ) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(
                    "BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD must be set together"
                        .into(),
                );
            }
            _ => {}
        }
        self.tokens.check_secret()?;
        self.check_origins()?;
        if let Some(password) = self.bootstrap_admin_password.as_deref() {
            gatehouse_shared::config::check_not_known_secret(
                "BOOTSTRAP_ADMIN_PASSWORD",
                password.as_bytes(),
                self.tokens.dev_allow_known_secrets,
            )?;
        }
        if self.refresh_token_ttl <= self.tokens.access_token_ttl {
            return Err("REFRESH_TOKEN_TTL must be longer than ACCESS_TOKEN_TTL".into());
        }
        Ok(proxies)
    }

    pub fn rate_rules(&self) -> Rules {
        Rules {
            login_ip: self.rate_limit_login_ip,
            login_account: self.rate_limit_login_account,
            login_ceiling: self.rate_limit_login_account_ceiling,
            signup_ip: self.rate_limit_signup_ip,
            verify_account: self.rate_limit_verify_account,
            verify_ip: self.rate_limit_verify_ip,
            resend_account: self.rate_limit_resend_account,
            refresh_ip: self.rate_limit_refresh_ip,
            forgot_ip: self.rate_limit_forgot_ip,
            forgot_account: self.rate_limit_forgot_account,
            lockout_threshold: self.login_lockout_threshold.max(1),
            lockout_base: self.login_lockout_base,
            lockout_max: self.login_lockout_max,
            device_ttl: self.login_device_ttl,
        }
    }

    pub fn rate_resilience(&self) -> Resilience {
        Resilience {
            timeout: self.rate_limit_redis_timeout,
            breaker_failures: self.rate_limit_breaker_failures,
            breaker_cooldown: self.rate_limit_breaker_cooldown,
            fallback_keys: self.rate_limit_fallback_keys,
        }
    }

    /// `CORS_ALLOWED_ORIGINS`: exact `http(s)://host[:port]` origins. `*`
    /// is refused: the API allows credentials (the refresh cookie), and
    /// browsers never combine that with a wildcard.
    fn check_origins(&self) -> Result<(), String> {
        for origin in self.allowed_origins() {
            if origin.contains('*') {
                return Err("CORS_ALLOWED_ORIGINS: `*` is not supported (the API allows credentials, which browsers refuse with a wildcard); list the exact origins, e.g. https://app.example.com,https://admin.example.com".into());
            }
            let scheme_ok = origin.starts_with("http://") || origin.starts_with("https://");
            let host = origin.split_once("://").map_or("", |(_, h)| h);
            if !scheme_ok
                || host.is_empty()
                || host.contains('/')
                || axum::http::HeaderValue::from_str(&origin).is_err()
            {
                return Err(format!(
                    "CORS_ALLOWED_ORIGINS: {origin:?} is not an origin (scheme://host[:port], no path)"
                ));
            }
        }
        Ok(())
    }

    pub fn allowed_origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item 8: without `PUBLIC_URL`, links and discovery URLs point at the
    /// API's own address, so a local Mailpit link works with one click.
    #[test]
    fn item_8_public_url_defaults_to_the_api_address() {
        let parse = |args: &[&str]| {
            let mut argv = vec![
                "gatehouse-api",
                "--database-url",
                "postgres://localhost/unit",
                "--redis-url",
                "redis://localhost",
                "--jwt-secret",
                "unit-test-secret-0123456789-0123456789",
            ];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
                .expect("the test's arguments are valid")
                .config
        };
        let addr = |a: &str| parse(&["--api-addr", a]).public_url();
        assert_eq!(addr("0.0.0.0:8000"), "http://localhost:8000");
        assert_eq!(addr("[::]:9000"), "http://localhost:9000");
        assert_eq!(addr("127.0.0.1:8123"), "http://127.0.0.1:8123");
        assert_eq!(addr("[::1]:8123"), "http://[::1]:8123");
        let set = parse(&["--public-url", "https://auth.example.com/"]);
        assert_eq!(set.public_url(), "https://auth.example.com");
    }
}
