use std::process::ExitCode;

use gatehouse_worker::config::WorkerConfig;

fn main() -> ExitCode {
    gatehouse_shared::config::load_dotenv();
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return gatehouse_shared::process::healthcheck("WORKER_ADDR", "0.0.0.0:9000", "/health");
    }
    let config: WorkerConfig = gatehouse_shared::config::parse_or_exit();
    gatehouse_shared::telemetry::init(&config.log);
    gatehouse_shared::process::block_on_main("gatehouse-worker", async {
        config.validate().map_err(anyhow::Error::msg)?;
        // PostgreSQL only: the scheduled jobs run without Redis (issue 11
        // item 21), and the consumers wait for Redis on their own.
        gatehouse_shared::startup::wait_for_services(
            &config.db,
            None,
            config.startup.startup_timeout,
        )
        .await?;
        let state = gatehouse_worker::build_state(config)?;
        gatehouse_worker::serve(state, gatehouse_shared::process::shutdown_signal()).await
    })
}
