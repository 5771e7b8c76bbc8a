//! Starting a `gatehouse-verify` [`Verifier`] from the app's settings.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use gatehouse_verify::{Config, FeedMode, Verifier};

use crate::settings::GatehouseArgs;

/// How long start-up waits for Gatehouse (JWKS and feed) before giving up.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The verifier's configuration from `GATEHOUSE_URL`, `JWT_ISSUER`,
/// `JWT_AUDIENCE`, `GATEHOUSE_REDIS_URL` and `GATEHOUSE_REDIS_NAMESPACE`.
pub fn verifier_config(args: &GatehouseArgs) -> Config {
    let config = Config::new(args.gatehouse_url.clone())
        .with_issuer(args.jwt_issuer.clone())
        .with_audience(args.jwt_audience.clone());
    match &args.gatehouse_redis_url {
        Some(url) => config.with_redis(url.clone(), args.gatehouse_redis_namespace.clone()),
        None => config,
    }
}

/// Start the verifier, retrying while Gatehouse is not up yet (apps and
/// Gatehouse often start together); fail after a minute.
pub async fn start_verifier(args: &GatehouseArgs) -> anyhow::Result<Verifier> {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    let mut backoff = Duration::from_millis(250);
    loop {
        match Verifier::start(verifier_config(args)).await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                tracing::warn!(error = %e, gatehouse = %args.gatehouse_url, "Gatehouse not reachable yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot start the token verifier against {}: {e}",
                    args.gatehouse_url
                ));
            }
        }
    }
}

/// Describe the verifier gauges (`gatehouse_verifier_*`), once at start-up.
pub fn describe_verifier_metrics() {
    use metrics::describe_gauge;
    describe_gauge!(
        "gatehouse_verifier_ready",
        "1 while the token verifier follows Gatehouse's revocation feed (Redis, or a recent HTTP sync)."
    );
    describe_gauge!(
        "gatehouse_verifier_redis",
        "1 while revocations arrive over Redis, 0 while the HTTP feed is polled."
    );
    describe_gauge!(
        "gatehouse_verifier_revoked_sessions",
        "Sessions with a live revocation entry (bounded by the token lifetime)."
    );
    describe_gauge!(
        "gatehouse_verifier_jwks_keys",
        "Usable keys in the cached JWKS."
    );
    describe_gauge!(
        "gatehouse_verifier_feed_requests",
        "HTTP revocation-feed requests made so far."
    );
    describe_gauge!(
        "gatehouse_verifier_redis_messages",
        "Revocations received over Redis so far."
    );
    describe_gauge!(
        "gatehouse_verifier_jwks_fetches",
        "JWKS fetch attempts so far (start, expiry, unknown kid)."
    );
}

/// `GET /metrics` for an app with a verifier: its status as gauges, then
/// everything the recorder holds.
pub async fn metrics_with_verifier(State(verifier): State<Verifier>) -> Response {
    let status = verifier.status();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    metrics::gauge!("gatehouse_verifier_ready").set(flag(status.ready));
    metrics::gauge!("gatehouse_verifier_redis").set(flag(status.mode == FeedMode::Redis));
    metrics::gauge!("gatehouse_verifier_revoked_sessions").set(status.revoked_sessions as f64);
    metrics::gauge!("gatehouse_verifier_jwks_keys").set(status.jwks_keys as f64);
    metrics::gauge!("gatehouse_verifier_feed_requests").set(status.feed_requests as f64);
    metrics::gauge!("gatehouse_verifier_redis_messages").set(status.redis_messages as f64);
    metrics::gauge!("gatehouse_verifier_jwks_fetches").set(status.jwks_fetches as f64);
    crate::http::metrics_text().await
}
