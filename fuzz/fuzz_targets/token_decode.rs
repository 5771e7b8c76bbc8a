//! `TokenKeys::decode` on arbitrary input, for both token kinds.
//!
//! Checks: never panics; no input is accepted as both an access and a
//! refresh token; anything accepted carries our `iss`/`aud` and a live
//! `exp`/`nbf` window.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use gatehouse_api::auth::tokens::{AccessClaims, TokenKeys, TokenKind};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8; 32] = b"gatehouse-fuzz-secret-32-bytes!!";
const ISSUER: &str = "gatehouse";
const AUDIENCE: &str = "gatehouse";
/// `TokenKeys` validates with 5 s of leeway.
const LEEWAY: i64 = 5;

static KEYS: LazyLock<TokenKeys> =
    LazyLock::new(|| TokenKeys::new(SECRET, ISSUER, AUDIENCE, Duration::from_secs(900)));

fn check_accepted(c: &AccessClaims) {
    let now = chrono::Utc::now().timestamp();
    assert_eq!(c.iss, ISSUER, "accepted a foreign issuer");
    assert_eq!(c.aud, AUDIENCE, "accepted a foreign audience");
    assert!(c.exp >= now - LEEWAY, "accepted an expired token");
    assert!(c.nbf <= now + LEEWAY, "accepted a token before nbf");
}

fuzz_target!(|data: &[u8]| {
    // As str when the bytes are UTF-8 (the HTTP layer only ever hands
    // `decode` a str); otherwise the lossy conversion still reaches the
    // parser with U+FFFD in place of the bad bytes.
    let lossy;
    let token: &str = match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(_) => {
            lossy = String::from_utf8_lossy(data);
            &lossy
        }
    };
    let access = KEYS.decode(token, TokenKind::Access);
    let refresh = KEYS.decode(token, TokenKind::Refresh);
    assert!(
        !(access.is_ok() && refresh.is_ok()),
        "one token accepted as both access and refresh: {token:?}"
    );
    for claims in [access, refresh].iter().flatten() {
        check_accepted(claims);
    }
});
