//! Structured token fuzzing: issue a real access or refresh token, mutate its
//! header, payload and signature segments, and decode the result as either
//! kind.
//!
//! Oracles:
//! * never panics;
//! * an unmodified token is accepted as its own kind and refused as the other;
//! * unless the fuzzer re-signed the token with the real key, only the
//!   untouched original string is ever accepted (no forgery, no alternative
//!   encodings of the same token);
//! * even when re-signed with the real key, a token is accepted only if its
//!   header says exactly `alg: HS256` and the `typ` of the requested kind,
//!   and its claims carry our `iss`/`aud` and a live `exp`/`nbf` window.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse_api::auth::tokens::{AccessClaims, TokenKeys, TokenKind};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use uuid::Uuid;

const SECRET: &[u8; 32] = b"gatehouse-fuzz-secret-32-bytes!!";
const OTHER_SECRET: &[u8; 32] = b"another-secret-also-32-bytes!!!!";
const ISSUER: &str = "gatehouse";
const AUDIENCE: &str = "gatehouse";
const LEEWAY: i64 = 5;

static KEYS: LazyLock<TokenKeys> =
    LazyLock::new(|| TokenKeys::new(SECRET, ISSUER, AUDIENCE, Duration::from_secs(900)));

/// Strings worth trying in any JSON position.
const KNOWN: &[&str] = &[
    "HS256", "hs256", "HS384", "HS512", "none", "None", "NONE", "RS256", "ES256", "PS256",
    "EdDSA", "at+jwt", "rt+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt", "", "gatehouse",
    "Gatehouse", "gatehouse ", "evil", "admin", "user", "00000000-0000-0000-0000-000000000000",
    "not-a-uuid", "1", "9999999999", "\u{0}", "HS256\u{0}",
];

const HEADER_FIELDS: &[&str] = &["alg", "typ", "kid", "cty", "jku", "jwk", "x5u", "crit", "b64", "enc", "zip"];
const CLAIM_FIELDS: &[&str] = &["iss", "aud", "sub", "sid", "role", "iat", "nbf", "exp", "jti", "typ"];

#[derive(Debug, Arbitrary)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Known(u8),
    /// Seconds relative to now (for exp/nbf/iat).
    RelNow(i32),
    Uuid(u128),
}

#[derive(Debug, Arbitrary)]
enum JsonVal {
    Leaf(Leaf),
    Array(Vec<Leaf>),
    Object(Vec<(String, Leaf)>),
}

impl Leaf {
    fn to_json(&self, now: i64) -> Value {
        match self {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => json!(b),
            Leaf::Int(i) => json!(i),
            Leaf::UInt(u) => json!(u),
            Leaf::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Leaf::Str(s) => json!(s),
            Leaf::Known(i) => json!(KNOWN[usize::from(*i) % KNOWN.len()]),
            Leaf::RelNow(d) => json!(now + i64::from(*d)),
            Leaf::Uuid(u) => json!(Uuid::from_u128(*u).to_string()),
        }
    }
}

