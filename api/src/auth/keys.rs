//! The signing keys one API replica uses: the key that signs access tokens,
//! the keys that verify them, and the pre-rendered JWKS with its ETag.
//!
//! In EdDSA mode the set comes from PostgreSQL (`signing_keys`) and is
//! reloaded every `KEY_REFRESH_INTERVAL`, so a rotation made by the worker
//! or another replica is picked up within one period, without a restart. A
//! reload swaps one immutable snapshot; requests clone an `Arc` and never
//! wait on the database for keys. In HS256 mode the set is `JWT_SECRET`
//! under its fixed kid, and the published JWKS is empty.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use gatehouse_shared::db::DbPool;
use gatehouse_shared::keys::{KeySealer, KeyTiming, PublicJwk, hs256_kid};
use gatehouse_shared::models::SigningKey;
use gatehouse_shared::models::signing_key::KeyState;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// `JWT_ALGORITHM`: how access tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SigningAlgorithm {
    /// Ed25519 keys from the database, published at /.well-known/jwks.json.
    #[value(name = "EdDSA")]
    EdDsa,
    /// `JWT_SECRET` itself (one-service setups; nothing is published).
    #[value(name = "HS256")]
    Hs256,
}

impl SigningAlgorithm {
    pub fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Hs256 => Algorithm::HS256,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Hs256 => "HS256",
        }
    }
}

/// The key that signs access tokens.
pub struct Signer {
    pub kid: String,
    pub key: EncodingKey,
}

/// The JWKS document as served: body and strong ETag.
#[derive(Clone)]
pub struct Jwks {
    pub body: Bytes,
    pub etag: String,
}

/// One consistent view of the keys.
pub struct KeySnapshot {
    pub signer: Arc<Signer>,
    verifiers: HashMap<String, DecodingKey>,
    pub jwks: Jwks,
    /// When the current key started signing (EdDSA), for the age gauge.
    pub current_since: Option<DateTime<Utc>>,
}

impl KeySnapshot {
    /// The key that verifies tokens carrying `kid`, if it is published.
    pub fn verifier(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifiers.get(kid)
    }
}

fn render_jwks(keys: &[PublicJwk]) -> Jwks {
    let body = serde_json::json!({ "keys": keys }).to_string();
    let digest = Sha256::digest(body.as_bytes());
    Jwks {
        etag: format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..18])),
        body: Bytes::from(body),
    }
}

pub struct KeyRing {
    algorithm: SigningAlgorithm,
    sealer: KeySealer,
    timing: KeyTiming,
    snapshot: RwLock<Arc<KeySnapshot>>,
}

impl KeyRing {
    /// HS256 only, without a database: the secret under its fixed kid.
    pub fn hs256(secret: &[u8], timing: KeyTiming) -> Self {
        let kid = hs256_kid(secret);
        let verifiers = HashMap::from([(kid.clone(), DecodingKey::from_secret(secret))]);
        Self {
            algorithm: SigningAlgorithm::Hs256,
            sealer: KeySealer::new(secret),
            timing,
            snapshot: RwLock::new(Arc::new(KeySnapshot {
                signer: Arc::new(Signer {
                    kid,
                    key: EncodingKey::from_secret(secret),
                }),
                verifiers,
                jwks: render_jwks(&[]),
                current_since: None,
            })),
        }
    }

