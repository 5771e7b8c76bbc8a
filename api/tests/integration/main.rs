//! API integration tests: the real router on a real socket, a database of
//! its own per test, a Redis namespace of its own per test.

#![allow(clippy::unwrap_used)]

mod common;

mod abuse;
mod admin;
mod audit;
mod auth;
mod errors;
mod keys;
mod me;
mod openapi;
mod revocations;
mod tokens;
mod verify;
