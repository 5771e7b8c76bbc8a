//! `/auth/signup`, `/auth/verify`, `/auth/verify/resend`: accounts.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_shared::domain::{Email, Password, PersonName};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::{self, Signup};
use crate::error::{ApiError, ApiResult, FieldError, FieldErrors, Problem};
use crate::http::dto::UserOut;
use crate::http::extract::{ApiJson, ClientIp};
use crate::http::responses::{BadJson, Overloaded, RateLimited};
use crate::ratelimit::Class;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(verify))
        .routes(routes!(resend_verification))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254, example = "ada@example.com")]
    pub email: String,
    /// 8 to 128 characters; not a common password, not your email.
    #[serde(default)]
    #[schema(required = true, min_length = 8, max_length = 128)]
    pub password: String,
    /// No control characters; blank means none.
    #[schema(max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub first_name: Option<String>,
    #[schema(max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub last_name: Option<String>,
}

impl SignupRequest {
    /// Parse every field, reporting all failures at once.
    fn parse(self) -> Result<Signup, ApiError> {
        let mut errors = FieldErrors::default();
        let email = errors.check("email", Email::parse(&self.email));
        let password = errors.check("password", Password::parse(self.password, email.as_ref()));
        let first_name = errors.check(
            "first_name",
            PersonName::parse_optional(self.first_name.as_deref()),
        );
        let last_name = errors.check(
            "last_name",
            PersonName::parse_optional(self.last_name.as_deref()),
        );
        errors.finish(|| {
            Some(Signup {
                email: email?,
                password: password?,
                first_name: first_name?,
                last_name: last_name?,
            })
        })
    }
}

/// Create an account.
///
/// Registers an unverified user and queues the verification email (a
/// 6-digit code and a link). Email addresses are unique regardless of case.
#[utoipa::path(
    post, path = "/auth/signup", tag = "auth",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "Account created; `Location` is `/users/{id}`.", body = UserOut,
            headers(("Location" = String, description = "`/users/{id}` of the new user"))),
        BadJson,
        RateLimited,
        Overloaded,
        (status = 409, description = "`email_taken`: an account with this email exists.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn signup(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<SignupRequest>,
) -> ApiResult<Response> {
    state.limits.hit_ip(Class::SignupIp, ip.0).await?;
    let user = accounts::signup(&state, body.parse()?, ip.text()).await?;
    let location =
        HeaderValue::from_str(&format!("/users/{}", user.id)).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(UserOut::from(user)),
    )
        .into_response())
}

/// `{token}` from the link, or `{email, code}` from the email.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum VerifyRequest {
    Link(VerifyLink),
    Code(VerifyCode),
}

/// Verification with the emailed link's token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyLink {
    /// The token from the emailed link.
    #[schema(min_length = 1, max_length = 200)]
    pub token: String,
}

/// Verification with the emailed 6-digit code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCode {
    #[schema(format = Email, max_length = 254, example = "ada@example.com")]
    pub email: String,
    /// The 6-digit code.
    #[schema(example = "042917", pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// Verify an email address.
///
/// Send either the `token` of the emailed link, or the `email` and the
/// 6-digit `code`. A wrong or expired code gets `invalid_code`; after five
/// wrong codes the code is dead and a new one must be requested. A wrong
/// code gets the same answer for unknown, unverified and verified
/// accounts; the right code of an already verified account succeeds again.
#[utoipa::path(
    post, path = "/auth/verify", tag = "auth",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Verified.", body = UserOut),
        BadJson,
        RateLimited,
        (status = 400, description = "`invalid_code`, or `malformed_json`.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn verify(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> ApiResult<axum::Json<UserOut>> {
    state.limits.hit_ip(Class::VerifyIp, ip.0).await?;
    let user = match body {
        VerifyRequest::Link(VerifyLink { token }) => {
            accounts::verify_link(&state, token.trim(), ip.text()).await?
        }
        VerifyRequest::Code(VerifyCode { email, code }) => {
            let email = Email::parse(&email)
                .map_err(|e| ApiError::validation(vec![FieldError::from_invalid("email", e)]))?;
            state
                .limits
                .hit(Class::VerifyAccount, email.as_str())
                .await?;
            accounts::verify_code(&state, &email, code.trim(), ip.text()).await?
        }
    };
    Ok(axum::Json(user.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254, example = "ada@example.com")]
    pub email: String,
}

/// Send a new verification email.
///
/// Always answers 202, whether or not the account exists, so it reveals
/// nothing. If the account exists and is unverified, a fresh code replaces
/// the old one, subject to a cooldown and an hourly cap.
#[utoipa::path(
    post, path = "/auth/verify/resend", tag = "auth",
    request_body = ResendRequest,
    responses(
        (status = 202, description = "Accepted."),
        BadJson,
        RateLimited,
    )
)]
async fn resend_verification(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResendRequest>,
) -> ApiResult<StatusCode> {
    let email = Email::parse(&body.email)
        .map_err(|e| ApiError::validation(vec![FieldError::from_invalid("email", e)]))?;
    state
        .limits
        .hit(Class::ResendAccount, email.as_str())
        .await?;
    accounts::resend_verification(&state, &email).await?;
    Ok(StatusCode::ACCEPTED)
}
