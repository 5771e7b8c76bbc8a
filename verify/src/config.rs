//! Settings for a [`Verifier`](crate::Verifier).

use std::fmt;
use std::time::Duration;

/// How a [`Verifier`](crate::Verifier) reaches Gatehouse and what it accepts.
///
/// Build it with [`Config::new`] and the `with_*` methods; every setting not
/// named keeps a default that suits a service next to a default Gatehouse:
///
/// | setting | default |
/// |---|---|
/// | issuer / audience | `gatehouse` / `gatehouse` |
/// | Redis | none (HTTP polling only); namespace `gatehouse` |
/// | poll interval (no Redis, or Redis down) | 1 s |
/// | safety-net poll while subscribed to Redis | 30 s |
/// | minimum interval between JWKS refetches on an unknown `kid` | 5 s |
/// | max access-token lifetime | 1 h |
/// | leeway on `exp` / `nbf` / `iat` | 5 s |
/// | HTTP timeout | 5 s |
///
/// ```
/// use std::time::Duration;
/// use gatehouse_verify::Config;
///
/// let config = Config::new("http://gatehouse:8080")
///     .with_redis("redis://redis:6379", "gatehouse")
///     .with_poll_interval(Duration::from_millis(500));
/// assert_eq!(config.jwks_url(), "http://gatehouse:8080/.well-known/jwks.json");
/// assert_eq!(config.redis_channel().as_deref(), Some("gatehouse:revocations"));
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) base_url: String,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) redis_url: Option<String>,
    pub(crate) redis_namespace: String,
    pub(crate) poll_interval: Duration,
    pub(crate) safety_poll_interval: Duration,
    pub(crate) jwks_min_refetch_interval: Duration,
    pub(crate) max_token_lifetime: Duration,
    pub(crate) leeway: Duration,
    pub(crate) http_timeout: Duration,
    pub(crate) redis_max_backoff: Duration,
    pub(crate) stale_after: Duration,
    pub(crate) events_capacity: usize,
    pub(crate) http_client: Option<reqwest::Client>,
}

impl Config {
    /// Settings for the Gatehouse at `base_url` (its `PUBLIC_URL`, e.g.
    /// `http://gatehouse:8080`; a trailing `/` is ignored). The JWKS is read
    /// from `{base_url}/.well-known/jwks.json` and the revocation feed from
    /// `{base_url}/.well-known/revocations`.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base_url: String = base_url.into();
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            issuer: "gatehouse".to_owned(),
            audience: "gatehouse".to_owned(),
            redis_url: None,
            redis_namespace: "gatehouse".to_owned(),
            poll_interval: Duration::from_secs(1),
            safety_poll_interval: Duration::from_secs(30),
            jwks_min_refetch_interval: Duration::from_secs(5),
            max_token_lifetime: Duration::from_secs(3600),
            leeway: Duration::from_secs(5),
            http_timeout: Duration::from_secs(5),
            redis_max_backoff: Duration::from_secs(10),
            stale_after: Duration::from_secs(10),
            events_capacity: 1024,
            http_client: None,
        }
    }

    /// The `iss` every token must carry (Gatehouse's `JWT_ISSUER`).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The `aud` every token must carry (Gatehouse's audience).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Follow revocations through Redis pub/sub on channel
    /// `{namespace}:revocations` (`namespace` = Gatehouse's `REDIS_NAMESPACE`).
    /// Without it the verifier polls the HTTP feed every poll interval.
    pub fn with_redis(mut self, url: impl Into<String>, namespace: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self.redis_namespace = namespace.into();
        self
    }

    /// How often the HTTP feed is polled when there is no Redis subscription
    /// (no Redis configured, or Redis unreachable). This bounds how late a
    /// revocation is seen in that mode.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How often the HTTP feed is polled while subscribed to Redis, as a
    /// safety net for a message Gatehouse could not publish.
    pub fn with_safety_poll_interval(mut self, interval: Duration) -> Self {
        self.safety_poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The floor between two JWKS fetches triggered by an unknown `kid`, so a
    /// flood of tokens with made-up `kid`s costs Gatehouse at most one request
    /// per interval.
    pub fn with_jwks_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.jwks_min_refetch_interval = interval;
        self
    }

    /// The longest access-token lifetime Gatehouse issues (its
    /// `ACCESS_TOKEN_TTL` or more). Revocation entries are forgotten once
    /// every token they concern has expired, which keeps memory bounded; a
    /// token whose `exp - iat` exceeds this is refused, since a revocation of
    /// it might already be forgotten.
    pub fn with_max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = lifetime;
        self
    }

    /// Clock-skew allowance on `exp`, `nbf` and `iat` (whole seconds).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Timeout of every HTTP request to Gatehouse (and of a Redis connect).
    pub fn with_http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// The longest wait between two attempts to resubscribe to Redis (the
    /// backoff starts at 100 ms and doubles up to this).
    pub fn with_redis_max_backoff(mut self, backoff: Duration) -> Self {
        self.redis_max_backoff = backoff.max(Duration::from_millis(100));
        self
    }

    /// While not subscribed to Redis, [`Status::ready`](crate::Status::ready)
    /// turns false when the last successful feed poll is older than this.
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    /// Capacity of the [`revocations`](crate::Verifier::revocations) broadcast
    /// channel; a receiver further behind gets `Lagged`.
    pub fn with_events_capacity(mut self, capacity: usize) -> Self {
        self.events_capacity = capacity.max(1);
        self
    }

    /// Use this HTTP client (e.g. with custom TLS roots or a proxy) instead
    /// of a default one. Its own timeout applies; the verifier still bounds
    /// each request by the HTTP timeout.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// `{base_url}/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base_url)
    }

    /// `{base_url}/.well-known/revocations`.
    pub fn feed_url(&self) -> String {
        format!("{}/.well-known/revocations", self.base_url)
    }

    /// `{namespace}:revocations` when Redis is configured.
    pub fn redis_channel(&self) -> Option<String> {
        self.redis_url
            .as_ref()
            .map(|_| format!("{}:revocations", self.redis_namespace))
    }

    /// The configured maximum access-token lifetime.
    pub fn max_token_lifetime(&self) -> Duration {
        self.max_token_lifetime
    }
}

// By hand, so a Redis URL with a password never reaches a log.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("redis", &self.redis_url.as_ref().map(|_| "[configured]"))
            .field("redis_namespace", &self.redis_namespace)
            .field("poll_interval", &self.poll_interval)
            .field("safety_poll_interval", &self.safety_poll_interval)
            .field("jwks_min_refetch_interval", &self.jwks_min_refetch_interval)
            .field("max_token_lifetime", &self.max_token_lifetime)
            .field("leeway", &self.leeway)
            .field("http_timeout", &self.http_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_channel_follow_the_contract() {
        let c = Config::new("https://auth.example.com/");
        assert_eq!(
            c.jwks_url(),
            "https://auth.example.com/.well-known/jwks.json"
        );
        assert_eq!(
            c.feed_url(),
            "https://auth.example.com/.well-known/revocations"
        );
        assert_eq!(c.redis_channel(), None);
        let c = c.with_redis("redis://:secret@r:6379", "ns1");
        assert_eq!(c.redis_channel().as_deref(), Some("ns1:revocations"));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
