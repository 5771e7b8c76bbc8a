//! The real-time chat (seed 002) on Gatehouse: WebSocket rooms whose sockets
//! authenticate with a Gatehouse access token in their first frame, messages
//! in PostgreSQL, fan-out to every replica through Redis pub/sub, and a
//! static page that signs up and logs in against Gatehouse.

pub mod auth;
pub mod config;
pub mod fanout;
pub mod hub;
pub mod messages;
pub mod page;
pub mod protocol;
pub mod routes;
pub mod schema;
pub mod state;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio::sync::watch;

use crate::config::Config;
use crate::fanout::Fanout;
use crate::hub::Hub;
use crate::page::Page;
use crate::state::AppState;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock around migrations ("chatmigr").
pub const MIGRATION_LOCK_KEY: i64 = 0x6368_6174_6d69_6772;

/// How long shutdown waits for sockets to take their 1001.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Describe every chat metric (the HTTP ones come from the kit).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    example_kit::gatehouse::describe_verifier_metrics();
    describe_gauge!("chat_ws_connections", "Open WebSockets on this replica.");
    describe_counter!(
        "chat_ws_authenticated_total",
        "Sockets that authenticated (first auth frame accepted)."
    );
    describe_counter!(
        "chat_ws_closed_total",
        "Sockets closed, by reason: client, auth_failed, revoked, expired, slow, heartbeat, protocol, shutdown."
    );
    describe_counter!(
        "chat_slow_clients_dropped_total",
        "Sockets dropped for not keeping up (queue full, write or heartbeat timeout)."
    );
    describe_counter!(
        "chat_messages_received_total",
        "Messages stored from this replica's sockets."
    );
    describe_counter!(
        "chat_messages_rejected_total",
        "Incoming frames refused, by reason: invalid_frame, invalid_body, rate_limited."
    );
    describe_counter!(
        "chat_messages_delivered_total",
        "Message frames queued to sockets on this replica."
    );
    describe_counter!(
        "chat_publish_failures_total",
        "Stored messages that could not be published to Redis."
    );
    describe_counter!(
        "chat_catch_up_messages_total",
        "Messages delivered from PostgreSQL after a Redis subscription came back."
    );
    describe_gauge!(
        "chat_redis_subscribed",
        "1 while this replica receives the fan-out channel."
    );
    describe_histogram!(
        "chat_fanout_delay_seconds",
        metrics::Unit::Seconds,
        "From publish to local delivery (queued to every socket of the room)."
    );
    for name in [
        "chat_ws_authenticated_total",
        "chat_slow_clients_dropped_total",
        "chat_messages_received_total",
        "chat_messages_delivered_total",
        "chat_publish_failures_total",
        "chat_catch_up_messages_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("chat_ws_connections").set(0.0);
    metrics::gauge!("chat_redis_subscribed").set(0.0);
}

/// The full HTTP application with every layer.
pub fn router(state: AppState, config: &Config) -> Router {
    let app = routes::router()
        .fallback(example_kit::http::not_found)
        .method_not_allowed_fallback(example_kit::http::method_not_allowed)
        .with_state(state);
    example_kit::http::with_common_layers(
        app,
        config.server.max_body_bytes,
        config.server.request_timeout,
    )
}

/// Migrate, connect, start the verifier and the fan-out subscriber, then
/// serve until `shutdown`; then close every socket with 1001.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    example_kit::error::set_app_name("chat");
    example_kit::http::init_metrics("chat");
    describe_metrics();
    example_kit::db::run_migrations(&config.db.database_url, MIGRATIONS, MIGRATION_LOCK_KEY)
        .await?;
    let db = example_kit::db::build_pool(&config.db)?;
    let fanout = Arc::new(Fanout::connect(&config.redis_url, &config.redis_namespace).await?);
    let verifier = example_kit::gatehouse::start_verifier(&config.gatehouse).await?;
    let page = Page::new(
        config.gatehouse.public_url(),
        &config.gatehouse.public_origin(),
    )?;
    let hub = Arc::new(Hub::default());
    let (stop, stopping) = watch::channel(false);
    let subscriber = tokio::spawn(fanout.clone().run_subscriber(
        hub.clone(),
        db.clone(),
        stopping.clone(),
    ));
    let state = AppState {
        db,
        verifier: verifier.clone(),
        hub: hub.clone(),
        fanout,
        sockets: Arc::new(config.sockets.clone()),
        page: Arc::new(page),
        shutdown: stopping,
    };
    let app = router(state, &config);
    tracing::info!(addr = %listener.local_addr()?, "chat listening");
    let signal = async move {
        shutdown.await;
        // Sockets leave hyper's tracking once upgraded: tell them ourselves.
        let _ = stop.send(true);
    };
    let send_buffer = Some(config.sockets.ws_socket_send_buffer as usize);
    let served = example_kit::http::serve(app, listener, signal, send_buffer).await;
    if !hub.drained(DRAIN_TIMEOUT).await {
        tracing::warn!(
            open = hub.open_sockets(),
            "sockets still open after the drain timeout"
        );
    }
    let _ = subscriber.await;
    verifier.shutdown().await;
    served?;
    tracing::info!("chat stopped");
    Ok(())
}
