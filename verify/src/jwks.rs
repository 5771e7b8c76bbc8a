//! The published keys: parsing the JWKS strictly, caching it, and refetching
//! it on expiry or on an unknown `kid` (rate-limited).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::error::FetchError;
use crate::util::lock;

/// Used when the JWKS answer has no `Cache-Control: max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Never keep a key set longer than this, whatever `max-age` says.
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// A `kid` longer than this is not worth a refetch.
pub(crate) const MAX_KID_LEN: usize = 256;

/// One usable public key.
pub(crate) struct VerifyKey {
    /// The algorithm the key's own JWK pins (`alg`, or implied by `kty`/`crv`).
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The JWK members we read. Unknown members are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// Parse a JWKS document into usable keys by `kid`.
///
/// A key is kept only if it is an Ed25519 signing key (`kty: OKP`,
/// `crv: Ed25519`, `alg: EdDSA` when present, `use: sig` when present) whose
/// `x` is exactly 32 bytes: `DecodingKey::from_jwk` checks none of this,
/// and a short `x` panics inside jsonwebtoken. Symmetric keys and other
/// algorithms are skipped; a `kid` that appears twice is dropped (ambiguous).
pub(crate) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<VerifyKey>>, String> {
    let doc: RawJwks =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys: HashMap<String, Arc<VerifyKey>> = HashMap::new();
    let mut duplicate = Vec::new();
    for value in doc.keys {
        let Ok(raw) = serde_json::from_value::<RawJwk>(value) else {
            tracing::warn!("skipping an unreadable JWK");
            continue;
        };
        let Some(kid) = raw
            .kid
            .clone()
            .filter(|k| !k.is_empty() && k.len() <= MAX_KID_LEN)
        else {
            tracing::warn!("skipping a JWK without a usable kid");
            continue;
        };
        match parse_key(&raw) {
            Ok(key) => {
                if keys.insert(kid.clone(), Arc::new(key)).is_some() {
                    duplicate.push(kid);
                }
            }
            Err(why) => tracing::warn!(kid = %kid, why, "skipping a JWK"),
        }
    }
    for kid in duplicate {
        tracing::warn!(kid = %kid, "two JWKs share a kid; using neither");
        keys.remove(&kid);
    }
    Ok(keys)
}

fn parse_key(raw: &RawJwk) -> Result<VerifyKey, &'static str> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signing key");
    }
    match (raw.kty.as_deref(), raw.crv.as_deref()) {
        (Some("OKP"), Some("Ed25519")) => {}
        (Some("oct"), _) => return Err("symmetric key (never trusted from a JWKS)"),
        _ => return Err("not an Ed25519 key"),
    }
    // The key's own alg decides; `EdDSA` is the only algorithm for OKP/Ed25519.
    if raw.alg.as_deref().is_some_and(|a| a != "EdDSA") {
        return Err("alg does not match kty/crv");
    }
    let x = raw.x.as_deref().ok_or("no x")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(x)
        .map_err(|_| "x is not base64url")?;
    if bytes.len() != 32 {
        return Err("x is not 32 bytes");
    }
    Ok(VerifyKey {
        alg: Algorithm::EdDSA,
        key: DecodingKey::from_ed_der(&bytes),
    })
}

/// `max-age` from a `Cache-Control` value; `no-store`/`no-cache` mean 0.
pub(crate) fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    let value = cache_control?;
    let mut found = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            found = secs
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    found
}

/// The cached key set and when it must be refreshed.
struct Cached {
    keys: Arc<HashMap<String, Arc<VerifyKey>>>,
    etag: Option<String>,
    fetched_at: Option<SystemTime>,
    refresh_due: Instant,
}

