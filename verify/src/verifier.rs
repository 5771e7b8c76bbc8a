//! The [`Verifier`]: checks tokens against the cached JWKS and the followed
//! revocation feed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::bearer::{AuthError, bearer_token};
use crate::feed::{self, FeedMode, FeedState};
use crate::jwks::KeyStore;
use crate::revocation::Revocations;
use crate::util::{lock, now_secs};
use crate::{Claims, Config, FromClaims, Revocation, StartError, VerifyError};

/// The only `typ` an access token may carry (refresh tokens are `rt+jwt`).
const ACCESS_TYP: &str = "at+jwt";
/// Longer "tokens" are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// State shared by the handles and the background tasks. The tasks hold
/// this, never [`Inner`], so dropping the last [`Verifier`] stops them.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) http: reqwest::Client,
    pub(crate) keys: KeyStore,
    pub(crate) revocations: Revocations,
    pub(crate) feed: Mutex<FeedState>,
    /// Wakes the poller for an immediate HTTP catch-up.
    pub(crate) catch_up: Notify,
    validation: Validation,
    leeway_secs: i64,
    max_lifetime_secs: i64,
}

struct Inner {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The tasks also stop when this sender is dropped; say it anyway.
        let _ = self.shutdown.send(true);
    }
}

/// Verifies Gatehouse access tokens. Cheap to clone (one `Arc`); put it in
/// your axum state. Background tasks (revocation feed, JWKS refresh) run
/// until [`Verifier::shutdown`] or until the last clone is dropped.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.shared.config)
            .finish_non_exhaustive()
    }
}

/// A snapshot of the verifier's health, for a readiness probe or metrics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// How revocations currently arrive.
    pub mode: FeedMode,
    /// Subscribed to Redis and caught up, or the last successful HTTP feed
    /// sync is recent (see [`Config::with_stale_after`]). While false,
    /// revocations may be late.
    pub ready: bool,
    /// The feed cursor the verifier will resume from.
    pub cursor: Option<i64>,
    /// When the HTTP feed was last read successfully.
    pub last_sync: Option<SystemTime>,
    /// How long ago that was.
    pub last_sync_age: Option<Duration>,
    /// Sessions with a live revocation entry (bounded by the token lifetime).
    pub revoked_sessions: usize,
    /// HTTP feed requests made so far.
    pub feed_requests: u64,
    /// Messages received on the Redis channel so far.
    pub redis_messages: u64,
    /// Usable keys in the cached JWKS.
    pub jwks_keys: usize,
    /// When the JWKS was last fetched successfully.
    pub jwks_fetched_at: Option<SystemTime>,
    /// JWKS fetch attempts so far (start, expiry, unknown `kid`).
    pub jwks_fetches: u64,
}

/// The JOSE header members we check ourselves before any crypto.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<IgnoredAny>,
}

