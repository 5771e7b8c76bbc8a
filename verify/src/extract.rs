//! axum extractors (feature `axum`, on by default).

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::bearer::{AuthError, bearer_token};
use crate::{Claims, FromClaims, Verifier};

/// The claims of the request's verified bearer token, as `C`
/// ([`Claims`] unless you implement [`FromClaims`] for your own type).
///
/// Needs a [`Verifier`] in the state (`Verifier: FromRef<S>`; with the
/// verifier itself as the state that holds already). Refuses with
/// [`AuthError`]: 401 problem+json, `missing_token` (`WWW-Authenticate:
/// Bearer`) or `invalid_token` (`WWW-Authenticate: Bearer
/// error="invalid_token"`).
///
/// `Option<Verified<C>>` is `None` without an `Authorization` header, and
/// still refuses a bad token (a client that sends one wants to know).
///
/// ```no_run
/// use axum::{Router, extract::FromRef, routing::get};
/// use gatehouse_verify::{Verified, Verifier};
///
/// #[derive(Clone, FromRef)]
/// struct AppState {
///     verifier: Verifier,
///     // your pool, ...
/// }
///
/// async fn me(Verified(claims): Verified) -> String {
///     claims.sub.to_string()
/// }
///
/// fn router(state: AppState) -> Router {
///     Router::new().route("/me", get(me)).with_state(state)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Verified<C = Claims>(pub C);

/// Like `Option<Verified<C>>`: `None` when the request has no
/// `Authorization` header; a present but bad token is still refused.
#[derive(Debug, Clone)]
pub struct OptionalVerified<C = Claims>(pub Option<C>);

/// Verified claims cached in the request's extensions, so several
/// extractors (or a middleware and a handler) verify only once.
#[derive(Clone)]
struct VerifiedClaims(Claims);

async fn claims_from_parts<S>(parts: &mut Parts, state: &S) -> Result<Claims, AuthError>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    if let Some(VerifiedClaims(claims)) = parts.extensions.get::<VerifiedClaims>() {
        return Ok(claims.clone());
    }
    let verifier = Verifier::from_ref(state);
    let token = bearer_token(&parts.headers).ok_or(AuthError::MissingToken)?;
    let claims = verifier.verify(token).await.map_err(|e| {
        tracing::debug!(reason = e.reason(), "access token refused");
        AuthError::InvalidToken(e)
    })?;
    parts.extensions.insert(VerifiedClaims(claims.clone()));
    Ok(claims)
}

impl<S, C> FromRequestParts<S> for Verified<C>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    C: FromClaims,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let claims = claims_from_parts(parts, state).await?;
        C::from_claims(claims)
            .map(Verified)
            .map_err(AuthError::InvalidToken)
    }
}

impl<S, C> OptionalFromRequestParts<S> for Verified<C>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    C: FromClaims,
{
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

impl<S, C> FromRequestParts<S> for OptionalVerified<C>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    C: FromClaims,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verified =
            <Verified<C> as OptionalFromRequestParts<S>>::from_request_parts(parts, state).await?;
        Ok(OptionalVerified(verified.map(|Verified(c)| c)))
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        (self.status(), self.headers(), self.problem_json()).into_response()
    }
}
