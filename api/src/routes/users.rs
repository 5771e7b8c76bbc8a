//! `/users`: user administration. Admins list, read, change and delete
//! users; a plain user may change their own names here too.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gatehouse_shared::domain::{Email, Role};
use gatehouse_shared::models::{PageRequest, UserFilter};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ApiResult, FieldError, FieldErrors, Problem};
use crate::http::dto::{UserOut, double_option, name_patch};
use crate::http::extract::{ApiJson, ClientIp, IdPath};
use crate::http::pagination::{PageParams, Paged};
use crate::http::responses::{AdminOnly, BadInput, BadJson, NotFound, Unauthenticated};
use crate::state::AppState;
use crate::users::{self, UserUpdate};

crate::page_of!(UserPage, UserOut, "A page of users.");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user, update_user, delete_user))
}

/// Shortest `q` accepted: trigram indexes need three characters.
const MIN_QUERY_CHARS: usize = 3;
const MAX_QUERY_CHARS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Only users with this role.
    pub role: Option<Role>,
    /// Only verified (`true`) or unverified (`false`) users.
    pub is_verified: Option<bool>,
    /// Only enabled (`true`) or disabled (`false`) users.
    pub is_active: Option<bool>,
    /// Case-insensitive substring of the email, first name or last name,
    /// 3 to 100 characters. Empty means no search.
    #[param(max_length = 100, pattern = "^(|[\\s\\S]{3,})$", example = "lovelace")]
    pub q: Option<String>,
}

impl ListUsersQuery {
    /// Check the filters and the page together, reporting every bad value.
    fn parse(self, page: PageParams) -> Result<(UserFilter, PageRequest), ApiError> {
        let mut errors = FieldErrors::default();
        let page = page.check(&mut errors);
        let q = self
            .q
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty());
        if let Some(q) = &q
            && !(MIN_QUERY_CHARS..=MAX_QUERY_CHARS).contains(&q.chars().count())
        {
            errors.push(FieldError::new(
                "q",
                "invalid_length",
                format!("q must be {MIN_QUERY_CHARS} to {MAX_QUERY_CHARS} characters"),
            ));
        }
        let filter = UserFilter {
            role: self.role,
            is_verified: self.is_verified,
            is_active: self.is_active,
            q,
        };
        errors.finish(|| Some((filter, page)))
    }
}

/// List users.
///
/// Newest first (`created_at`, then `id`, descending), `limit` per page
/// from `offset`, with the total count of matching users. Filter by `role`,
/// by `is_verified`, and search with `q` (a case-insensitive substring of
/// the email, first name or last name). Filters combine with AND.
#[utoipa::path(
    get, path = "/users", tag = "users",
    params(PageParams, ListUsersQuery),
    responses(
        (status = 200, description = "A page of users.", body = UserPage),
        AdminOnly,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn list_users(
    State(state): State<AppState>,
    _admin: AdminUser,
    Paged { page, filter }: Paged<ListUsersQuery>,
) -> ApiResult<Json<UserPage>> {
    let (filter, page) = filter.parse(page)?;
    let users = users::list(&state, &filter, page).await?;
    Ok(Json(UserPage::new(users, page)))
}

/// Get a user.
///
/// Returns one user by id. Admins only; everyone else reads their own
/// account at `/me`.
#[utoipa::path(
    get, path = "/users/{id}", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "The user.", body = UserOut),
        AdminOnly,
        NotFound,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn get_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
) -> ApiResult<Json<UserOut>> {
    Ok(Json(users::get(&state, id).await?.into()))
}

/// Fields of `PATCH /users/{id}`. Absent fields are left alone; `null` or
/// `""` clears a name. `email`, `role` and `is_verified` are for admins.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(nullable, max_length = 100)]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(nullable, max_length = 100)]
    pub last_name: Option<Option<String>>,
    /// Admins only. Unique regardless of case.
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    /// Admins only. Demoting the last admin is refused.
    pub role: Option<Role>,
    /// Admins only.
    pub is_verified: Option<bool>,
    /// Admins only. `false` disables the account: its sessions end and a
    /// login answers `account_disabled`; `true` enables it again.
    /// Disabling the last active admin is refused.
    pub is_active: Option<bool>,
}

impl UpdateUserRequest {
    fn touches_privileged(&self) -> bool {
        self.email.is_some()
            || self.role.is_some()
            || self.is_verified.is_some()
            || self.is_active.is_some()
    }

    /// Validate every field, reporting all failures at once.
    fn parse(self) -> Result<UserUpdate, ApiError> {
        let mut errors = FieldErrors::default();
        let first_name = name_patch("first_name", self.first_name, &mut errors);
        let last_name = name_patch("last_name", self.last_name, &mut errors);
        let email = match self.email.as_deref().map(Email::parse) {
            None => None,
            Some(parsed) => errors.check("email", parsed),
        };
        errors.finish(|| {
            Some(UserUpdate {
                first_name,
                last_name,
                email,
                role: self.role,
                is_verified: self.is_verified,
                is_active: self.is_active,
            })
        })
    }
}

/// Update a user.
///
/// A partial update that answers the updated user. Admins may change
/// anyone's names, email, `role` and `is_verified`; a role change applies
/// on the user's very next request. A plain user may change only their own
/// `first_name` and `last_name` here; anything else is 403. Demoting the
/// last admin is refused with 409 `last_admin`.
#[utoipa::path(
    patch, path = "/users/{id}", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id.")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The updated user.", body = UserOut),
        Unauthenticated,
        NotFound,
        BadJson,
        (status = 403, description = "`forbidden`: another user's account, or a field only admins may change.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`, or `last_admin` (demoting or disabling the last active admin).", body = Problem, content_type = "application/problem+json"),
    ),
    security(("oauth2" = []))
)]
async fn update_user(
    State(state): State<AppState>,
    auth: AuthUser,
    IdPath(id): IdPath,
    ip: ClientIp,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> ApiResult<Json<UserOut>> {
    users::authorize_update(&auth.user, id, body.touches_privileged())?;
    let update = body.parse()?;
    let user = users::update_user(&state, &auth.user, id, update, ip.text()).await?;
    Ok(Json(user.into()))
}

/// Delete a user.
///
/// Deletes the account with its sessions and codes; the user's tokens stop
/// working on their next request. Deleting the last admin is refused with
/// 409 `last_admin`.
#[utoipa::path(
    delete, path = "/users/{id}", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id.")),
    responses(
        (status = 204, description = "Deleted."),
        AdminOnly,
        NotFound,
        BadInput,
        (status = 409, description = "`last_admin`: the only admin cannot be deleted.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("oauth2" = []))
)]
async fn delete_user(
    State(state): State<AppState>,
    AdminUser(auth): AdminUser,
    IdPath(id): IdPath,
    ip: ClientIp,
) -> ApiResult<StatusCode> {
    users::delete_user(&state, &auth.user, id, ip.text()).await?;
    Ok(StatusCode::NO_CONTENT)
}
