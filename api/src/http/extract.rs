//! Extractors that turn every client mistake into problem+json: a JSON body
//! wrapper, query and path wrappers, and the client IP. (The authenticated
//! user is `crate::auth::AuthUser`.)

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::json::parse_json;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// True for `application/json` and `application/*+json`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Read the body, mapping "too large" to 413.
pub async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.",
            )
        } else {
            ApiError::bad_request("unreadable_body", "The request body could not be read.")
        }
    })
}

/// A JSON body. Wrong content type → 415, bad syntax → 400, wrong shape → 422.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected a body with Content-Type: application/json.",
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: an empty body is `None`.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if has_type && !json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected a body with Content-Type: application/json.",
            ));
        }
        // JSON `null` counts as no body.
        parse_json::<Option<T>>(&bytes).map(Self)
    }
}

/// Query parameters; a bad value is 422 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Parse a query string; a bad or unknown parameter is 422 naming it (the
/// path of `serde_path_to_error`: an unknown key is on it too).
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    reject_control_chars_in_pairs(query.as_bytes())?;
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let field = path.trim_start_matches('.').to_owned();
        let msg = err.into_inner().to_string();
        ApiError::validation(vec![FieldError::new(field, "invalid_query", msg)])
    })
}

/// 422 naming `field` when `value` holds a control character (NUL, ESC,
/// DEL, C1...). No text field of the API may carry one: PostgreSQL refuses
/// NUL in text (the 500 of `GET /users?q=ab%00c`), and the others only
/// smuggle terminal escapes or fake line breaks into names and logs.
pub fn reject_control_chars(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::validation(vec![FieldError::new(
            field,
            "control_character",
            format!("{field} must not contain control characters"),
        )]));
    }
    Ok(())
}

/// The same for every name and value of a query string or form body.
pub fn reject_control_chars_in_pairs(encoded: &[u8]) -> Result<(), ApiError> {
    for (name, value) in form_urlencoded::parse(encoded) {
        let field = if name.chars().any(char::is_control) {
            "query"
        } else {
            name.as_ref()
        };
        reject_control_chars(field, &name)?;
        reject_control_chars(field, &value)?;
    }
    Ok(())
}

/// A UUID path segment; anything else is 422.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found("The resource does not exist."))?;
        Uuid::parse_str(&raw).map(IdPath).map_err(|_| {
            ApiError::validation(vec![FieldError::new(
                "id",
                "invalid_uuid",
                "id must be a UUID",
            )])
        })
    }
}

/// The client IP: the socket peer, or the right-most untrusted address of
/// `X-Forwarded-For` when the peer is one of `TRUSTED_PROXIES`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The address as text, for session and audit records.
    pub fn text(self) -> Option<String> {
        self.0.map(|ip| ip.to_string())
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self(resolve_client_ip(
            peer,
            &parts.headers,
            &state.trusted_proxies,
        )))
    }
}

/// Walk `X-Forwarded-For` from the right (the entry our nearest proxy
/// wrote) over trusted proxies; the first untrusted address is the client.
/// Only bare IP addresses count: an entry that is anything else (`ip:port`,
/// `unknown`, garbage, an empty item) stops the walk, and the last trusted
/// hop (or the peer) is used, so a value spoofed to the left of such an
/// entry never wins (issue 11, item 11).
pub fn resolve_client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    // A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`: compare
    // and count them as the IPv4 addresses they are.
    let peer = peer?.to_canonical();
    if !is_trusted(&peer) {
        return Some(peer);
    }
    // Entries in order over every header line; a line that is not text is
    // one malformed entry.
    let entries: Vec<Option<&str>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(text) => text.split(',').map(Some).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect();
    let mut last_trusted = peer;
    for entry in entries.into_iter().rev() {
        match entry.and_then(|e| e.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical())) {
            Some(ip) if is_trusted(&ip) => last_trusted = ip,
            Some(ip) => return Some(ip),
            None => return Some(last_trusted),
        }
    }
    Some(last_trusted)
}

/// `User-Agent`, sanitised (control characters dropped, whitespace runs
/// folded) and truncated to 255 characters, for the session record.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::USER_AGENT)?;
    let text = String::from_utf8_lossy(raw.as_bytes());
    let clean: String = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control() && *c != '\u{FFFD}')
        .take(255)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_name_the_parameter() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Q {
            limit: Option<i64>,
            role: Option<gatehouse_shared::domain::Role>,
        }
        for (query, field) in [
            ("sort=email", "sort"),
            ("limit=x", "limit"),
            ("role=root", "role"),
        ] {
            let e = parse_query::<Q>(query).expect_err(query);
            assert_eq!(e.errors.expect("errors")[0].field, field, "{query}");
        }
        assert!(parse_query::<Q>("limit=5&role=admin").is_ok());
    }

    #[test]
    fn xff_only_from_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 10.0.0.2".parse().expect("hv"),
        );
        let trusted = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(
            resolve_client_ip(Some(peer), &h, &trusted),
            "203.0.113.9".parse().ok()
        );
        let outsider: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(
            resolve_client_ip(Some(outsider), &h, &trusted),
            Some(outsider)
        );
        assert_eq!(resolve_client_ip(Some(peer), &h, &[]), Some(peer));
    }

    /// Issue 11, item 11: an entry that is not a bare IP stops the walk.
    #[test]
    fn item_11_malformed_forwarded_for_entries_stop_the_walk() {
        let trusted = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let resolve = |xff: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", xff.parse().expect("hv"));
            resolve_client_ip(Some(peer), &h, &trusted)
        };
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        // ip:port, [v6]:port, garbage, empty: the spoofed left value loses.
        assert_eq!(resolve("203.0.113.66, 198.51.100.7:4444"), Some(peer));
        assert_eq!(resolve("203.0.113.66, [2001:db8::1]:443"), Some(peer));
        assert_eq!(resolve("203.0.113.66, unknown"), Some(peer));
        assert_eq!(resolve("203.0.113.66,,10.0.0.2"), ip("10.0.0.2"));
        // The last trusted hop before the bad entry is used.
        assert_eq!(resolve("203.0.113.66, junk, 10.0.0.2"), ip("10.0.0.2"));
        // Bare addresses still work, IPv6 too; all-trusted gives the first hop.
        assert_eq!(resolve("2001:db8::7, 10.0.0.2"), ip("2001:db8::7"));
        assert_eq!(resolve("10.0.0.3, 10.0.0.2"), ip("10.0.0.3"));
        // IPv4-mapped peers and entries count as IPv4.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "::ffff:198.51.100.5".parse().expect("hv"),
        );
        assert_eq!(
            resolve_client_ip(Some(mapped), &h, &trusted),
            ip("198.51.100.5")
        );
        // Several header lines are one list, in order.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "203.0.113.66".parse().expect("hv"));
        h.append("x-forwarded-for", "198.51.100.9".parse().expect("hv"));
        assert_eq!(
            resolve_client_ip(Some(peer), &h, &trusted),
            ip("198.51.100.9")
        );
    }
}
