use std::process::ExitCode;

use gatehouse_worker::config::WorkerConfig;

fn main() -> ExitCode {
    gatehouse_shared::config::load_dotenv();
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck();
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
        gatehouse_worker::run(state, shutdown_signal()).await
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// GET the local `/health`; exit 0 when it answers 200.
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    let addr = std::env::var("WORKER_ADDR").unwrap_or_else(|_| "0.0.0.0:9000".into());
    let port = addr.rsplit(':').next().unwrap_or("9000");
    let target = format!("127.0.0.1:{port}");
    let Ok(mut stream) = std::net::TcpStream::connect(&target) else {
        return ExitCode::FAILURE;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(3)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(n) if n >= 12 && &buf[9..12] == b"200" => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
