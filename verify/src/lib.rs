//! Trust Gatehouse access tokens in any Rust service, without holding a
//! secret.
//!
//! A [`Verifier`] fetches Gatehouse's public keys (`/.well-known/jwks.json`)
//! and follows its revocation feed (Redis `{ns}:revocations` when configured,
//! `/.well-known/revocations` over HTTP otherwise or while Redis is down).
//! [`Verifier::verify`] then accepts a token only if it is an EdDSA-signed
//! access token (`typ: at+jwt`) from a published key, for the configured
//! issuer and audience, within its lifetime, and not stale: a logout,
//! password change, role change, disable or deletion at Gatehouse makes
//! every older token of that session fail here too, within the feed's
//! delay (milliseconds over Redis, about one poll interval without).
//!
//! This crate knows only Gatehouse's public contract (`docs/tokens.md`
//! and the README); it does not depend on Gatehouse's code.
//!
//! # With axum (feature `axum`, on by default)
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use gatehouse_verify::{Config, Verified, Verifier};
//!
//! async fn whoami(Verified(claims): Verified) -> String {
//!     format!("user {} ({}), session {}", claims.sub, claims.role, claims.sid)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Config::new("http://gatehouse:8080")
//!         .with_redis("redis://redis:6379", "gatehouse");
//!     let verifier = Verifier::start(config).await?;
//!     let app = Router::new().route("/whoami", get(whoami)).with_state(verifier);
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! A bad, expired, revoked or stale token is answered 401
//! `application/problem+json` with `code: invalid_token` and
//! `WWW-Authenticate: Bearer error="invalid_token"`; a missing one with
//! `code: missing_token` and `WWW-Authenticate: Bearer` ([`AuthError`]).
//!
//! # Without axum, and for WebSockets
//!
//! [`Verifier::verify`] takes the bare token (e.g. from a WebSocket's first
//! frame), [`Verifier::verify_bearer`] a request's headers. A long-lived
//! connection waits on [`Verifier::revoked`] (or listens to
//! [`Verifier::revocations`]) and closes itself when its session is revoked:
//!
//! ```no_run
//! # async fn socket(verifier: gatehouse_verify::Verifier, token: &str) {
//! let Ok(claims) = verifier.verify(token).await else { return /* close 4401 */ };
//! tokio::select! {
//!     _ = verifier.revoked(&claims) => { /* close 4401 */ }
//!     _ = async { /* read and write frames */ } => {}
//! }
//! # }
//! ```
//!
//! # Operations
//!
//! [`Verifier::status`] tells how revocations arrive ([`FeedMode`]), the
//! feed cursor, the last sync and whether the verifier is `ready` (put it in
//! your readiness probe). Nothing secret is logged.
//!
//! # Feature flags
//!
//! - `axum` (default): the [`Verified`] / [`OptionalVerified`] extractors
//!   and `IntoResponse` for [`AuthError`].
//! - `rustls`: HTTPS to Gatehouse (reqwest with rustls and the webpki
//!   roots). Without it, the verifier speaks plain HTTP (a private network),
//!   unless you pass your own client ([`Config::with_http_client`]).

#![deny(missing_docs)]

mod bearer;
mod claims;
mod config;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod feed;
mod jwks;
mod revocation;
mod util;
mod verifier;

pub use bearer::{AuthError, PROBLEM_JSON, bearer_token};
pub use claims::{Claims, FromClaims};
pub use config::Config;
pub use error::{StartError, VerifyError};
#[cfg(feature = "axum")]
pub use extract::{OptionalVerified, Verified};
pub use feed::FeedMode;
pub use revocation::Revocation;
pub use verifier::{Status, Verifier};
