//! BotFactory (seeds 000 and 001): clients create and manage their own bots.
//! Gatehouse does identity; this service verifies Gatehouse's access tokens
//! with `gatehouse-verify` and keeps only bots, keyed by the user id.

pub mod auth;
pub mod bots;
pub mod config;
pub mod openapi;
pub mod routes;
pub mod schema;
pub mod state;
pub mod swagger;

use axum::Router;
use axum::routing::get;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::state::AppState;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock around migrations ("botfacto").
pub const MIGRATION_LOCK_KEY: i64 = 0x626f_7466_6163_746f;

/// The routes and their OpenAPI document, from the same registrations.
pub fn api_routes(gatehouse_public_url: &str) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::bots::router())
        .merge(routes::clients::router())
        .merge(routes::health::router())
        .split_for_parts();
    openapi::add_security(&mut doc, gatehouse_public_url);
    (router, doc)
}

/// Describe BotFactory's own metrics (the HTTP ones come from the kit).
fn describe_metrics() {
    example_kit::gatehouse::describe_verifier_metrics();
    metrics::describe_counter!("botfactory_bots_created_total", "Bots created.");
    metrics::describe_counter!("botfactory_bots_deleted_total", "Bots deleted.");
    metrics::counter!("botfactory_bots_created_total").increment(0);
    metrics::counter!("botfactory_bots_deleted_total").increment(0);
}

/// The full HTTP application with every layer.
pub fn router(state: AppState, config: &Config) -> Router {
    let (api, doc) = api_routes(config.gatehouse.public_url());
    let app = api
        .route(
            "/metrics",
            get(example_kit::gatehouse::metrics_with_verifier),
        )
        .fallback(example_kit::http::not_found)
        .method_not_allowed_fallback(example_kit::http::method_not_allowed)
        .with_state(state)
        .merge(swagger::router(doc));
    example_kit::http::with_common_layers(
        app,
        config.server.max_body_bytes,
        config.server.request_timeout,
    )
}

/// Migrate, start the verifier, then serve until `shutdown`.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    example_kit::error::set_app_name("botfactory");
    example_kit::http::init_metrics("botfactory");
    describe_metrics();
    example_kit::db::run_migrations(&config.db.database_url, MIGRATIONS, MIGRATION_LOCK_KEY)
        .await?;
    let db = example_kit::db::build_pool(&config.db)?;
    let verifier = example_kit::gatehouse::start_verifier(&config.gatehouse).await?;
    let state = AppState {
        db,
        verifier: verifier.clone(),
    };
    let app = router(state, &config);
    tracing::info!(addr = %listener.local_addr()?, "botfactory listening");
    example_kit::http::serve(app, listener, shutdown, None).await?;
    verifier.shutdown().await;
    tracing::info!("botfactory stopped");
    Ok(())
}
