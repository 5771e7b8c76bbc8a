//! Typed, algorithm-pinned JWTs with a `kid`. The header `typ` separates
//! access tokens (`at+jwt`, RFC 9068) from refresh tokens (`rt+jwt`), so
//! neither is ever accepted in place of the other.
//!
//! Access tokens are signed with the current key of the [`KeyRing`]:
//! Ed25519 (`JWT_ALGORITHM=EdDSA`, the default, verifiable by any app from
//! the JWKS) or `JWT_SECRET` (HS256). Exactly the configured algorithm is
//! accepted. Refresh tokens are read only by Gatehouse, so they stay HS256
//! with `JWT_SECRET` in both modes (a switch of algorithm costs clients one
//! refresh, never a login).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_shared::keys::{KeyTiming, hs256_kid};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::keys::{KeyRing, SigningAlgorithm};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    fn typ(self) -> &'static str {
        match self {
            Self::Access => "at+jwt",
            Self::Refresh => "rt+jwt",
        }
    }
}

/// Claims of both token kinds. `role` is informational: authority always
/// comes from the database. Access tokens carry the claims RFC 9068
/// requires (`iss`, `exp`, `aud`, `sub`, `client_id`, `iat`, `jti`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub sid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

pub type RefreshClaims = AccessClaims;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token")]
    Invalid,
    #[error("token could not be signed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// A signed token and its claims.
pub struct Issued {
    pub token: String,
    pub claims: AccessClaims,
}

/// Token settings that do not change while the process runs.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    /// `client_id` of access tokens (`JWT_CLIENT_ID`).
    pub client_id: String,
    pub access_ttl: Duration,
}

/// Access tokens already verified, so a client reusing its token (every
/// request, for up to its lifetime) costs one Ed25519 verification, not one
/// per request. Keyed on the whole token (a payload changed under a cached
/// signature misses); an entry is used only until the token's `exp`. Only
/// the signature and claims checks are skipped: the session check (revoked,
/// stale) still runs on every request. Bounded: when full, expired entries
/// go, and if none expired, everything goes.
struct VerifiedCache {
    entries: std::sync::Mutex<std::collections::HashMap<Box<str>, AccessClaims>>,
}

const VERIFIED_CACHE_CAPACITY: usize = 4096;

impl VerifiedCache {
    fn new() -> Self {
        Self {
            entries: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn get(&self, token: &str, now: i64) -> Option<AccessClaims> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(token)
            .filter(|c| c.exp > now && c.nbf <= now + 5)
            .cloned()
    }

    fn put(&self, token: &str, claims: &AccessClaims, now: i64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= VERIFIED_CACHE_CAPACITY {
            entries.retain(|_, c| c.exp > now);
            if entries.len() >= VERIFIED_CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(token.into(), claims.clone());
    }
}

pub struct TokenKeys {
    ring: Arc<KeyRing>,
    verified: VerifiedCache,
    /// Refresh tokens: HS256 under `JWT_SECRET` and its kid.
    refresh_kid: String,
    refresh_encoding: EncodingKey,
    refresh_decoding: DecodingKey,
    validation_access: Validation,
    validation_refresh: Validation,
    settings: TokenSettings,
    pub access_ttl: Duration,
}

fn validation(algorithm: Algorithm, settings: &TokenSettings) -> Validation {
    let mut v = Validation::new(algorithm);
    v.algorithms = vec![algorithm];
    v.set_issuer(&[&settings.issuer]);
    v.set_audience(&[&settings.audience]);
    v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    // `iat`/`nbf` may be up to a second ahead (`not_before`), and replica
    // clocks drift a little.
    v.leeway = 5;
    v
}

impl TokenKeys {
    /// Keys over a loaded [`KeyRing`].
    pub fn with_ring(ring: Arc<KeyRing>, secret: &[u8], settings: TokenSettings) -> Self {
        Self {
            verified: VerifiedCache::new(),
            validation_access: validation(ring.algorithm().jwt(), &settings),
            validation_refresh: validation(Algorithm::HS256, &settings),
            ring,
            refresh_kid: hs256_kid(secret),
            refresh_encoding: EncodingKey::from_secret(secret),
            refresh_decoding: DecodingKey::from_secret(secret),
            access_ttl: settings.access_ttl,
            settings,
        }
    }

    /// HS256 keys without a database (tests and tools): `JWT_SECRET` signs
    /// both kinds.
    pub fn new(secret: &[u8], issuer: &str, audience: &str, access_ttl: Duration) -> Self {
        let timing = KeyTiming {
            refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
            access_token_ttl: access_ttl,
        };
        Self::with_ring(
            Arc::new(KeyRing::hs256(secret, timing)),
            secret,
            TokenSettings {
                issuer: issuer.to_owned(),
                audience: audience.to_owned(),
                client_id: "gatehouse".to_owned(),
                access_ttl,
            },
        )
    }

    pub fn ring(&self) -> &Arc<KeyRing> {
        &self.ring
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.access_ttl.as_secs()).unwrap_or(900)
    }

    /// An access token issued now (`iat = nbf = now`).
    pub fn issue_access(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: &str,
    ) -> Result<Issued, TokenError> {
        self.issue_access_at(user_id, session_id, role, Utc::now().timestamp())
    }

    /// An access token with `iat = nbf = iat` (see
    /// `gatehouse_shared::models::revocation::token_iat`).
    pub fn issue_access_at(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: &str,
        iat: i64,
    ) -> Result<Issued, TokenError> {
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user_id,
            sid: session_id,
            role: Some(role.to_owned()),
            iat,
            nbf: iat,
            exp: iat + self.ttl_secs(),
            jti: Uuid::new_v4(),
            client_id: Some(self.settings.client_id.clone()),
        };
        let snapshot = self.ring.snapshot();
        let mut header = Header::new(self.ring.algorithm().jwt());
        header.typ = Some(TokenKind::Access.typ().to_owned());
        header.kid = Some(snapshot.signer.kid.clone());
        let token = encode(&header, &claims, &snapshot.signer.key)?;
        Ok(Issued { token, claims })
    }

