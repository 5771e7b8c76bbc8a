//! Signing keys: what apps read to trust Gatehouse tokens
//! (`/.well-known/jwks.json`, `/.well-known/openid-configuration`) and
//! their administration (`/admin/keys`, admins only).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gatehouse_shared::models::SigningKey;
use gatehouse_shared::models::signing_key::{KeyState, Rotation};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::AdminUser;
use crate::error::{ApiResult, Problem};
use crate::http::dto::{rfc3339, rfc3339_opt};
use crate::http::extract::{ApiQuery, ClientIp};
use crate::http::pagination::PageParams;
use crate::http::responses::{AdminOnly, BadInput, TimedOut};
use crate::keys;
use crate::state::AppState;

crate::page_of!(KeyPage, KeyOut, "A page of signing keys.");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(openid_configuration))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_keys))
}

/// An Ed25519 public key (RFC 8037).
#[derive(Debug, Serialize, ToSchema)]
pub struct JwkOut {
    #[schema(example = "OKP")]
    pub kty: String,
    #[schema(example = "Ed25519")]
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// RFC 7638 thumbprint of the key; the `kid` header of the tokens it signs.
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub alg: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub use_: String,
}

/// The key set: the next, current and previous signing keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct JwksOut {
    pub keys: Vec<JwkOut>,
}

/// True when `If-None-Match` names `etag` (weak comparison, RFC 9110).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == etag)
}

