//! The chat's settings: every field reads an environment variable (or
//! `.env`); `chat --help` lists them all.

use std::time::Duration;

use clap::{Args, Parser};
use example_kit::settings::{DatabaseArgs, GatehouseArgs, LogArgs, ServerArgs, parse_duration};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat",
    version,
    about = "Real-time chat: WebSocket rooms authenticated by Gatehouse access tokens, messages in PostgreSQL, fan-out across replicas through Redis."
)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub gatehouse: GatehouseArgs,
    /// The chat's own Redis, for fan-out between replicas.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    /// Prefix of the chat's Redis channel (`{namespace}:messages`).
    #[arg(long, env = "REDIS_NAMESPACE", default_value = "chat")]
    pub redis_namespace: String,
    #[command(flatten)]
    pub sockets: SocketArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SocketArgs {
    /// How long a new socket may take to send its `auth` frame.
    #[arg(long, env = "WS_AUTH_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ws_auth_timeout: Duration,
    /// Interval of the server's pings; a client silent for two intervals is dropped (1013).
    #[arg(long, env = "WS_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ws_ping_interval: Duration,
    /// Frames queued per socket; a client that lets the queue fill is dropped (1013).
    #[arg(long, env = "WS_SEND_QUEUE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub ws_send_queue: u32,
    /// Longest time one frame may take to write; longer means a stalled client (1013).
    #[arg(long, env = "WS_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ws_write_timeout: Duration,
    /// Kernel send buffer per connection, in bytes (Linux doubles it). Small
    /// enough that a client that stops reading fills it and its queue soon.
    #[arg(long, env = "WS_SOCKET_SEND_BUFFER", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(4096..=16_777_216))]
    pub ws_socket_send_buffer: u32,
    /// Messages one socket may send per second (bursts of twice as many).
    #[arg(long, env = "WS_MESSAGE_RATE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub ws_message_rate: u32,
}
