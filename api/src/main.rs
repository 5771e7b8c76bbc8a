use std::process::ExitCode;

use gatehouse_api::config::{AdminCommand, Cli, Command};
use gatehouse_shared::domain::{Email, Password};

fn main() -> ExitCode {
    gatehouse_shared::config::load_dotenv();
    // `healthcheck` needs no configuration: it is the container probe.
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return gatehouse_shared::process::healthcheck("API_ADDR", "0.0.0.0:8000", "/health/live");
    }
    let cli: Cli = gatehouse_shared::config::parse_or_exit();
    gatehouse_shared::telemetry::init(&cli.config.log);
    gatehouse_shared::process::block_on_main("gatehouse-api", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let addr = cli.config.api_addr;
    // Settings first (a published JWT_SECRET is refused before any
    // connection), then wait for PostgreSQL and Redis.
    cli.config.validate().map_err(anyhow::Error::msg)?;
    gatehouse_shared::startup::wait_for_services(
        &cli.config.db,
        &cli.config.redis,
        cli.config.startup.startup_timeout,
    )
    .await?;
    gatehouse_shared::db::run_migrations(&cli.config.db.database_url).await?;
    let state = gatehouse_api::build_state(cli.config).await?;
    match cli.command {
        None | Some(Command::Serve) => {
            gatehouse_api::accounts::bootstrap_admin(&state).await?;
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let docs = format!("{}/docs", state.config.public_url);
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
        Some(Command::Admin(cmd)) => admin(&state, cmd).await,
    }
}

/// Operator commands: `admin create` and `admin promote`.
async fn admin(state: &gatehouse_api::state::AppState, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Create { email, password } => {
            let email =
                Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
            let password = Password::parse(password, Some(&email))
                .map_err(|e| anyhow::anyhow!("--password: {}", e.message()))?;
            let hash = state.hasher.hash(&password).await?;
            let mut conn = state.db.get().await?;
            let created = gatehouse_api::accounts::create_admin(&mut conn, email.clone(), hash)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            anyhow::ensure!(
                created,
                "an account with email {email} already exists (use `admin promote`)"
            );
            println!("created admin {email}");
        }
        AdminCommand::Promote { email } => {
            let email =
                Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
            gatehouse_api::users::promote(state, &email)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?
                .ok_or_else(|| anyhow::anyhow!("no account with email {email}"))?;
            println!("promoted {email} to admin");
        }
    }
    Ok(())
}
