//! Who is calling: signed tokens, the extractors that check them on every
//! request, the refresh cookie, and the per-request session check.

pub mod cookie;
pub mod extract;
pub mod session_check;
pub mod tokens;

pub use extract::{AdminUser, AuthUser};
