//! `AuthUser` and `AdminUser`: the bearer token, checked, and the live
//! session and user behind it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::TypedHeader;
use axum_extra::headers::Authorization;
use axum_extra::headers::authorization::Bearer;
use gatehouse_shared::models::User;
use uuid::Uuid;

use crate::auth::tokens::{AccessClaims, TokenKind};
use crate::error::ApiError;
use crate::state::AppState;

/// The bearer token, or 401 `missing_token` (with `WWW-Authenticate:
/// Bearer`) when the header is absent, not `Bearer` or empty.
pub async fn bearer_token<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<String, ApiError> {
    let TypedHeader(Authorization(bearer)) =
        TypedHeader::<Authorization<Bearer>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::missing_token())?;
    let token = bearer.token().trim();
    if token.is_empty() {
        return Err(ApiError::missing_token());
    }
    Ok(token.to_owned())
}

/// An authenticated user. The token proves identity; the session row and
/// the user row, loaded on every request, decide authority. Logout, a
/// password change, a role change or a deletion applies on the next request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub session_id: Uuid,
    pub claims: AccessClaims,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts, state).await?;
        let claims = state
            .tokens
            .decode(&token, TokenKind::Access)
            .map_err(|_| ApiError::invalid_token())?;
        let user = state
            .session_check
            .active_user(claims.sid, claims.sub)
            .await?
            .ok_or_else(ApiError::invalid_token)?;
        Ok(Self {
            user,
            session_id: claims.sid,
            claims,
        })
    }
}

/// An authenticated admin; a plain user gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = AuthUser::from_request_parts(parts, state).await?;
        if !auth.user.is_admin() {
            return Err(ApiError::admin_only());
        }
        Ok(Self(auth))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Request, header};

    use super::*;

    async fn token_of(value: Option<&str>) -> Result<String, ApiError> {
        let mut req = Request::builder();
        if let Some(value) = value {
            req = req.header(header::AUTHORIZATION, value);
        }
        let (mut parts, ()) = req.body(()).expect("request").into_parts();
        bearer_token(&mut parts, &()).await
    }

    #[tokio::test]
    async fn bearer_parsing() {
        assert!(token_of(None).await.is_err());
        assert!(token_of(Some("Basic abc")).await.is_err());
        assert_eq!(
            token_of(Some("bearer abc.def")).await.ok().as_deref(),
            Some("abc.def")
        );
    }
}
