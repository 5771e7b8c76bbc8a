//! Domain newtypes that parse on input. Past the HTTP edge only these flow.

mod email;
mod name;
mod password;
mod role;

pub use email::Email;
pub use name::PersonName;
pub use password::{Password, PasswordError};
pub use role::Role;

/// A field-level validation failure: a stable `code` and an English message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
