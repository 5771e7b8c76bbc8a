//! Process plumbing both binaries share: the shutdown signal and the
//! container health probe.

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

/// `healthcheck` subcommand: GET `path` on the local port of the address in
/// `addr_var` (default `default_addr`); exit 0 on 200. Needs no other
/// configuration, so it works as a distroless `HEALTHCHECK`.
pub fn healthcheck(addr_var: &str, default_addr: &str, path: &str) -> ExitCode {
    use std::io::{Read, Write};
    let addr = std::env::var(addr_var).unwrap_or_else(|_| default_addr.into());
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

/// Run a binary's `main` on a multi-threaded runtime. An error is logged
/// and printed as one line, and the process exits 1.
pub fn block_on_main(
    name: &str,
    main: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr (not also as a log line): the message is
            // written to be read there.
            eprintln!("error: {name}: {}", one_line(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Join a message's lines (a multi-line cause) into one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
