//! One tracing setup for both binaries.

use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogArgs, LogFormat};

/// Crates that log secrets below `info`, capped at `info` whatever
/// `RUST_LOG` says: `tokio_postgres` logs bound parameters (password
/// hashes, emails, session ids, code hashes) at debug; `redis` logs
/// commands and their arguments; `lettre` the SMTP dialogue (AUTH);
/// `hyper`, `hyper_util` and `h2` request headers (bearer tokens, cookies).
pub const PINNED_TO_INFO: &[&str] = &[
    "tokio_postgres",
    "postgres",
    "diesel",
    "diesel_async",
    "deadpool",
    "redis",
    "lettre",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
];

/// The cap of `PINNED_TO_INFO`, applied after the `RUST_LOG` filter.
fn pinned() -> Targets {
    PINNED_TO_INFO.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |targets, krate| targets.with_target(*krate, LevelFilter::INFO),
    )
}

/// Install the global subscriber. Safe to call more than once (tests).
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter).with(pinned());
    // Colour only for a terminal: files and log collectors get plain text.
    let ansi = std::io::stdout().is_terminal();
    let _ = match args.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_ansi(false)
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_ansi(ansi))
            .try_init(),
    };
}
