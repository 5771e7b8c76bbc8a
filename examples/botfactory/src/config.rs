//! BotFactory's settings: every field reads an environment variable (or
//! `.env`); `botfactory --help` lists them all.

use clap::Parser;
use example_kit::settings::{DatabaseArgs, GatehouseArgs, LogArgs, ServerArgs};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "botfactory",
    version,
    about = "BotFactory: clients create and manage their own bots. Identity comes from Gatehouse access tokens."
)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub gatehouse: GatehouseArgs,
    #[command(flatten)]
    pub log: LogArgs,
}
