//! Rate limits and the login soft-lock, kept in Redis so every API replica
//! shares them.
//!
//! - Fixed-window counters per route class and subject (IP or account),
//!   e.g. `login_ip` = 30 per minute. Over the limit: 429 with `Retry-After`.
//!   IPv6 clients count per /64 (one host usually owns the whole /64).
//! - Login soft-lock, per account *and client* (issue 11, item 2): after
//!   `LOGIN_LOCKOUT_THRESHOLD` consecutive failures of one client on one
//!   account, that client waits a delay that doubles from
//!   `LOGIN_LOCKOUT_BASE` up to `LOGIN_LOCKOUT_MAX`; success resets it. The
//!   client is a known device (signed `gatehouse_device` cookie set by a
//!   successful login on this account) or else the IP (/64). So an attacker
//!   only locks out himself: the owner, from another network or from a
//!   device that logged in before, still gets in.
//! - Per-account ceiling (`RATE_LIMIT_LOGIN_ACCOUNT_CEILING`, 100 failures
//!   an hour, ASVS 6.3.1): the last line against guessing from many IPs.
//!   Over it, only known devices may try; each lockout that starts counts
//!   in `gatehouse_login_lockouts_total`.
//! - Unknown emails are counted the same way, so the lock reveals nothing.
//!
//! Redis must never make a request slow (issue 11, item 4): every call has
//! its own deadline (`RATE_LIMIT_REDIS_TIMEOUT`, 100 ms), all checks of a
//! login run in one script (one round trip), and a circuit breaker stops
//! asking a failing Redis for `RATE_LIMIT_BREAKER_COOLDOWN`. Meanwhile (and
//! for any call that failed) a per-process limiter with the same budgets
//! and the same soft-lock decides. Its counts are per replica and start
//! from zero, so with N replicas an attacker gets up to N budgets during an
//! outage; with more time, this would sync them after Redis returns.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use chrono::Utc;
use gatehouse_shared::keys::SecretHasher;
use gatehouse_shared::queue::Redis;
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::ClientIp;
use crate::state::AppState;

/// `N/window`, e.g. `30/1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u64,
    pub window: Duration,
}

impl Rule {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (n, w) = s
            .split_once('/')
            .ok_or_else(|| format!("expected N/window like 30/1m, got {s:?}"))?;
        let limit = n
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("invalid count in {s:?}"))?;
        let window = gatehouse_shared::config::parse_duration(w.trim())?;
        if limit == 0 {
            return Err(format!("limit must be positive in {s:?}"));
        }
        Ok(Self { limit, window })
    }

    fn window_ms(self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    fn limit_i64(self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }
}

/// Route classes with their own budgets.
#[derive(Debug, Clone, Copy)]
pub enum Class {
    LoginIp,
    LoginAccount,
    LoginCeiling,
    SignupIp,
    VerifyAccount,
    VerifyIp,
    ResendAccount,
    RefreshIp,
    /// `POST /auth/password/forgot` per client IP.
    ForgotIp,
    /// `POST /auth/password/forgot` per email (known or not, alike).
    ForgotAccount,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Self::LoginIp => "login_ip",
            Self::LoginAccount => "login_account",
            Self::LoginCeiling => "login_account_ceiling",
            Self::SignupIp => "signup_ip",
            Self::VerifyAccount => "verify_account",
            Self::VerifyIp => "verify_ip",
            Self::ResendAccount => "resend_account",
            Self::RefreshIp => "refresh_ip",
            Self::ForgotIp => "forgot_ip",
            Self::ForgotAccount => "forgot_account",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rules {
    pub login_ip: Rule,
    /// Per account and client (device or IP).
    pub login_account: Rule,
    /// Failed logins per account from all clients.
    pub login_ceiling: Rule,
    pub signup_ip: Rule,
    pub verify_account: Rule,
    pub verify_ip: Rule,
    pub resend_account: Rule,
    pub refresh_ip: Rule,
    pub forgot_ip: Rule,
    pub forgot_account: Rule,
    pub lockout_threshold: u64,
    pub lockout_base: Duration,
    pub lockout_max: Duration,
    /// How long a device stays known after its last successful login.
    pub device_ttl: Duration,
}

impl Rules {
    fn rule(&self, class: Class) -> Rule {
        match class {
            Class::LoginIp => self.login_ip,
            Class::LoginAccount => self.login_account,
            Class::LoginCeiling => self.login_ceiling,
            Class::SignupIp => self.signup_ip,
            Class::VerifyAccount => self.verify_account,
            Class::VerifyIp => self.verify_ip,
            Class::ResendAccount => self.resend_account,
            Class::RefreshIp => self.refresh_ip,
            Class::ForgotIp => self.forgot_ip,
            Class::ForgotAccount => self.forgot_account,
        }
    }

