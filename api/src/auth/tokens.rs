//! Typed, algorithm-pinned JWTs. The header `typ` separates access tokens
//! (`at+jwt`, RFC 9068) from refresh tokens (`rt+jwt`), so neither is ever
//! accepted in place of the other.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
/// comes from the database.
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

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    pub access_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            access_ttl,
        }
    }

    fn sign(&self, kind: TokenKind, claims: AccessClaims) -> Result<Issued, TokenError> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(kind.typ().to_owned());
        let token = encode(&header, &claims, &self.encoding)?;
        Ok(Issued { token, claims })
    }

    pub fn issue_access(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: &str,
    ) -> Result<Issued, TokenError> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.access_ttl.as_secs()).unwrap_or(900);
        self.sign(
            TokenKind::Access,
            AccessClaims {
                iss: self.issuer.clone(),
                aud: self.audience.clone(),
                sub: user_id,
                sid: session_id,
                role: Some(role.to_owned()),
                iat: now,
                nbf: now,
                exp: now + ttl,
                jti: Uuid::new_v4(),
            },
        )
    }

    /// A refresh token with a given `jti`, expiring with its session.
    pub fn issue_refresh(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        jti: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<Issued, TokenError> {
        let now = Utc::now().timestamp();
        self.sign(
            TokenKind::Refresh,
            RefreshClaims {
                iss: self.issuer.clone(),
                aud: self.audience.clone(),
                sub: user_id,
                sid: session_id,
                role: None,
                iat: now,
                nbf: now,
                exp: expires_at.timestamp(),
                jti,
            },
        )
    }

    /// Verify signature, algorithm, `iss`, `aud`, `exp`, `nbf` and the type.
    pub fn decode(&self, token: &str, kind: TokenKind) -> Result<AccessClaims, TokenError> {
        let data = decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.header.alg != Algorithm::HS256 || data.header.typ.as_deref() != Some(kind.typ()) {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
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
        let mut old = issued.claims;
        old.exp = Utc::now().timestamp() - 60;
        old.nbf = old.exp - 900;
        let expired = k.sign(TokenKind::Access, old).expect("sign");
        assert!(k.decode(&expired.token, TokenKind::Access).is_err());
        assert!(k.decode("garbage", TokenKind::Access).is_err());
    }
}