impl JsonVal {
    fn to_json(&self, now: i64) -> Value {
        match self {
            JsonVal::Leaf(l) => l.to_json(now),
            JsonVal::Array(v) => Value::Array(v.iter().map(|l| l.to_json(now)).collect()),
            JsonVal::Object(v) => Value::Object(
                v.iter()
                    .map(|(k, l)| (k.clone(), l.to_json(now)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum FieldEdit {
    /// Set a well-known field (index into the field list) to a value.
    Set(u8, JsonVal),
    /// Remove a well-known field.
    Remove(u8),
    /// Add an arbitrary field.
    Add(String, JsonVal),
}

#[derive(Debug, Arbitrary)]
enum SegmentEdit {
    Keep,
    /// Edit the decoded JSON object, then re-encode it.
    Fields(Vec<FieldEdit>),
    /// Edit the JSON object but emit duplicate keys by string splicing:
    /// `{..original.., "key": value}`.
    DuplicateKey(u8, JsonVal),
    /// Base64url of arbitrary bytes (arbitrary JSON text or not JSON at all).
    Bytes(Vec<u8>),
    /// The segment text replaced verbatim.
    Raw(String),
    /// Flip one bit of one character of the encoded segment.
    FlipChar(u16, u8),
    /// Keep the first n characters.
    Truncate(u16),
    /// Re-encode with padding or the standard alphabet.
    Padded,
    StandardAlphabet,
    /// Insert a string at a position of the encoded segment.
    Insert(u16, String),
}

#[derive(Debug, Arbitrary)]
enum SignatureEdit {
    Keep,
    /// A correct HMAC-SHA256 over the (mutated) signing input: simulates an
    /// attacker who knows the key and checks the validation rules alone.
    Resign,
    OtherKey,
    Empty,
    Raw(String),
    FlipBit(u16, u8),
    Truncate(u16),
    Append(String),
    Padded,
}

#[derive(Debug, Arbitrary)]
enum Shape {
    ThreeParts,
    TwoParts,
    ExtraPart(String),
    /// Whitespace around the token.
    Surrounded(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    issue_refresh: bool,
    decode_as_refresh: bool,
    header: SegmentEdit,
    payload: SegmentEdit,
    signature: SignatureEdit,
    shape: Shape,
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac(key: &[u8], input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn edit_segment(original: &str, edit: &SegmentEdit, fields: &[&str], now: i64) -> String {
    let decoded = || -> Map<String, Value> {
        let bytes = URL_SAFE_NO_PAD.decode(original).expect("own token is base64url");
        serde_json::from_slice(&bytes).expect("own token is a JSON object")
    };
    match edit {
        SegmentEdit::Keep => original.to_owned(),
        SegmentEdit::Fields(edits) => {
            let mut obj = decoded();
            for e in edits {
                match e {
                    FieldEdit::Set(i, v) => {
                        obj.insert(fields[usize::from(*i) % fields.len()].to_owned(), v.to_json(now));
                    }
                    FieldEdit::Remove(i) => {
                        obj.remove(fields[usize::from(*i) % fields.len()]);
                    }
                    FieldEdit::Add(k, v) => {
                        obj.insert(k.clone(), v.to_json(now));
                    }
                }
            }
            b64url(&serde_json::to_vec(&obj).expect("json"))
        }
        SegmentEdit::DuplicateKey(i, v) => {
            let text = serde_json::to_string(&decoded()).expect("json");
            let key = fields[usize::from(*i) % fields.len()];
            let value = v.to_json(now);
            let spliced = format!(
                "{},{}:{}}}",
                &text[..text.len() - 1],
                json!(key),
                value
            );
            b64url(spliced.as_bytes())
        }
        SegmentEdit::Bytes(b) => b64url(b),
        SegmentEdit::Raw(s) => s.clone(),
        SegmentEdit::FlipChar(pos, bit) => {
            let mut bytes = original.as_bytes().to_vec();
            if !bytes.is_empty() {
                let i = usize::from(*pos) % bytes.len();
                bytes[i] ^= 1 << (bit % 7); // stays ASCII
            }
            String::from_utf8(bytes).expect("ascii")
        }
        SegmentEdit::Truncate(n) => original[..usize::from(*n).min(original.len())].to_owned(),
        SegmentEdit::Padded => {
            let bytes = URL_SAFE_NO_PAD.decode(original).expect("own token is base64url");
            base64::engine::general_purpose::URL_SAFE.encode(bytes)
        }
        SegmentEdit::StandardAlphabet => {
            let bytes = URL_SAFE_NO_PAD.decode(original).expect("own token is base64url");
            STANDARD.encode(bytes)
        }
        SegmentEdit::Insert(pos, s) => {
            let i = usize::from(*pos) % (original.len() + 1);
            format!("{}{s}{}", &original[..i], &original[i..])
        }
    }
}

fn kind_typ(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => "at+jwt",
        TokenKind::Refresh => "rt+jwt",
    }
}

fn check_accepted(token: &str, claims: &AccessClaims, kind: TokenKind, now: i64) {
    let header_b64 = token.trim().split('.').next().unwrap_or_default();
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("accepted a token whose header is not base64url JSON: {token:?}"));
    assert_eq!(header["alg"], json!("HS256"), "accepted alg other than HS256: {header}");
    assert_eq!(header["typ"], json!(kind_typ(kind)), "accepted wrong typ: {header}");
    assert_eq!(claims.iss, ISSUER, "accepted a foreign issuer");
    assert_eq!(claims.aud, AUDIENCE, "accepted a foreign audience");
    // `now` was taken before decoding; allow one extra second for the clock.
    assert!(claims.exp >= now - LEEWAY - 1, "accepted an expired token: {claims:?}");
    assert!(claims.nbf <= now + LEEWAY + 1, "accepted a token before nbf: {claims:?}");
}

fuzz_target!(|input: Input| {
    let now = chrono::Utc::now().timestamp();
    let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
    let issue_kind = if input.issue_refresh { TokenKind::Refresh } else { TokenKind::Access };
    let decode_kind = if input.decode_as_refresh { TokenKind::Refresh } else { TokenKind::Access };
    let original = match issue_kind {
        TokenKind::Access => KEYS.issue_access(user, session, "user"),
        TokenKind::Refresh => KEYS.issue_refresh(
            user,
            session,
            Uuid::new_v4(),
            chrono::Utc::now() + chrono::Duration::days(30),
        ),
    }
    .expect("sign")
    .token;

    let parts: Vec<&str> = original.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = edit_segment(parts[0], &input.header, HEADER_FIELDS, now);
    let payload = edit_segment(parts[1], &input.payload, CLAIM_FIELDS, now);
    let signing_input = format!("{header}.{payload}");
    let original_sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("own signature is base64url");
    let signature = match &input.signature {
        SignatureEdit::Keep => parts[2].to_owned(),
        SignatureEdit::Resign => b64url(&hmac(SECRET, &signing_input)),
        SignatureEdit::OtherKey => b64url(&hmac(OTHER_SECRET, &signing_input)),
        SignatureEdit::Empty => String::new(),
        SignatureEdit::Raw(s) => s.clone(),
        SignatureEdit::FlipBit(pos, bit) => {
            let mut sig = original_sig.clone();
            let i = usize::from(*pos) % sig.len();
            sig[i] ^= 1 << (bit % 8);
            b64url(&sig)
        }
        SignatureEdit::Truncate(n) => parts[2][..usize::from(*n).min(parts[2].len())].to_owned(),
        SignatureEdit::Append(s) => format!("{}{s}", parts[2]),
        SignatureEdit::Padded => base64::engine::general_purpose::URL_SAFE.encode(&original_sig),
    };
    let token = match &input.shape {
        Shape::ThreeParts => format!("{signing_input}.{signature}"),
        Shape::TwoParts => signing_input.clone(),
        Shape::ExtraPart(s) => format!("{signing_input}.{signature}.{s}"),
        Shape::Surrounded(w) => {
            let ws = [" ", "\t", "\n", "\r\n", "\u{a0}"][usize::from(*w) % 5];
            format!("{ws}{signing_input}.{signature}{ws}")
        }
    };

    let result = KEYS.decode(&token, decode_kind);

    if token == original {
        assert_eq!(
            result.is_ok(),
            issue_kind == decode_kind,
            "an untouched {issue_kind:?} token decoded as {decode_kind:?} gave {:?}",
            result.as_ref().err()
        );
    }
    if let Ok(claims) = &result {
        let resigned = matches!(input.signature, SignatureEdit::Resign);
        assert!(
            resigned || token == original,
            "accepted a modified token without the key:\n  original {original}\n  accepted {token}"
        );
        check_accepted(&token, claims, decode_kind, now);
    }
});
