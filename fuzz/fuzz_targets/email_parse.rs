//! `Email::parse` on arbitrary strings.
//!
//! Checks: never panics; an accepted address is trimmed, lowercase, has
//! exactly one '@' with a non-empty local part of at most 64 bytes and a
//! dotted domain, is at most 254 bytes, equals the trimmed input
//! lowercased, and parses again to itself; surrounding whitespace never
//! changes the outcome.
#![no_main]

use gatehouse_shared::domain::Email;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let parsed = Email::parse(raw);

    // Whitespace around the input is trimmed, so it never changes the result.
    let padded = Email::parse(&format!(" \t{raw}\n "));
    assert_eq!(
        parsed.as_ref().map(Email::as_str).map_err(|e| e.code),
        padded.as_ref().map(Email::as_str).map_err(|e| e.code),
        "surrounding whitespace changed the outcome for {raw:?}"
    );

    let email = match parsed {
        Ok(email) => email,
        Err(e) => {
            assert!(
                e.code == "required" || e.code == "invalid_email",
                "unexpected error code {:?}",
                e.code
            );
            assert_eq!(e.code == "required", raw.trim().is_empty(), "{raw:?}");
            return;
        }
    };
    let s = email.as_str();
    assert_eq!(s, s.trim(), "not trimmed: {s:?}");
    assert!(!s.chars().any(char::is_uppercase), "not lowercase: {s:?}");
    assert_eq!(s, s.to_lowercase(), "not lowercase: {s:?}");
    assert!(s.len() <= 254, "longer than 254 bytes: {} ({s:?})", s.len());
    assert_eq!(s.matches('@').count(), 1, "not exactly one '@': {s:?}");
    assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()), "{s:?}");
    assert_eq!(s, raw.trim().to_ascii_lowercase(), "not the normalised input");

    let (local, domain) = s.split_once('@').expect("one '@'");
    assert!(!local.is_empty() && local.len() <= 64, "bad local part: {s:?}");
    assert_eq!(email.local_part(), local);
    assert!(domain.contains('.'), "undotted domain: {s:?}");
    assert!(domain.split('.').all(|l| !l.is_empty() && l.len() <= 63), "{s:?}");

    // Idempotent: parsing the output again gives the same value.
    let again = Email::parse(s).unwrap_or_else(|e| panic!("own output {s:?} rejected: {e:?}"));
    assert_eq!(again, email);
    // And the input's case never matters.
    let upper = Email::parse(&raw.to_ascii_uppercase()).expect("uppercased input rejected");
    assert_eq!(upper, email);

    // Formatting never panics and never differs from the value.
    assert_eq!(email.to_string(), s);
    let _ = format!("{email:?}");
});
