//! Passwords, tokens and the refresh cookie.

pub mod cookie;
pub mod password;
pub mod tokens;
