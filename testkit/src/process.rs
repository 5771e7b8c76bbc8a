//! Run the real `gatehouse-api` and `gatehouse-worker` binaries.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// Path of a workspace binary next to the running test executable
/// (`target/<profile>/<name>`). `cargo test --workspace` builds both.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo build --workspace` or `cargo test --workspace`",
        path.display()
    );
    path
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, envs: &[(&str, String)]) -> Self {
        Self::spawn_to(name, envs, None)
    }

    /// Like `spawn`, with stdout and stderr both written to `log` (for
    /// tests that read what a binary logs). `envs` can set `RUST_LOG` and
    /// `LOG_FORMAT`.
    pub fn spawn_logging_to(name: &str, envs: &[(&str, String)], log: &std::path::Path) -> Self {
        Self::spawn_to(name, envs, Some(log))
    }

    fn spawn_to(name: &str, envs: &[(&str, String)], log: Option<&std::path::Path>) -> Self {
        let mut cmd = Command::new(binary(name));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", "warn,gatehouse_api=info,gatehouse_worker=info")
            // Test fixtures use secrets published in deploy/known-secrets.txt.
            .env("GATEHOUSE_DEV_ALLOW_KNOWN_SECRETS", "true")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(path) = log {
            let file = std::fs::File::create(path).unwrap();
            cmd.stdout(file.try_clone().unwrap()).stderr(file);
        } else if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().unwrap(),
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().map(|p| p as i32).unwrap_or(0)
    }

    /// Send a signal (`TERM`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    pub async fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().await.unwrap()
    }
}
