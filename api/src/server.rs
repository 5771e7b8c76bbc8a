//! The HTTP server under the router: hyper-util's auto builder (HTTP/1.1,
//! and HTTP/2 over cleartext when a client opens with the h2 preface, so a
//! proxy can speak h2 to it) with a timer, instead of `axum::serve`, which
//! sets no header-read timeout (slowloris).
//!
//! Per connection:
//! - the first request must start within `HEADER_READ_TIMEOUT` of the
//!   accept (a client that sends nothing, or only part of the h2 preface,
//!   is dropped);
//! - HTTP/1.1 headers must arrive within `HEADER_READ_TIMEOUT` (hyper's own
//!   timer; hyper starts it as soon as a connection waits for its next
//!   request, so an idle HTTP/1.1 connection also closes after it);
//! - with no request in flight for `IDLE_TIMEOUT`, the connection is shut
//!   down gracefully (HTTP/2: GOAWAY);
//! - at most `MAX_CONNECTIONS` are open: at the cap the server stops
//!   accepting, and new clients wait in the kernel's listen backlog.
//!
//! Shutdown: stop accepting, shut every connection down gracefully (a
//! request in flight finishes), return once all are closed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::ServingArgs;

/// Headers a request may carry before hyper itself refuses it (with an
/// empty 431). The router's own check (`http::middleware::header_limits`)
/// answers problem+json 431 above `MAX_HEADER_COUNT`, so this is higher.
const HYPER_MAX_HEADERS: usize = 2 * crate::http::middleware::MAX_HEADER_COUNT;

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u32,
    pub max_header_bytes: u32,
}

impl From<&ServingArgs> for Limits {
    fn from(a: &ServingArgs) -> Self {
        Self {
            header_read_timeout: a.header_read_timeout,
            idle_timeout: a.idle_timeout,
            max_connections: a.max_connections.max(1),
            max_header_bytes: a.max_header_bytes,
        }
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(HYPER_MAX_HEADERS);
    // h2 refuses header blocks above this with a bare error; leave room so
    // the router's MAX_HEADER_BYTES check answers with problem+json first.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.saturating_mul(4));
    builder
}

/// Serve `router` on `listener` until `shutdown` resolves, then drain.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let builder = builder(&limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut at_cap = false;
    loop {
        // Take a slot before accepting: at the cap, clients queue in the
        // kernel's backlog rather than being accepted and dropped.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => {
                at_cap = false;
                p
            }
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    metrics::counter!("gatehouse_http_connection_cap_reached_total").increment(1);
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "MAX_CONNECTIONS reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            builder.clone(),
            router.clone(),
            stream,
            remote,
            limits,
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every open connection holds a permit until it closes.
    let _ = permits.acquire_many(limits.max_connections).await;
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Default)]
struct Activity(Mutex<(usize, Option<Instant>)>);

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        if let Ok(mut a) = self.0.lock() {
            a.0 += 1;
        }
        InFlight(self.clone())
    }

    /// `None` while a request is in flight, else when the connection went
    /// idle (`opened` if it never served one).
    fn idle_since(&self, opened: Instant) -> Option<Instant> {
        let a = self.0.lock().ok()?;
        if a.0 > 0 {
            None
        } else {
            Some(a.1.unwrap_or(opened))
        }
    }
}

/// Ends a request (also when its future is dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut a) = self.0.0.lock() {
            a.0 = a.0.saturating_sub(1);
            a.1 = Some(Instant::now());
        }
    }
}

async fn connection(
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    stream: TcpStream,
    remote: SocketAddr,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info` did: ClientIp reads it.
            req.extensions_mut().insert(ConnectInfo(remote));
            let in_flight = activity.begin();
            let router = router.clone();
            async move {
                let res = router.oneshot(req.map(Body::new)).await;
                drop(in_flight);
                res
            }
        })
    };
    let opened = Instant::now();
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    // The first request must start within the header timeout.
    let mut deadline = opened + limits.header_read_timeout;
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, %remote, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !closing => {
                let _ = changed;
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                let Some(since) = activity.idle_since(opened) else {
                    // A request is running: REQUEST_TIMEOUT bounds it.
                    deadline = now + limits.idle_timeout;
                    continue;
                };
                let first = since == opened;
                let allowed = if first { limits.header_read_timeout } else { limits.idle_timeout };
                if since + allowed > now && !closing {
                    deadline = since + allowed;
                    continue;
                }
                if closing {
                    // Asked to close and still idle after a grace period
                    // (e.g. headers trickling in on h2): drop it.
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
                deadline = now + limits.header_read_timeout;
            }
        }
    }
}
