//! Worker integration tests: real PostgreSQL, Redis and SMTP listener; the
//! delivery and end-to-end tests run the real binaries.

#![allow(clippy::unwrap_used)]

mod common;

mod delivery;
mod e2e;
mod help;
mod lifecycle;
mod outages;
mod promtool;
mod purge;
mod review;
mod startup;
mod verify_email;
