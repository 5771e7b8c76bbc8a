//! `POST /me/email`, `/auth/email/confirm`, `/auth/email/revert`: changing
//! the account's email address.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gatehouse_shared::domain::Email;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::email;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::http::dto::UserOut;
use crate::http::extract::{ApiJson, ClientIp};
use crate::http::responses::{BadJson, Overloaded, RateLimited, Unauthenticated};
use crate::ratelimit::Client;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_email_change))
        .routes(routes!(confirm_email_change))
        .routes(routes!(revert_email_change))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeRequest {
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254, example = "ada@example.org")]
    pub new_email: String,
    /// The account's password.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 128)]
    pub current_password: String,
}

/// Change my email address.
///
/// Checks `current_password` (it counts against the login budget and
/// soft-lock), then emails a confirmation link and 6-digit code to the new
/// address and a notice with a "this was not me" link (valid 7 days) to the
/// current one. The address changes only once confirmed; a newer request
/// supersedes a pending one.
#[utoipa::path(
    post, path = "/me/email", tag = "me",
    request_body = EmailChangeRequest,
    responses(
        (status = 202, description = "Confirmation sent to the new address."),
        Unauthenticated,
        BadJson,
        RateLimited,
        Overloaded,
        (status = 409, description = "`email_taken`: the new address has an account.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("oauth2" = []))
)]
async fn request_email_change(
    State(state): State<AppState>,
    auth: AuthUser,
    client: Client,
    ApiJson(body): ApiJson<EmailChangeRequest>,
) -> ApiResult<StatusCode> {
    let mut errors = Vec::new();
    let new_email = Email::parse(&body.new_email)
        .map_err(|e| errors.push(FieldError::from_invalid("new_email", e)))
        .ok();
    if body.current_password.is_empty() {
        errors.push(FieldError::new(
            "current_password",
            "required",
            "current_password is required",
        ));
    }
    let Some(new_email) = new_email.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    email::request_change(
        &state,
        &auth.user,
        new_email,
        body.current_password,
        &client,
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// `{token}` from the link, or `{code}` with the session's access token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ConfirmEmailRequest {
    Link(ConfirmWithToken),
    Code(ConfirmWithCode),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmWithToken {
    /// The token from the emailed link.
    #[schema(min_length = 1, max_length = 200)]
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmWithCode {
    /// The emailed 6-digit code; needs the `Authorization` header of the
    /// account that asked for the change.
    #[schema(example = "042917", pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// Confirm a new email address.
///
/// With the link's `token` (no session needed) every session of the user
/// ends. With the 6-digit `code` and the account's access token, the
/// current session survives and every other one ends. Either way the
/// address switches and counts as verified; `email_taken` if someone
/// took it meanwhile. (Listed without a security requirement: the link
/// needs none; the code form needs the `Authorization` header.)
#[utoipa::path(
    post, path = "/auth/email/confirm", tag = "auth",
    request_body = ConfirmEmailRequest,
    responses(
        (status = 200, description = "The address is changed.", body = UserOut),
        BadJson,
        RateLimited,
        (status = 400, description = "`invalid_token` (link), `invalid_code` (code), or `malformed_json`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`missing_token` or `invalid_token`: a code needs the account's access token.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`: the address got an account meanwhile.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn confirm_email_change(
    State(state): State<AppState>,
    auth: Result<AuthUser, ApiError>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ConfirmEmailRequest>,
) -> ApiResult<Json<UserOut>> {
    let user = match body {
        ConfirmEmailRequest::Link(ConfirmWithToken { token }) => {
            email::confirm_link(&state, &token, ip.text()).await?
        }
        ConfirmEmailRequest::Code(ConfirmWithCode { code }) => {
            let auth = auth?;
            email::confirm_code(&state, &auth.user, auth.session_id, &code, ip.text()).await?
        }
    };
    Ok(Json(user.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevertEmailRequest {
    /// The token from the link sent to the old address.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 200)]
    pub token: String,
}

/// Undo an email change ("this was not me").
///
/// With the token emailed to the old address (valid 7 days): restores the
/// old address, cancels pending changes and ends every session of the
/// account.
#[utoipa::path(
    post, path = "/auth/email/revert", tag = "auth",
    request_body = RevertEmailRequest,
    responses(
        (status = 204, description = "The old address is back; every session is revoked."),
        BadJson,
        RateLimited,
        (status = 400, description = "`invalid_token`, or `malformed_json`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`: the old address got another account meanwhile.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revert_email_change(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RevertEmailRequest>,
) -> ApiResult<StatusCode> {
    email::revert(&state, &body.token, ip.text()).await?;
    Ok(StatusCode::NO_CONTENT)
}
