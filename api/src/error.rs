//! The one error type. Every failure leaves as RFC 9457 problem+json with a
//! stable machine-readable `code`. Only 5xx causes are logged; clients get
//! generic text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_shared::domain::Invalid;
use serde::Serialize;
use utoipa::ToSchema;

pub type ApiResult<T> = Result<T, ApiError>;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid or missing field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as a JSON path (`email`, `items[0].name`).
    pub field: String,
    /// Stable machine-readable reason, e.g. `required`, `invalid_email`.
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn from_invalid(field: &str, e: Invalid) -> Self {
        Self::new(field, e.code, e.message)
    }
}

/// Collects the field errors of one request, so that every bad field is
/// reported at once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// The parsed value, or `None` with the error recorded under `field`.
    pub fn check<T, E: Into<Invalid>>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        parsed
            .map_err(|e| self.push(FieldError::from_invalid(field, e.into())))
            .ok()
    }

    /// `value` if nothing was recorded, else 422 listing every error.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        if self.0.is_empty()
            && let Some(value) = value()
        {
            return Ok(value);
        }
        Err(ApiError::validation(self.0))
    }
}

/// RFC 9457 problem details, as sent on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:gatehouse:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:gatehouse:problem:invalid_token")]
    pub type_: String,
    #[schema(example = "Unauthorized")]
    pub title: String,
    /// The HTTP status code, repeated.
    #[schema(example = 401, minimum = 400, maximum = 599)]
    pub status: u16,
    #[schema(example = "The access token is missing, invalid or expired.")]
    pub detail: String,
    /// Stable machine-readable code, e.g. `email_taken`.
    #[schema(example = "invalid_token")]
    pub code: String,
    /// Present on validation failures: every invalid or missing field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Option<Vec<FieldError>>,
    pub retry_after: Option<u64>,
    source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: None,
            retry_after: None,
            source: None,
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "The request has invalid or missing fields.",
        );
        e.errors = Some(errors);
        e
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests; retry later.",
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            detail,
        )
    }

    /// 503 `overloaded`: the password-hashing queue is full.
    pub fn overloaded(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "The server is busy checking passwords; retry later.",
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let source = source.into();
        // Every hashing call maps its error with `internal`; a full queue
        // is the client's cue to come back, not a server fault.
        if let Some(full) = source.downcast_ref::<crate::hashing::Overloaded>() {
            return Self::overloaded(full.retry_after);
        }
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An unexpected error occurred.",
        );
        e.source = Some(source);
        e
    }

    /// The `invalid_credentials` answer: same body for unknown email and
    /// wrong password.
    pub fn invalid_credentials() -> Self {
        Self::unauthorized("invalid_credentials", "The email or password is incorrect.")
    }

    pub fn missing_token() -> Self {
        Self::unauthorized("missing_token", "A bearer access token is required.")
    }

    pub fn invalid_token() -> Self {
        Self::unauthorized(
            "invalid_token",
            "The access token is invalid, expired or revoked.",
        )
    }

    /// Deleting or demoting the only remaining admin.
    pub fn last_admin() -> Self {
        Self::conflict(
            "last_admin",
            "This is the last admin; promote another user to admin first.",
        )
    }

    pub fn account_disabled() -> Self {
        Self::forbidden("account_disabled", "This account is disabled.")
    }

    /// 400 `invalid_token`: a wrong, expired or used emailed token (reset,
    /// email change, revert). Not 401: no credentials are involved.
    pub fn invalid_link_token() -> Self {
        Self::bad_request(
            "invalid_token",
            "The link is invalid, expired or already used.",
        )
    }

    pub fn email_taken() -> Self {
        Self::conflict("email_taken", "An account with this email already exists.")
    }

    /// A failed write of a user row: the unique email index makes it
    /// `email_taken`; anything else maps as usual.
    pub fn from_user_write(e: diesel::result::Error) -> Self {
        if gatehouse_shared::models::is_unique_violation(&e) {
            Self::email_taken()
        } else {
            e.into()
        }
    }

    pub fn admin_only() -> Self {
        Self::forbidden("forbidden", "This action requires the admin role.")
    }
}

/// The title of a status, e.g. "Unprocessable Entity".
fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

/// Build a problem response; also used by the middleware that converts
/// framework-made errors (405, 408, 413) into problem+json.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: &str,
    errors: Option<Vec<FieldError>>,
) -> Response {
    let body = Problem {
        type_: format!("urn:gatehouse:problem:{code}"),
        title: title(status),
        status: status.as_u16(),
        detail: detail.to_owned(),
        code: code.to_owned(),
        errors,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = (status, json).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(error = ?source, code = self.code, "request failed")
                }
                None => tracing::warn!(code = self.code, detail = %self.detail, "request failed"),
            }
        }
        let mut res = problem_response(self.status, self.code, &self.detail, self.errors);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Self::not_found("The resource does not exist."),
            other => Self::internal(other),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        tracing::warn!(error = %e, "database pool unavailable");
        Self::unavailable("The database is temporarily unavailable.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(res: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn maps_to_problem_json() {
        let res = ApiError::conflict("email_taken", "taken").into_response();
        assert_eq!(res.status(), StatusCode::CONFLICT);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let v = body_json(res).await;
        assert_eq!(v["code"], "email_taken");
        assert_eq!(v["status"], 409);
        assert_eq!(v["type"], "urn:gatehouse:problem:email_taken");
        assert_eq!(v["title"], "Conflict");
        assert!(v.get("errors").is_none());
    }

    #[tokio::test]
    async fn unauthorized_carries_www_authenticate() {
        let res = ApiError::invalid_token().into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[tokio::test]
    async fn internal_hides_cause_and_rate_limit_sets_retry_after() {
        let res = ApiError::internal(anyhow::anyhow!("secret db detail")).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let v = body_json(res).await;
        assert!(!v.to_string().contains("secret"));
        let res = ApiError::too_many_requests(7).into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        // A full hashing queue is 503 overloaded with Retry-After.
        let full = anyhow::Error::new(crate::hashing::Overloaded { retry_after: 3 });
        let res = ApiError::internal(full).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "3");
        assert_eq!(body_json(res).await["code"], "overloaded");
    }

    #[tokio::test]
    async fn pool_timeout_is_503_and_not_found_is_404() {
        let e: ApiError = diesel::result::Error::NotFound.into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = ApiError::validation(vec![FieldError::new("email", "required", "x")]);
        let v = body_json(e.into_response()).await;
        assert_eq!(v["errors"][0]["field"], "email");
    }
}
