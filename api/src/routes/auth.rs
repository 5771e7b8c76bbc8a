//! `/auth/*`: signup, login, OAuth2 token, refresh, logout, verification.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_shared::domain::{Email, Password, PersonName};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::{self, Signup};
use crate::auth::cookie;
use crate::dto::{TokenResponse, UserOut};
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{ApiJson, ApiQuery, AuthUser, ClientIp, OptionalJson, user_agent};
use crate::ratelimit::Class;
use crate::sessions::{self, ClientInfo, LoginError, TokenPair};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(token))
        .routes(routes!(refresh))
        .routes(routes!(logout))
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
        let mut errors = Vec::new();
        let email = Email::parse(&self.email)
            .map_err(|e| errors.push(FieldError::from_invalid("email", e)))
            .ok();
        let password = Password::parse(self.password, email.as_ref())
            .map_err(|e| errors.push(FieldError::from_invalid("password", e.into())))
            .ok();
        let first_name = PersonName::parse_optional(self.first_name.as_deref())
            .map_err(|e| errors.push(FieldError::from_invalid("first_name", e)))
            .ok();
        let last_name = PersonName::parse_optional(self.last_name.as_deref())
            .map_err(|e| errors.push(FieldError::from_invalid("last_name", e)))
            .ok();
        match (email, password, first_name, last_name) {
            (Some(email), Some(password), Some(first_name), Some(last_name))
                if errors.is_empty() =>
            {
                Ok(Signup {
                    email,
                    password,
                    first_name,
                    last_name,
                })
            }
            _ => Err(ApiError::validation(errors)),
        }
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
        (status = 400, description = "Malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`: an account with this email exists.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid email, weak password or unknown field.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited.", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[serde(default)]
    #[schema(required = true, min_length = 1, example = "ada@example.com")]
    pub email: String,
    #[serde(default)]
    #[schema(required = true, min_length = 1)]
    pub password: String,
}

fn missing(field: &str) -> FieldError {
    FieldError::new(field, "required", format!("{field} is required"))
}

/// The token response: JSON body, refresh cookie, `Cache-Control: no-store`.
fn token_response(state: &AppState, pair: TokenPair) -> Response {
    let mut res = axum::Json(TokenResponse {
        access_token: pair.access_token,
        token_type: "bearer",
        expires_in: pair.expires_in,
        refresh_token: pair.refresh_token.clone(),
        user_id: pair.user_id,
    })
    .into_response();
    if let Some(c) = cookie::set_refresh(
        &pair.refresh_token,
        pair.refresh_max_age,
        state.config.cookie_secure,
    ) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    no_store(res.headers_mut());
    res
}

pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn client_info(ip: ClientIp, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: ip.0.map(|ip| ip.to_string()),
        user_agent: user_agent(headers),
    }
}

/// Log in with email and password.
///
/// Returns an access token, a refresh token (also set as an `HttpOnly`
/// cookie scoped to `/auth`) and the user id. Unknown emails and wrong
/// passwords get the same answer in the same time. An unverified account
/// gets `email_not_verified`, only after a correct password.
#[utoipa::path(
    post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in. `Cache-Control: no-store`; sets the refresh cookie.", body = TokenResponse),
        (status = 400, description = "Malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`email_not_verified`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing field or unknown field.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited.", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    if body.email.trim().is_empty() {
        errors.push(missing("email"));
    }
    if body.password.is_empty() {
        errors.push(missing("password"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let pair = sessions::login(
        &state,
        &body.email,
        body.password,
        client_info(ip, &headers),
    )
    .await?;
    Ok(token_response(&state, pair))
}

/// OAuth2 token request (RFC 6749 §4.3 and §6), form-encoded.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `password` or `refresh_token`.
    #[serde(default)]
    #[schema(
        required = true,
        example = "password",
        pattern = "^(password|refresh_token)$"
    )]
    pub grant_type: String,
    /// The email (password grant).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The refresh token (refresh_token grant).
    pub refresh_token: Option<String>,
    /// Ignored; accepted because OAuth2 clients send it.
    pub scope: Option<String>,
    /// Ignored; accepted because OAuth2 clients send it.
    pub client_id: Option<String>,
    /// Ignored; accepted because OAuth2 clients send it.
    pub client_secret: Option<String>,
}

/// An OAuth2 error body (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_grant` or `unsupported_grant_type`.
    pub error: &'static str,
    pub error_description: String,
}

fn oauth_error(status: StatusCode, error: &'static str, description: &str) -> Response {
    let mut res = (
        status,
        axum::Json(OAuthError {
            error,
            error_description: description.to_owned(),
        }),
    )
        .into_response();
    no_store(res.headers_mut());
    res
}

