//! Extractors that turn every client mistake into problem+json: a strict
//! JSON body (unknown fields are 422), query parameters and UUID paths.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::AppError;

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

/// Parse JSON, naming the failing field. Bad syntax is 400; a body of the
/// wrong shape (missing, unknown or mistyped fields) is 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return AppError::bad_request("malformed_json", "The request body is not valid JSON.");
        }
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        let named = |prefix: &str| {
            msg.strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        };
        let (field, code) = if let Some(name) = named("unknown field `") {
            (name, "unknown_field")
        } else if let Some(name) = named("missing field `") {
            (name, "required")
        } else {
            (path.trim_start_matches('.').to_owned(), "invalid_type")
        };
        AppError::invalid(field, code, msg)
    })
}

/// A JSON body. Wrong content type → 415, too large → 413, bad syntax →
/// 400, wrong shape → 422.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected a body with Content-Type: application/json.",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "The request body is too large.",
                )
            } else {
                AppError::bad_request("unreadable_body", "The request body could not be read.")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Query parameters; an unknown or bad parameter is 422 naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
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
                AppError::invalid(field, "invalid_query", msg)
            })
    }
}

/// A UUID path segment named `id`; anything else is 422.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| AppError::not_found("The resource does not exist."))?;
        Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| AppError::invalid("id", "invalid_uuid", "id must be a UUID"))
    }
}

/// Serde helper: tell an absent field (`None`) from an explicit `null`
/// (`Some(None)`) in PATCH bodies.
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(de).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"name":"a","owner_id":"x"}"#).expect_err("unknown");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let errs = e.errors.expect("errors");
        assert_eq!(errs[0].field, "owner_id");
        assert_eq!(errs[0].code, "unknown_field");
        let e = parse_json::<Body>(b"{}").expect_err("missing");
        assert_eq!(e.errors.expect("errors")[0].code, "required");
        let e = parse_json::<Body>(br#"{"name": 5}"#).expect_err("mistyped");
        assert_eq!(e.errors.expect("errors")[0].field, "name");
        let e = parse_json::<Body>(b"{").expect_err("syntax");
        assert_eq!(e.code, "malformed_json");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
