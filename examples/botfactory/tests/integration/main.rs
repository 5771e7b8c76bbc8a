//! BotFactory against real binaries: the `botfactory` binary on its own
//! database, and a Gatehouse (the in-process stand-in that follows the token
//! contract, or the real `gatehouse-api` for the end-to-end tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bots;
mod common;
mod e2e;
mod operations;
mod swagger;
mod tokens;
