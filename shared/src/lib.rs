//! Code shared by `gatehouse-api` and `gatehouse-worker`: configuration,
//! telemetry, the database pool and migrations, the diesel schema, models with
//! their queries, domain newtypes and job payloads.

pub mod config;
pub mod db;
pub mod domain;
pub mod feed;
pub mod jobs;
pub mod keys;
pub mod models;
pub mod process;
pub mod queue;
pub mod rotation;
pub mod schema;
pub mod startup;
pub mod telemetry;

/// Hex-encoded SHA-256, used to store one-time secrets (codes, links) hashed.
pub fn sha256_hex(input: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(input))
}
