use std::process::ExitCode;

use gatehouse_api::cli::{AdminCli, ConfigCli, ConfigCommand};
use gatehouse_api::config::{Cli, Command};

fn main() -> ExitCode {
    gatehouse_shared::config::load_dotenv();
    // `healthcheck` needs no configuration: it is the container probe.
    // `admin` and `config` are parsed on their own, so they require only
    // what they use (`admin`: DATABASE_URL) and can report bad settings.
    match std::env::args().nth(1).as_deref() {
        Some("healthcheck") => {
            return gatehouse_shared::process::healthcheck(
                "API_ADDR",
                "0.0.0.0:8000",
                "/health/live",
            );
        }
        Some("admin") => {
            let cli: AdminCli = parse_tail();
            return gatehouse_shared::process::block_on_main(
                "gatehouse-api admin",
                gatehouse_api::cli::run_admin(cli.args),
            );
        }
        Some("openapi") => {
            // The document of this build, for linters and client
            // generators: no configuration, no services.
            println!("{}", gatehouse_api::openapi_json());
            return ExitCode::SUCCESS;
        }
        Some("config") => {
            let cli: ConfigCli = parse_tail();
            return config(cli.command);
        }
        _ => {}
    }
    let cli: Cli = gatehouse_shared::config::parse_or_exit();
    match cli.command {
        // Reached only with options before the subcommand.
        Some(Command::Admin(args)) => gatehouse_shared::process::block_on_main(
            "gatehouse-api admin",
            gatehouse_api::cli::run_admin(args),
        ),
        Some(Command::Config(cmd)) => config(cmd),
        Some(Command::Openapi) => {
            println!("{}", gatehouse_api::openapi_json());
            ExitCode::SUCCESS
        }
        None | Some(Command::Serve) => {
            gatehouse_shared::telemetry::init(&cli.config.log);
            gatehouse_shared::process::block_on_main("gatehouse-api", serve(cli))
        }
    }
}

/// Parse `gatehouse-api <sub> …` with the subcommand's own parser.
fn parse_tail<T: clap::Parser>() -> T {
    let args = std::env::args_os().skip(2);
    match T::try_parse_from(std::iter::once("gatehouse-api".into()).chain(args)) {
        Ok(v) => v,
        Err(e) => e.exit(),
    }
}

fn config(cmd: ConfigCommand) -> ExitCode {
    match cmd {
        ConfigCommand::Check => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(gatehouse_api::cli::config_check()),
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let addr = cli.config.api_addr;
    // Settings first (a published JWT_SECRET is refused before any
    // connection), then wait for PostgreSQL and Redis.
    cli.config.validate().map_err(anyhow::Error::msg)?;
    gatehouse_shared::startup::wait_for_services(
        &cli.config.db,
        Some(&cli.config.redis),
        cli.config.startup.startup_timeout,
    )
    .await?;
    gatehouse_shared::db::run_migrations(&cli.config.db.database_url).await?;
    let state = gatehouse_api::build_state(cli.config).await?;
    gatehouse_api::accounts::bootstrap_admin(&state).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let docs = format!("{}/docs", state.config.public_url());
    tracing::info!(%addr, %docs, "gatehouse-api listening; API docs at {docs}");
    gatehouse_api::serve(
        state,
        listener,
        gatehouse_shared::process::shutdown_signal(),
    )
    .await?;
    tracing::info!("gatehouse-api stopped");
    Ok(())
}
