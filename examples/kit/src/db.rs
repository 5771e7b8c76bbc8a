//! The deadpool pool of diesel-async connections and embedded migrations
//! run under an advisory lock, so replicas that start together migrate once.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;

use crate::settings::DatabaseArgs;

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

/// Build the pool. Each connection gets a statement timeout so a stuck
/// query cannot hold it forever.
pub fn build_pool(args: &DatabaseArgs) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    // Fast recycling still drops connections left inside a transaction.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(|url| {
        async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            diesel::sql_query("SET statement_timeout = '30s'")
                .execute(&mut conn)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        &args.database_url,
        config,
    );
    let pool = Pool::builder(manager)
        .runtime(deadpool::Runtime::Tokio1)
        .max_size(args.db_pool_size as usize)
        .wait_timeout(Some(args.db_pool_timeout))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()?;
    Ok(pool)
}

/// Run pending migrations under a session-level advisory lock (`lock_key`,
/// one per app), so concurrent replicas wait for the first instead of
/// racing. Needs a multi-thread runtime (the harness uses `block_in_place`).
pub async fn run_migrations(
    database_url: &str,
    migrations: EmbeddedMigrations,
    lock_key: i64,
) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(lock_key)
        .execute(&mut conn)
        .await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let result = harness
        .run_pending_migrations(migrations)
        .map(|applied| applied.len())
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
    let mut conn = harness.into_inner();
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(lock_key)
        .execute(&mut conn)
        .await?;
    let applied = result?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(())
}

/// `SELECT 1` through the pool, for readiness checks.
pub async fn ping(pool: &DbPool) -> bool {
    match pool.get().await {
        Ok(mut conn) => diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .is_ok(),
        Err(_) => false,
    }
}
