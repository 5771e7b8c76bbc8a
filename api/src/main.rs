use std::process::ExitCode;

use gatehouse_api::config::{AdminCommand, Cli, Command};
use gatehouse_shared::domain::{Email, Password, Role};
use gatehouse_shared::models::{User, UserChanges};

fn main() -> ExitCode {
    gatehouse_shared::config::load_dotenv();
    // `healthcheck` needs no configuration: it is the container probe.
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck();
    }
    let cli: Cli = gatehouse_shared::config::parse_or_exit();
    gatehouse_shared::telemetry::init(&cli.config.log);
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "gatehouse-api stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let addr = cli.config.api_addr;
    let state = gatehouse_api::build_state(cli.config)?;
    gatehouse_shared::db::run_migrations(&state.config.db.database_url).await?;
    match cli.command {
        None | Some(Command::Serve) => {
            gatehouse_api::accounts::bootstrap_admin(&state).await?;
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "gatehouse-api listening");
            gatehouse_api::serve(state, listener, shutdown_signal()).await?;
            tracing::info!("gatehouse-api stopped");
            Ok(())
        }
        Some(Command::Admin(cmd)) => admin(&state, cmd).await,
    }
}

/// Operator commands: `admin create` and `admin promote`.
async fn admin(state: &gatehouse_api::state::AppState, cmd: AdminCommand) -> anyhow::Result<()> {
    let mut conn = state.db.get().await?;
    match cmd {
        AdminCommand::Create { email, password } => {
            let email =
                Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
            let password = Password::parse(password, Some(&email))
                .map_err(|e| anyhow::anyhow!("--password: {}", e.message()))?;
            let hash = state.hasher.hash(&password).await?;
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
            let user = User::find_by_email(&mut conn, &email)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account with email {email}"))?;
            let changes = UserChanges {
                role: Some(Role::Admin.as_str().into()),
                ..Default::default()
            };
            User::update(&mut conn, user.id, changes).await?;
            println!("promoted {email} to admin");
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown signal received; draining connections");
}

/// GET the local readiness endpoint; exit 0 when it answers 200.
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    let addr = std::env::var("API_ADDR").unwrap_or_else(|_| "0.0.0.0:8000".into());
    let port = addr.rsplit(':').next().unwrap_or("8000");
    let target = format!("127.0.0.1:{port}");
    let Ok(mut stream) = std::net::TcpStream::connect(&target) else {
        return ExitCode::FAILURE;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(3)));
    let req = format!("GET /health/live HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(n) if n >= 12 && &buf[9..12] == b"200" => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