    /// Create the first keys if there are none (under the key lock, so
    /// replicas starting together agree), check that `JWT_SECRET` opens
    /// them, and load them. In HS256 mode the keys are still kept, so a
    /// later switch to EdDSA needs no preparation, but none is used.
    pub async fn load(
        db: &DbPool,
        algorithm: SigningAlgorithm,
        secret: &[u8],
        timing: KeyTiming,
    ) -> anyhow::Result<Self> {
        let ring = Self::hs256(secret, timing);
        let mut conn = db.get().await?;
        let created = SigningKey::ensure(&mut conn, &ring.sealer).await?;
        drop(conn);
        if !created.is_empty() {
            tracing::info!(kids = ?created, "signing keys created");
        }
        let ring = Self { algorithm, ..ring };
        ring.reload(db).await?;
        Ok(ring)
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// Seals new private keys (admin rotation).
    pub fn sealer(&self) -> &KeySealer {
        &self.sealer
    }

    pub fn timing(&self) -> &KeyTiming {
        &self.timing
    }

    pub fn snapshot(&self) -> Arc<KeySnapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            // A panic while swapping cannot leave a half-written Arc.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Read the keys again and swap in the new set. In HS256 mode only the
    /// age gauge is refreshed.
    pub async fn reload(&self, db: &DbPool) -> anyhow::Result<()> {
        let mut conn = db.get().await?;
        let keys = SigningKey::unretired(&mut conn).await?;
        drop(conn);
        let now = Utc::now();
        let current_since = keys
            .iter()
            .find(|k| k.key_state() == Some(KeyState::Current))
            .and_then(|k| k.activated_at);
        if let Some(since) = current_since {
            metrics::gauge!("gatehouse_signing_key_age_seconds")
                .set((now - since).num_milliseconds() as f64 / 1000.0);
        }
        if self.algorithm == SigningAlgorithm::Hs256 {
            return Ok(());
        }
        let old = self.snapshot();
        let next = self.build(&keys, &old, now)?;
        match self.snapshot.write() {
            Ok(mut guard) => *guard = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        Ok(())
    }

    /// The EdDSA snapshot of `keys`: the current key signs; next, current
    /// and previous keys still inside their retirement window verify and
    /// are published (current first).
    fn build(
        &self,
        keys: &[SigningKey],
        old: &KeySnapshot,
        now: DateTime<Utc>,
    ) -> anyhow::Result<KeySnapshot> {
        let current = keys
            .iter()
            .find(|k| k.key_state() == Some(KeyState::Current))
            .ok_or_else(|| anyhow::anyhow!("no current signing key in the database"))?;
        // Decrypt only when the current key changed.
        let signer = if old.signer.kid == current.kid {
            old.signer.clone()
        } else {
            let pair = current.open(&self.sealer)?;
            Arc::new(Signer {
                kid: current.kid.clone(),
                key: EncodingKey::from_ed_der(pair.pkcs8_der()),
            })
        };
        let rank = |k: &SigningKey| match k.key_state() {
            Some(KeyState::Current) => 0,
            Some(KeyState::Next) => 1,
            _ => 2,
        };
        let mut published: Vec<&SigningKey> = keys
            .iter()
            .filter(|k| match k.key_state() {
                Some(KeyState::Current | KeyState::Next) => true,
                Some(KeyState::Previous) => k
                    .deactivated_at
                    .is_some_and(|at| self.timing.retire_after(at) > now),
                _ => false,
            })
            .collect();
        published.sort_by_key(|k| (rank(k), std::cmp::Reverse(k.created_at)));
        let mut jwks = Vec::with_capacity(published.len());
        let mut verifiers = HashMap::with_capacity(published.len());
        for key in published {
            let jwk = key.jwk()?;
            let raw = jwk.public_key()?;
            verifiers.insert(jwk.kid.clone(), DecodingKey::from_ed_der(&raw));
            jwks.push(jwk);
        }
        // Unchanged set: keep the same body and ETag bytes.
        let rendered = render_jwks(&jwks);
        let jwks = if rendered.etag == old.jwks.etag {
            old.jwks.clone()
        } else {
            rendered
        };
        Ok(KeySnapshot {
            signer,
            verifiers,
            jwks,
            current_since: current.activated_at,
        })
    }

    /// Reload every `interval` until `stop` turns true. A failed reload
    /// keeps the last good set.
    pub fn spawn_refresh(
        self: Arc<Self>,
        db: DbPool,
        interval: std::time::Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                if let Err(e) = self.reload(&db).await {
                    metrics::counter!("gatehouse_key_reload_failures_total").increment(1);
                    tracing::error!(error = %format!("{e:#}"), "signing keys not reloaded; keeping the last set");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_etag_follows_the_body() {
        let a = render_jwks(&[]);
        assert_eq!(&a.body[..], br#"{"keys":[]}"#);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
        let pair = gatehouse_shared::keys::KeyPair::generate().expect("key");
        let b = render_jwks(std::slice::from_ref(&pair.jwk));
        assert_ne!(a.etag, b.etag);
        assert_eq!(b.etag, render_jwks(&[pair.jwk]).etag);
    }
}
