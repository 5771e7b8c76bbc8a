//! Signing-key cryptography shared by the API (signs, serves the JWKS,
//! rotates on request) and the worker (rotates on schedule): Ed25519 key
//! generation, PKCS#8, encryption of private halves at rest, public JWKs and
//! their RFC 7638 thumbprints, and the timing rules of rotation.
//!
//! Private halves are encrypted with AES-256-GCM under a key derived from
//! `JWT_SECRET` with HKDF-SHA256; the kid is the associated data, so a
//! ciphertext moved to another row does not decrypt.

use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey as DalekKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use hkdf::Hkdf;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The only asymmetric algorithm Gatehouse signs with.
pub const EDDSA: &str = "EdDSA";

/// HKDF salt: fixed, so every replica derives the same keys from one secret.
const HKDF_SALT: &[u8] = b"gatehouse";
const INFO_KEY_ENCRYPTION: &[u8] = b"gatehouse/signing-key-encryption/v1";
const INFO_HS256_KID: &[u8] = b"gatehouse/hs256-kid/v1";
const INFO_SECRET_HASH: &[u8] = b"gatehouse/secret-hash/v1";
/// First byte of a stored private half: the format (nonce || ciphertext+tag).
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("the private key could not be encoded")]
    Encode,
    #[error(
        "a signing key could not be decrypted: JWT_SECRET is not the secret the keys were stored with"
    )]
    Decrypt,
    #[error("a stored public key is malformed")]
    MalformedPublicKey,
}

/// Keyed hash (HMAC-SHA256, key derived from `JWT_SECRET`) of the one-time
/// secrets Gatehouse stores: verification codes and link tokens. A bare
/// SHA-256 of a 6-digit code is reversed in a second by trying all codes;
/// without the key, a leaked hash (a log line, a backup) says nothing.
#[derive(Clone)]
pub struct SecretHasher(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(<redacted>)")
    }
}

impl SecretHasher {
    pub fn new(secret: &[u8]) -> Self {
        Self(derive(secret, INFO_SECRET_HASH))
    }

    /// Hex HMAC-SHA256 of `input`.
    pub fn hash(&self, input: &[u8]) -> String {
        use hmac::{Mac, SimpleHmac};
        // HMAC takes keys of any length: `new_from_slice` cannot fail here.
        let mut mac = match <SimpleHmac<Sha256> as Mac>::new_from_slice(self.0.as_ref()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        mac.update(input);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// `JWT_SECRET`-derived key that seals and opens private halves.
#[derive(Clone)]
pub struct KeySealer(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for KeySealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySealer(<redacted>)")
    }
}

fn derive(secret: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret).expand(info, out.as_mut());
    out
}

impl KeySealer {
    pub fn new(secret: &[u8]) -> Self {
        Self(derive(secret, INFO_KEY_ENCRYPTION))
    }

    fn cipher(&self) -> Aes256Gcm {
        // A 32-byte key is always a valid AES-256 key.
        Aes256Gcm::new(self.0.as_ref().into())
    }