/// The public signing keys (JWKS).
///
/// The Ed25519 keys that sign access tokens: the current key, the next one
/// (published at least one cache period before it signs) and previous ones
/// whose tokens may still be alive. Verify a token with the key whose `kid`
/// matches the token's header, and only with `alg: EdDSA`. Cached for
/// `JWKS_MAX_AGE`; send the `ETag` back in `If-None-Match` to get 304. In
/// HS256 mode the set is empty (a shared secret is never published).
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "discovery",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer.")),
    responses(
        (status = 200, description = "The key set.", body = JwksOut, headers(
            ("ETag" = String, description = "Strong validator of this key set."),
            ("Cache-Control" = String, description = "`public, max-age=<JWKS_MAX_AGE seconds>`."),
        )),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`."),
        TimedOut,
    )
)]
async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshot = state.tokens.ring().snapshot();
    let jwks = &snapshot.jwks;
    let cache = format!(
        "public, max-age={}",
        state.config.tokens.jwks_max_age.as_secs()
    );
    let mut res = if not_modified(&headers, &jwks.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            jwks.body.clone(),
        )
            .into_response()
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&jwks.etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    res
}

/// Discovery document (the subset of OpenID Connect Discovery that apps
/// use to find the keys and the revocation feed).
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenIdConfiguration {
    /// The `iss` of every token (`JWT_ISSUER`).
    #[schema(example = "gatehouse")]
    pub issuer: String,
    #[schema(example = "https://auth.example.com/.well-known/jwks.json")]
    pub jwks_uri: String,
    #[schema(example = "https://auth.example.com/auth/token")]
    pub token_endpoint: String,
    /// The algorithm access tokens are signed with.
    #[schema(example = json!(["EdDSA"]))]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[schema(example = json!(["none"]))]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[schema(example = json!(["password", "refresh_token"]))]
    pub grant_types_supported: Vec<String>,
    /// Gatehouse's extension: the revocation feed (`/.well-known/revocations`).
    #[schema(example = "https://auth.example.com/.well-known/revocations")]
    pub revocation_feed_uri: String,
}

/// Discovery document.
///
/// Where an app finds Gatehouse's keys, token endpoint and revocation feed,
/// as absolute URLs under `PUBLIC_URL`, plus the issuer to expect in `iss`.
#[utoipa::path(
    get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses(
        (status = 200, description = "The discovery document.", body = OpenIdConfiguration),
        TimedOut,
    )
)]
async fn openid_configuration(State(state): State<AppState>) -> Response {
    let base = state.config.public_url();
    let doc = OpenIdConfiguration {
        issuer: state.config.jwt_issuer.clone(),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        token_endpoint: format!("{base}/auth/token"),
        id_token_signing_alg_values_supported: vec![state.tokens.algorithm().name().to_owned()],
        token_endpoint_auth_methods_supported: vec!["none".into()],
        grant_types_supported: vec!["password".into(), "refresh_token".into()],
        revocation_feed_uri: format!("{base}/.well-known/revocations"),
    };
    ([(header::CACHE_CONTROL, "public, max-age=3600")], Json(doc)).into_response()
}

/// A signing key as admins see it: public half, state and dates only.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub algorithm: String,
    pub state: KeyState,
    pub public_jwk: JwkOut,
    /// Published from (within `KEY_REFRESH_INTERVAL`).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Started signing.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub activated_at: Option<DateTime<Utc>>,
    /// Stopped signing.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Left the key set; its private half was erased.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<DateTime<Utc>>,
}

impl From<SigningKey> for KeyOut {
    fn from(k: SigningKey) -> Self {
        let jwk = k.jwk().ok();
        Self {
            state: k.key_state().unwrap_or(KeyState::Retired),
            public_jwk: JwkOut {
                kty: jwk.as_ref().map(|j| j.kty.clone()).unwrap_or_default(),
                crv: jwk.as_ref().map(|j| j.crv.clone()).unwrap_or_default(),
                x: jwk.as_ref().map(|j| j.x.clone()).unwrap_or_default(),
                kid: k.kid.clone(),
                alg: jwk.as_ref().map(|j| j.alg.clone()).unwrap_or_default(),
                use_: jwk.map(|j| j.use_).unwrap_or_default(),
            },
            kid: k.kid,
            algorithm: k.algorithm,
            created_at: k.created_at,
            activated_at: k.activated_at,
            deactivated_at: k.deactivated_at,
            retired_at: k.retired_at,
        }
    }
}

/// List signing keys.
///
/// Every signing key, newest first, with its state (`next`, `current`,
/// `previous`, `retired`), public half and dates. Private halves are never
/// shown. The read is recorded in the audit log (`keys_listed`).
#[utoipa::path(
    get, path = "/admin/keys", tag = "admin",
    params(PageParams),
    responses(
        (status = 200, description = "A page of keys.", body = KeyPage),
        AdminOnly,
        BadInput,
    ),
    security(("oauth2" = []))
)]
async fn list_keys(
    State(state): State<AppState>,
    AdminUser(auth): AdminUser,
    ip: ClientIp,
    ApiQuery(query): ApiQuery<PageParams>,
) -> ApiResult<Json<KeyPage>> {
    let page = query.validate()?;
    let keys = keys::list(&state, &auth.user, page, ip.text()).await?;
    Ok(Json(KeyPage::new(keys, page)))
}

/// What a rotation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotationOut {
    /// The recorded run (`GET /admin/jobs/runs`, job `rotate-keys`).
    pub run_id: Uuid,
    /// The key that signs from now on (the former next key).
    pub activated: String,
    /// The former current key, now previous: published until its last token expired.
    pub deactivated: Option<String>,
    /// The new next key, published now.
    pub created: String,
    /// Previous keys retired by this step.
    pub retired: Vec<String>,
}

/// Rotate the signing keys now.
///
/// The next key starts signing, the current key becomes previous (still
/// published until every token it signed has expired) and a new next key
/// is published. Every replica switches within `KEY_REFRESH_INTERVAL`.
/// Refused with 409 `rotation_too_soon` (and `Retry-After`) while the next
/// key has been published for less than one JWKS cache period. Recorded as
/// a `rotate-keys` run and in the audit log (`keys_rotated`).
#[utoipa::path(
    post, path = "/admin/keys/rotate", tag = "admin",
    responses(
        (status = 200, description = "Rotated.", body = RotationOut),
        AdminOnly,
        (status = 409, description = "`rotation_too_soon`: the next key may not sign yet; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("oauth2" = []))
)]
async fn rotate_keys(
    State(state): State<AppState>,
    AdminUser(auth): AdminUser,
    ip: ClientIp,
) -> ApiResult<Json<RotationOut>> {
    let (run_id, rotation) = keys::rotate(&state, &auth.user, ip.text()).await?;
    let out = match rotation {
        Rotation::Rotated {
            activated,
            deactivated,
            created,
            retired,
        } => RotationOut {
            run_id,
            activated,
            deactivated,
            created,
            retired,
        },
        // `keys::rotate` answers 409 instead.
        Rotation::Waiting { .. } => {
            return Err(crate::error::ApiError::internal(anyhow::anyhow!(
                "rotation reported waiting"
            )));
        }
    };
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let etag = "\"abc\"";
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, etag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(not_modified(&h, etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abcd\""));
        assert!(!not_modified(&h, etag));
    }
}
