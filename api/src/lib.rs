//! Gatehouse HTTP API. `build_state` wires the state, `api_routes` lists
//! every resource's routes, `router` adds the layers; tests import them.
//!
//! One name per resource: `routes/<name>.rs` (handlers and OpenAPI) calls
//! `<name>.rs` (use cases), which calls `gatehouse_shared::models` (SQL);
//! its tests are `tests/integration/<name>.rs`. See docs/architecture.md.

// Use cases, one module per resource (the routes of the same name call them).
pub mod accounts;
pub mod audit;
pub mod email;
pub mod jobs;
pub mod keys;
pub mod me;
pub mod pages;
pub mod password;
pub mod sessions;
pub mod users;

// Handlers and their OpenAPI annotations, one module per resource.
pub mod routes;

// Building blocks.
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod hashing;
pub mod http;
pub mod meters;
pub mod openapi;
pub mod ratelimit;
pub mod server;
pub mod state;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gatehouse_shared::queue::{QueueSettings, Queues, Redis};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::keys::KeyRing;
use crate::auth::session_check::SessionCheck;
use crate::auth::tokens::{TokenKeys, TokenSettings};
use crate::config::ApiConfig;
use crate::hashing::PasswordHasher;
use crate::http::middleware;
use crate::state::{App, AppState};

/// Build the state from config: pool, Redis, keys, hasher. Loads the
/// signing keys (creating the first ones), so the database must be
/// migrated.
pub async fn build_state(config: ApiConfig) -> anyhow::Result<AppState> {
    let trusted_proxies = config.validate().map_err(anyhow::Error::msg)?;
    let db = gatehouse_shared::db::build_pool(&config.db)?;
    let redis = Redis::new(&config.redis)?;
    let secret = config.tokens.jwt_secret.bytes();
    let secrets = gatehouse_shared::keys::SecretHasher::new(secret);
    let limits = ratelimit::Limiter::new(
        redis.clone(),
        &config.redis.redis_namespace,
        config.rate_limits,
        config.rate_rules(),
        config.rate_resilience(),
        secrets.clone(),
    );
    let queues = Queues::new(redis, QueueSettings::new(&config.redis.redis_namespace));
    // Recorder first: the key ring sets its gauge on load.
    let _ = state::metrics_handle();
    gatehouse_shared::rotation::init_metrics();
    ratelimit::init_metrics();
    let ring = KeyRing::load(
        &db,
        config.jwt_algorithm,
        secret,
        config.tokens.key_timing(),
    )
    .await?;
    let tokens = TokenKeys::with_ring(
        Arc::new(ring),
        secret,
        TokenSettings {
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            client_id: config.jwt_client_id.clone(),
            access_ttl: config.tokens.access_token_ttl,
        },
    );
    let concurrency = config.password_hash_concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2)
    });
    // 64 per thread: with about 15 ms per hash (release build, BENCHMARKS.md)
    // a full queue is about 1 s of waiting, far below REQUEST_TIMEOUT, and
    // well above the 16 logins in flight of the login flood benchmark.
    let max_queued = config.password_hash_queue.map_or(64 * concurrency, |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    });
    let hasher = PasswordHasher::new(concurrency, config.password_hash_nice, max_queued)?;
    let allowed_origins = config.allowed_origins();
    let audit = audit::AuditWriter::start(db.clone());
    // A quarter of the pool for session checks (at least one; `start` clamps).
    let session_check = SessionCheck::start(db.clone(), config.db.db_pool_size as usize / 4);
    Ok(AppState(Arc::new(App {
        config,
        db,
        tokens,
        hasher,
        session_check,
        queues,
        trusted_proxies,
        allowed_origins,
        audit,
        limits,
        secrets,
    })))
}

/// The routes and their OpenAPI document, from the same registrations.
pub fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::accounts::router())
        .merge(routes::sessions::router())
        .merge(routes::password::router())
        .merge(routes::email::router())
        .merge(routes::me::router())
        .merge(routes::users::router())
        .merge(routes::jobs::router())
        .merge(routes::audit::router())
        .merge(routes::keys::router())
        .merge(routes::revocations::router())
        .merge(routes::health::router())
        .split_for_parts()
}

/// `/metrics` alone: served on METRICS_ADDR when that is set.
pub fn metrics_router() -> Router {
    let _ = state::metrics_handle();
    Router::new()
        .route("/metrics", get(metrics_text))
        .fallback(middleware::not_found)
}

