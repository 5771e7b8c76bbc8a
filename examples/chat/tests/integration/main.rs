//! The chat against real binaries: one or two `chat` replicas on their own
//! database and Redis namespace, and a Gatehouse (the in-process stand-in
//! that follows the token contract, or the real `gatehouse-api` for the
//! end-to-end tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod e2e;
mod fanout;
mod operations;
mod page;
mod slow;
mod socket;
