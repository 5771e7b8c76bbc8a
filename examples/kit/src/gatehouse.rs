//! Starting a `gatehouse-verify` [`Verifier`] from the app's settings.

use std::time::Duration;

use gatehouse_verify::{Config, Verifier};

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
