//! Process plumbing: the shutdown signal and the container health probe.

use std::process::ExitCode;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
    tracing::info!("shutdown signal received");
}

/// `healthcheck` subcommand: GET `path` on the local port of `APP_ADDR`
/// (default `default_addr`); exit 0 on 200. It needs no other setting, so
/// it works as a distroless `HEALTHCHECK` (no curl in the image).
pub fn healthcheck(default_addr: &str, path: &str) -> ExitCode {
    use std::io::{Read, Write};
    let addr = std::env::var("APP_ADDR").unwrap_or_else(|_| default_addr.into());
    let port = addr.rsplit(':').next().unwrap_or_default();
    let target = format!("127.0.0.1:{port}");
    let Ok(mut stream) = std::net::TcpStream::connect(&target) else {
        return ExitCode::FAILURE;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(3)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(n) if n >= 12 && &buf[9..12] == b"200" => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
