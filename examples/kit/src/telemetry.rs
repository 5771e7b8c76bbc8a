//! Tracing setup: JSON lines (production) or compact text (local).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::settings::{LogArgs, LogFormat};

/// Install the global subscriber. Safe to call more than once.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match args.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
}
