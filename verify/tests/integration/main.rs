//! gatehouse-verify against an in-process server speaking Gatehouse's public
//! contract (JWKS + revocation feed), tokens signed with fresh Ed25519 keys,
//! the shared Redis (one namespace per test) and private redis-servers for
//! outages.

#![allow(clippy::unwrap_used)]

mod support;

mod extractor;
mod keys;
mod revocation;
mod tokens;
