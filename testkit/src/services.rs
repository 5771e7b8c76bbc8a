//! The PostgreSQL and Redis servers the tests use.
//!
//! `TEST_PG_URL` / `TEST_REDIS_URL` (defaults: the local servers on their
//! standard ports) are used when they answer. When one does not, this test
//! process starts a private throwaway server instead: a PostgreSQL cluster
//! (`initdb` + `pg_ctl`) in a temporary directory on a free port, and/or a
//! `redis-server` on a free port. They are started once per test binary and
//! shared by all its tests.
//!
//! Cleanup: test binaries never run the destructors of statics, and may be
//! killed. So a small watchdog (`sh`) is started first, in its own process
//! group (a Ctrl-C on the terminal does not reach it), with a pipe as its
//! stdin whose only write end this process holds. When this process exits,
//! however it exits (normal end, panic, `exit`, SIGKILL), the kernel closes
//! that end; the watchdog reads EOF, stops both servers through their pid
//! files and removes the directory.
//!
//! If a server is needed and its binaries are missing, one message naming
//! both variables and the install command is printed and the test process
//! exits with status 1 (instead of every test panicking on its own).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Where Debian/Ubuntu install the server binaries (not on PATH).
const PG_SEARCH_ROOT: &str = "/usr/lib/postgresql";
const INSTALL_HINT: &str = concat!(
    "    Debian/Ubuntu: apt-get install postgresql redis-server   (as root, or with sudo)\n",
    "    Fedora:        dnf install postgresql-server redis\n",
    "    macOS:         brew install postgresql redis",
);

/// Stops the servers and removes `$1` once its stdin reaches EOF, that is
/// once the test process that holds the pipe's write end has exited.
const WATCHDOG: &str = r#"
trap '' INT HUP
dir=$1
while read -r _; do :; done
pid_of() {
  pid=$(head -n 1 "$1" 2>/dev/null)
  case "$pid" in ''|*[!0-9]*) echo "" ;; *) echo "$pid" ;; esac
}
# Died while pg_ctl was starting the server? Give it a moment to write its pid.
i=0
while [ -d "$dir/pg" ] && [ ! -f "$dir/pg/postmaster.pid" ] && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
pg=$(pid_of "$dir/pg/postmaster.pid")
redis=$(pid_of "$dir/redis.pid")
# Both at once: PostgreSQL immediate shutdown, Redis normal shutdown.
[ -n "$pg" ] && kill -s QUIT "$pg" 2>/dev/null
[ -n "$redis" ] && kill -s TERM "$redis" 2>/dev/null
i=0
while [ "$i" -lt 100 ]; do
  running=""
  for pid in $pg $redis; do kill -0 "$pid" 2>/dev/null && running=1; done
  [ -z "$running" ] && break
  sleep 0.1
  i=$((i + 1))
done
# Still there after 10 s: force.
[ -n "$running" ] && for pid in $pg $redis; do kill -0 "$pid" 2>/dev/null && kill -s KILL "$pid"; done
rm -rf "$dir"
"#;

struct Services {
    pg_url: String,
    redis_url: String,
    /// Private servers' directory, if any were started.
    dir: Option<PathBuf>,
    /// The watchdog's stdin: held (never closed) until the process exits.
    _watchdog: Option<ChildStdin>,
}

static SERVICES: OnceLock<Services> = OnceLock::new();

/// Server URL of the PostgreSQL used by tests, without a database name.
pub(crate) fn pg_url() -> String {
    services().pg_url.clone()
}

/// URL of the Redis used by tests.
pub(crate) fn redis_url() -> String {
    services().redis_url.clone()
}

/// The directory of the private servers this process started, if any
/// (removed when the process exits).
pub fn private_dir() -> Option<PathBuf> {
    services().dir.clone()
}

fn services() -> &'static Services {
    SERVICES.get_or_init(|| resolve().unwrap_or_else(|message| give_up(&message)))
}

/// Print once, to the real stderr (libtest captures `eprintln!` of tests),
/// and end the test process: the watchdog, if any, cleans up.
fn give_up(message: &str) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n{message}\n");
    let _ = err.flush();
    std::process::exit(1)
}

fn note(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "gatehouse-testkit: {message}");
}