    /// The soft-lock delay after `count` consecutive failures, if any.
    fn delay_after(&self, count: u64) -> Option<Duration> {
        if count < self.lockout_threshold {
            return None;
        }
        let doublings = (count - self.lockout_threshold).min(20) as u32;
        Some(
            self.lockout_base
                .saturating_mul(1u32 << doublings)
                .min(self.lockout_max),
        )
    }

    /// Failures are forgotten this long after the last one.
    fn failure_ttl(&self) -> Duration {
        Duration::from_secs(3600).max(self.lockout_max * 2)
    }
}

/// How the limiter talks to Redis: deadline, breaker, fallback size.
#[derive(Debug, Clone)]
pub struct Resilience {
    /// Deadline of one limiter call to Redis.
    pub timeout: Duration,
    /// Consecutive failed calls that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one call probes Redis.
    pub breaker_cooldown: Duration,
    /// Most keys the per-process fallback keeps.
    pub fallback_keys: usize,
}

/// Who is asking: the client IP and the raw device cookie, if any. An
/// extractor, for login and every other password check.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<IpAddr>,
    pub device: Option<String>,
}

pub const DEVICE_COOKIE: &str = "gatehouse_device";

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        let device = CookieJar::from_headers(&parts.headers)
            .get(DEVICE_COOKIE)
            .map(|c| c.value().to_owned())
            // A real cookie is a few hundred bytes; never hash megabytes.
            .filter(|v| !v.is_empty() && v.len() <= 512);
        Ok(Self { ip, device })
    }
}

impl Client {
    /// `Secure` unless the client talks to us over loopback (local http).
    pub fn needs_secure_cookie(&self, configured: bool) -> bool {
        configured || !self.ip.is_some_and(|ip| ip.is_loopback())
    }
}

/// The bucket of an IP: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as
/// the IPv4 address).
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The keys of one login (or password check) by one client on one account.
pub struct LoginGate {
    ip: String,
    account_client: String,
    failures: String,
    ceiling: String,
    /// The client holds a valid device cookie for this account.
    pub known_device: bool,
}

/// Device cookies: `<device id>.<issued>-<mac>.<issued>-<mac>...`, one
/// entry per account that logged in from this browser (newest first, at
/// most `DEVICE_ACCOUNTS`). The MAC (keyed with a `JWT_SECRET`-derived key,
/// see `SecretHasher`) binds device, account and time, so a device cookie
/// of one account is worthless for another, and nothing is stored
/// server-side: the check works the same while Redis is down.
const DEVICE_ACCOUNTS: usize = 4;

fn device_mac(secrets: &SecretHasher, device: &str, issued: i64, account: &str) -> String {
    let mut mac = secrets.hash(format!("device:{device}:{issued}:{account}").as_bytes());
    mac.truncate(32);
    mac
}

struct DeviceCookie<'a> {
    id: &'a str,
    entries: Vec<(i64, &'a str)>,
}

fn parse_device(value: &str) -> Option<DeviceCookie<'_>> {
    let mut parts = value.split('.');
    let id = parts.next()?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let entries = parts
        .take(DEVICE_ACCOUNTS)
        .filter_map(|e| {
            let (issued, mac) = e.split_once('-')?;
            Some((issued.parse().ok()?, mac))
        })
        .collect();
    Some(DeviceCookie { id, entries })
}

/// A subject key that does not store emails or IPs in clear.
fn subject_key(subject: &str) -> String {
    gatehouse_shared::sha256_hex(subject.to_ascii_lowercase().as_bytes())[..32].to_owned()
}

fn fail_open(e: impl std::fmt::Display) {
    metrics::counter!("gatehouse_rate_limit_errors_total").increment(1);
    tracing::warn!(error = %e, "rate limiter: Redis unavailable; the per-process limiter decides");
}

