use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use super::{Email, Invalid};

/// The 10,000 most common passwords of 8+ characters (see `data/README.md`).
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;

/// A password that passed the policy: 8..=128 characters, not common, not
/// the user's own email. No composition rules (OWASP ASVS 6.2.5).
/// `Debug` never shows the secret.
#[derive(Clone)]
pub struct Password(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordError {
    Required,
    TooShort,
    TooLong,
    Common,
    ContainsEmail,
}

impl PasswordError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::TooShort => "password_too_short",
            Self::TooLong => "password_too_long",
            Self::Common => "password_too_common",
            Self::ContainsEmail => "password_contains_email",
        }
    }

    pub fn message(self) -> String {
        match self {
            Self::Required => "password is required".into(),
            Self::TooShort => format!("password must be at least {MIN_CHARS} characters"),
            Self::TooLong => format!("password must be at most {MAX_CHARS} characters"),
            Self::Common => "this password is too common; choose another".into(),
            Self::ContainsEmail => "password must not contain your email address".into(),
        }
    }
}

impl From<PasswordError> for Invalid {
    fn from(e: PasswordError) -> Self {
        Invalid::new(e.code(), e.message())
    }
}

impl Password {
    /// Apply the full policy for a new password.
    pub fn parse(raw: String, email: Option<&Email>) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(PasswordError::Required);
        }
        if chars < MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if chars > MAX_CHARS {
            return Err(PasswordError::TooLong);
        }
        let lower = raw.to_lowercase();
        if COMMON.contains(lower.as_str()) {
            return Err(PasswordError::Common);
        }
        if let Some(email) = email {
            let local = email.local_part();
            if lower.contains(email.as_str()) || (local.chars().count() >= 4 && lower == local) {
                return Err(PasswordError::ContainsEmail);
            }
        }
        Ok(Self(raw))
    }

    /// A candidate presented at login: only the length cap applies, so a
    /// password set under an older policy still works. Oversized input is
    /// refused before hashing (bounded work per request).
    pub fn candidate(raw: String) -> Option<Self> {
        let chars = raw.chars().count();
        (chars > 0 && chars <= MAX_CHARS).then_some(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("carol.danvers@example.com").expect("valid email")
    }

    #[test]
    fn accepts_long_passphrase() {
        let p = Password::parse("correct horse battery staple".into(), Some(&email()));
        assert!(p.is_ok());
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert_eq!(
            Password::parse("ab3$".into(), None).unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            Password::parse(String::new(), None).unwrap_err(),
            PasswordError::Required
        );
        // 8 multi-byte characters are enough; 129 are too many.
        assert!(Password::parse("ÿüéøåßðþ".into(), None).is_ok());
        let long: String = "é".repeat(129);
        assert_eq!(
            Password::parse(long, None).unwrap_err(),
            PasswordError::TooLong
        );
        assert!(Password::parse("x".repeat(128) + "", None).is_ok());
    }

    #[test]
    fn rejects_common_in_any_case() {
        assert_eq!(
            Password::parse("password".into(), None).unwrap_err(),
            PasswordError::Common
        );
        assert_eq!(
            Password::parse("PassWord".into(), None).unwrap_err(),
            PasswordError::Common
        );
        assert_eq!(
            Password::parse("12345678".into(), None).unwrap_err(),
            PasswordError::Common
        );
    }

    #[test]
    fn rejects_own_email() {
        let e = email();
        for bad in [
            "carol.danvers@example.com",
            "Carol.Danvers@Example.com!",
            "carol.danvers",
        ] {
            assert_eq!(
                Password::parse(bad.into(), Some(&e)).unwrap_err(),
                PasswordError::ContainsEmail,
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_hides_secret() {
        let p = Password::parse("a very secret phrase".into(), None).expect("valid");
        assert!(!format!("{p:?}").contains("secret"));
    }

    #[test]
    fn candidate_only_caps_length() {
        assert!(Password::candidate("short".into()).is_some());
        assert!(Password::candidate(String::new()).is_none());
        assert!(Password::candidate("x".repeat(129)).is_none());
    }
}