fn resolve() -> Result<Services, String> {
    let pg_url = std::env::var("TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    let pg_up = answers(&pg_url, 5432);
    let redis_up = answers(&redis_url, 6379);
    if pg_up && redis_up {
        return Ok(Services {
            pg_url,
            redis_url,
            dir: None,
            _watchdog: None,
        });
    }

    // Find every missing binary first, so one message lists them all.
    let pg_bin = if pg_up { None } else { Some(find_pg_bin()) };
    let redis_bin = if redis_up {
        None
    } else {
        Some(find_in_path("redis-server"))
    };
    let mut missing = Vec::new();
    if let Some(None) = pg_bin {
        let where_ = match std::env::var_os("TEST_PG_BINDIR") {
            Some(dir) => format!("in TEST_PG_BINDIR={}", Path::new(&dir).display()),
            None => format!("on PATH or in {PG_SEARCH_ROOT}/*/bin"),
        };
        missing.push(format!(
            "  - TEST_PG_URL={pg_url} does not answer, and no initdb + pg_ctl were found {where_}\n    to start a private PostgreSQL."
        ));
    }
    if let Some(None) = redis_bin {
        missing.push(format!(
            "  - TEST_REDIS_URL={redis_url} does not answer, and no redis-server is on PATH\n    to start a private Redis."
        ));
    }
    if !missing.is_empty() {
        return Err(format!(
            "gatehouse-testkit: the tests need PostgreSQL and Redis.\n{}\n\
             Either install the servers (the tests then start private ones by themselves, nothing\n\
             needs to be running):\n{INSTALL_HINT}\n\
             or point TEST_PG_URL (a superuser, e.g. postgres://postgres@127.0.0.1:5432) and\n\
             TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) at servers that are running.",
            missing.join("\n")
        ));
    }

    let dir = std::env::temp_dir().join(format!(
        "gatehouse-testkit-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let watchdog = start_watchdog(&dir)?;
    let urls = format!("TEST_PG_URL={pg_url} / TEST_REDIS_URL={redis_url}");
    let fail = |what: &str, e: String| {
        format!(
            "gatehouse-testkit: could not start {what} for the tests: {e}\n\
             ({urls}: set them to running servers to skip this.)"
        )
    };

    let pg_url = match pg_bin.flatten() {
        Some(bin) => {
            let port = start_postgres(&bin, &dir).map_err(|e| fail("a private PostgreSQL", e))?;
            note(&format!(
                "TEST_PG_URL={pg_url} does not answer: started a private PostgreSQL ({}) on 127.0.0.1:{port}",
                bin.display()
            ));
            format!("postgres://postgres@127.0.0.1:{port}")
        }
        None => pg_url,
    };
    let redis_url = match redis_bin.flatten() {
        Some(bin) => {
            let port = start_redis(&bin, &dir).map_err(|e| fail("a private Redis", e))?;
            note(&format!(
                "TEST_REDIS_URL={redis_url} does not answer: started a private redis-server on 127.0.0.1:{port}"
            ));
            format!("redis://127.0.0.1:{port}")
        }
        None => redis_url,
    };
    note(&format!(
        "private servers live in {} and are removed when this test process exits",
        dir.display()
    ));
    Ok(Services {
        pg_url,
        redis_url,
        dir: Some(dir),
        _watchdog: Some(watchdog),
    })
}

/// `host:port` of a `scheme://[user[:pass]@]host[:port][/...]` URL.
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() {
        return None; // unix socket or libpq defaults: not ours to probe
    }
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((hostport.to_owned(), default_port)),
    }
}

/// Whether something accepts TCP connections at the URL's address. A URL
/// this cannot parse is trusted as is (the tests will say if it is wrong).
fn answers(url: &str, default_port: u16) -> bool {
    let Some((host, port)) = host_port(url, default_port) else {
        return true;
    };
    let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A directory holding both `initdb` and `pg_ctl`: `TEST_PG_BINDIR` if set,
/// else the one on PATH, else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_pg_bin() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("TEST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return has_both(&dir).then_some(dir);
    }
    if let Some(initdb) = find_in_path("initdb") {
        // Debian puts symlinks on PATH at most: use the real directory.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|d| has_both(d)) {
            return Some(dir.to_owned());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_SEARCH_ROOT)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn start_watchdog(dir: &Path) -> Result<ChildStdin, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("gatehouse-testkit-watchdog")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: Ctrl-C in the terminal stops the tests,
        // not the cleanup.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the cleanup watchdog (sh): {e}"))?;
    // Rust opens the pipe with O_CLOEXEC: no other child inherits the write
    // end, so EOF comes exactly when this process is gone.
    child
        .stdin
        .take()
        .ok_or_else(|| "watchdog has no stdin".to_owned())
}

