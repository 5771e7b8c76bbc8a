//! Reusable OpenAPI error responses. An operation lists the sets that fit
//! (`responses((status = 200, ..), Unauthenticated, BadJson)`) and adds a
//! row only for what is its own (`409 email_taken`). A row listed after a
//! set replaces the set's row of the same status. Every body is a
//! [`Problem`]; these enums only document, they are never returned.

#![allow(dead_code)]

use utoipa::IntoResponses;

use crate::error::Problem;

/// 401: no valid access token.
#[derive(IntoResponses)]
pub enum Unauthenticated {
    /// `missing_token` or `invalid_token`: missing, invalid, expired or
    /// revoked access token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
}

/// 401 without a valid token, 403 for a valid token of a plain user.
#[derive(IntoResponses)]
pub enum AdminOnly {
    /// `missing_token` or `invalid_token`: missing, invalid, expired or
    /// revoked access token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`: not an admin.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
}

/// What a JSON body can get wrong.
#[derive(IntoResponses)]
pub enum BadJson {
    /// `malformed_json`: the body is not JSON.
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// `payload_too_large`: the body exceeds `MAX_BODY_BYTES`.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// `unsupported_media_type`: the body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson(Problem),
    /// `validation_failed`: a field is invalid, missing, unknown or of the
    /// wrong type; `errors` lists every one.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}

/// What a query string or a path id can get wrong.
#[derive(IntoResponses)]
pub enum BadInput {
    /// `validation_failed`: a parameter or the id is invalid, or a
    /// parameter is unknown; `errors` names each.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}

/// 404 for an id that names nothing.
#[derive(IntoResponses)]
pub enum NotFound {
    /// `not_found`: no such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// 429 over a rate limit (the login soft-lock included).
#[derive(IntoResponses)]
pub enum RateLimited {
    /// `rate_limited`: too many requests; see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    TooMany(Problem),
}

/// 408: every route runs under `REQUEST_TIMEOUT`. Listed on operations
/// that can fail no other way, so clients still learn the error shape.
#[derive(IntoResponses)]
pub enum TimedOut {
    /// `request_timeout`: the answer took longer than `REQUEST_TIMEOUT`.
    #[response(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Problem),
}

/// 503 when the password-hashing queue is full.
#[derive(IntoResponses)]
pub enum Overloaded {
    /// `overloaded`: too many password checks are waiting; see
    /// `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Overloaded(Problem),
}
