//! `Password::parse` (new-password policy) and `Password::candidate` (login)
//! on arbitrary strings, with and without the account's email.
//!
//! Checks: never panics; accepted passwords have 8..=128 characters
//! (counted in chars, not bytes) and are returned unchanged; the error
//! matches the length class; an accepted password never contains the
//! email; `candidate` accepts exactly 1..=128 characters; whatever the
//! policy accepts, login accepts; `Debug` never reveals the secret.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use gatehouse_shared::domain::{Email, Password, PasswordError};
use libfuzzer_sys::fuzz_target;

static FALLBACK_EMAIL: LazyLock<Email> =
    LazyLock::new(|| Email::parse("carol.danvers@example.com").expect("valid email"));

#[derive(Debug, Arbitrary)]
struct Input {
    password: String,
    /// Tried as the account's email; the fixed one is used when invalid.
    email: String,
    /// Splice the email (or its local part) into the password to reach the
    /// `ContainsEmail` branch more often.
    splice: Option<(bool, u16)>,
}

fuzz_target!(|input: Input| {
    let email = Email::parse(&input.email).unwrap_or_else(|_| FALLBACK_EMAIL.clone());
    let mut raw = input.password;
    if let Some((whole, at)) = input.splice {
        let piece = if whole { email.as_str() } else { email.local_part() };
        let mut i = usize::from(at) % (raw.len() + 1);
        while !raw.is_char_boundary(i) {
            i -= 1;
        }
        raw.insert_str(i, piece);
    }
    let chars = raw.chars().count();

    let with_email = Password::parse(raw.clone(), Some(&email));
    let without_email = Password::parse(raw.clone(), None);
    let candidate = Password::candidate(raw.clone());

    for result in [&with_email, &without_email] {
        match result {
            Ok(p) => {
                assert!((8..=128).contains(&chars), "accepted {chars} chars");
                assert_eq!(p.expose(), raw, "password altered");
                assert_eq!(format!("{p:?}"), "Password(<redacted>)");
            }
            Err(PasswordError::Required) => assert_eq!(chars, 0),
            Err(PasswordError::TooShort) => assert!((1..8).contains(&chars), "{chars}"),
            Err(PasswordError::TooLong) => assert!(chars > 128, "{chars}"),
            Err(PasswordError::Common | PasswordError::ContainsEmail) => {
                assert!((8..=128).contains(&chars), "{chars}");
            }
        }
    }
    // The email only ever adds a reason to refuse.
    if with_email.is_ok() {
        assert!(without_email.is_ok(), "accepted with the email, refused without");
        assert!(
            !raw.to_lowercase().contains(email.as_str()),
            "accepted a password containing the email"
        );
    }
    if let Err(e) = &with_email {
        if *e != PasswordError::ContainsEmail {
            assert_eq!(
                without_email.as_ref().err(),
                Some(e),
                "the email changed a non-email verdict"
            );
        }
    }
    if let Err(e) = &without_email {
        assert_ne!(*e, PasswordError::ContainsEmail);
        let _ = (e.code(), e.message());
    }

    // Login: only the length cap applies.
    assert_eq!(candidate.is_some(), (1..=128).contains(&chars), "candidate with {chars} chars");
    if let Some(c) = &candidate {
        assert_eq!(c.expose(), raw);
    }
    if with_email.is_ok() || without_email.is_ok() {
        assert!(candidate.is_some(), "a policy-accepted password is refused at login");
    }
});
