//! argon2id hashing on a dedicated thread pool, off the async runtime, with
//! bounded concurrency.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use gatehouse_shared::domain::Password;
use tokio::sync::oneshot;

/// OWASP password storage cheat sheet: m=19456 KiB, t=2, p=1.
pub const M_COST: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// A hashing thread keeps its memory between hashes (no 19 MiB allocation,
/// zeroing and page faults per hash) and gives it back after this long idle.
const KEEP_MEMORY: Duration = Duration::from_secs(2);

/// Buffers at least this large (in 1 KiB blocks: 33 MiB) are served by
/// `mmap` and returned to the OS on free, whatever the allocator's dynamic
/// threshold (glibc caps it at 32 MiB), so an idle API shrinks back. Only
/// the blocks in use are ever touched, so the rest costs no memory.
const MIN_CAPACITY_BLOCKS: usize = 33 * 1024;

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

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// The queue the hashing threads take jobs from. Dropping the last
/// `PasswordHasher` closes it and the threads exit.
struct Pool {
    queue: Arc<(Mutex<Queue>, Condvar)>,
}

impl Pool {
    fn start(threads: usize) -> anyhow::Result<Self> {
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&queue))
                .map_err(|e| anyhow::anyhow!("cannot start hashing thread: {e}"))?;
        }
        Ok(Self { queue })
    }

    fn submit(&self, job: Job) {
        let (lock, ready) = &*self.queue;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .push_back(job);
        ready.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let (lock, ready) = &*self.queue;
        lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        ready.notify_all();
    }
}

/// The argon2 working memory of one thread, reused from hash to hash.
#[derive(Default)]
struct Memory(Vec<Block>);

impl Memory {
    fn blocks(&mut self, n: usize) -> &mut [Block] {
        if self.0.len() < n {
            let mut fresh = Vec::with_capacity(n.max(MIN_CAPACITY_BLOCKS));
            fresh.resize(n, Block::new());
            self.0 = fresh;
        }
        &mut self.0[..n]
    }
}

/// A hashing thread: take jobs until the pool closes; free the memory
/// when idle.
fn work(queue: &(Mutex<Queue>, Condvar)) {
    let (lock, ready) = queue;
    let mut memory = Memory::default();
    loop {
        let job = {
            let mut q = lock.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                let (guard, timeout) = ready
                    .wait_timeout(q, KEEP_MEMORY)
                    .unwrap_or_else(PoisonError::into_inner);
                q = guard;
                if timeout.timed_out() && q.jobs.is_empty() {
                    memory = Memory::default();
                }
            }
        };
        job(&mut memory);
    }
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
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
            pool: Arc::new(Pool::start(concurrency.max(1))?),
            dummy: Arc::new(dummy),
        })
    }

    /// Run `f` on a hashing thread and wait for its answer. A job whose
    /// caller went away (client disconnected) is skipped.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.pool.submit(Box::new(move |memory| {
            if !tx.is_closed() {
                let _ = tx.send(f(memory));
            }
        }));
        rx.await
            .map_err(|_| anyhow::anyhow!("the hashing thread stopped"))
    }

    /// Hash a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let secret = password.expose().to_owned();
        let params = self.params.clone();
        self.run(move |memory| {
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
        self.run(move |memory| {
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

/// argon2id with `params` into a PHC string, in `memory`.
fn hash_with(
    params: &Params,
    secret: &[u8],
    salt: &SaltString,
    memory: &mut Memory,
) -> anyhow::Result<String> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = salt.as_salt();
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    let mut out = [0u8; 32];
    let len = params.output_len().unwrap_or(out.len()).min(out.len());
    argon
        .hash_password_into_with_memory(
            secret,
            salt_raw,
            &mut out[..len],
            memory.blocks(params.block_count()),
        )
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let output = Output::new(&out[..len]).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params
            .try_into()
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(salt),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Recompute `parsed` with its own algorithm, version and parameters for
/// `secret`, in `memory`; constant-time comparison.
fn verify_with(parsed: &PasswordHash<'_>, secret: &[u8], memory: &mut Memory) -> bool {
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(parsed) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let blocks = memory.blocks(params.block_count());
    if argon
        .hash_password_into_with_memory(secret, salt_raw, out, blocks)
        .is_err()
    {
        return false;
    }
    Output::new(out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

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

    /// The pool's own argon2 calls agree with the crate's PHC API both ways,
    /// including other algorithms and versions.
    #[tokio::test(flavor = "multi_thread")]
    async fn agrees_with_the_argon2_crate() {
        let h = PasswordHasher::new(1).expect("hasher");
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
        let h = PasswordHasher::new(2).expect("hasher");
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
        let queue = Arc::downgrade(&h.pool.queue);
        drop(h);
        for _ in 0..100 {
            if queue.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("hashing threads still running after the hasher was dropped");
    }
}
