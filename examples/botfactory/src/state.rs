//! Application state: the pool and the token verifier.

use axum::extract::FromRef;
use example_kit::db::DbPool;
use gatehouse_verify::Verifier;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: DbPool,
    pub verifier: Verifier,
}