/// OAuth2 token endpoint.
///
/// Form-encoded `grant_type=password` (`username` is the email) or
/// `grant_type=refresh_token`. Errors use the OAuth2 shape
/// (`{error, error_description}`). Swagger UI's Authorize button uses it.
#[utoipa::path(
    post, path = "/auth/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens. `Cache-Control: no-store`.", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant` or `unsupported_grant_type`.", body = OAuthError),
        (status = 413, description = "Body too large.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited.", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
async fn token(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected application/x-www-form-urlencoded",
        );
    }
    let Ok(form) = serde_urlencoded::from_bytes::<TokenRequest>(&body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed form body",
        );
    };
    let result = match form.grant_type.as_str() {
        "password" => {
            let (Some(username), Some(password)) = (form.username, form.password) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required",
                );
            };
            match sessions::login(&state, &username, password, client_info(ip, &headers)).await {
                Ok(pair) => Ok(pair),
                Err(LoginError::InvalidCredentials) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "invalid username or password",
                    );
                }
                Err(LoginError::NotVerified) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "email not verified",
                    );
                }
                Err(LoginError::Other(e)) => Err(e),
            }
        }
        "refresh_token" => {
            let Some(token) = form.refresh_token else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            match sessions::refresh(&state, &token, ip.text()).await {
                Ok(pair) => Ok(pair),
                Err(sessions::RefreshError::Other(e)) => Err(e),
                Err(_) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "invalid, expired or reused refresh token",
                    );
                }
            }
        }
        "" => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "use password or refresh_token",
            );
        }
    };
    match result {
        Ok(pair) => token_response(&state, pair),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token; if the body is empty the `gatehouse_refresh` cookie is used.
    pub refresh_token: Option<String>,
}

/// Rotate a refresh token.
///
/// Takes the refresh token from the JSON body or, when the body is empty,
/// from the refresh cookie, and returns a new pair. The old token is spent:
/// presenting it again revokes its whole session (`refresh_token_reused`);
/// the user's other sessions stay alive. Within a short grace window the
/// direct parent of the current token returns the current token again,
/// so two tabs refreshing at once do not log the user out.
#[utoipa::path(
    post, path = "/auth/refresh", tag = "auth",
    request_body(content = Option<RefreshRequest>, description = "Optional when the cookie is sent."),
    responses(
        (status = 200, description = "New tokens. `Cache-Control: no-store`; sets the refresh cookie.", body = TokenResponse),
        (status = 400, description = "Malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_refresh_token`, `missing_token` or `refresh_token_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`cross_site_request`: cookie refresh from a foreign origin.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown field or wrong type.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited.", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> ApiResult<Response> {
    state.limits.hit_ip(Class::RefreshIp, ip.0).await?;
    let token = match body.and_then(|b| b.refresh_token).filter(|t| !t.is_empty()) {
        Some(token) => token,
        None => {
            let token = cookie::read_refresh(&headers).ok_or_else(|| {
                ApiError::unauthorized("missing_token", "A refresh token is required.")
            })?;
            crate::middleware::check_same_origin(&state, &headers)?;
            token
        }
    };
    let pair = sessions::refresh(&state, &token, ip.text()).await?;
    Ok(token_response(&state, pair))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogoutQuery {
    /// `all` ends every session of the user; omitted ends only this one.
    #[param(inline)]
    pub scope: Option<LogoutScope>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogoutScope {
    Current,
    All,
}

/// Log out.
///
/// Revokes the current session (its access token stops working at once)
/// and clears the refresh cookie. `?scope=all` revokes every session of
/// the user.
#[utoipa::path(
    post, path = "/auth/logout", tag = "auth",
    params(LogoutQuery),
    responses(
        (status = 204, description = "Logged out; the refresh cookie is cleared."),
        (status = 401, description = "Missing, invalid or revoked access token.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `scope`.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn logout(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiQuery(query): ApiQuery<LogoutQuery>,
) -> ApiResult<Response> {
    let all = query.scope == Some(LogoutScope::All);
    sessions::logout(&state, auth.user.id, auth.session_id, all, ip.text()).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookie::clear_refresh(state.config.cookie_secure),
    );
    no_store(res.headers_mut());
    Ok(res)
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
    #[schema(format = Email, example = "ada@example.com")]
    pub email: String,
    /// The 6-digit code.
    #[schema(example = "042917", pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// Verify an email address.
///
/// Send either the `token` of the emailed link, or the `email` and the
/// 6-digit `code`. A wrong or expired code gets `invalid_code`; after five
/// wrong codes the code is dead and a new one must be requested. Verifying
/// an already verified account succeeds again.
#[utoipa::path(
    post, path = "/auth/verify", tag = "auth",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Verified.", body = UserOut),
        (status = 400, description = "`invalid_code` or malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Neither `token` nor `email`+`code`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited.", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
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
        (status = 400, description = "Malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid email.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited.", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
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
