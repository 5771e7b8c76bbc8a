//! API integration tests: the real router on a real socket, a database of
//! its own per test, a Redis namespace of its own per test.

#![allow(clippy::unwrap_used)]

mod common;

// One module per resource, named as `src/routes/<name>.rs` and `src/<name>.rs`.
mod accounts;
mod audit;
mod cli;
mod email;
mod health;
mod jobs;
mod keys;
mod me;
mod pages;
mod password;
mod revocations;
mod sessions;
mod users;

// Cross-cutting: the access-token check (`src/auth/`), who may call what,
// rate limits and abuse, problem+json for framework errors, the document.
mod abuse;
mod auth;
mod authorization;
mod errors;
mod input;
mod openapi;
mod serving;
mod startup;
