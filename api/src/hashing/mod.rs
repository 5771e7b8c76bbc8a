//! Password hashing: argon2id with OWASP parameters on a pool of its own
//! threads, off the async runtime. Three calls: [`PasswordHasher::hash`],
//! [`PasswordHasher::verify`] and [`PasswordHasher::verify_dummy`]. The
//! pool (`pool.rs`: niced threads, lock-free queues, a bounded backlog,
//! answers handed back through an eventfd) is the clever part, earned by
//! measurement (BENCHMARKS.md, section 2); `argon.rs` holds the argon2
//! calls.

mod argon;
mod pool;

use std::sync::Arc;

use argon2::Params;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use gatehouse_shared::domain::Password;

pub use argon::{M_COST, P_COST, T_COST};
use argon::{Memory, hash_with, verify_with};
use pool::Pool;

/// The hashing queue is full (`PASSWORD_HASH_QUEUE`): the error of every
/// [`PasswordHasher`] call then, which `ApiError::internal` turns into 503
/// `overloaded` with this `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// Seconds until the queue has about drained.
    pub retry_after: u64,
}

impl std::fmt::Display for Overloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the password hashing queue is full")
    }
}

impl std::error::Error for Overloaded {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash uses other parameters and should be replaced.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords on `concurrency` dedicated threads. A
/// login flood queues here, in order, instead of exhausting the blocking
/// pool or memory (19 MiB per hash in flight).
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    pool: Arc<Pool>,
    /// A real hash of a random password, verified against for unknown
    /// emails so login takes the same time either way.
    dummy: Arc<String>,
}

impl PasswordHasher {
    /// `concurrency` hashing threads at scheduling priority `nice`
    /// (0..=19; 0 leaves it unchanged); at most `max_queued` calls wait or
    /// run at once, further calls fail with [`Overloaded`].
    pub fn new(concurrency: usize, nice: i32, max_queued: usize) -> anyhow::Result<Self> {
        let params = Params::new(M_COST, T_COST, P_COST, None)
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        let salt = SaltString::generate(&mut OsRng);
        let dummy = hash_with(
            &params,
            uuid::Uuid::new_v4().as_bytes(),
            &salt,
            &mut Memory::default(),
        )?;
        Ok(Self {
            params,
            pool: Arc::new(Pool::start(concurrency.max(1), nice, max_queued)?),
            dummy: Arc::new(dummy),
        })
    }

