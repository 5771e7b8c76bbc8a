//! `/auth/login`, `/auth/token`, `/auth/refresh`, `/auth/logout`: sessions;
//! `/me/sessions` (the caller's) and `/users/{id}/sessions` (admins).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AdminUser, AuthUser, cookie};
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::http::dto::{TokenResponse, no_store};
use crate::http::extract::{ApiJson, ApiQuery, ClientIp, IdPath, OptionalJson, user_agent};
use crate::http::responses::{
    AdminOnly, BadInput, BadJson, NotFound, Overloaded, RateLimited, Unauthenticated,
};
use crate::ratelimit::{Class, Client};
use crate::sessions::{self, ClientInfo, LoginError, TokenPair};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(token))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(list_my_sessions, revoke_my_other_sessions))
        .routes(routes!(revoke_my_session))
        .routes(routes!(list_user_sessions, revoke_user_sessions))
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

/// The token response: JSON body, refresh cookie, `Cache-Control: no-store`;
/// after a login also the device cookie.
fn token_response(state: &AppState, jar: CookieJar, pair: TokenPair, client: &Client) -> Response {
    let jar = match pair.device {
        Some(device) => cookie::set_device(
            jar,
            device,
            i64::try_from(state.limits.device_ttl().as_secs()).unwrap_or(i64::MAX),
            client.needs_secure_cookie(state.config.cookie_secure),
        ),
        None => jar,
    };
    let jar = cookie::set_refresh(
        jar,
        &pair.refresh_token,
        pair.refresh_max_age,
        state.config.cookie_secure,
    );
    let body = axum::Json(TokenResponse {
        access_token: pair.access_token,
        token_type: "bearer",
        expires_in: pair.expires_in,
        refresh_token: pair.refresh_token,
        user_id: pair.user_id,
    });
    let mut res = (jar, body).into_response();
    no_store(res.headers_mut());
    res
}

fn client_info(client: &Client, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: client.ip.map(|ip| ip.to_string()),
        user_agent: user_agent(headers),
    }
}

/// Log in with email and password.
///
/// Returns an access token, a refresh token (also set as an `HttpOnly`
/// cookie scoped to `/auth`) and the user id. Unknown emails and wrong
/// passwords get the same answer in the same time. An unverified account
/// gets `email_not_verified`, only after a correct password. Failures
/// delay further tries of this account from this client (429 with
/// `Retry-After`); a successful login also sets the `gatehouse_device`
/// cookie, which keeps this browser out of other clients' delays.
#[utoipa::path(
    post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in. `Cache-Control: no-store`; sets the refresh cookie.", body = TokenResponse),
        BadJson,
        RateLimited,
        Overloaded,
        (status = 401, description = "`invalid_credentials`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`email_not_verified` or `account_disabled` (only after a correct password).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    jar: CookieJar,
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
        client_info(&client, &headers),
        &client,
    )
    .await?;
    Ok(token_response(&state, jar, pair, &client))
}

/// OAuth2 token request (RFC 6749 §4.3 and §6), form-encoded; documented
/// as [`TokenGrant`].
#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    /// `password` or `refresh_token`.
    #[serde(default)]
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

/// The two shapes `/auth/token` accepts, for the document only (the
/// handler parses [`TokenRequest`], whose optional fields cover both):
/// describing each grant with its own required fields lets generated
/// requests and clients send what the server accepts.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TokenGrant {
    Password(PasswordGrant),
    RefreshToken(RefreshTokenGrant),
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
enum PasswordGrantType {
    #[serde(rename = "password")]
    Password,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
enum RefreshTokenGrantType {
    #[serde(rename = "refresh_token")]
    RefreshToken,
}

/// `grant_type=password` (RFC 6749 §4.3): log in with email and password.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct PasswordGrant {
    grant_type: PasswordGrantType,
    /// The account's email.
    #[schema(format = Email, max_length = 254, example = "ada@example.com")]
    username: String,
    #[schema(min_length = 1, max_length = 128)]
    password: String,
    /// Ignored; accepted because OAuth2 clients send it.
    scope: Option<String>,
    /// Ignored; accepted because OAuth2 clients send it.
    client_id: Option<String>,
    /// Ignored; accepted because OAuth2 clients send it.
    client_secret: Option<String>,
}

