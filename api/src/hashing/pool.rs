//! The hashing threads: bounded, niced, and sharing no lock with request
//! handling. Why each choice was made is measured in BENCHMARKS.md
//! (section 2, "Login flood").

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Overloaded;
use super::argon::Memory;

/// A hashing thread keeps its memory between hashes (no 19 MiB allocation,
/// zeroing and page faults per hash) and gives it back after this long idle.
const KEEP_MEMORY: Duration = Duration::from_secs(2);

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// An answer ready to hand over, run on the runtime by the dispatcher.
type Delivery = Box<dyn FnOnce() + Send>;

/// The hashing threads. Each has its own queue; a job goes to the thread
/// with the fewest jobs waiting or running (all jobs cost about the same,
/// so this is as fair as one shared queue). At most `max_queued` jobs wait
/// or run in all; past that, [`Pool::run`] fails with [`Overloaded`].
///
/// Nothing here lets a hashing thread hold a lock that request handling
/// needs: `mpsc::Sender::send` is lock-free while nobody blocks in `recv`
/// (nobody does: the threads poll with `try_recv` and sleep with
/// `park_timeout`, the dispatcher drains with `try_recv`), `Thread::unpark`
/// is an atomic store and a futex wake, and an answer goes back as a
/// delivery on a channel plus a one-byte `write(2)` to a socket (see
/// [`Answers`]). With a mutex-guarded queue and a tokio waker for the
/// answer, a low-priority hashing thread preempted inside either critical
/// section stalled async workers (priority inversion; BENCHMARKS.md,
/// section 2).
pub(super) struct Pool {
    pub(super) workers: Vec<Worker>,
    /// Recent wall time of one job in microseconds (moving average), for
    /// `Retry-After` when the queue is full.
    job_micros: Arc<AtomicU64>,
    /// Jobs waiting or running on every thread (each job gives its place
    /// back itself, before its answer is delivered).
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    answers: Answers,
}

pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
    /// Jobs queued or running on this thread.
    pub(super) load: Arc<AtomicUsize>,
    thread: std::thread::Thread,
}

/// The way back: a hashing thread sends a [`Delivery`] and rings `bell`
/// (one byte `write(2)` on a non-blocking Unix socket pair: no user-space
/// lock, no task to wake; an eventfd would do the same but needs `unsafe`
/// to register with tokio). One dispatcher task on the runtime waits on
/// the other end through tokio's I/O driver (epoll) and runs the
/// deliveries, which complete each caller's oneshot. So a waker is only
/// ever called from a runtime thread at normal priority, and no caller
/// polls.
struct Answers {
    done: mpsc::Sender<Delivery>,
    bell: Arc<UnixStream>,
    /// Taken by the dispatcher when the first job is submitted (that is
    /// inside the runtime, whose I/O driver must watch the socket).
    inbox: Mutex<Option<(mpsc::Receiver<Delivery>, UnixStream)>>,
    started: AtomicBool,
}

fn ring(bell: &UnixStream) {
    // WouldBlock means the socket is full of unread rings: the dispatcher
    // is due to wake anyway.
    let _ = (&*bell).write(&[1]);
}

impl Pool {
    pub(super) fn start(threads: usize, nice: i32, max_queued: usize) -> anyhow::Result<Self> {
        let job_micros = Arc::new(AtomicU64::new(20_000));
        let queued = Arc::new(AtomicUsize::new(0));
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
        let (bell, listener) = UnixStream::pair()
            .and_then(|(a, b)| {
                a.set_nonblocking(true)?;
                b.set_nonblocking(true)?;
                Ok((a, b))
            })
            .map_err(|e| anyhow::anyhow!("cannot create the hashing pool's socket pair: {e}"))?;
        let (done, inbox) = mpsc::channel();
        Ok(Self {
            workers,
            job_micros,
            queued,
            max_queued: max_queued.max(1),
            answers: Answers {
                done,
                bell: Arc::new(bell),
                inbox: Mutex::new(Some((inbox, listener))),
                started: AtomicBool::new(false),
            },
        })
    }

    /// Queue `job` on the least-loaded thread, unless the pool is full.
    fn submit(&self, job: Job) -> anyhow::Result<()> {
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        if ahead >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("gatehouse_password_hash_rejected_total").increment(1);
            // About how long until the queue has drained.
            let micros = self.job_micros.load(Ordering::Relaxed);
            let threads = self.workers.len().max(1) as u64;
            let wait = micros.saturating_mul(ahead as u64) / threads;
            return Err(anyhow::Error::new(Overloaded {
                retry_after: wait.div_ceil(1_000_000).max(1),
            }));
        }
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
        else {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            anyhow::bail!("no hashing thread");
        };
        worker.load.fetch_add(1, Ordering::Relaxed);
        if worker.jobs.send(job).is_err() {
            worker.load.fetch_sub(1, Ordering::Relaxed);
            self.queued.fetch_sub(1, Ordering::AcqRel);
            anyhow::bail!("the hashing thread stopped");
        }
        worker.thread.unpark();
        Ok(())
    }

    /// Start the dispatcher on the current runtime, once.
    fn start_dispatcher(&self) -> anyhow::Result<()> {
        if self.answers.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut inbox = self.answers.inbox.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, listener)) = inbox.as_ref() else {
            return Ok(()); // another caller started it meanwhile
        };
        // Registered before anything is taken: on failure (no I/O driver)
        // the next call tries again instead of waiting for ever.
        let bell = listener
            .try_clone()
            .and_then(tokio::net::UnixStream::from_std)
            .map_err(|e| anyhow::anyhow!("cannot watch the hashing pool's socket: {e}"))?;
        if let Some((receiver, _)) = inbox.take() {
            tokio::spawn(dispatch(bell, receiver));
            self.answers.started.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Run `f` on a hashing thread and wait for its answer. A job whose
    /// caller went away (client disconnected) is skipped.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        self.start_dispatcher()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = self.answers.done.clone();
        let bell = self.answers.bell.clone();
        let queued = self.queued.clone();
        self.submit(Box::new(move |memory| {
            // Skip the work when the caller went away (an atomic load).
            let answer = (!tx.is_closed()).then(|| f(memory));
            // Make room before the caller hears back, so a caller that
            // hashes again right away never finds its own job still
            // counted (the niced thread may be preempted after the ring).
            queued.fetch_sub(1, Ordering::AcqRel);
            if let Some(answer) = answer {
                // Not `tx.send` here: that wakes the caller's task from
                // this niced thread (the runtime's locks; see the type's
                // comment).
                let _ = done.send(Box::new(move || {
                    let _ = tx.send(answer);
                }));
                ring(&bell);
            }
        }))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the hashing thread stopped"))
    }
}

/// The dispatcher: wait for the bell, empty it, then run every delivery
/// queued. Emptying the bell before draining means a ring that comes after
/// the drain starts leaves the bell readable, so no answer waits for the
/// next one. Ends when the pool and its jobs are gone (end of file).
async fn dispatch(bell: tokio::net::UnixStream, inbox: mpsc::Receiver<Delivery>) {
    let mut rings = [0u8; 256];
    loop {
        if bell.readable().await.is_err() {
            return;
        }
        loop {
            match bell.try_read(&mut rings) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        loop {
            match inbox.try_recv() {
                Ok(deliver) => deliver(),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropping the senders disconnects the queues; wake the threads so
        // they notice and exit. The dispatcher ends when the last job (and
        // with it the last handle on the bell) is gone.
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
