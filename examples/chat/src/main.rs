use std::process::ExitCode;

use chat::config::Config;

fn main() -> ExitCode {
    example_kit::settings::load_dotenv();
    // `healthcheck` needs no configuration: it is the container probe.
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return example_kit::process::healthcheck("0.0.0.0:8080", "/health/live");
    }
    let config: Config = example_kit::settings::parse_or_exit();
    example_kit::telemetry::init(&config.log);
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
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.server.app_addr).await?;
        chat::run(config, listener, example_kit::process::shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "chat stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