/// Keys by `kid`, refreshed on expiry and (rate-limited) on an unknown `kid`.
pub(crate) struct KeyStore {
    http: reqwest::Client,
    url: String,
    timeout: Duration,
    min_refetch: Duration,
    cached: RwLock<Cached>,
    /// Held while fetching; holds the instant of the last unknown-`kid` refetch.
    gate: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

/// What one fetch found.
enum Fetched {
    Keys {
        keys: HashMap<String, Arc<VerifyKey>>,
        etag: Option<String>,
        max_age: Option<Duration>,
    },
    NotModified {
        max_age: Option<Duration>,
    },
}

impl KeyStore {
    pub(crate) fn new(
        http: reqwest::Client,
        url: String,
        timeout: Duration,
        min_refetch: Duration,
    ) -> Self {
        Self {
            http,
            url,
            timeout,
            min_refetch,
            cached: RwLock::new(Cached {
                keys: Arc::new(HashMap::new()),
                etag: None,
                fetched_at: None,
                refresh_due: Instant::now(),
            }),
            gate: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The key for `kid` from the cache, without any fetch.
    pub(crate) fn cached(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        lock::read(&self.cached).keys.get(kid).cloned()
    }

    /// The key for `kid`; on a miss, refetch the JWKS once unless a fetch
    /// happened less than the minimum interval ago. Concurrent misses wait
    /// for one fetch instead of each making their own.
    pub(crate) async fn get_or_refetch(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if kid.len() > MAX_KID_LEN {
            return None;
        }
        let mut last = self.gate.lock().await;
        // Someone else's fetch may have brought it while we waited.
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return None;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.fetch_and_store().await {
            tracing::warn!(error = %e, "JWKS refetch for an unknown kid failed");
        }
        drop(last);
        self.cached(kid)
    }

    /// Fetch now (at start and when the cache expires).
    /// Not counted against the unknown-`kid` floor: a key rotated in right
    /// after a scheduled refresh must not be refused for the whole interval.
    pub(crate) async fn refresh(&self) -> Result<(), FetchError> {
        let _serialized = self.gate.lock().await;
        let result = self.fetch_and_store().await;
        if result.is_err() {
            // Retry after the floor; keep the keys we have meanwhile.
            lock::write(&self.cached).refresh_due =
                Instant::now() + self.min_refetch.max(Duration::from_secs(1));
        }
        result
    }

    /// When the background task should refresh next.
    pub(crate) fn refresh_due(&self) -> Instant {
        lock::read(&self.cached).refresh_due
    }

    /// (number of keys, time of the last successful fetch, fetch attempts).
    pub(crate) fn summary(&self) -> (usize, Option<SystemTime>, u64) {
        let cached = lock::read(&self.cached);
        (
            cached.keys.len(),
            cached.fetched_at,
            self.fetches.load(Ordering::Relaxed),
        )
    }

    async fn fetch_and_store(&self) -> Result<(), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let etag = lock::read(&self.cached).etag.clone();
        let fetched = self.fetch(etag).await?;
        let mut cached = lock::write(&self.cached);
        let max_age = match fetched {
            Fetched::Keys {
                keys,
                etag,
                max_age,
            } => {
                if keys.is_empty() {
                    tracing::warn!("the JWKS has no usable EdDSA key; every token will be refused");
                }
                cached.keys = Arc::new(keys);
                cached.etag = etag;
                max_age
            }
            Fetched::NotModified { max_age } => max_age,
        };
        cached.fetched_at = Some(SystemTime::now());
        let floor = self.min_refetch.max(Duration::from_secs(1));
        let ttl = max_age
            .unwrap_or(DEFAULT_MAX_AGE)
            .clamp(floor, MAX_MAX_AGE.max(floor));
        cached.refresh_due = Instant::now() + ttl;
        Ok(())
    }

    async fn fetch(&self, etag: Option<String>) -> Result<Fetched, FetchError> {
        let mut request = self.http.get(&self.url).timeout(self.timeout);
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await?;
        let headers = response.headers();
        let max_age = max_age(
            headers
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        if response.status() == http::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified { max_age });
        }
        if !response.status().is_success() {
            return Err(FetchError::Transport(format!(
                "status {}",
                response.status()
            )));
        }
        let etag = headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await?;
        let keys = parse_jwks(&body).map_err(FetchError::Invalid)?;
        Ok(Fetched::Keys {
            keys,
            etag,
            max_age,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn jwks(keys: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn keeps_only_ed25519_signing_keys_with_32_byte_x() {
        let short_x = URL_SAFE_NO_PAD.encode([1u8; 31]);
        let long_x = URL_SAFE_NO_PAD.encode([1u8; 33]);
        let keys = parse_jwks(&jwks(json!([
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"good","alg":"EdDSA","use":"sig"},
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"no-alg"},
            {"kty":"OKP","crv":"Ed25519","x":short_x,"kid":"short","alg":"EdDSA"},
            {"kty":"OKP","crv":"Ed25519","x":long_x,"kid":"long","alg":"EdDSA"},
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"lying-alg","alg":"HS256"},
            {"kty":"OKP","crv":"X25519","x":X,"kid":"x25519","alg":"EdDSA"},
            {"kty":"oct","k":"c2VjcmV0","kid":"oct","alg":"HS256"},
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"enc","alg":"EdDSA","use":"enc"},
            {"kty":"OKP","crv":"Ed25519","x":"!!!","kid":"bad-b64","alg":"EdDSA"},
            {"kty":"OKP","crv":"Ed25519","x":X,"alg":"EdDSA"},
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"","alg":"EdDSA"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"rsa","alg":"RS256"},
            "not an object",
        ])))
        .unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["good", "no-alg"]);
        assert!(keys.values().all(|k| k.alg == Algorithm::EdDSA));
    }

    #[test]
    fn a_duplicated_kid_is_dropped() {
        let keys = parse_jwks(&jwks(json!([
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"twice","alg":"EdDSA"},
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"twice","alg":"EdDSA"},
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"once","alg":"EdDSA"},
        ])))
        .unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["once"]);
    }

    #[test]
    fn a_document_without_keys_is_an_error_and_an_empty_set_is_not() {
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(b"not json").is_err());
        assert!(parse_jwks(br#"{"keys":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn reads_max_age() {
        assert_eq!(max_age(None), None);
        assert_eq!(
            max_age(Some("public, max-age=300")),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age(Some("Max-Age=7")), Some(Duration::from_secs(7)));
        assert_eq!(max_age(Some("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(Some("public, no-cache")), Some(Duration::ZERO));
        assert_eq!(max_age(Some("public")), None);
        assert_eq!(max_age(Some("max-age=soon")), None);
    }
}
