use std::process::ExitCode;

use gatehouse_worker::config::WorkerConfig;

fn main() -> ExitCode {
    gatehouse_shared::config::load_dotenv();
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return gatehouse_shared::process::healthcheck("WORKER_ADDR", "0.0.0.0:9000", "/health");
    }
    let config: WorkerConfig = gatehouse_shared::config::parse_or_exit();
    gatehouse_shared::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let state = gatehouse_worker::build_state(config)?;
        gatehouse_worker::serve(state, gatehouse_shared::process::shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "gatehouse-worker stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