    /// A refresh token with a given `jti`, expiring with its session.
    pub fn issue_refresh(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        jti: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<Issued, TokenError> {
        self.issue_refresh_at(user_id, session_id, jti, expires_at, Utc::now().timestamp())
    }

    pub fn issue_refresh_at(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        jti: Uuid,
        expires_at: DateTime<Utc>,
        iat: i64,
    ) -> Result<Issued, TokenError> {
        let claims = RefreshClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user_id,
            sid: session_id,
            role: None,
            iat,
            nbf: iat,
            exp: expires_at.timestamp(),
            jti,
            client_id: None,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TokenKind::Refresh.typ().to_owned());
        header.kid = Some(self.refresh_kid.clone());
        let token = encode(&header, &claims, &self.refresh_encoding)?;
        Ok(Issued { token, claims })
    }

    /// Verify type, algorithm, key, signature, `iss`, `aud`, `exp` and
    /// `nbf`. The header is only a hint: the algorithm must be the pinned
    /// one and the key is looked up by kid among our own.
    pub fn decode(&self, token: &str, kind: TokenKind) -> Result<AccessClaims, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.typ.as_deref() != Some(kind.typ()) {
            return Err(TokenError::Invalid);
        }
        let now = Utc::now().timestamp();
        if kind == TokenKind::Access
            && let Some(claims) = self.verified.get(token, now)
        {
            return Ok(claims);
        }
        let data = match kind {
            TokenKind::Access => {
                let algorithm = self.ring.algorithm();
                if header.alg != algorithm.jwt() {
                    return Err(TokenError::Invalid);
                }
                let kid = header.kid.as_deref().ok_or(TokenError::Invalid)?;
                let snapshot = self.ring.snapshot();
                let key = snapshot.verifier(kid).ok_or(TokenError::Invalid)?;
                decode::<AccessClaims>(token, key, &self.validation_access)
            }
            TokenKind::Refresh => {
                // Refresh tokens from before kids existed carry none.
                if header.alg != Algorithm::HS256
                    || header.kid.as_deref().is_some_and(|k| k != self.refresh_kid)
                {
                    return Err(TokenError::Invalid);
                }
                decode::<AccessClaims>(token, &self.refresh_decoding, &self.validation_refresh)
            }
        };
        let claims = data.map(|d| d.claims).map_err(|_| TokenError::Invalid)?;
        if kind == TokenKind::Access {
            self.verified.put(token, &claims, now);
        }
        Ok(claims)
    }

    /// `JWT_ALGORITHM`.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.ring.algorithm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &[7u8; 32],
            "gatehouse",
            "gatehouse",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn access_and_refresh_are_not_interchangeable() {
        let k = keys();
        let (u, s) = (Uuid::new_v4(), Uuid::new_v4());
        let access = k.issue_access(u, s, "user").expect("sign");
        let refresh = k
            .issue_refresh(u, s, Uuid::new_v4(), Utc::now() + chrono::Duration::days(1))
            .expect("sign");
        assert_eq!(
            k.decode(&access.token, TokenKind::Access).expect("ok").sub,
            u
        );
        assert!(k.decode(&access.token, TokenKind::Refresh).is_err());
        assert!(k.decode(&refresh.token, TokenKind::Access).is_err());
        assert_eq!(
            k.decode(&refresh.token, TokenKind::Refresh)
                .expect("ok")
                .sid,
            s
        );
    }

    #[test]
    fn every_token_has_a_kid_and_access_tokens_a_client_id() {
        let k = keys();
        let (u, s) = (Uuid::new_v4(), Uuid::new_v4());
        let access = k.issue_access(u, s, "user").expect("sign");
        let header = decode_header(&access.token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(hs256_kid(&[7u8; 32]).as_str()));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(access.claims.client_id.as_deref(), Some("gatehouse"));
        let refresh = k
            .issue_refresh(u, s, Uuid::new_v4(), Utc::now() + chrono::Duration::days(1))
            .expect("sign");
        assert!(decode_header(&refresh.token).expect("header").kid.is_some());
        // An access token naming another kid is refused.
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("someone-else".into());
        let forged = encode(
            &header,
            &access.claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .expect("sign");
        assert!(k.decode(&forged, TokenKind::Access).is_err());
    }

    #[test]
    fn a_cached_token_still_needs_its_exact_bytes_and_expires() {
        let k = keys();
        let issued = k
            .issue_access(Uuid::new_v4(), Uuid::new_v4(), "user")
            .expect("sign");
        // Verified once, then from the cache: same answer.
        let first = k.decode(&issued.token, TokenKind::Access).expect("ok");
        assert_eq!(
            k.decode(&issued.token, TokenKind::Access).expect("ok"),
            first
        );
        // A changed payload under the cached signature is verified, and fails.
        let parts: Vec<&str> = issued.token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims = issued.claims.clone();
        claims.role = Some("admin".into());
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&claims).expect("json")),
            parts[2]
        );
        assert!(k.decode(&forged, TokenKind::Access).is_err());
        // An entry is never used past the token's exp.
        assert!(k.verified.get(&issued.token, issued.claims.exp).is_none());
        // Full: expired entries go first, then everything.
        for i in 0..VERIFIED_CACHE_CAPACITY + 1 {
            k.verified.put(&format!("t{i}"), &issued.claims, 0);
        }
        assert!(k.verified.entries.lock().expect("lock").len() <= VERIFIED_CACHE_CAPACITY);
    }

    #[test]
    fn rejects_other_secret_issuer_and_audience() {
        let k = keys();
        let (u, s) = (Uuid::new_v4(), Uuid::new_v4());
        let other = TokenKeys::new(
            &[8u8; 32],
            "gatehouse",
            "gatehouse",
            Duration::from_secs(900),
        );
        assert!(
            k.decode(
                &other.issue_access(u, s, "user").expect("sign").token,
                TokenKind::Access
            )
            .is_err()
        );
        let iss = TokenKeys::new(&[7u8; 32], "evil", "gatehouse", Duration::from_secs(900));
        assert!(
            k.decode(
                &iss.issue_access(u, s, "user").expect("sign").token,
                TokenKind::Access
            )
            .is_err()
        );
        let aud = TokenKeys::new(
            &[7u8; 32],
            "gatehouse",
            "other-app",
            Duration::from_secs(900),
        );
        assert!(
            k.decode(
                &aud.issue_access(u, s, "user").expect("sign").token,
                TokenKind::Access
            )
            .is_err()
        );
    }

    #[test]
    fn rejects_alg_none_tampering_and_expiry() {
        let k = keys();
        let issued = k
            .issue_access(Uuid::new_v4(), Uuid::new_v4(), "user")
            .expect("sign");
        let parts: Vec<&str> = issued.token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // alg: none with no signature.
        let none_header = b64.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        assert!(
            k.decode(&format!("{none_header}.{}.", parts[1]), TokenKind::Access)
                .is_err()
        );
        // Payload changed (role escalated) under the old signature.
        let mut claims = issued.claims.clone();
        claims.role = Some("admin".into());
        let forged = b64.encode(serde_json::to_vec(&claims).expect("json"));
        assert!(
            k.decode(
                &format!("{}.{forged}.{}", parts[0], parts[2]),
                TokenKind::Access
            )
            .is_err()
        );
        // Expired.
        let old = k
            .issue_access_at(
                Uuid::new_v4(),
                Uuid::new_v4(),
                "user",
                Utc::now().timestamp() - 960,
            )
            .expect("sign");
        assert!(k.decode(&old.token, TokenKind::Access).is_err());
        assert!(k.decode("garbage", TokenKind::Access).is_err());
    }
}