    /// Encrypt `plaintext` bound to `kid`: `1 || nonce || ciphertext+tag`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| KeyError::Random)?;
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Encode)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypt what `seal` wrote for the same `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let [SEALED_V1, rest @ ..] = sealed else {
            return Err(KeyError::Decrypt);
        };
        if rest.len() < NONCE_LEN + 16 {
            return Err(KeyError::Decrypt);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::Decrypt)?;
        self.cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Decrypt)
    }
}

/// The fixed `kid` of HS256 tokens: derived from the secret (HKDF), so it
/// changes when the secret does and reveals nothing about it.
pub fn hs256_kid(secret: &[u8]) -> String {
    let k = derive(secret, INFO_HS256_KID);
    format!("hs256-{}", URL_SAFE_NO_PAD.encode(&k[..16]))
}

/// A public key as served in the JWKS (RFC 8037 OKP key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

impl PublicJwk {
    /// The JWK of a raw Ed25519 public key; its kid is the thumbprint.
    pub fn ed25519(public: &[u8; 32]) -> Self {
        let x = URL_SAFE_NO_PAD.encode(public);
        Self {
            kid: thumbprint(&x),
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            alg: EDDSA.into(),
            use_: "sig".into(),
        }
    }

    /// The raw public key, after checking every member (a stored JWK is
    /// trusted no more than a fetched one).
    pub fn public_key(&self) -> Result<[u8; 32], KeyError> {
        if self.kty != "OKP" || self.crv != "Ed25519" || self.alg != EDDSA || self.use_ != "sig" {
            return Err(KeyError::MalformedPublicKey);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|_| KeyError::MalformedPublicKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::MalformedPublicKey)?;
        if thumbprint(&self.x) != self.kid {
            return Err(KeyError::MalformedPublicKey);
        }
        Ok(key)
    }
}

/// RFC 7638 thumbprint of an Ed25519 JWK: SHA-256 over the required members
/// in lexicographic order, base64url.
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// A freshly generated or decrypted Ed25519 key pair.
pub struct KeyPair {
    pub jwk: PublicJwk,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng
            .try_fill_bytes(seed.as_mut())
            .map_err(|_| KeyError::Random)?;
        Self::from_signing_key(&DalekKey::from_bytes(&seed))
    }

    fn from_signing_key(key: &DalekKey) -> Result<Self, KeyError> {
        let der = key.to_pkcs8_der().map_err(|_| KeyError::Encode)?;
        Ok(Self {
            jwk: PublicJwk::ed25519(key.verifying_key().as_bytes()),
            pkcs8: Zeroizing::new(der.as_bytes().to_vec()),
        })
    }

    /// Decrypt a stored private half and check that it matches its JWK.
    pub fn open(sealer: &KeySealer, jwk: PublicJwk, sealed: &[u8]) -> Result<Self, KeyError> {
        let pkcs8 = sealer.open(&jwk.kid, sealed)?;
        let key = DalekKey::from_pkcs8_der(&pkcs8).map_err(|_| KeyError::Decrypt)?;
        if key.verifying_key().as_bytes() != &jwk.public_key()? {
            return Err(KeyError::Decrypt);
        }
        Ok(Self { jwk, pkcs8 })
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The private key as PKCS#8 DER (what `EncodingKey::from_ed_der` takes).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The private half encrypted for storage.
    pub fn seal(&self, sealer: &KeySealer) -> Result<Vec<u8>, KeyError> {
        sealer.seal(&self.jwk.kid, &self.pkcs8)
    }
}

/// How long keys wait and stay around. A new key must be in every API
/// replica's JWKS (one refresh period) and then outlive every cached copy
/// of the JWKS without it (one max-age) before it signs. A key that
/// stopped signing must stay published while a token it signed can be
/// alive: replicas may sign with it for one more refresh period, the token
/// lives one access-token lifetime, and verifiers allow some clock leeway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTiming {
    pub refresh_interval: Duration,
    pub jwks_max_age: Duration,
    pub access_token_ttl: Duration,
}

/// Clock leeway granted to verifiers on `exp`.
pub const VERIFIER_LEEWAY: Duration = Duration::from_secs(60);

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl KeyTiming {
    /// Earliest moment a key published at `created` may start signing.
    pub fn usable_from(&self, created: DateTime<Utc>) -> DateTime<Utc> {
        created + chrono(self.refresh_interval) + chrono(self.jwks_max_age)
    }

    /// Moment a key that stopped signing at `deactivated` may leave the JWKS.
    pub fn retire_after(&self, deactivated: DateTime<Utc>) -> DateTime<Utc> {
        deactivated
            + chrono(self.refresh_interval)
            + chrono(self.access_token_ttl)
            + chrono(VERIFIER_LEEWAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hashes_depend_on_the_key() {
        let a = SecretHasher::new(b"a secret of at least thirty-two bytes!!");
        let b = SecretHasher::new(b"another secret of at least 32 bytes!!!");
        assert_eq!(a.hash(b"123456"), a.hash(b"123456"));
        assert_ne!(a.hash(b"123456"), b.hash(b"123456"));
        assert_ne!(a.hash(b"123456"), crate::sha256_hex(b"123456"));
        assert_eq!(a.hash(b"x").len(), 64);
    }

    #[test]
    fn sealed_keys_open_only_with_their_secret_and_kid() {
        let sealer = KeySealer::new(b"a secret of at least thirty-two bytes!!");
        let pair = KeyPair::generate().expect("generate");
        let sealed = pair.seal(&sealer).expect("seal");
        assert_eq!(sealed[0], SEALED_V1);
        assert!(!sealed.windows(32).any(|w| w == &pair.pkcs8_der()[16..48]));
        let opened = KeyPair::open(&sealer, pair.jwk.clone(), &sealed).expect("open");
        assert_eq!(opened.pkcs8_der(), pair.pkcs8_der());

        let other = KeySealer::new(b"another secret of at least 32 bytes!!!");
        assert!(matches!(
            KeyPair::open(&other, pair.jwk.clone(), &sealed),
            Err(KeyError::Decrypt)
        ));
        // Same secret, ciphertext moved under another kid: refused.
        let second = KeyPair::generate().expect("generate");
        assert!(KeyPair::open(&sealer, second.jwk.clone(), &sealed).is_err());
        // Any flipped bit is refused.
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(KeyPair::open(&sealer, pair.jwk.clone(), &tampered).is_err());
        assert!(KeyPair::open(&sealer, pair.jwk, &sealed[..10]).is_err());
    }

    #[test]
    fn nonces_differ_between_seals() {
        let sealer = KeySealer::new(&[1u8; 32]);
        let a = sealer.seal("k", b"same").expect("seal");
        let b = sealer.seal("k", b"same").expect("seal");
        assert_ne!(a, b);
    }

    #[test]
    fn jwk_members_and_thumbprint() {
        // RFC 8037 appendix A.1/A.3: the Ed25519 example key and its thumbprint.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        assert_eq!(thumbprint(x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        let public: [u8; 32] = URL_SAFE_NO_PAD
            .decode(x)
            .expect("b64")
            .try_into()
            .expect("32");
        let jwk = PublicJwk::ed25519(&public);
        assert_eq!(jwk.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(
            serde_json::to_value(&jwk).expect("json"),
            serde_json::json!({"kty":"OKP","crv":"Ed25519","x":x,"kid":jwk.kid,"alg":"EdDSA","use":"sig"})
        );
        assert_eq!(jwk.public_key().expect("valid"), public);
        let mut short = jwk.clone();
        short.x = URL_SAFE_NO_PAD.encode([0u8; 31]);
        assert!(short.public_key().is_err());
        let mut wrong_kid = jwk.clone();
        wrong_kid.kid = "other".into();
        assert!(wrong_kid.public_key().is_err());
        let mut wrong_alg = jwk;
        wrong_alg.alg = "HS256".into();
        assert!(wrong_alg.public_key().is_err());
    }

    #[test]
    fn hs256_kid_is_stable_and_secret_dependent() {
        let a = hs256_kid(b"first secret of at least 32 bytes long");
        assert_eq!(a, hs256_kid(b"first secret of at least 32 bytes long"));
        assert_ne!(a, hs256_kid(b"other secret of at least 32 bytes long"));
        assert!(a.starts_with("hs256-") && a.len() == 6 + 22);
    }

    #[test]
    fn timing_waits_for_caches_and_token_lifetimes() {
        let t = KeyTiming {
            refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
            access_token_ttl: Duration::from_secs(900),
        };
        let at = DateTime::<Utc>::from_timestamp(1_000_000, 0).expect("ts");
        assert_eq!(t.usable_from(at).timestamp(), 1_000_000 + 330);
        assert_eq!(t.retire_after(at).timestamp(), 1_000_000 + 30 + 900 + 60);
    }
}