/// Count one request in a fixed window; the window's remaining ms when
/// over the limit.
const WINDOW_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

/// Every check of a login in one round trip. KEYS: IP window, account +
/// client window, account + client failures, account ceiling. ARGV: IP
/// limit and window, account + client limit and window, ceiling limit,
/// known device (1/0). Returns {verdict, ms, failures, last failure}:
/// verdict 0 pass (the caller applies the soft-lock to failures/last),
/// 1 IP over budget, 2 account + client over budget, 4 account ceiling.
const LOGIN_CHECK_SCRIPT: &str = r"
local function window(key, limit, ms)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ms) end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then redis.call('PEXPIRE', key, ms); ttl = ms end
  if n > limit then return ttl end
  return false
end
local t = window(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if t then return {1, t, 0, 0} end
t = window(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
if t then return {2, t, 0, 0} end
if ARGV[6] == '0' then
  local c = tonumber(redis.call('GET', KEYS[4]) or '0')
  if c >= tonumber(ARGV[5]) then
    local ttl = redis.call('PTTL', KEYS[4])
    if ttl < 0 then ttl = 1000 end
    return {4, ttl, 0, 0}
  end
end
local f = redis.call('HMGET', KEYS[3], 'count', 'last')
local count = tonumber(f[1]) or 0
local last = tonumber(f[2]) or 0
return {0, 0, count, last}
";

/// A failed password: KEYS failures, ceiling; ARGV now ms, failure ttl ms,
/// ceiling window ms. Returns the account's failures in the ceiling window.
const FAIL_SCRIPT: &str = r"
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local n = redis.call('INCR', KEYS[2])
if n == 1 or redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return n
";

static WINDOW: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(WINDOW_SCRIPT));
static LOGIN_CHECK: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(LOGIN_CHECK_SCRIPT));
static FAIL: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(FAIL_SCRIPT));

/// Show the limiter's series from the first scrape (at 0), so alerts on
/// them work before anything happened. `increment(0)`, not `absolute(0)`:
/// several states in one process (tests) must not reset each other.
pub fn init_metrics() {
    for name in [
        "gatehouse_login_lockouts_total",
        "gatehouse_login_delayed_total",
        "gatehouse_rate_limit_errors_total",
        "gatehouse_rate_limit_fallback_total",
        "gatehouse_password_hash_rejected_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("gatehouse_rate_limit_breaker_open").increment(0.0);
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Opens after `threshold` consecutive failures; after `cooldown`, one call
/// probes Redis (the one that wins the swap of `open_until`), the others
/// keep using the fallback. A probe that never finishes (its request was
/// dropped) is retried after another cooldown.
struct Breaker {
    failures: AtomicU32,
    /// 0 when closed, else the ms timestamp until which it stays open.
    open_until: AtomicU64,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = now_ms().max(0) as u64;
        if now < until {
            return false;
        }
        let next = now + ms(self.cooldown).max(0) as u64;
        self.open_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Release);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            metrics::gauge!("gatehouse_rate_limit_breaker_open").set(0.0);
            tracing::info!("rate limiter: Redis answers again; breaker closed");
        }
    }

    fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let open = self.open_until.load(Ordering::Acquire) != 0;
        if n >= self.threshold || open {
            let until = now_ms().max(0) as u64 + ms(self.cooldown).max(0) as u64;
            self.open_until.store(until, Ordering::Release);
            if !open {
                metrics::gauge!("gatehouse_rate_limit_breaker_open").set(1.0);
                tracing::warn!(
                    cooldown_ms = ms(self.cooldown),
                    "rate limiter: breaker open; using the per-process limiter"
                );
            }
        }
    }
}

/// The per-process fallback: the same fixed windows and failure records as
/// the Redis scripts, in two maps behind one mutex (held for a few map
/// operations, never across an await). `governor` was the other option,
/// but its GCRA spreads a budget evenly (5/min = one per 12 s) where ours
/// allows bursts within a fixed window, and it has no notion of the
/// failure count and last-failure time the soft-lock needs; these maps
/// apply exactly the budgets Redis applies.
struct Local {
    cap: usize,
    maps: Mutex<LocalMaps>,
}

