//! Wire types shared by several routes.

use chrono::{DateTime, SecondsFormat, Utc};
use gatehouse_shared::domain::{PersonName, Role};
use gatehouse_shared::models::User;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};

/// RFC 3339 in UTC with a `Z`, e.g. `2026-11-25T08:43:20.123456Z`.
pub fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// [`rfc3339`] for optional timestamps; `None` is `null`.
pub fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// A name field of a PATCH body: absent = no change (`None`), `null` or
/// blank = clear (`Some(None)`). An invalid name is added to `errors`, so
/// every bad field is reported at once.
pub fn name_patch(
    field: &str,
    value: Option<Option<String>>,
    errors: &mut Vec<FieldError>,
) -> Option<Option<PersonName>> {
    match PersonName::parse_optional(value?.as_deref()) {
        Ok(name) => Some(name),
        Err(e) => {
            errors.push(FieldError::from_invalid(field, e));
            None
        }
    }
}

/// A user as clients see it. Never contains a hash, code or token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserOut {
    pub id: Uuid,
    #[schema(example = "ada@example.com")]
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Role,
    pub is_verified: bool,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        let role = u.role();
        Self {
            id: u.id,
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            role,
            is_verified: u.is_verified,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Access and refresh tokens (RFC 6749 §5.1 shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    pub user_id: Uuid,
}

/// Distinguish an absent field (`None`) from an explicit `null`
/// (`Some(None)`) in PATCH bodies.
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// `limit` and `offset` of every list.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    #[param(minimum = 0, default = 0)]
    pub offset: Option<i64>,
}

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// Validate `limit` (1..=200, default 50) and `offset` (>= 0, default 0),
/// adding a field error for each bad value.
pub fn page_bounds(
    limit: Option<i64>,
    offset: Option<i64>,
    errors: &mut Vec<FieldError>,
) -> (i64, i64) {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    let offset = offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            "out_of_range",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if offset < 0 {
        errors.push(FieldError::new(
            "offset",
            "out_of_range",
            "offset must be 0 or more",
        ));
    }
    (limit, offset)
}

impl PageParams {
    /// Validated `(limit, offset)`.
    pub fn bounds(self) -> Result<(i64, i64), ApiError> {
        let mut errors = Vec::new();
        let bounds = page_bounds(self.limit, self.offset, &mut errors);
        if errors.is_empty() {
            Ok(bounds)
        } else {
            Err(ApiError::validation(errors))
        }
    }
}

/// A page of items with the total count.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageOut<T: ToSchema> {
    pub items: Vec<T>,
    /// Items matching the filters, over all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl<T: ToSchema> PageOut<T> {
    /// Convert a model page into its wire form.
    pub fn from_page<M>(page: gatehouse_shared::models::Page<M>, limit: i64, offset: i64) -> Self
    where
        T: From<M>,
    {
        Self {
            items: page.items.into_iter().map(T::from).collect(),
            total: page.total,
            limit,
            offset,
        }
    }
}
