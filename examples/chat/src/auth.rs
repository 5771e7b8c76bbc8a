//! Who is on a socket or calling the history endpoint: a Gatehouse user,
//! from an access token `gatehouse-verify` accepted. The chat holds no
//! secret and keeps no user table.
//!
//! Display names: Gatehouse tokens carry no name today, so the author name
//! is `user-` and the last 8 hex digits of the user id (its random part;
//! Gatehouse ids are UUIDv7, whose leading digits are a timestamp). A token
//! that carries a `name` claim uses that instead.

use gatehouse_verify::{Claims, FromClaims, VerifyError};
use uuid::Uuid;

/// Longest display name kept from a `name` claim.
const NAME_MAX: usize = 64;

/// The display name for a token's claims.
pub fn display_name(claims: &Claims) -> String {
    let from_claim = claims
        .extra_claim::<String>("name")
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(NAME_MAX)
                .collect::<String>()
        })
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    from_claim.unwrap_or_else(|| fallback_name(claims.sub))
}

/// `user-` + the last 8 hex digits of the id.
pub fn fallback_name(id: Uuid) -> String {
    let hex = id.simple().to_string();
    format!("user-{}", &hex[hex.len() - 8..])
}

/// The caller of an HTTP route (`Verified<Caller>`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
}

impl FromClaims for Caller {
    fn from_claims(claims: Claims) -> Result<Self, VerifyError> {
        Ok(Self {
            user_id: claims.sub,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_uses_the_random_tail() {
        let id = Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").expect("uuid");
        assert_eq!(fallback_name(id), "user-2e3f4a5b");
    }
}
