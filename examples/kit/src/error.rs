//! The one error type of an app. Every failure leaves as RFC 9457
//! problem+json with a stable `code` and a `type` of
//! `urn:<app>:problem:<code>`. Only 5xx causes are logged; clients get
//! generic text.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub type AppResult<T> = Result<T, AppError>;

pub const PROBLEM_JSON: &str = "application/problem+json";

static APP_NAME: OnceLock<&'static str> = OnceLock::new();

/// Name the app once at start-up: problem types become
/// `urn:<name>:problem:<code>`.
pub fn set_app_name(name: &'static str) {
    let _ = APP_NAME.set(name);
}

fn app_name() -> &'static str {
    APP_NAME.get().copied().unwrap_or("app")
}

/// One invalid or missing field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `name` or `limit`.
    pub field: String,
    /// Stable machine-readable reason, e.g. `required`, `too_long`.
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
}

/// RFC 9457 problem details, as sent on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:<app>:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `name_taken`.
    pub code: String,
    /// Present on validation failures: every invalid or missing field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Option<Vec<FieldError>>,
    source: Option<anyhow::Error>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: None,
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

    /// A single invalid field.
    pub fn invalid(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::validation(vec![FieldError::new(field, code, message)])
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            detail,
        )
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An unexpected error occurred.",
        );
        e.source = Some(source.into());
        e
    }
}

/// Build a problem response; also used for framework-made errors.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: &str,
    errors: Option<Vec<FieldError>>,
) -> Response {
    let body = Problem {
        type_: format!("urn:{}:problem:{code}", app_name()),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.to_owned(),
        code: code.to_owned(),
        errors,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = (status, json).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(error = ?source, code = self.code, "request failed")
                }
                None => tracing::warn!(code = self.code, detail = %self.detail, "request failed"),
            }
        }
        problem_response(self.status, self.code, &self.detail, self.errors)
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Self::not_found("The resource does not exist."),
            other => Self::internal(other),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        tracing::warn!(error = %e, "database pool unavailable");
        Self::unavailable("The database is temporarily unavailable.")
    }
}

/// True when `e` is a unique violation of the named constraint or index.
pub fn is_unique_violation(e: &diesel::result::Error, constraint: &str) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            info,
        ) if info.constraint_name() == Some(constraint)
    )
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
    async fn problem_json_with_app_urn() {
        set_app_name("kit-test");
        let res = AppError::conflict("name_taken", "taken").into_response();
        assert_eq!(res.status(), StatusCode::CONFLICT);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let v = body_json(res).await;
        assert_eq!(v["type"], "urn:kit-test:problem:name_taken");
        assert_eq!(v["title"], "Conflict");
        assert_eq!(v["status"], 409);
        assert_eq!(v["code"], "name_taken");
        assert!(v.get("errors").is_none());
    }

    #[tokio::test]
    async fn internal_hides_the_cause() {
        let res = AppError::internal(anyhow::anyhow!("secret db detail")).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let v = body_json(res).await;
        assert!(!v.to_string().contains("secret"));
        let e: AppError = diesel::result::Error::NotFound.into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }
}
