//! Who is calling: a Gatehouse user, from an access token that
//! `gatehouse-verify` accepted (signature from Gatehouse's JWKS, issuer,
//! audience, lifetime, and not revoked per the revocation feed). BotFactory
//! holds no secret and keeps no user table.
//!
//! Handlers take `Verified<Client>`; a missing, bad, expired or revoked
//! token is answered 401 problem+json (`missing_token` / `invalid_token`)
//! with `WWW-Authenticate`, before the handler runs.

use gatehouse_verify::{Claims, FromClaims, VerifyError};
use uuid::Uuid;

/// The caller, as the token names them.
#[derive(Debug, Clone)]
pub struct Client {
    /// Gatehouse user id (`sub`); owner of the bots they create.
    pub id: Uuid,
    /// `user` or `admin` (BotFactory gives admins nothing extra).
    pub role: String,
    /// Gatehouse session id (`sid`).
    pub session_id: Uuid,
    /// When the token expires (epoch seconds).
    pub expires_at: i64,
}

impl FromClaims for Client {
    fn from_claims(claims: Claims) -> Result<Self, VerifyError> {
        Ok(Self {
            id: claims.sub,
            role: claims.role,
            session_id: claims.sid,
            expires_at: claims.exp,
        })
    }
}
