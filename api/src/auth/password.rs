//! argon2id hashing on a dedicated thread pool, off the async runtime, with
//! bounded concurrency and at a lower scheduling priority (`PASSWORD_HASH_NICE`),
//! so a login flood gets the CPU time that request handling leaves over.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use gatehouse_shared::domain::Password;

/// OWASP password storage cheat sheet: m=19456 KiB, t=2, p=1.
pub const M_COST: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// A hashing thread keeps its memory between hashes (no 19 MiB allocation,
/// zeroing and page faults per hash) and gives it back after this long idle.
const KEEP_MEMORY: Duration = Duration::from_secs(2);

/// How often a caller looks for its answer once it is due.
const POLL: Duration = Duration::from_millis(1);

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

/// The hashing threads. Each has its own queue; a job goes to the thread
/// with the fewest jobs waiting or running (all jobs cost about the same,
/// so this is as fair as one shared queue).
///
/// Nothing here lets a hashing thread hold a lock that request handling
/// needs: `mpsc::Sender::send` is lock-free while nobody blocks in `recv`
/// (the threads never do: they poll with `try_recv` and sleep with
/// `park_timeout`), and `Thread::unpark` is an atomic store and a futex
/// wake; answers go back through a channel the caller polls (see
/// [`PasswordHasher::run`]). With a mutex-guarded queue and a tokio waker
/// for the answer, a low-priority hashing thread preempted inside either
/// critical section stalled async workers (priority inversion: `GET /me`
/// p99 of 40-116 ms under a login flood, against 1.7 ms alone).
struct Pool {
    workers: Vec<Worker>,
    /// Recent wall time of one job in microseconds (moving average), to
    /// know when to look for an answer.
    job_micros: Arc<AtomicU64>,
}

struct Worker {
    jobs: mpsc::Sender<Job>,
    /// Jobs queued or running on this thread.
    load: Arc<AtomicUsize>,
    thread: std::thread::Thread,
}

impl Pool {
    fn start(threads: usize, nice: i32) -> anyhow::Result<Self> {
        let job_micros = Arc::new(AtomicU64::new(20_000));
        let workers = (0..threads)
            .map(|i| {
                let (jobs, rx) = mpsc::channel();
                let load = Arc::new(AtomicUsize::new(0));
                let counter = load.clone();
                let timing = job_micros.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("argon2-{i}"))
                    .spawn(move || {
                        lower_priority(nice);
                        work(&rx, &counter, &timing);
                    })
                    .map_err(|e| anyhow::anyhow!("cannot start hashing thread: {e}"))?;
                Ok(Worker {
                    jobs,
                    load,
                    thread: handle.thread().clone(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            workers,
            job_micros,
        })
    }

    /// Queue `job`; returns about how long until its answer is ready.
    fn submit(&self, job: Job) -> anyhow::Result<Duration> {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .ok_or_else(|| anyhow::anyhow!("no hashing thread"))?;
        let ahead = worker.load.fetch_add(1, Ordering::Relaxed);
        worker
            .jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the hashing thread stopped"))?;
        worker.thread.unpark();
        let micros = self.job_micros.load(Ordering::Relaxed);
        Ok(Duration::from_micros(
            micros.saturating_mul(ahead as u64 + 1),
        ))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropping the senders disconnects the queues; wake the threads so
        // they notice and exit.
        for worker in self.workers.drain(..) {
            drop(worker.jobs);
            worker.thread.unpark();
        }
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

/// Give this thread the scheduling priority `nice` (0 = unchanged), so that
/// under a login flood the scheduler runs request handling first and hashes
/// with the CPU time left over. On Linux `setpriority(PRIO_PROCESS, 0)`
/// applies to the calling thread only. Raising the value needs no
/// privilege; a failure only costs the priority.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    if let Err(e) = rustix::process::setpriority_process(None, nice) {
        tracing::warn!(error = %e, nice, "cannot lower the priority of a hashing thread");
    }
}

/// A hashing thread: take jobs until the pool closes; free the memory
/// when idle.
fn work(jobs: &mpsc::Receiver<Job>, load: &AtomicUsize, job_micros: &AtomicU64) {
    let mut memory = Memory::default();
    let mut idle_since = Instant::now();
    loop {
        match jobs.try_recv() {
            Ok(job) => {
                let start = Instant::now();
                job(&mut memory);
                load.fetch_sub(1, Ordering::Relaxed);
                idle_since = Instant::now();
                let took = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                let avg = job_micros.load(Ordering::Relaxed);
                job_micros.store(
                    (avg.saturating_mul(7) / 8).saturating_add(took / 8),
                    Ordering::Relaxed,
                );
            }
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                let idle = idle_since.elapsed();
                if idle >= KEEP_MEMORY {
                    memory = Memory::default();
                    std::thread::park();
                } else {
                    // An `unpark` that came before this still wakes it.
                    std::thread::park_timeout(KEEP_MEMORY - idle);
                }
            }
        }
    }
}

impl PasswordHasher {
    /// `concurrency` hashing threads at scheduling priority `nice`
    /// (0..=19; 0 leaves it unchanged).
    pub fn new(concurrency: usize, nice: i32) -> anyhow::Result<Self> {
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
            pool: Arc::new(Pool::start(concurrency.max(1), nice)?),
            dummy: Arc::new(dummy),
        })
    }

    /// Run `f` on a hashing thread and wait for its answer. A job whose
    /// caller went away (client disconnected) is skipped.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        // The answer comes back through a channel the caller polls, not
        // through a waker: waking a tokio task from a foreign thread takes
        // the runtime's injection-queue lock, and a low-priority hashing
        // thread preempted while holding it stalls every async worker.
        let (tx, rx) = mpsc::sync_channel(1);
        let caller = Arc::new(());
        let interest = Arc::downgrade(&caller);
        let expected = self.pool.submit(Box::new(move |memory| {
            // Skip the work when the caller went away (client disconnected).
            if interest.upgrade().is_some() {
                let _ = tx.send(f(memory));
            }
        }))?;
        // Sleep through most of the expected wait, then look every POLL.
        // With more time, this would signal answers through an eventfd the
        // runtime's I/O driver watches (lock-free, no polling).
        tokio::time::sleep(expected.mul_f32(0.9)).await;
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match rx.try_recv() {
                Ok(answer) => return Ok(answer),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    anyhow::bail!("the hashing thread stopped")
                }
            }
        }
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
        let h = PasswordHasher::new(2, 0).expect("hasher");
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
        let h = PasswordHasher::new(1, 0).expect("hasher");
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
        let h = PasswordHasher::new(2, 0).expect("hasher");
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
}
