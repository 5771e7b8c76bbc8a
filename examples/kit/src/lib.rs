//! What the example apps (BotFactory and the chat) share, so each app's own
//! code is only its domain: RFC 9457 problem+json errors with Gatehouse's
//! conventions, strict JSON and query extractors, settings, telemetry, the
//! database pool with advisory-locked embedded migrations, health probes,
//! Prometheus metrics and graceful serving.
//!
//! It depends on public crates only: an app built on Gatehouse needs
//! nothing of Gatehouse's internals (tokens are checked by `gatehouse-verify`).

pub mod db;
pub mod error;
pub mod extract;
pub mod gatehouse;
pub mod http;
pub mod page;
pub mod process;
pub mod settings;
pub mod telemetry;
pub mod text;
pub mod time;

pub use error::{AppError, AppResult, FieldError, Problem};