/// `Some(user)` when running as root: PostgreSQL refuses to run as root,
/// so initdb and the server run as this unprivileged user.
fn unprivileged_user() -> Result<Option<String>, String> {
    let uid = command_output(Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        return Ok(None);
    }
    for user in ["postgres", "nobody"] {
        if Command::new("id")
            .arg("-u")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Ok(Some(user.to_owned()));
        }
    }
    Err("running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL (it refuses root)".into())
}

fn command_output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `program args` (as `user`, through runuser, when given) with its
/// output appended to `log`; on failure, the error quotes the log's end.
fn run_logged(
    user: Option<&str>,
    program: &Path,
    args: &[&str],
    dir: &Path,
    log: &Path,
) -> Result<(), String> {
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let file2 = file
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    cmd.stdout(file).stderr(file2);
    let status = cmd.status().map_err(|e| {
        if user.is_some() {
            format!("cannot run runuser (util-linux) to drop root for {program:?}: {e}")
        } else {
            format!("cannot run {program:?}: {e}")
        }
    })?;
    if status.success() {
        return Ok(());
    }
    let mut tail = String::new();
    let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut tail));
    let tail: Vec<&str> = tail.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{} {} exited with {status}; end of {}:\n{}",
        program.display(),
        args.join(" "),
        log.display(),
        tail.join("\n")
    ))
}

fn start_postgres(bin: &Path, dir: &Path) -> Result<u16, String> {
    let user = unprivileged_user()?;
    if let Some(user) = &user {
        // initdb (as `user`) creates dir/pg, so `user` must own dir.
        let ids = |flag: &str| -> Result<u32, String> {
            command_output(Command::new("id").arg(flag).arg(user))?
                .trim()
                .parse()
                .map_err(|e| format!("id {flag} {user}: {e}"))
        };
        std::os::unix::fs::chown(dir, Some(ids("-u")?), Some(ids("-g")?))
            .map_err(|e| format!("cannot chown {} to {user}: {e}", dir.display()))?;
    }
    let data = dir.join("pg");
    let data_s = data.to_string_lossy().into_owned();
    let log = dir.join("postgres-ctl.log");
    // Written by the server itself (as `user`), so not the file above.
    let server_log = dir.join("postgres-server.log");
    run_logged(
        user.as_deref(),
        &bin.join("initdb"),
        &[
            "-D",
            &data_s,
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ],
        dir,
        &log,
    )?;
    // A free port can be taken between the probe and the bind: retry.
    let mut last = String::new();
    for _ in 0..3 {
        let port = crate::free_port();
        // Throwaway data: durability off; no Unix socket (path length limits).
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300"
        );
        match run_logged(
            user.as_deref(),
            &bin.join("pg_ctl"),
            &[
                "-D",
                &data_s,
                "-l",
                &server_log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            dir,
            &log,
        ) {
            Ok(()) => return Ok(port),
            Err(e) => {
                let server = std::fs::read_to_string(&server_log).unwrap_or_default();
                let tail: Vec<&str> = server.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                last = format!("{e}\nend of {}:\n{}", server_log.display(), tail.join("\n"));
            }
        }
    }
    Err(last)
}

fn start_redis(bin: &Path, dir: &Path) -> Result<u16, String> {
    let mut last = String::new();
    for _ in 0..3 {
        let port = crate::free_port();
        let log = dir.join("redis.log");
        run_logged(
            None,
            bin,
            &[
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                &dir.join("redis.pid").to_string_lossy(),
                "--logfile",
                &log.to_string_lossy(),
                "--dir",
                &dir.to_string_lossy(),
            ],
            dir,
            &log,
        )?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis_pong(addr) {
                return Ok(port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        last = format!(
            "redis-server did not answer on {addr} within 10 s (see {})",
            log.display()
        );
    }
    Err(last)
}

fn redis_pong(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_parses_the_url_shapes_we_use() {
        let h = |u, d| host_port(u, d);
        assert_eq!(
            h("postgres://postgres@127.0.0.1:1", 5432),
            Some(("127.0.0.1".into(), 1))
        );
        assert_eq!(
            h("postgres://u:p@db.example:6000/x?sslmode=require", 5432),
            Some(("db.example".into(), 6000))
        );
        assert_eq!(
            h("redis://127.0.0.1", 6379),
            Some(("127.0.0.1".into(), 6379))
        );
        assert_eq!(
            h("rediss://:PASSWORD@[::1]:6380/0", 6379),
            Some(("::1".into(), 6380))
        );
        assert_eq!(h("postgres:///db?host=/run/postgresql", 5432), None);
        assert_eq!(h("not a url", 5432), None);
    }
}
