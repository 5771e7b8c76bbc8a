//! Application state, shared by every handler and socket.

use std::sync::Arc;

use axum::extract::FromRef;
use example_kit::db::DbPool;
use gatehouse_verify::Verifier;
use tokio::sync::watch;

use crate::config::SocketArgs;
use crate::fanout::Fanout;
use crate::hub::Hub;
use crate::page::Page;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: DbPool,
    pub verifier: Verifier,
    pub hub: Arc<Hub>,
    pub fanout: Arc<Fanout>,
    pub sockets: Arc<SocketArgs>,
    pub page: Arc<Page>,
    /// Becomes `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
