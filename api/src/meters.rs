//! The API's `/metrics`: the recorder, HELP text for every metric, and 0
//! from the first scrape for every series whose labels are known up front
//! (issue 16 item 11). Request durations are a histogram, so replicas can be
//! aggregated (`histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))`).

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of `gatehouse_http_request_duration_seconds`: from a cached
/// `GET /me` (a few ms) to a queued password hash (seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of `gatehouse_session_lookup_batch_size`.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Label values of `gatehouse_rate_limited_total`.
const RATE_LIMIT_CLASSES: &[&str] = &[
    "login_ip",
    "login_account",
    "login_account_ceiling",
    "signup_ip",
    "verify_account",
    "verify_ip",
    "resend_account",
    "refresh_ip",
];
/// Label values of `gatehouse_audit_dropped_total`.
const AUDIT_DROP_REASONS: &[&str] = &["queue_full", "writer_stopped", "write_failed"];

/// Install the process-wide recorder, with histogram buckets.
pub fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("gatehouse_http_request_duration_seconds".into()),
            DURATION_BUCKETS,
        )
        .ok()?
        .set_buckets_for_metric(
            Matcher::Full("gatehouse_session_lookup_batch_size".into()),
            BATCH_BUCKETS,
        )
        .ok()?;
    let handle = builder.install_recorder().ok()?;
    init();
    Some(handle)
}

fn init() {
    describe_counter!(
        "gatehouse_http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        "gatehouse_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method, route template and status."
    );
    describe_counter!(
        "gatehouse_http_connection_cap_reached_total",
        "Times the open-connection cap was reached (new clients waited in the backlog)."
    );
    describe_counter!(
        "gatehouse_rate_limited_total",
        "Requests refused with 429 by a rate limit, by class."
    );
    describe_counter!(
        "gatehouse_rate_limit_errors_total",
        "Rate-limit checks that could not reach Redis."
    );
    describe_counter!(
        "gatehouse_rate_limit_fallback_total",
        "Rate-limit checks answered by the in-process fallback limiter (Redis unavailable)."
    );
    describe_counter!(
        "gatehouse_rate_limit_fallback_full_total",
        "Times the in-process fallback limiter was full and dropped old keys."
    );
    describe_gauge!(
        "gatehouse_rate_limit_breaker_open",
        "1 while the rate limiter's Redis circuit breaker is open, else 0."
    );
    describe_counter!(
        "gatehouse_login_delayed_total",
        "Logins refused because the account and client are in a failure delay."
    );
    describe_counter!(
        "gatehouse_login_lockouts_total",
        "Logins refused by the per-account ceiling (the last line against guessing)."
    );
    describe_counter!(
        "gatehouse_password_hash_rejected_total",
        "Requests answered 503 overloaded because the password-hashing queue was full."
    );
    describe_counter!(
        "gatehouse_refresh_reuse_total",
        "Refresh tokens presented again after rotation (the session family is revoked)."
    );
    describe_counter!(
        "gatehouse_outbox_dispatch_failures_total",
        "Jobs not pushed to Redis at commit time (the worker's relay pushes them later)."
    );
    describe_counter!(
        "gatehouse_audit_written_total",
        "Audit events written to the database."
    );
    describe_counter!(
        "gatehouse_audit_dropped_total",
        "Audit events lost, by reason."
    );
    describe_histogram!(
        "gatehouse_session_lookup_batch_size",
        "Sessions looked up by one coalesced query."
    );
    describe_gauge!(
        "gatehouse_signing_key_age_seconds",
        "Age of the key that signs new tokens."
    );
    describe_counter!(
        "gatehouse_key_reload_failures_total",
        "Failed reloads of the signing key ring."
    );
    describe_counter!(
        "gatehouse_key_rotations_total",
        "Signing-key rotation steps, by trigger and outcome."
    );
    describe_counter!(
        "gatehouse_revocations_published_total",
        "Revocation-feed entries published to Redis."
    );
    describe_counter!(
        "gatehouse_revocations_publish_failures_total",
        "Revocation-feed publications that failed."
    );

    for name in [
        "gatehouse_http_connection_cap_reached_total",
        "gatehouse_rate_limit_errors_total",
        "gatehouse_rate_limit_fallback_total",
        "gatehouse_rate_limit_fallback_full_total",
        "gatehouse_login_delayed_total",
        "gatehouse_login_lockouts_total",
        "gatehouse_password_hash_rejected_total",
        "gatehouse_refresh_reuse_total",
        "gatehouse_outbox_dispatch_failures_total",
        "gatehouse_audit_written_total",
        "gatehouse_key_reload_failures_total",
        "gatehouse_revocations_published_total",
        "gatehouse_revocations_publish_failures_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for class in RATE_LIMIT_CLASSES {
        metrics::counter!("gatehouse_rate_limited_total", "class" => *class).increment(0);
    }
    for reason in AUDIT_DROP_REASONS {
        metrics::counter!("gatehouse_audit_dropped_total", "reason" => *reason).increment(0);
    }
    metrics::gauge!("gatehouse_rate_limit_breaker_open").increment(0.0);
    metrics::gauge!("gatehouse_signing_key_age_seconds").increment(0.0);
    gatehouse_shared::rotation::init_metrics();
}
