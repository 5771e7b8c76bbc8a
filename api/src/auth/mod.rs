//! Passwords, tokens, the refresh cookie and the per-request session check.

pub mod cookie;
pub mod keys;
pub mod password;
pub mod session_lookup;
pub mod tokens;