async fn metrics_text() -> axum::response::Response {
    let body = state::metrics_handle()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The OpenAPI document as served at /openapi.json, pretty-printed.
pub fn openapi_json() -> String {
    let (_, doc) = api_routes();
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Swagger UI (vendored, served from /docs) on the document.
fn swagger_ui(doc: utoipa::openapi::OpenApi) -> SwaggerUi {
    SwaggerUi::new("/docs").url("/openapi.json", doc).config(
        utoipa_swagger_ui::Config::default()
            // Never send the document's URL to validator.swagger.io (an
            // air-gapped install shows a broken badge, and it leaks the URL).
            .validator_url("none")
            // A reload keeps the Authorize state.
            .persist_authorization(true),
        // No tagsSorter/operationsSorter: tags and operations stay in the
        // document's order, which follows the flow (signup, verify, login, …).
    )
}

/// The full HTTP application with every layer.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes();
    let request_id = HeaderName::from_static("x-request-id");
    let cors = {
        let origins: Vec<HeaderValue> = state
            .allowed_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            // Readable by scripts on an allowed origin: where a signup
            // landed, the id to quote in a report, when to retry.
            .expose_headers([header::LOCATION, request_id.clone(), header::RETRY_AFTER])
            .max_age(state.config.cors_max_age)
            .allow_credentials(true)
    };
    let max_body = usize::try_from(state.config.max_body_bytes).unwrap_or(65_536);
    let timeout = state.config.request_timeout;
    let max_header_bytes = state.config.serving.max_header_bytes as usize;
    let _ = state::metrics_handle();

    // With METRICS_ADDR set, `/metrics` lives only there (see `serve`).
    let api = if state.config.serving.metrics_addr.is_none() {
        api.route("/metrics", get(metrics_text))
    } else {
        api
    };
    // HTML pages for emailed links: outside the OpenAPI document.
    api.merge(routes::pages::router())
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(state)
        .merge(swagger_ui(doc))
        .layer(axum::middleware::from_fn(middleware::cache_validators))
        .layer(axum::middleware::from_fn(middleware::track_metrics))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn(
            middleware::problem_for_framework_errors,
        ))
        .layer(cors)
        // gzip or br for JSON and the Swagger UI bundle (tower-http skips
        // tiny bodies and already-compressed types).
        .layer(CompressionLayer::new().gzip(true).br(true))
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::header_limits(max_header_bytes, req, next)
        }))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        // A span per request (debug) with the request id and the path only:
        // a query can hold an email, and the pages' queries hold tokens.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(axum::middleware::from_fn(middleware::log_requests))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Serve `router(state)` on `listener` until `shutdown` resolves, then
/// write the audit events still queued. (Migrations and the bootstrap
/// admin come first, in `main.rs`.)
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let audit = state.audit.clone();
    // Background work of a serving replica: reload the signing keys every
    // KEY_REFRESH_INTERVAL, publish the revocation feed on Redis.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    state.tokens.ring().clone().spawn_refresh(
        state.db.clone(),
        state.config.tokens.key_refresh_interval,
        stop_rx.clone(),
    );
    tokio::spawn(gatehouse_shared::feed::run_publisher(
        state.config.db.database_url.clone(),
        state.db.clone(),
        state.queues.redis().clone(),
        state.config.redis.redis_namespace.clone(),
        stop_rx,
    ));
    let limits = server::Limits::from(&state.config.serving);
    // METRICS_ADDR: `/metrics` on a listener of its own, stopped with the API.
    let metrics = match state.config.serving.metrics_addr {
        Some(addr) => {
            let metrics_listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on METRICS_ADDR {addr}: {e}"))?;
            tracing::info!(%addr, "metrics listening");
            let mut stop = stop_tx.subscribe();
            Some(tokio::spawn(server::serve(
                metrics_router(),
                metrics_listener,
                limits,
                async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                },
            )))
        }
        None => None,
    };
    server::serve(router(state), listener, limits, shutdown).await;
    let _ = stop_tx.send(true);
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    // Write the audit events still queued before the process exits.
    if tokio::time::timeout(std::time::Duration::from_secs(5), audit.flush())
        .await
        .is_err()
    {
        tracing::warn!("audit events still queued at shutdown were not written");
    }
    Ok(())
}
