//! The hashing threads: bounded, niced, and sharing no lock with request
//! handling. Why each choice was made is measured in BENCHMARKS.md
//! (section 2, "Login flood").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use super::argon::Memory;

/// A hashing thread keeps its memory between hashes (no 19 MiB allocation,
/// zeroing and page faults per hash) and gives it back after this long idle.
const KEEP_MEMORY: Duration = Duration::from_secs(2);

/// How often a caller looks for its answer once it is due.
const POLL: Duration = Duration::from_millis(1);

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
/// [`Pool::run`]). With a mutex-guarded queue and a tokio waker for the
/// answer, a low-priority hashing thread preempted inside either critical
/// section stalled async workers (priority inversion; BENCHMARKS.md,
/// section 2).
pub(super) struct Pool {
    pub(super) workers: Vec<Worker>,
    /// Recent wall time of one job in microseconds (moving average), to
    /// know when to look for an answer.
    job_micros: Arc<AtomicU64>,
}

pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
    /// Jobs queued or running on this thread.
    pub(super) load: Arc<AtomicUsize>,
    thread: std::thread::Thread,
}

impl Pool {
    pub(super) fn start(threads: usize, nice: i32) -> anyhow::Result<Self> {
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

    /// Run `f` on a hashing thread and wait for its answer. A job whose
    /// caller went away (client disconnected) is skipped.
    pub(super) async fn run<T: Send + 'static>(
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
        let expected = self.submit(Box::new(move |memory| {
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