#[derive(Default)]
struct LocalMaps {
    /// count, window end
    windows: HashMap<String, (i64, Instant)>,
    /// failures, last failure (ms), forgotten at
    failures: HashMap<String, (i64, i64, Instant)>,
}

impl LocalMaps {
    /// Count one hit; the remaining ms when over `limit`.
    fn window(&mut self, cap: usize, key: &str, limit: i64, window: Duration) -> Option<i64> {
        let now = Instant::now();
        if !self.windows.contains_key(key) && self.windows.len() >= cap {
            self.windows.retain(|_, (_, end)| *end > now);
            if self.windows.len() >= cap {
                // Full of live keys: count nothing new rather than evict
                // live budgets (which would reset them).
                metrics::counter!("gatehouse_rate_limit_fallback_full_total").increment(1);
                return None;
            }
        }
        let entry = self
            .windows
            .entry(key.to_owned())
            .or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        (entry.0 > limit).then(|| ms(entry.1.saturating_duration_since(now)).max(1))
    }

    fn count(&self, key: &str) -> (i64, Option<i64>) {
        let now = Instant::now();
        match self.windows.get(key) {
            Some((n, end)) if *end > now => (*n, Some(ms(end.saturating_duration_since(now)))),
            _ => (0, None),
        }
    }