/// `grant_type=refresh_token` (RFC 6749 §6): a new token pair.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct RefreshTokenGrant {
    grant_type: RefreshTokenGrantType,
    /// The refresh token of the last answer.
    #[schema(min_length = 1, max_length = 4096)]
    refresh_token: String,
    /// Ignored; accepted because OAuth2 clients send it.
    scope: Option<String>,
    /// Ignored; accepted because OAuth2 clients send it.
    client_id: Option<String>,
    /// Ignored; accepted because OAuth2 clients send it.
    client_secret: Option<String>,
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
    request_body(content = TokenGrant, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens. `Cache-Control: no-store`.", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant` or `unsupported_grant_type`.", body = OAuthError),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a control character in a form field (refused in every text input).", body = Problem, content_type = "application/problem+json"),
        RateLimited,
        Overloaded,
    )
)]
async fn token(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    jar: CookieJar,
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
    // Control characters: 422 problem+json, as in every other text field.
    if let Err(e) = crate::http::extract::reject_control_chars_in_pairs(&body) {
        return e.into_response();
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
            let info = client_info(&client, &headers);
            match sessions::login(&state, &username, password, info, &client).await {
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
                Err(LoginError::Disabled) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "account disabled",
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
            // The same budget as `/auth/refresh` (issue 11, item 10).
            if let Err(e) = state.limits.hit_ip(Class::RefreshIp, client.ip).await {
                return e.into_response();
            }
            let ip = client.ip.map(|ip| ip.to_string());
            match sessions::refresh(&state, &token, ip).await {
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
        Ok(pair) => token_response(&state, jar, pair, &client),
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
        BadJson,
        RateLimited,
        (status = 401, description = "`invalid_refresh_token`, `missing_token` or `refresh_token_reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`cross_site_request`: cookie refresh from a foreign origin.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    jar: CookieJar,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> ApiResult<Response> {
    state.limits.hit_ip(Class::RefreshIp, client.ip).await?;
    let token = match body.and_then(|b| b.refresh_token).filter(|t| !t.is_empty()) {
        Some(token) => token,
        None => {
            let token = cookie::read_refresh(&jar).ok_or_else(|| {
                ApiError::unauthorized("missing_token", "A refresh token is required.")
            })?;
            crate::http::middleware::check_same_origin(&state, &headers)?;
            token
        }
    };
    let pair = sessions::refresh(&state, &token, client.ip.map(|ip| ip.to_string())).await?;
    Ok(token_response(&state, jar, pair, &client))
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
        Unauthenticated,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn logout(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    jar: CookieJar,
    ApiQuery(query): ApiQuery<LogoutQuery>,
) -> ApiResult<Response> {
    let all = query.scope == Some(LogoutScope::All);
    sessions::logout(&state, auth.user.id, auth.session_id, all, ip.text()).await?;
    let jar = cookie::clear_refresh(jar, state.config.cookie_secure);
    let mut res = (StatusCode::NO_CONTENT, jar).into_response();
    no_store(res.headers_mut());
    Ok(res)
}

// ---- `/me/sessions` and `/users/{id}/sessions`.

/// A live session as its owner (or an admin) sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    pub id: uuid::Uuid,
    #[serde(serialize_with = "crate::http::dto::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "crate::http::dto::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_used_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "crate::http::dto::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// `User-Agent` at login, sanitised and truncated to 255 characters.
    pub user_agent: Option<String>,
    /// True for the session of the access token making this request.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionOut>,
}

fn session_list(
    sessions: Vec<gatehouse_shared::models::Session>,
    current: Option<uuid::Uuid>,
) -> SessionList {
    SessionList {
        items: sessions
            .into_iter()
            .map(|s| SessionOut {
                current: Some(s.id) == current,
                id: s.id,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                expires_at: s.expires_at,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect(),
    }
}

/// List my sessions.
///
/// Every live session (login) of the caller, newest first, with where and
/// when it was last used; `current` marks the one making this request.
#[utoipa::path(
    get, path = "/me/sessions", tag = "me",
    responses(
        (status = 200, description = "The caller's live sessions.", body = SessionList),
        Unauthenticated,
    ),
    security(("oauth2" = []))
)]
async fn list_my_sessions(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<axum::Json<SessionList>> {
    let sessions = sessions::list_of_user(&state, auth.user.id).await?;
    Ok(axum::Json(session_list(sessions, Some(auth.session_id))))
}

/// Revoke my other sessions.
///
/// Ends every session of the caller except the current one; their access
/// tokens are refused at once and their refresh tokens no longer work.
#[utoipa::path(
    delete, path = "/me/sessions", tag = "me",
    responses(
        (status = 204, description = "Every other session is revoked."),
        Unauthenticated,
    ),
    security(("oauth2" = []))
)]
async fn revoke_my_other_sessions(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
) -> ApiResult<StatusCode> {
    sessions::revoke_all(
        &state,
        auth.user.id,
        auth.user.id,
        Some(auth.session_id),
        ip.text(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke one of my sessions.
///
/// Ends that session (it may be the current one). A session id that is not
/// one of the caller's live sessions is 404.
#[utoipa::path(
    delete, path = "/me/sessions/{id}", tag = "me",
    params(("id" = uuid::Uuid, Path, description = "The session's id.")),
    responses(
        (status = 204, description = "Revoked."),
        Unauthenticated,
        NotFound,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn revoke_my_session(
    State(state): State<AppState>,
    auth: AuthUser,
    IdPath(id): IdPath,
    ip: ClientIp,
) -> ApiResult<StatusCode> {
    sessions::revoke_own(&state, auth.user.id, id, ip.text()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List a user's sessions.
///
/// Every live session of the user, newest first (admins).
#[utoipa::path(
    get, path = "/users/{id}/sessions", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "The user's live sessions.", body = SessionList),
        AdminOnly,
        NotFound,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn list_user_sessions(
    State(state): State<AppState>,
    AdminUser(auth): AdminUser,
    IdPath(id): IdPath,
) -> ApiResult<axum::Json<SessionList>> {
    let sessions = sessions::list_for_admin(&state, id).await?;
    let current = (id == auth.user.id).then_some(auth.session_id);
    Ok(axum::Json(session_list(sessions, current)))
}

/// Revoke a user's sessions.
///
/// Ends every session of the user (admins); their access tokens are
/// refused at once.
#[utoipa::path(
    delete, path = "/users/{id}/sessions", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id.")),
    responses(
        (status = 204, description = "Every session of the user is revoked."),
        AdminOnly,
        NotFound,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn revoke_user_sessions(
    State(state): State<AppState>,
    AdminUser(auth): AdminUser,
    IdPath(id): IdPath,
    ip: ClientIp,
) -> ApiResult<StatusCode> {
    sessions::revoke_all(&state, auth.user.id, id, None, ip.text()).await?;
    Ok(StatusCode::NO_CONTENT)
}
