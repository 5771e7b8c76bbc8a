//! `Authorization: Bearer` parsing and the 401 answers of Gatehouse's
//! contract, usable with or without axum.

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::VerifyError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1),
/// or `None` when the header is missing, repeated, of another scheme, or
/// not of the form `Bearer <b64token>`.
///
/// ```
/// use gatehouse_verify::bearer_token;
/// use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc.def.ghi"));
/// assert_eq!(bearer_token(&headers), Some("abc.def.ghi"));
/// ```
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    is_b64token(token).then_some(token)
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Why a request is not authenticated; answers 401 problem+json as
/// Gatehouse does. With the `axum` feature it is the extractors' rejection
/// and implements `IntoResponse`; without it, build the answer from
/// [`status`](Self::status), [`www_authenticate`](Self::www_authenticate)
/// and [`problem_json`](Self::problem_json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` header: code `missing_token`,
    /// `WWW-Authenticate: Bearer`.
    #[error("a bearer access token is required")]
    MissingToken,
    /// The token was refused: code `invalid_token`,
    /// `WWW-Authenticate: Bearer error="invalid_token"`. The reason is for
    /// your logs only; the body is the same for every reason.
    #[error("invalid token: {0}")]
    InvalidToken(VerifyError),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
}

impl AuthError {
    /// Always 401.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// `missing_token` or `invalid_token`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken(_) => "invalid_token",
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3).
    pub fn www_authenticate(&self) -> &'static str {
        match self {
            Self::MissingToken => "Bearer",
            Self::InvalidToken(_) => r#"Bearer error="invalid_token""#,
        }
    }

    /// The human-readable `detail` (the same wording as Gatehouse).
    pub fn detail(&self) -> &'static str {
        match self {
            Self::MissingToken => "A bearer access token is required.",
            Self::InvalidToken(_) => "The access token is invalid, expired or revoked.",
        }
    }

    /// The RFC 9457 body: `{"type":"urn:gatehouse:problem:<code>","title":
    /// "Unauthorized","status":401,"detail":"...","code":"<code>"}`.
    pub fn problem_json(&self) -> String {
        let code = self.code();
        let type_ = format!("urn:gatehouse:problem:{code}");
        let problem = Problem {
            type_: &type_,
            title: "Unauthorized",
            status: 401,
            detail: self.detail(),
            code,
        };
        // Serializing plain strings and a number cannot fail.
        serde_json::to_string(&problem).unwrap_or_default()
    }

    /// The headers of the answer: `Content-Type` and `WWW-Authenticate`.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(self.www_authenticate()),
        );
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_bearer_tokens_strictly() {
        assert_eq!(bearer_token(&headers(&["Bearer a.b.c"])), Some("a.b.c"));
        assert_eq!(bearer_token(&headers(&["bearer a.b.c"])), Some("a.b.c"));
        assert_eq!(
            bearer_token(&headers(&["BEARER  a-_.b~+/c=="])),
            Some("a-_.b~+/c==")
        );
        for bad in [
            &[][..],
            &["Basic dXNlcjpwYXNz"],
            &["Bearer"],
            &["Bearer "],
            &["Bearer a b"],
            &["Bearer a.b.c "],
            &["Bearer ==="],
            &["Bearer a\"b"],
            &["Bearer a.b.c", "Bearer d.e.f"],
            &["Token a.b.c"],
        ] {
            assert_eq!(bearer_token(&headers(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn problem_bodies_and_challenges_follow_the_contract() {
        let missing = AuthError::MissingToken;
        let v: serde_json::Value = serde_json::from_str(&missing.problem_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "urn:gatehouse:problem:missing_token",
                "title": "Unauthorized",
                "status": 401,
                "detail": "A bearer access token is required.",
                "code": "missing_token"
            })
        );
        assert_eq!(missing.www_authenticate(), "Bearer");

        let invalid = AuthError::InvalidToken(VerifyError::Revoked);
        let v: serde_json::Value = serde_json::from_str(&invalid.problem_json()).unwrap();
        assert_eq!(v["type"], "urn:gatehouse:problem:invalid_token");
        assert_eq!(v["code"], "invalid_token");
        assert_eq!(v["status"], 401);
        assert_eq!(
            v["detail"],
            "The access token is invalid, expired or revoked."
        );
        let h = invalid.headers();
        assert_eq!(
            h[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        assert_eq!(h[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