    /// Hash a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let secret = password.expose().to_owned();
        let params = self.params.clone();
        self.pool
            .run(move |memory| {
                let salt = SaltString::generate(&mut OsRng);
                hash_with(&params, secret.as_bytes(), &salt, memory)
            })
            .await?
    }

    /// Verify against a stored PHC string. A malformed stored hash never
    /// matches.
    pub async fn verify(&self, password: &Password, stored: &str) -> anyhow::Result<Verified> {
        let secret = password.expose().to_owned();
        let stored = stored.to_owned();
        let wanted = self.params.clone();
        self.pool
            .run(move |memory| {
                let Ok(parsed) = PasswordHash::new(&stored) else {
                    return Verified {
                        ok: false,
                        needs_rehash: false,
                    };
                };
                let ok = verify_with(&parsed, secret.as_bytes(), memory);
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
    use std::time::Duration;

    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
    use argon2::{Algorithm, Argon2, Version};

    use super::*;

    fn pw(s: &str) -> Password {
        Password::candidate(s.to_owned()).expect("candidate")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn hashes_verify_and_detect_old_params() {
        let h = PasswordHasher::new(2, 0, 64).expect("hasher");
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

    /// The pool's own argon2 calls agree with the crate's PHC API both ways,
    /// including other algorithms and versions.
    #[tokio::test(flavor = "multi_thread")]
    async fn agrees_with_the_argon2_crate() {
        let h = PasswordHasher::new(1, 0, 64).expect("hasher");
        let ours = h.hash(&pw("quiet harbour 7")).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        let crate_default = Argon2::default();
        assert!(
            crate_default
                .verify_password(b"quiet harbour 7", &parsed)
                .is_ok()
        );
        assert!(
            crate_default
                .verify_password(b"quiet harbour 8", &parsed)
                .is_err()
        );
        for (algorithm, version) in [
            (Algorithm::Argon2id, Version::V0x13),
            (Algorithm::Argon2i, Version::V0x13),
            (Algorithm::Argon2d, Version::V0x10),
        ] {
            let theirs = Argon2::new(
                algorithm,
                version,
                Params::new(4096, 1, 2, None).expect("p"),
            )
            .hash_password(b"quiet harbour 7", &SaltString::generate(&mut OsRng))
            .expect("hash")
            .to_string();
            let v = h
                .verify(&pw("quiet harbour 7"), &theirs)
                .await
                .expect("verify");
            assert_eq!(
                v,
                Verified {
                    ok: true,
                    needs_rehash: true
                },
                "{theirs}"
            );
            let v = h
                .verify(&pw("quiet harbour 8"), &theirs)
                .await
                .expect("verify");
            assert!(!v.ok, "{theirs}");
        }
    }

    /// More requests than threads queue up and all complete; dropping the
    /// hasher stops its threads.
    #[tokio::test(flavor = "multi_thread")]
    async fn queues_beyond_its_threads_and_stops_when_dropped() {
        let h = PasswordHasher::new(2, 0, 64).expect("hasher");
        let stored = h.hash(&pw("tangerine voyage 42")).await.expect("hash");
        let checks: Vec<_> = (0..6)
            .map(|i| {
                let (h, stored) = (h.clone(), stored.clone());
                tokio::spawn(async move {
                    let guess = if i % 2 == 0 {
                        "tangerine voyage 42"
                    } else {
                        "nope nope"
                    };
                    h.verify(&pw(guess), &stored).await.expect("verify").ok
                })
            })
            .collect();
        let mut results = Vec::new();
        for check in checks {
            results.push(check.await.expect("join"));
        }
        assert_eq!(results, [true, false, true, false, true, false]);
        // Each thread holds its load counter until it exits.
        let counters: Vec<_> = h
            .pool
            .workers
            .iter()
            .map(|w| Arc::downgrade(&w.load))
            .collect();
        drop(h);
        for _ in 0..100 {
            if counters.iter().all(|c| c.strong_count() == 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("hashing threads still running after the hasher was dropped");
    }

    /// Issue 11, item 16: the queue is bounded. Beyond `max_queued` calls
    /// waiting or running, a call fails at once with `Overloaded` (503
    /// `overloaded` with `Retry-After` at the HTTP edge) instead of queueing
    /// without end; the accepted calls still complete correctly.
    #[tokio::test(flavor = "multi_thread")]
    async fn item_16_a_full_queue_refuses_with_overloaded() {
        let h = PasswordHasher::new(1, 0, 2).expect("hasher");
        let stored = h.hash(&pw("tangerine voyage 42")).await.expect("hash");
        let checks: Vec<_> = (0..6)
            .map(|_| {
                let (h, stored) = (h.clone(), stored.clone());
                tokio::spawn(async move { h.verify(&pw("tangerine voyage 42"), &stored).await })
            })
            .collect();
        let (mut ok, mut refused) = (0, 0);
        for check in checks {
            match check.await.expect("join") {
                Ok(v) => {
                    assert!(v.ok);
                    ok += 1;
                }
                Err(e) => {
                    let full = e.downcast_ref::<Overloaded>().expect("overloaded");
                    assert!(full.retry_after >= 1);
                    refused += 1;
                }
            }
        }
        assert!(ok >= 2, "the first two calls fit: {ok}");
        assert!(refused >= 1, "six calls at once overflow a queue of two");
        // Room again once the queue drained.
        assert!(h.verify(&pw("x"), &stored).await.is_ok());
    }

    /// Issue 11, item 16: answers come back through the eventfd and the
    /// dispatcher, not polling; many answers finishing close together all
    /// reach their callers (no lost wake-up), on a single-threaded runtime
    /// too.
    #[tokio::test(flavor = "current_thread")]
    async fn item_16_every_answer_wakes_its_caller() {
        let pool = pool::Pool::start(2, 0, 1000).expect("pool");
        let pool = Arc::new(pool);
        let calls: Vec<_> = (0..500u32)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(move |_| i * 2).await })
            })
            .collect();
        let all = async {
            let mut sum = 0u64;
            for call in calls {
                sum += u64::from(call.await.expect("join").expect("answer"));
            }
            sum
        };
        let sum = tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("every caller woke up");
        assert_eq!(sum, (0..500u64).map(|i| i * 2).sum::<u64>());
    }
}
