//! One module per resource; each exposes `router()`.

pub mod auth;
pub mod health;
pub mod me;
