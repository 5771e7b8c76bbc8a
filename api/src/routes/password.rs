//! `/auth/password/forgot`, `/auth/password/reset`: password reset.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::http::extract::{ApiJson, ClientIp};
use crate::http::responses::{BadJson, RateLimited};
use crate::password;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254, example = "ada@example.com")]
    pub email: String,
}

/// Ask for a password-reset email.
///
/// Always answers 202 with no body, whether or not the email has an
/// account, so it reveals nothing. If it has one, a single-use link
/// `{PUBLIC_URL}/reset-password?token=…` is emailed (valid
/// `PASSWORD_RESET_TTL`, 30 minutes by default); a newer request kills
/// older links. Rate limited per client IP and per email alike.
#[utoipa::path(
    post, path = "/auth/password/forgot", tag = "auth",
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted (whether or not the account exists)."),
        BadJson,
        RateLimited,
    )
)]
async fn forgot_password(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ForgotPasswordRequest>,
) -> ApiResult<StatusCode> {
    password::forgot(&state, &body.email, ip.text()).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// The token from the emailed link.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 200)]
    pub token: String,
    /// 8 to 128 characters; not a common password, not your email.
    #[serde(default)]
    #[schema(required = true, min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// What a successful reset answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetPasswordResponse {
    /// Always `password_reset`.
    #[schema(example = "password_reset")]
    pub status: &'static str,
}

/// Set a new password with an emailed token.
///
/// Spends the token, sets the password, ends every session (log in again),
/// lifts the login soft-lock of the account, marks the email verified and
/// emails a "your password was changed" notice. A wrong, expired or used
/// token is `invalid_token`; a weak password is 422 and keeps the token.
#[utoipa::path(
    post, path = "/auth/password/reset", tag = "auth",
    request_body = ResetPasswordRequest,
    responses(
        (status = 200, description = "The password is changed.", body = ResetPasswordResponse),
        BadJson,
        RateLimited,
        (status = 400, description = "`invalid_token`, or `malformed_json`.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn reset_password(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> ApiResult<Json<ResetPasswordResponse>> {
    let missing: Vec<FieldError> = [("token", &body.token), ("new_password", &body.new_password)]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(f, _)| FieldError::new(f, "required", format!("{f} is required")))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::validation(missing));
    }
    password::reset(&state, &body.token, body.new_password, ip.text()).await?;
    Ok(Json(ResetPasswordResponse {
        status: "password_reset",
    }))
}
