//! `GET /whoami` behind `gatehouse-verify`: the smallest app that trusts
//! Gatehouse tokens without a secret. Settings from the environment:
//! `GATEHOUSE_URL`, `APP_ADDR`, optional `GATEHOUSE_REDIS_URL` +
//! `GATEHOUSE_REDIS_NAMESPACE` (unset: HTTP polling only),
//! `POLL_INTERVAL_MS`, `MAX_TOKEN_LIFETIME_S`.

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use gatehouse_verify::{Config, Verified, Verifier};

async fn whoami(Verified(claims): Verified) -> Json<serde_json::Value> {
    Json(serde_json::json!({"sub": claims.sub, "sid": claims.sid, "role": claims.role}))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = env("GATEHOUSE_URL").ok_or("GATEHOUSE_URL is required")?;
    let addr = env("APP_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
    let mut config = Config::new(base);
    if let Some(url) = env("GATEHOUSE_REDIS_URL") {
        let namespace = env("GATEHOUSE_REDIS_NAMESPACE").unwrap_or_else(|| "gatehouse".into());
        config = config.with_redis(url, namespace);
    }
    if let Some(ms) = env("POLL_INTERVAL_MS") {
        config = config.with_poll_interval(Duration::from_millis(ms.parse()?));
    }
    if let Some(s) = env("MAX_TOKEN_LIFETIME_S") {
        config = config.with_max_token_lifetime(Duration::from_secs(s.parse()?));
    }
    let verifier = Verifier::start(config).await?;
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/health", get(|| async { "ok" }))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