impl Verifier {
    /// Fetch the JWKS and the whole revocation feed once, subscribe to Redis
    /// when configured, then start following both in the background.
    ///
    /// Fails when either first fetch fails: until then nothing can be
    /// trusted. A Redis that is down at start is not fatal: the verifier
    /// polls the HTTP feed and keeps trying to subscribe.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let http = match config.http_client.clone() {
            Some(client) => client,
            None => reqwest::Client::builder()
                .connect_timeout(config.http_timeout)
                .timeout(config.http_timeout)
                .user_agent(concat!("gatehouse-verify/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| StartError::HttpClient(e.to_string()))?,
        };
        let redis = match &config.redis_url {
            Some(url) => Some(
                redis::Client::open(url.as_str())
                    .map_err(|_| StartError::Config("the Redis URL does not parse".to_owned()))?,
            ),
            None => None,
        };

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = config.leeway.as_secs();

        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let keep_secs = secs(config.max_token_lifetime).saturating_add(secs(config.leeway));
        let shared = Arc::new(Shared {
            keys: KeyStore::new(
                http.clone(),
                config.jwks_url(),
                config.http_timeout,
                config.jwks_min_refetch_interval,
            ),
            revocations: Revocations::new(keep_secs, config.events_capacity),
            feed: Mutex::new(FeedState::new(FeedMode::Polling)),
            catch_up: Notify::new(),
            leeway_secs: secs(config.leeway),
            max_lifetime_secs: secs(config.max_token_lifetime),
            validation,
            http,
            config,
        });

        shared
            .keys
            .refresh()
            .await
            .map_err(|e| e.at(shared.keys.url()))?;

        // Subscribe before the first feed read, so nothing committed in
        // between can slip through.
        let channel = shared.config.redis_channel().unwrap_or_default();
        let subscription = match &redis {
            Some(client) => {
                match feed::subscribe(client, &channel, shared.config.http_timeout).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation channel unavailable at start; polling the HTTP feed");
                        None
                    }
                }
            }
            None => None,
        };
        feed::sync_http(&shared)
            .await
            .map_err(|e| e.at(&shared.config.feed_url()))?;
        if subscription.is_some() {
            lock::plain(&shared.feed).mode = FeedMode::Redis;
        }

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(feed::poller(shared.clone(), shutdown_rx.clone())),
            tokio::spawn(jwks_refresher(shared.clone(), shutdown_rx.clone())),
        ];
        if let Some(client) = redis {
            tasks.push(tokio::spawn(feed::listener(
                shared.clone(),
                client,
                channel,
                subscription,
                shutdown_rx,
            )));
        }
        tracing::info!(
            mode = %lock::plain(&shared.feed).mode,
            keys = shared.keys.summary().0,
            "gatehouse-verify started"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                shutdown,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Verify an access token (the bare JWT, without `Bearer `).
    ///
    /// Checks, in order: the header (`alg` must be `EdDSA`, `typ` must be
    /// `at+jwt`, a `kid`, no `crit`), the key named by `kid` (refetching the
    /// JWKS once if unknown, at most once per minimum interval), that the
    /// header's `alg` matches the key's own, the signature, `iss`, `aud`,
    /// `exp`, `nbf` and `iat` (with the leeway), the lifetime bound, and
    /// finally the revocation state of the token's session.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let shared = &self.inner.shared;
        let header = read_header(token)?;
        if header.alg != "EdDSA" {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        if header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(VerifyError::WrongType);
        }
        if header.crit.is_some() {
            // We understand no extension, so a critical one must fail.
            return Err(VerifyError::Malformed);
        }
        let kid = header.kid.ok_or(VerifyError::MissingKeyId)?;
        let key = shared
            .keys
            .get_or_refetch(&kid)
            .await
            .ok_or(VerifyError::UnknownKey)?;
        // The key's own algorithm decides, never the header alone.
        if key.alg != Algorithm::EdDSA {
            return Err(VerifyError::AlgorithmMismatch);
        }
        // `validation` allows EdDSA only, which is `key.alg` (checked above).
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &shared.validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        if data.header.alg != key.alg {
            return Err(VerifyError::AlgorithmMismatch);
        }
        let claims = data.claims;
        if claims.iat > now_secs().saturating_add(shared.leeway_secs) {
            return Err(VerifyError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > shared.max_lifetime_secs {
            return Err(VerifyError::LifetimeTooLong);
        }
        if shared.revocations.is_revoked(claims.sid, claims.iat) {
            return Err(VerifyError::Revoked);
        }
        Ok(claims)
    }

    /// [`verify`](Self::verify), then convert the claims with [`FromClaims`].
    pub async fn verify_as<C: FromClaims>(&self, token: &str) -> Result<C, VerifyError> {
        C::from_claims(self.verify(token).await?)
    }

    /// Verify the `Authorization: Bearer` token of a request (for servers
    /// that do not use the axum extractor). A missing or malformed header is
    /// [`AuthError::MissingToken`]; a refused token is
    /// [`AuthError::InvalidToken`].
    pub async fn verify_bearer(&self, headers: &http::HeaderMap) -> Result<Claims, AuthError> {
        let token = bearer_token(headers).ok_or(AuthError::MissingToken)?;
        self.verify(token).await.map_err(AuthError::InvalidToken)
    }

    /// Whether the session of already-verified claims has been revoked
    /// since (for long-lived connections; e.g. after a `Lagged` on
    /// [`revocations`](Self::revocations), re-check every open socket).
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        self.inner
            .shared
            .revocations
            .is_revoked(claims.sid, claims.iat)
    }

    /// Every revocation that tells the verifier something new, as it
    /// arrives (Redis or HTTP). Close a WebSocket when
    /// [`Revocation::applies_to`] its claims. On `RecvError::Lagged`, fall
    /// back to [`is_revoked`](Self::is_revoked) for every connection.
    pub fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.inner.shared.revocations.subscribe()
    }

    /// Resolves once the token these claims came from is revoked or stale
    /// (at once if it already is). For a WebSocket: `select!` on this next
    /// to the socket and close with 4401 when it fires.
    ///
    /// Each waiting call holds a [`revocations`](Self::revocations)
    /// receiver, so every revocation wakes every waiter once; a server with
    /// very many connections can instead run one task on `revocations()`
    /// and look the `sid` up in its own map.
    pub async fn revoked(&self, claims: &Claims) {
        // Subscribe first, then check: nothing can slip in between.
        let mut events = self.revocations();
        if self.is_revoked(claims) {
            return;
        }
        loop {
            match events.recv().await {
                Ok(r) if r.applies_to(claims) => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if self.is_revoked(claims) {
                        return;
                    }
                }
                // The sender lives as long as `self`: never happens.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }

    /// A snapshot of the follower and key cache state.
    pub fn status(&self) -> Status {
        let shared = &self.inner.shared;
        let (mode, cursor, last_sync, failing, feed_requests, redis_messages) = {
            let feed = lock::plain(&shared.feed);
            (
                feed.mode,
                feed.cursor,
                feed.last_sync,
                feed.sync_failing,
                feed.feed_requests,
                feed.redis_messages,
            )
        };
        let last_sync_age = last_sync.map(|(_, at)| at.elapsed());
        let recent = last_sync_age.is_some_and(|age| age <= shared.config.stale_after);
        let ready = match mode {
            // Subscribed and caught up; a failed catch-up is tolerated for
            // `stale_after` like a failed poll.
            FeedMode::Redis => !failing || recent,
            FeedMode::Polling => recent,
            FeedMode::Stopped => false,
        };
        let (jwks_keys, jwks_fetched_at, jwks_fetches) = shared.keys.summary();
        Status {
            mode,
            ready,
            cursor,
            last_sync: last_sync.map(|(at, _)| at),
            last_sync_age,
            revoked_sessions: shared.revocations.len(),
            feed_requests,
            redis_messages,
            jwks_keys,
            jwks_fetched_at,
            jwks_fetches,
        }
    }

    /// Shorthand for `status().ready`.
    pub fn is_ready(&self) -> bool {
        self.status().ready
    }

    /// The configuration this verifier runs with.
    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// Stop the background tasks and wait for them. Tokens still verify
    /// against the last known state, but revocations are no longer
    /// followed ([`Status::mode`] becomes `Stopped`); call this on the way out.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let tasks = std::mem::take(&mut *lock::plain(&self.inner.tasks));
        for task in tasks {
            let _ = task.await;
        }
        lock::plain(&self.inner.shared.feed).mode = FeedMode::Stopped;
    }
}

/// Decode and read the JOSE header; anything odd is `Malformed`.
fn read_header(token: &str) -> Result<RawHeader, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| VerifyError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| VerifyError::Malformed)
}

fn map_jwt_error(kind: &ErrorKind) -> VerifyError {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidKeyFormat => {
            VerifyError::BadSignature
        }
        ErrorKind::ExpiredSignature => VerifyError::Expired,
        ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
        ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
        ErrorKind::InvalidAudience => VerifyError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            VerifyError::AlgorithmMismatch
        }
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::Json(_) => VerifyError::InvalidClaims,
        _ => VerifyError::Malformed,
    }
}

/// Refresh the JWKS when its `max-age` runs out (unknown `kid`s trigger
/// their own, rate-limited refetch).
async fn jwks_refresher(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let due = shared.keys.refresh_due();
        if due > std::time::Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = shutdown.changed() => return,
            }
            // An unknown-kid refetch may have moved the due time meanwhile.
            continue;
        }
        let result = tokio::select! {
            r = shared.keys.refresh() => r,
            _ = shutdown.changed() => return,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "JWKS refresh failed; keeping the cached keys");
        }
    }
}
