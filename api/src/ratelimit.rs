//! Rate limits and the login soft-lock, kept in Redis so every API replica
//! shares them.
//!
//! - Fixed-window counters per route class and subject (IP or account),
//!   e.g. `login_ip` = 30 per minute. Over the limit: 429 with `Retry-After`.
//! - Login soft-lock: after `LOGIN_LOCKOUT_THRESHOLD` consecutive failures on
//!   one account, each further attempt must wait a delay that doubles from
//!   `LOGIN_LOCKOUT_BASE` up to `LOGIN_LOCKOUT_MAX`. Success resets it. The
//!   delay is short and capped, so an attacker cannot lock a user out for
//!   long, and the failure budget stays far below 100 per account per hour.
//!   Unknown emails are counted the same way, so the lock reveals nothing.
//!
//! If Redis is unreachable the limiter fails open (logs, counts a metric):
//! an outage of the limiter should not take logins down. With more time,
//! this would fall back to a per-process limiter.

use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use gatehouse_shared::queue::Redis;

use crate::error::{ApiError, ApiResult};

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
}

/// Route classes with their own budgets.
#[derive(Debug, Clone, Copy)]
pub enum Class {
    LoginIp,
    LoginAccount,
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
    pub login_account: Rule,
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
}

impl Rules {
    fn rule(&self, class: Class) -> Rule {
        match class {
            Class::LoginIp => self.login_ip,
            Class::LoginAccount => self.login_account,
            Class::SignupIp => self.signup_ip,
            Class::VerifyAccount => self.verify_account,
            Class::VerifyIp => self.verify_ip,
            Class::ResendAccount => self.resend_account,
            Class::RefreshIp => self.refresh_ip,
            Class::ForgotIp => self.forgot_ip,
            Class::ForgotAccount => self.forgot_account,
        }
    }
}

pub struct Limiter {
    redis: Redis,
    namespace: String,
    enabled: bool,
    rules: Rules,
}

const WINDOW_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

const FAIL_SCRIPT: &str = r"
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// A subject key that does not store emails or IPs in clear.
fn subject_key(subject: &str) -> String {
    gatehouse_shared::sha256_hex(subject.to_ascii_lowercase().as_bytes())[..32].to_owned()
}

fn fail_open(e: impl std::fmt::Display) {
    metrics::counter!("gatehouse_rate_limit_errors_total").increment(1);
    tracing::warn!(error = %e, "rate limiter unavailable; allowing the request");
}

impl Limiter {
    pub fn new(redis: Redis, namespace: &str, enabled: bool, rules: Rules) -> Self {
        Self {
            redis,
            namespace: namespace.to_owned(),
            enabled,
            rules,
        }
    }

    /// Count one request of `class` for `subject`; 429 when over budget.
    pub async fn hit(&self, class: Class, subject: &str) -> ApiResult<()> {
        if !self.enabled {
            return Ok(());
        }
        let rule = self.rules.rule(class);
        let key = format!(
            "{}:rl:{}:{}",
            self.namespace,
            class.name(),
            subject_key(subject)
        );
        let mut conn = match self.redis.get().await {
            Ok(c) => c,
            Err(e) => {
                fail_open(e);
                return Ok(());
            }
        };
        let window_ms = rule.window.as_millis() as u64;
        let result: Result<(u64, i64), _> = redis::Script::new(WINDOW_SCRIPT)
            .key(&key)
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok((count, ttl_ms)) if count > rule.limit => {
                metrics::counter!("gatehouse_rate_limited_total", "class" => class.name())
                    .increment(1);
                Err(ApiError::too_many_requests(
                    (ttl_ms.max(0) as u64).div_ceil(1000),
                ))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                fail_open(e);
                Ok(())
            }
        }
    }

    /// Per-IP budget; requests without a known IP share one bucket.
    pub async fn hit_ip(&self, class: Class, ip: Option<IpAddr>) -> ApiResult<()> {
        let ip = ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "unknown".into());
        self.hit(class, &ip).await
    }

    fn fail_key(&self, account: &str) -> String {
        format!("{}:lf:{}", self.namespace, subject_key(account))
    }

    /// 429 while the account is in its post-failure delay.
    pub async fn check_login_delay(&self, account: &str) -> ApiResult<()> {
        if !self.enabled {
            return Ok(());
        }
        let Ok(mut conn) = self.redis.get().await else {
            return Ok(());
        };
        let state: Result<(Option<u64>, Option<i64>), _> = redis::cmd("HMGET")
            .arg(self.fail_key(account))
            .arg("count")
            .arg("last")
            .query_async(&mut conn)
            .await;
        let (Some(count), Some(last)) = (match state {
            Ok(v) => v,
            Err(e) => {
                fail_open(e);
                return Ok(());
            }
        }) else {
            return Ok(());
        };
        if count < self.rules.lockout_threshold {
            return Ok(());
        }
        let doublings = (count - self.rules.lockout_threshold).min(20) as u32;
        let delay = self
            .rules
            .lockout_base
            .saturating_mul(1u32 << doublings)
            .min(self.rules.lockout_max);
        let wait_until = last + delay.as_millis() as i64;
        let now = Utc::now().timestamp_millis();
        if now < wait_until {
            metrics::counter!("gatehouse_login_delayed_total").increment(1);
            return Err(ApiError::too_many_requests(
                ((wait_until - now) as u64).div_ceil(1000),
            ));
        }
        Ok(())
    }

    /// Count a failed login (wrong password or unknown email).
    pub async fn record_login_failure(&self, account: &str) {
        if !self.enabled {
            return;
        }
        let Ok(mut conn) = self.redis.get().await else {
            return;
        };
        // Failures are forgotten an hour after the last one.
        let ttl = Duration::from_secs(3600).max(self.rules.lockout_max * 2);
        let result: Result<i64, _> = redis::Script::new(FAIL_SCRIPT)
            .key(self.fail_key(account))
            .arg(Utc::now().timestamp_millis())
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = result {
            fail_open(e);
        }
    }

    /// A successful login clears the failure count.
    pub async fn reset_login_failures(&self, account: &str) {
        if !self.enabled {
            return;
        }
        let Ok(mut conn) = self.redis.get().await else {
            return;
        };
        let _: Result<i64, _> = redis::cmd("DEL")
            .arg(self.fail_key(account))
            .query_async(&mut conn)
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
    fn subject_keys_hide_the_subject() {
        let k = subject_key("Alice@Example.com");
        assert_eq!(k, subject_key("alice@example.com"));
        assert!(!k.contains("alice"));
    }
}
