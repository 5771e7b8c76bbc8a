//! Wire types shared by several routes: the user as clients see it, the
//! token response, timestamps, PATCH fields.

use chrono::{DateTime, SecondsFormat, Utc};
use gatehouse_shared::domain::{PersonName, Role};
use gatehouse_shared::models::User;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldErrors;

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
    errors: &mut FieldErrors,
) -> Option<Option<PersonName>> {
    errors.check(field, PersonName::parse_optional(value?.as_deref()))
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
    /// False when an admin disabled the account.
    pub is_active: bool,
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
            is_active: u.is_active,
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

/// `Cache-Control: no-store` (and `Pragma: no-cache`) on responses that
/// carry tokens.
pub fn no_store(headers: &mut axum::http::HeaderMap) {
    use axum::http::{HeaderValue, header};
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