    fn failures(&self, key: &str) -> (i64, i64) {
        match self.failures.get(key) {
            Some((n, last, until)) if *until > Instant::now() => (*n, *last),
            _ => (0, 0),
        }
    }
}

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalMaps> {
        // A panic under the lock cannot leave the maps inconsistent in a
        // way that matters for rate limits: keep using them.
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Limiter {
    redis: Redis,
    namespace: String,
    enabled: bool,
    rules: Rules,
    timeout: Duration,
    breaker: Breaker,
    local: Local,
    secrets: SecretHasher,
}

impl Limiter {
    pub fn new(
        redis: Redis,
        namespace: &str,
        enabled: bool,
        rules: Rules,
        resilience: Resilience,
        secrets: SecretHasher,
    ) -> Self {
        Self {
            redis,
            namespace: namespace.to_owned(),
            enabled,
            rules,
            timeout: resilience.timeout,
            breaker: Breaker {
                failures: AtomicU32::new(0),
                open_until: AtomicU64::new(0),
                threshold: resilience.breaker_failures.max(1),
                cooldown: resilience.breaker_cooldown,
            },
            local: Local {
                cap: resilience.fallback_keys.max(1),
                maps: Mutex::new(LocalMaps::default()),
            },
            secrets,
        }
    }

    /// Run a script within the deadline, unless the breaker is open.
    /// `None`: Redis did not answer in time; the caller uses the fallback.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[i64],
    ) -> Option<T> {
        if !self.breaker.allow() {
            metrics::counter!("gatehouse_rate_limit_fallback_total").increment(1);
            return None;
        }
        let call = async {
            let mut conn = self.redis.get().await.map_err(|e| e.to_string())?;
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(*key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            invocation
                .invoke_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => {
                self.breaker.success();
                return Some(v);
            }
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        self.breaker.failure();
        fail_open(outcome);
        metrics::counter!("gatehouse_rate_limit_fallback_total").increment(1);
        None
    }

    fn key(&self, kind: &str, subject: &str) -> String {
        format!("{}:{kind}:{}", self.namespace, subject_key(subject))
    }

    fn limited(class: Class, retry_ms: i64) -> ApiError {
        metrics::counter!("gatehouse_rate_limited_total", "class" => class.name()).increment(1);
        ApiError::too_many_requests((retry_ms.max(0) as u64).div_ceil(1000))
    }

    /// Count one request of `class` for `subject`; 429 when over budget.
    pub async fn hit(&self, class: Class, subject: &str) -> ApiResult<()> {
        if !self.enabled {
            return Ok(());
        }
        let rule = self.rules.rule(class);
        let key = self.key(&format!("rl:{}", class.name()), subject);
        let over = match self
            .eval::<(i64, i64)>(&WINDOW, &[&key], &[rule.window_ms()])
            .await
        {
            Some((count, ttl)) => (count > rule.limit_i64()).then_some(ttl),
            None => self
                .local
                .lock()
                .window(self.local.cap, &key, rule.limit_i64(), rule.window),
        };
        match over {
            Some(ttl) => Err(Self::limited(class, ttl)),
            None => Ok(()),
        }
    }

    /// Per-IP budget (IPv6 per /64); requests without a known IP share one
    /// bucket.
    pub async fn hit_ip(&self, class: Class, ip: Option<IpAddr>) -> ApiResult<()> {
        let ip = ip.map(ip_bucket).unwrap_or_else(|| "unknown".into());
        self.hit(class, &ip).await
    }

    /// The keys for `account` (a normalized email) as seen from `client`.
    pub fn login_gate(&self, account: &str, client: &Client) -> LoginGate {
        let device = client
            .device
            .as_deref()
            .and_then(|v| self.known_device(v, account));
        let ip = client.ip.map(ip_bucket).unwrap_or_else(|| "unknown".into());
        let who = match device {
            Some(id) => format!("device:{id}"),
            None => format!("ip:{ip}"),
        };
        let pair = format!("{account}\n{who}");
        LoginGate {
            ip: self.key("rl:login_ip", &ip),
            account_client: self.key("rl:login_account", &pair),
            failures: self.key("lf", &pair),
            ceiling: self.key("lc", account),
            known_device: device.is_some(),
        }
    }

    /// The device id if `cookie` holds a valid, unexpired entry for `account`.
    fn known_device<'a>(&self, cookie: &'a str, account: &str) -> Option<&'a str> {
        let parsed = parse_device(cookie)?;
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.rules.device_ttl.as_secs()).unwrap_or(i64::MAX);
        let known = parsed.entries.iter().any(|(issued, mac)| {
            let fresh = *issued <= now + 60 && now - *issued < ttl;
            let expected = device_mac(&self.secrets, parsed.id, *issued, account);
            fresh && bool::from(expected.as_bytes().ct_eq(mac.as_bytes()))
        });
        known.then_some(parsed.id)
    }

    /// The device cookie to set after a successful login on `account`: the
    /// same device id (or a new one), a fresh entry for this account first,
    /// then the entries of other accounts as they were (they cannot be
    /// checked without their emails; they expire on their own).
    pub fn device_cookie(&self, account: &str, client: &Client) -> String {
        let previous = client.device.as_deref().and_then(parse_device);
        let id = previous
            .as_ref()
            .map(|p| p.id.to_owned())
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let now = Utc::now().timestamp();
        let mine = device_mac(&self.secrets, &id, now, account);
        let mut value = format!("{id}.{now}-{mine}");
        if let Some(previous) = previous {
            for (issued, mac) in previous
                .entries
                .iter()
                .filter(|(issued, mac)| {
                    // Drop this account's older entry.
                    let older = device_mac(&self.secrets, &id, *issued, account);
                    !bool::from(older.as_bytes().ct_eq(mac.as_bytes()))
                })
                .take(DEVICE_ACCOUNTS - 1)
            {
                value.push_str(&format!(".{issued}-{mac}"));
            }
        }
        value
    }

    pub fn device_ttl(&self) -> Duration {
        self.rules.device_ttl
    }

    /// Every check before a password is looked at, in one round trip:
    /// the IP budget, the account + client budget, the account ceiling
    /// (skipped for a known device) and the soft-lock delay.
    pub async fn check_login(&self, gate: &LoginGate) -> ApiResult<()> {
        if !self.enabled {
            return Ok(());
        }
        let r = &self.rules;
        let known = i64::from(gate.known_device);
        let keys = [
            gate.ip.as_str(),
            &gate.account_client,
            &gate.failures,
            &gate.ceiling,
        ];
        let args = [
            r.login_ip.limit_i64(),
            r.login_ip.window_ms(),
            r.login_account.limit_i64(),
            r.login_account.window_ms(),
            r.login_ceiling.limit_i64(),
            known,
        ];
        let (verdict, ttl, failures, last) = match self
            .eval::<(i64, i64, i64, i64)>(&LOGIN_CHECK, &keys, &args)
            .await
        {
            Some(v) => v,
            None => self.check_login_locally(gate),
        };
        match verdict {
            1 => return Err(Self::limited(Class::LoginIp, ttl)),
            2 => return Err(Self::limited(Class::LoginAccount, ttl)),
            4 => return Err(Self::limited(Class::LoginCeiling, ttl)),
            _ => {}
        }
        if let Some(delay) = self.rules.delay_after(failures.max(0) as u64) {
            let wait_until = last.saturating_add(ms(delay));
            let now = now_ms();
            if now < wait_until {
                metrics::counter!("gatehouse_login_delayed_total").increment(1);
                return Err(ApiError::too_many_requests(
                    ((wait_until - now) as u64).div_ceil(1000),
                ));
            }
        }
        Ok(())
    }

    /// `LOGIN_CHECK_SCRIPT` on the per-process maps.
    fn check_login_locally(&self, gate: &LoginGate) -> (i64, i64, i64, i64) {
        let r = &self.rules;
        let cap = self.local.cap;
        let mut maps = self.local.lock();
        if let Some(t) = maps.window(cap, &gate.ip, r.login_ip.limit_i64(), r.login_ip.window) {
            return (1, t, 0, 0);
        }
        let account = r.login_account;
        if let Some(t) = maps.window(
            cap,
            &gate.account_client,
            account.limit_i64(),
            account.window,
        ) {
            return (2, t, 0, 0);
        }
        if !gate.known_device {
            let (count, ttl) = maps.count(&gate.ceiling);
            if count >= r.login_ceiling.limit_i64() {
                return (4, ttl.unwrap_or(1000), 0, 0);
            }
        }
        let (failures, last) = maps.failures(&gate.failures);
        (0, 0, failures, last)
    }

    /// Count a failed password (wrong password or unknown email).
    pub async fn login_failed(&self, gate: &LoginGate) {
        if !self.enabled {
            return;
        }
        let now = now_ms();
        let ttl = self.rules.failure_ttl();
        let ceiling = self.rules.login_ceiling;
        let count = match self
            .eval::<i64>(
                &FAIL,
                &[&gate.failures, &gate.ceiling],
                &[now, ms(ttl), ceiling.window_ms()],
            )
            .await
        {
            Some(n) => n,
            None => {
                let mut maps = self.local.lock();
                let until = Instant::now() + ttl;
                let entry = maps
                    .failures
                    .entry(gate.failures.clone())
                    .or_insert((0, 0, until));
                *entry = (entry.0 + 1, now, until);
                // The ceiling counts like a window with no limit of its own.
                let _ = maps.window(self.local.cap, &gate.ceiling, i64::MAX, ceiling.window);
                maps.count(&gate.ceiling).0
            }
        };
        if count == ceiling.limit_i64() {
            // The account just reached its ceiling: from now on until the
            // window ends only known devices may try.
            metrics::counter!("gatehouse_login_lockouts_total").increment(1);
            tracing::warn!("login ceiling reached; only known devices may log in to this account");
        }
    }

    /// A correct password clears this client's failures (not the
    /// account's ceiling: other clients' failures still count).
    pub async fn login_succeeded(&self, gate: &LoginGate) {
        if !self.enabled {
            return;
        }
        const DEL: &str = "return redis.call('DEL', KEYS[1])";
        static DEL_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(DEL));
        // Cleared in both places: the fallback may hold failures counted
        // during an outage.
        self.local.lock().failures.remove(&gate.failures);
        let _ = self.eval::<i64>(&DEL_SCRIPT, &[&gate.failures], &[]).await;
    }

    /// A password reset proved the owner holds the inbox: clear the
    /// account's soft-lock as seen from the resetting client, and the
    /// account-wide ceiling (so the owner is not held to known devices).
    pub async fn clear_after_reset(&self, account: &str, client: &Client) {
        if !self.enabled {
            return;
        }
        const DEL2: &str = "return redis.call('DEL', KEYS[1], KEYS[2])";
        static DEL2_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(DEL2));
        let gate = self.login_gate(account, client);
        {
            let mut local = self.local.lock();
            local.failures.remove(&gate.failures);
            local.windows.remove(&gate.ceiling);
        }
        let _ = self
            .eval::<i64>(&DEL2_SCRIPT, &[&gate.failures, &gate.ceiling], &[])
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        assert_eq!(
            Rule::parse("30/1m"),
            Ok(Rule {
                limit: 30,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(
            Rule::parse(" 5 / 1h "),
            Ok(Rule {
                limit: 5,
                window: Duration::from_secs(3600)
            })
        );
        for bad in ["30", "0/1m", "x/1m", "5/0s", "5/soon"] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn item_11_ipv6_buckets_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_bucket(a), "2001:db8:1:2::/64");
        assert_eq!(ip_bucket(a), ip_bucket(b));
        assert_ne!(ip_bucket(a), ip_bucket(c));
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().expect("ip");
        assert_eq!(ip_bucket(mapped), "198.51.100.7");
        let v4: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(ip_bucket(v4), "198.51.100.7");
    }

    fn rules() -> Rules {
        let r = |s: &str| Rule::parse(s).expect("rule");
        Rules {
            login_ip: r("3/1m"),
            login_account: r("2/1m"),
            login_ceiling: r("4/1h"),
            signup_ip: r("1/1m"),
            verify_account: r("1/1m"),
            verify_ip: r("1/1m"),
            resend_account: r("1/1m"),
            refresh_ip: r("1/1m"),
            forgot_ip: r("1/1m"),
            forgot_account: r("1/1m"),
            lockout_threshold: 2,
            lockout_base: Duration::from_secs(1),
            lockout_max: Duration::from_secs(5),
            device_ttl: Duration::from_secs(3600),
        }
    }

    #[test]
    fn soft_lock_doubles_up_to_its_cap() {
        let r = rules();
        assert_eq!(r.delay_after(1), None);
        assert_eq!(r.delay_after(2), Some(Duration::from_secs(1)));
        assert_eq!(r.delay_after(3), Some(Duration::from_secs(2)));
        assert_eq!(r.delay_after(4), Some(Duration::from_secs(4)));
        assert_eq!(r.delay_after(9), Some(Duration::from_secs(5)));
        assert_eq!(r.delay_after(u64::MAX), Some(Duration::from_secs(5)));
    }

    #[test]
    fn fallback_windows_count_like_redis() {
        let mut maps = LocalMaps::default();
        let w = Duration::from_secs(60);
        assert_eq!(maps.window(10, "k", 2, w), None);
        assert_eq!(maps.window(10, "k", 2, w), None);
        let over = maps.window(10, "k", 2, w).expect("over");
        assert!((1..=60_000).contains(&over), "{over}");
        // A full map counts no new key but keeps the live ones.
        assert_eq!(maps.window(1, "other", 0, w), None);
        assert!(maps.window(1, "k", 2, w).is_some());
        // An expired window starts again.
        let mut maps = LocalMaps::default();
        assert_eq!(maps.window(10, "e", 1, Duration::ZERO), None);
        assert_eq!(maps.window(10, "e", 1, Duration::ZERO), None);
    }

    #[tokio::test]
    async fn breaker_opens_then_lets_one_probe_through() {
        let b = Breaker {
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            threshold: 2,
            cooldown: Duration::from_millis(50),
        };
        assert!(b.allow());
        b.failure();
        assert!(b.allow(), "one failure is not enough");
        b.failure();
        assert!(!b.allow(), "open");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "only one probe");
        b.success();
        assert!(b.allow() && b.allow(), "closed again");
    }

    #[test]
    fn device_cookies_are_bound_to_their_account() {
        let secrets = SecretHasher::new(b"test-secret-0123456789-0123456789-abcdef");
        let now = Utc::now().timestamp();
        let id = "0123456789abcdef0123456789abcdef";
        let mac = device_mac(&secrets, id, now, "ada@example.com");
        let cookie = format!("{id}.{now}-{mac}");
        let parsed = parse_device(&cookie).expect("parse");
        assert_eq!(parsed.entries, vec![(now, mac.as_str())]);
        assert_ne!(mac, device_mac(&secrets, id, now, "bob@example.com"));
        assert_ne!(
            mac,
            device_mac(
                &secrets,
                "ffffffffffffffffffffffffffffffff",
                now,
                "ada@example.com"
            )
        );
        for bad in ["", "short.1-ab", "zz23456789abcdef0123456789abcdef.1-a"] {
            assert!(parse_device(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn subject_keys_hide_the_subject() {
        let k = subject_key("Alice@Example.com");
        assert_eq!(k, subject_key("alice@example.com"));
        assert!(!k.contains("alice"));
    }
}
