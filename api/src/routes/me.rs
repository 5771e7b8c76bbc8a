//! `/me`: the caller's own account.

use axum::Json;
use axum::extract::State;
use gatehouse_shared::domain::Password;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, FieldError, FieldErrors};
use crate::http::dto::{UserOut, double_option, name_patch};
use crate::http::extract::ApiJson;
use crate::http::responses::{BadJson, Overloaded, RateLimited, Unauthenticated};
use crate::me::{self, ProfileChanges};
use crate::ratelimit::Client;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me, update_me, delete_me))
}

/// Get the current user.
///
/// Returns the account behind the access token. A token whose session was
/// revoked, or whose user was deleted, is refused.
#[utoipa::path(
    get, path = "/me", tag = "me",
    responses(
        (status = 200, description = "The current user.", body = UserOut),
        Unauthenticated,
    ),
    security(("oauth2" = []))
)]
async fn get_me(auth: AuthUser) -> Json<UserOut> {
    Json(auth.user.into())
}

/// Fields of `PATCH /me`. Absent fields are left alone; `null` or `""`
/// clears a name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        nullable,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        nullable,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub last_name: Option<Option<String>>,
    /// A new password; requires `current_password`. Ends every other session.
    #[schema(min_length = 8, max_length = 128)]
    pub password: Option<String>,
    /// The current password; required with `password`.
    #[schema(min_length = 1, max_length = 128)]
    pub current_password: Option<String>,
}

impl UpdateMeRequest {
    fn parse(self, email: &gatehouse_shared::domain::Email) -> Result<ProfileChanges, ApiError> {
        let mut errors = FieldErrors::default();
        let first_name = name_patch("first_name", self.first_name, &mut errors);
        let last_name = name_patch("last_name", self.last_name, &mut errors);
        let new_password = match (self.password, self.current_password) {
            (None, None) => None,
            (None, Some(_)) => {
                errors.push(FieldError::new(
                    "password",
                    "required",
                    "password is required with current_password",
                ));
                None
            }
            (Some(_), None) => {
                errors.push(FieldError::new(
                    "current_password",
                    "required",
                    "current_password is required to change the password",
                ));
                None
            }
            (Some(new), Some(current)) => errors
                .check("password", Password::parse(new, Some(email)))
                .map(|p| (p, current)),
        };
        errors.finish(|| {
            Some(ProfileChanges {
                first_name,
                last_name,
                new_password,
            })
        })
    }
}

/// Update the current user.
///
/// Changes first and last name. To change the password send `password`
/// and `current_password`; every other session is then revoked. Wrong
/// `current_password` values count against the login budget and soft-lock
/// of the account and client (429 with `Retry-After` when over). Role,
/// verification state and email cannot be changed here.
#[utoipa::path(
    patch, path = "/me", tag = "me",
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The updated user.", body = UserOut),
        Unauthenticated,
        BadJson,
        RateLimited,
        Overloaded,
    ),
    security(("oauth2" = []))
)]
async fn update_me(
    State(state): State<AppState>,
    auth: AuthUser,
    client: Client,
    ApiJson(body): ApiJson<UpdateMeRequest>,
) -> ApiResult<Json<UserOut>> {
    let email = gatehouse_shared::domain::Email::parse(&auth.user.email)
        .map_err(|_| ApiError::internal(anyhow::anyhow!("stored email invalid")))?;
    let changes = body.parse(&email)?;
    let user = me::update_profile(&state, &auth.user, auth.session_id, changes, &client).await?;
    Ok(Json(user.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteMeRequest {
    /// The account's password, to prove it is really the owner.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 128)]
    pub current_password: String,
}

/// Delete my account.
///
/// Deletes the caller's account after checking `current_password` (which
/// counts against the login budget and soft-lock). Every session ends,
/// a notice is emailed, and the audit log keeps the event. The last
/// active admin cannot delete their own account (`last_admin`).
#[utoipa::path(
    delete, path = "/me", tag = "me",
    request_body = DeleteMeRequest,
    responses(
        (status = 204, description = "The account is deleted."),
        Unauthenticated,
        BadJson,
        RateLimited,
        Overloaded,
        (status = 409, description = "`last_admin`: the only active admin cannot delete their account.", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("oauth2" = []))
)]
async fn delete_me(
    State(state): State<AppState>,
    auth: AuthUser,
    client: Client,
    ApiJson(body): ApiJson<DeleteMeRequest>,
) -> ApiResult<axum::http::StatusCode> {
    if body.current_password.is_empty() {
        return Err(ApiError::validation(vec![FieldError::new(
            "current_password",
            "required",
            "current_password is required",
        )]));
    }
    me::delete_account(&state, &auth.user, body.current_password, &client).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
