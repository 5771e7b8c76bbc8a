//! The claims of a verified Gatehouse access token.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::VerifyError;

/// The claims of an access token that passed every check.
///
/// `role` is what Gatehouse knew when it minted the token; a role change
/// makes older tokens stale, so a verified token carries the current role.
/// Claims this crate does not know (e.g. `client_id`) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer (Gatehouse's `JWT_ISSUER`).
    pub iss: String,
    /// The audience (a single string in Gatehouse's contract).
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    /// The session id; revocations name it.
    pub sid: Uuid,
    /// `user` or `admin`.
    pub role: String,
    /// Issued at (epoch seconds).
    pub iat: i64,
    /// Not before (epoch seconds).
    pub nbf: i64,
    /// Expiry (epoch seconds).
    pub exp: i64,
    /// The token id.
    pub jti: Uuid,
    /// Every other claim, untouched (e.g. `client_id`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Claims {
    /// Whether the token says the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }

    /// The RFC 9068 `client_id` claim, when Gatehouse sets it.
    pub fn client_id(&self) -> Option<&str> {
        self.extra.get("client_id").and_then(Value::as_str)
    }

    /// One extra claim, deserialized; `None` when absent or of another type.
    pub fn extra_claim<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.extra.get(name).and_then(|v| T::deserialize(v).ok())
    }

    /// All the claims (standard and extra) as your own type, for
    /// [`FromClaims`] implementations:
    /// `claims.deserialize_into::<MyClaims>()`.
    pub fn deserialize_into<T: DeserializeOwned>(&self) -> Result<T, VerifyError> {
        serde_json::to_value(self)
            .and_then(T::deserialize)
            .map_err(|_| VerifyError::InvalidClaims)
    }
}

/// Turns verified [`Claims`] into the type an extractor hands to a handler
/// (`Verified<C>`), so an app can carry its own view of the token.
///
/// ```
/// use gatehouse_verify::{Claims, FromClaims, VerifyError};
/// use serde::Deserialize;
/// use uuid::Uuid;
///
/// /// What this app reads from a token.
/// #[derive(Deserialize)]
/// struct Caller {
///     sub: Uuid,
///     client_id: Option<String>,
/// }
///
/// impl FromClaims for Caller {
///     fn from_claims(claims: Claims) -> Result<Self, VerifyError> {
///         // An `Err` here is answered like any bad token (401 `invalid_token`).
///         claims.deserialize_into()
///     }
/// }
/// ```
pub trait FromClaims: Sized {
    /// Build `Self` from claims that passed every check.
    fn from_claims(claims: Claims) -> Result<Self, VerifyError>;
}

impl FromClaims for Claims {
    fn from_claims(claims: Claims) -> Result<Self, VerifyError> {
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_claims_are_kept_and_readable() {
        let sub = Uuid::new_v4();
        let v = json!({
            "iss": "gatehouse", "aud": "gatehouse", "sub": sub, "sid": Uuid::new_v4(),
            "role": "admin", "iat": 10, "nbf": 10, "exp": 20, "jti": Uuid::new_v4(),
            "client_id": "chat", "scope": ["a", "b"]
        });
        let c: Claims = serde_json::from_value(v).unwrap();
        assert_eq!(c.client_id(), Some("chat"));
        assert_eq!(c.extra_claim::<Vec<String>>("scope").unwrap(), ["a", "b"]);
        assert_eq!(c.extra_claim::<i64>("scope"), None);
        assert!(c.is_admin());
        assert!(!c.extra.contains_key("sub"));

        #[derive(Deserialize)]
        struct Mine {
            sub: Uuid,
            client_id: String,
        }
        let m: Mine = c.deserialize_into().unwrap();
        assert_eq!((m.sub, m.client_id.as_str()), (sub, "chat"));
    }
}
