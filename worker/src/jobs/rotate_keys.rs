//! Signing-key rotation on `KEY_ROTATION_SCHEDULE`: one
//! `gatehouse_shared::rotation` step per tick, run by exactly one worker.

use chrono::{DateTime, Utc};
use gatehouse_shared::keys::KeySealer;

use super::Scheduled;
use crate::config::WorkerConfig;
use crate::state::WorkerState;

pub struct RotateKeys;

impl Scheduled for RotateKeys {
    const NAME: &'static str = "key-rotation";

    fn schedule(config: &WorkerConfig) -> &str {
        &config.key_rotation_schedule
    }

    async fn run(state: &WorkerState, tick: DateTime<Utc>) -> anyhow::Result<()> {
        let tokens = &state.config.tokens;
        let sealer = KeySealer::new(tokens.jwt_secret.bytes());
        let ran = gatehouse_shared::rotation::run_scheduled(
            &state.db,
            &sealer,
            &tokens.key_timing(),
            &state.name,
            tick,
        )
        .await?;
        if ran.is_some() {
            gatehouse_shared::rotation::observe_key_age(&state.db).await;
        }
        Ok(())
    }
}
