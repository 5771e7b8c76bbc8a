//! Settings groups every app composes into its own `clap::Parser`, so
//! `--help` lists each environment variable it reads. Names follow
//! PRODUCT.md ("The seeds' other systems").

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Load `.env` (if present) before clap reads the environment.
pub fn load_dotenv() {
    // A missing .env is normal; a malformed one shows up as a missing setting.
    let _ = dotenvy::dotenv();
}

/// Parse a human duration such as `10s` or `15m`; zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    if d.is_zero() {
        return Err("duration must be greater than zero".into());
    }
    Ok(d)
}

/// An `http(s)://` base URL, without a trailing slash.
pub fn parse_base_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("{s:?} is not a URL"));
    }
    Ok(s.to_owned())
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "APP_ADDR", default_value = "0.0.0.0:8080")]
    pub app_addr: SocketAddr,
    /// Largest request body accepted; larger bodies get 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,
    /// Longest time one HTTP request may take (not a WebSocket).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of the app's own database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Maximum connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,
    /// How long a request waits for a pooled connection before a 503.
    #[arg(long, env = "DB_POOL_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_pool_timeout: Duration,
}

/// Where Gatehouse is and what its tokens must say.
#[derive(Debug, Clone, Args)]
pub struct GatehouseArgs {
    /// Base URL of Gatehouse as this server reaches it (JWKS, revocation feed).
    #[arg(long, env = "GATEHOUSE_URL", value_parser = parse_base_url)]
    pub gatehouse_url: String,
    /// Base URL of Gatehouse as browsers reach it (login from the page and
    /// Swagger UI); defaults to GATEHOUSE_URL. Differs in compose, where the
    /// server says `http://api:8000` and the browser `http://localhost:8000`.
    #[arg(long, env = "GATEHOUSE_PUBLIC_URL", value_parser = parse_base_url)]
    pub gatehouse_public_url: Option<String>,
    /// Expected `iss` of access tokens.
    #[arg(long, env = "JWT_ISSUER", default_value = "gatehouse")]
    pub jwt_issuer: String,
    /// Expected `aud` of access tokens.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "gatehouse")]
    pub jwt_audience: String,
    /// Gatehouse's Redis, for instant revocations (`{namespace}:revocations`).
    /// Unset: the revocation feed is polled over HTTP only.
    #[arg(long, env = "GATEHOUSE_REDIS_URL", hide_env_values = true)]
    pub gatehouse_redis_url: Option<String>,
    /// Gatehouse's REDIS_NAMESPACE.
    #[arg(long, env = "GATEHOUSE_REDIS_NAMESPACE", default_value = "gatehouse")]
    pub gatehouse_redis_namespace: String,
}

impl GatehouseArgs {
    /// The URL browsers use for Gatehouse.
    pub fn public_url(&self) -> &str {
        self.gatehouse_public_url
            .as_deref()
            .unwrap_or(&self.gatehouse_url)
    }

    /// The public URL's origin (`scheme://host[:port]`), for CSP.
    pub fn public_origin(&self) -> String {
        origin_of(self.public_url())
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info,chat=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
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
    fn urls_and_origins() {
        assert_eq!(
            parse_base_url("http://localhost:8000/").as_deref(),
            Ok("http://localhost:8000")
        );
        assert!(parse_base_url("localhost:8000").is_err());
        assert!(parse_base_url("http://").is_err());
        assert_eq!(
            origin_of("https://auth.example.com/base"),
            "https://auth.example.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:9/"), "http://127.0.0.1:9");
    }

    #[test]
    fn folds_clap_errors() {
        let msg = "error: the following required arguments were not provided:\n  --gatehouse-url <GATEHOUSE_URL>\n\nUsage: x\n";
        assert_eq!(
            one_line(msg),
            "error: the following required arguments were not provided: --gatehouse-url <GATEHOUSE_URL>"
        );
    }
}
