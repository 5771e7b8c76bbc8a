//! Extractors that turn every client mistake into problem+json: a JSON body
//! wrapper, query and path wrappers, the authenticated user and the client IP.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use gatehouse_shared::models::User;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::tokens::{AccessClaims, TokenKind};
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

/// Parse JSON, reporting the failing field. Syntax errors are 400; a body of
/// the wrong shape (missing, unknown or mistyped fields) is 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                let (field, code) = if let Some(rest) = msg.strip_prefix("unknown field `") {
                    let name = rest.split('`').next().unwrap_or_default();
                    let field = if path == "." || path.ends_with(name) {
                        path.trim_start_matches('.').to_owned()
                    } else {
                        format!("{path}.{name}")
                    };
                    let field = if field.is_empty() {
                        name.to_owned()
                    } else {
                        field
                    };
                    (field, "unknown_field")
                } else if let Some(rest) = msg.strip_prefix("missing field `") {
                    let name = rest.split('`').next().unwrap_or_default();
                    let field = if path == "." {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    };
                    (field, "required")
                } else {
                    let field = if path == "." { String::new() } else { path };
                    (field, "invalid_type")
                };
                ApiError::validation(vec![FieldError::new(field, code, msg)])
            }
            _ => ApiError::bad_request("malformed_json", "The request body is not valid JSON."),
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
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|err| {
                let path = err.path().to_string();
                let msg = err.into_inner().to_string();
                let field = if path == "." {
                    msg.split('`').nth(1).unwrap_or_default().to_owned()
                } else {
                    path
                };
                ApiError::validation(vec![FieldError::new(field, "invalid_query", msg)])
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
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

/// The bearer token, or 401 with `WWW-Authenticate: Bearer`.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(ApiError::missing_token)?
        .to_str()
        .map_err(|_| ApiError::missing_token())?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(ApiError::missing_token)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::missing_token());
    }
    Ok(token.trim())
}

/// An authenticated user. The token proves identity; the session row and
/// the user row, loaded on every request, decide authority. Logout, a
/// password change, a role change or a deletion applies on the next request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub session_id: Uuid,
    pub claims: AccessClaims,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let claims = state
            .tokens
            .decode(token, TokenKind::Access)
            .map_err(|_| ApiError::invalid_token())?;
        let user = state
            .sessions
            .active_user(claims.sid, claims.sub)
            .await?
            .ok_or_else(ApiError::invalid_token)?;
        Ok(Self {
            user,
            session_id: claims.sid,
            claims,
        })
    }
}

/// An authenticated admin; a plain user gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = AuthUser::from_request_parts(parts, state).await?;
        if !auth.user.is_admin() {
            return Err(ApiError::admin_only());
        }
        Ok(Self(auth))
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

pub fn resolve_client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    // Walk the chain right to left, skipping our own proxies.
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        chain
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

/// `User-Agent`, truncated, for the session record.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(255).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert!(bearer_token(&h).is_err());
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("hv"));
        assert!(bearer_token(&h).is_err());
        h.insert(header::AUTHORIZATION, "bearer abc.def".parse().expect("hv"));
        assert_eq!(bearer_token(&h).ok(), Some("abc.def"));
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            email: String,
        }
        let e = parse_json::<B>(br#"{"email":"a","role":"admin"}"#).expect_err("must fail");
        assert_eq!(e.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        let errs = e.errors.expect("errors");
        assert_eq!(errs[0].field, "role");
        assert_eq!(errs[0].code, "unknown_field");
        let e = parse_json::<B>(br#"{"#).expect_err("must fail");
        assert_eq!(e.code, "malformed_json");
        let e = parse_json::<B>(br#"{"email": 5}"#).expect_err("must fail");
        assert_eq!(e.errors.expect("errors")[0].field, "email");
    }
}
