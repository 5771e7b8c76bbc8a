//! argon2id hashing off the async runtime, with bounded concurrency.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use gatehouse_shared::domain::Password;
use tokio::sync::Semaphore;

/// OWASP password storage cheat sheet: m=19456 KiB, t=2, p=1.
pub const M_COST: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash uses other parameters and should be replaced.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords on the blocking pool. The semaphore caps
/// concurrent hashes at the number of cores, so a login flood queues here
/// instead of exhausting the blocking pool or memory (19 MiB per hash).
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against for unknown
    /// emails so login takes the same time either way.
    dummy: Arc<String>,
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let params = Params::new(M_COST, T_COST, P_COST, None)
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        let mut this = Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::new(String::new()),
        };
        let salt = SaltString::generate(&mut OsRng);
        let dummy = this
            .argon()
            .hash_password(uuid::Uuid::new_v4().as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string();
        this.dummy = Arc::new(dummy);
        Ok(this)
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Run `f` on the blocking pool once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Argon2<'static>) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let argon = self.argon();
        Ok(tokio::task::spawn_blocking(move || f(argon)).await?)
    }

    /// Hash a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let secret = password.expose().to_owned();
        self.run(move |argon| {
            let salt = SaltString::generate(&mut OsRng);
            argon
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
    }

    /// Verify against a stored PHC string. A malformed stored hash never
    /// matches.
    pub async fn verify(&self, password: &Password, stored: &str) -> anyhow::Result<Verified> {
        let secret = password.expose().to_owned();
        let stored = stored.to_owned();
        let wanted = self.params.clone();
        self.run(move |argon| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verified {
                    ok: false,
                    needs_rehash: false,
                };
            };
            let ok = argon.verify_password(secret.as_bytes(), &parsed).is_ok();
            let current = Params::try_from(&parsed).ok();
            let same = parsed.algorithm.as_str() == "argon2id"
                && current.is_some_and(|p| {
                    p.m_cost() == wanted.m_cost()
                        && p.t_cost() == wanted.t_cost()
                        && p.p_cost() == wanted.p_cost()
                });
            Verified {
                ok,
                needs_rehash: ok && !same,
            }
        })
        .await
    }

    /// Burn the same time as a real verification; always fails.
    pub async fn verify_dummy(&self, password: &Password) -> anyhow::Result<()> {
        let dummy = self.dummy.clone();
        self.verify(password, &dummy).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::candidate(s.to_owned()).expect("candidate")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn hashes_verify_and_detect_old_params() {
        let h = PasswordHasher::new(2).expect("hasher");
        let stored = h.hash(&pw("tangerine voyage 42")).await.expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let v = h
            .verify(&pw("tangerine voyage 42"), &stored)
            .await
            .expect("verify");
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        let v = h.verify(&pw("wrong"), &stored).await.expect("verify");
        assert!(!v.ok);
        // A weaker, older hash still verifies and asks for a rehash.
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).expect("p"),
        )
        .hash_password(b"legacy pass 1", &SaltString::generate(&mut OsRng))
        .expect("hash")
        .to_string();
        let v = h.verify(&pw("legacy pass 1"), &old).await.expect("verify");
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        assert!(
            !h.verify(&pw("x"), "not a phc string")
                .await
                .expect("verify")
                .ok
        );
        h.verify_dummy(&pw("anything")).await.expect("dummy");
    }
}
