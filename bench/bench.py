#!/usr/bin/env python3
"""Gatehouse benchmark: scenarios (a)-(k) of issue 7 and their budgets.

Run it through `bench/run.sh`, which builds the release binaries and the
argon2 helper first. Python 3.11 standard library only. Everything talks to
127.0.0.1: the local PostgreSQL (trust auth), the local Redis, and the API,
worker and SMTP sink this script starts on free ports. Scratch databases and
the Redis namespace are removed on exit, whatever happens.

Settings (environment):
  BENCH_DURATION     seconds measured per scenario (default 10)
  BENCH_WARMUP       seconds of warm-up before each (default 3)
  BENCH_SCENARIOS    subset to run, e.g. "a,b,c" (default all: abcdefghijk)
  BENCH_STALE        stale unverified users for (g)/(k) (default 1000000)
  BENCH_VERIFIED     verified users beside them (default 1000000)
  BENCH_SIGNUP_RATE  signups/s in (f) (default 50)
  BENCH_PURGE_ME_DELAY_MS  pause per connection between GET /me requests
                     before and during the purge (g): a steady load well below
                     saturation, so p99 shows interference, not CPU sharing;
                     0 = saturate like (c) (default 10)
  BENCH_BIN          directory of gatehouse-api/-worker (set by run.sh)
  BENCH_ARGON2       path of the argon2 helper (set by run.sh)
  PGHOST/PGPORT/PGUSER (127.0.0.1/5432/postgres), REDIS_URL (redis://127.0.0.1:6379)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "lua"
RESULTS = HERE / "results"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


DURATION = env_int("BENCH_DURATION", 10)
WARMUP = env_int("BENCH_WARMUP", 3)
SCENARIOS = set(os.environ.get("BENCH_SCENARIOS", "abcdefghijk").replace(",", "").lower())
STALE = env_int("BENCH_STALE", 1_000_000)
VERIFIED = env_int("BENCH_VERIFIED", 1_000_000)
SIGNUP_RATE = env_int("BENCH_SIGNUP_RATE", 50)
PURGE_ME_DELAY_MS = env_int("BENCH_PURGE_ME_DELAY_MS", 10)
BIN = Path(os.environ.get("BENCH_BIN", "/var/tmp/gatehouse-target/release"))
ARGON2 = os.environ.get("BENCH_ARGON2", "")
PGHOST = os.environ.get("PGHOST", "127.0.0.1")
PGPORT = os.environ.get("PGPORT", "5432")
PGUSER = os.environ.get("PGUSER", "postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
CORES = os.cpu_count() or 1
WRK_THREADS = max(1, min(2, CORES))

PASSWORD = "bench-password-Vq7m2x"
N_USERS = 512  # verified bench users with PASSWORD
ME_TOKENS = 256  # sessions used by GET /me
IDLE_SETTLE_S = 5  # quiet seconds before an idle RSS reading
REFRESH_SESSIONS = 64  # sessions rotated by (e); as many again for its warm-up

RUN_ID = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
DB_PREFIX = "ghbench_" + RUN_ID.lower().replace("-", "_")
NAMESPACE = "ghbench-" + RUN_ID.lower()
RUN_DIR = RESULTS / RUN_ID


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------
# PostgreSQL, Redis, processes


def psql(db: str, sql: str, timing: bool = False) -> str:
    args = ["psql", "-h", PGHOST, "-p", PGPORT, "-U", PGUSER, "-d", db, "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1"]
    if timing:
        sql = "\\timing on\n" + sql
    out = subprocess.run(args, input=sql, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql {db}: {out.stderr.strip()}")
    return out.stdout.strip()


def db_url(db: str) -> str:
    return f"postgres://{PGUSER}@{PGHOST}:{PGPORT}/{db}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cleanup() -> None:
    host, port = "127.0.0.1", "6379"
    m = re.match(r"redis://([^:/]+)(?::(\d+))?", REDIS_URL)
    if m:
        host, port = m.group(1), m.group(2) or "6379"
    try:
        keys = subprocess.run(["redis-cli", "-h", host, "-p", port, "--scan", "--pattern",
                               NAMESPACE + "*"], capture_output=True, text=True, timeout=30).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-h", host, "-p", port, "UNLINK", *keys[i:i + 500]],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        log(f"warning: Redis cleanup failed: {e}")


def rss_kib(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


BUSY_RE = re.compile(r"^(cargo|rustc|cargo-clippy|clippy-driver|rustdoc)$")
TEST_BIN_RE = re.compile(r"/(deps|debug|release)/[A-Za-z0-9_-]+-[0-9a-f]{16}(\s|$)")
SHARED_SERVICES = {"postgres", "redis-server"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_processes() -> list[str]:
    """Builds and test binaries of other engineers: their CPU use spoils numbers."""
    out = subprocess.run(["ps", "-eo", "pid=,comm=,args="], capture_output=True, text=True).stdout
    busy = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        pid, comm, args = parts
        if int(pid) == os.getpid():
            continue
        if BUSY_RE.match(comm) or comm.startswith("integration-") or TEST_BIN_RE.search(args):
            busy.append(f"{pid} {comm}")
    return busy


def cpu_ticks() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, comm, utime+stime ticks) for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        out[int(entry)] = (int(fields[1]), comm, int(fields[11]) + int(fields[12]))
    return out


def own_pids(snapshot: dict[int, tuple[int, str, int]]) -> set[int]:
    """This script and all its descendants (API, worker, wrk, pgbench...)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in snapshot.items():
        children.setdefault(ppid, []).append(pid)
    own, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        own.add(pid)
        todo.extend(children.get(pid, []))
    return own


def foreign_cpu(before: dict, after: dict, include_services: bool) -> list[tuple[str, float]]:
    """CPU seconds used between two snapshots by processes that are not ours."""
    own = own_pids(after)
    used = []
    for pid, (_, comm, ticks) in after.items():
        if pid in own or (not include_services and comm in SHARED_SERVICES):
            continue
        delta = (ticks - before.get(pid, (0, comm, ticks if pid in before else 0))[2]) / CLK_TCK
        if delta > 0.05:
            used.append((f"{comm}[{pid}]", round(delta, 2)))
    return sorted(used, key=lambda x: -x[1])


class ForeignMonitor:
    """Accounts the CPU time other people's processes take during each
    scenario; the report flags scenarios where it was significant."""

    def __init__(self):
        self.label = "setup"
        self.by_label: dict[str, dict[str, float]] = {}
        self.wall: dict[str, float] = {}
        self.stop_flag = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        prev = cpu_ticks()
        last = time.monotonic()
        while not self.stop_flag.wait(1.0):
            cur = cpu_ticks()
            now = time.monotonic()
            acc = self.by_label.setdefault(self.label, {})
            self.wall[self.label] = self.wall.get(self.label, 0.0) + now - last
            for name, secs in foreign_cpu(prev, cur, include_services=False):
                name = name.split("[")[0]
                acc[name] = round(acc.get(name, 0.0) + secs, 2)
            prev, last = cur, now

    def summary(self) -> dict:
        out = {}
        for label, acc in self.by_label.items():
            total = sum(acc.values())
            wall = self.wall.get(label, 0.0)
            if wall and total / (wall * CORES) > 0.03:
                top = sorted(acc.items(), key=lambda x: -x[1])[:5]
                out[label] = {"foreign_cpu_share": round(total / (wall * CORES), 3),
                              "top": dict(top)}
        return out

    def stop(self):
        self.stop_flag.set()


class Proc:
    """A child in its own session (own process group and scheduler autogroup,
    as a service in its own container or unit would be)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]):
        self.name = name
        self.logfile = open(RUN_DIR / f"{name}.log", "ab")
        self.started = time.monotonic()
        self.p = subprocess.Popen(args, env=env, stdout=self.logfile, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        PROCS.append(self)

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self, timeout: float = 15) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
            except ProcessLookupError:
                pass
        self.logfile.close()
        if self in PROCS:
            PROCS.remove(self)


PROCS: list[Proc] = []
DATABASES: list[str] = []


def create_db(name: str, template: str | None = None) -> str:
    sql = f'CREATE DATABASE "{name}"'
    if template:
        sql += f' TEMPLATE "{template}" STRATEGY FILE_COPY'
    psql("postgres", sql)
    DATABASES.append(name)
    return name


def drop_db(name: str) -> None:
    try:
        psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except RuntimeError as e:
        log(f"warning: {e}")
    if name in DATABASES:
        DATABASES.remove(name)


def cleanup() -> None:
    for proc in list(PROCS):
        proc.stop()
    for db in list(DATABASES):
        drop_db(db)
    redis_cleanup()


# --------------------------------------------------------------------------
# HTTP


class Api:
    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()

    def conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.local.conn = c
        return c

    def call(self, method: str, path: str, body=None, token: str | None = None):
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in (1, 2):
            c = self.conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt == 2:
                    raise

    def login(self, email: str, password: str) -> dict:
        status, body = self.call("POST", "/auth/login", {"email": email, "password": password})
        if status != 200:
            raise RuntimeError(f"login {email}: {status} {body}")
        return body


def wait_http(port: int, path: str, deadline_s: float, proc: Proc) -> float:
    """Poll until 200; returns seconds since the process started."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.p.returncode}; see {proc.logfile.name}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return time.monotonic() - proc.started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{proc.name} not ready after {deadline_s}s; see {proc.logfile.name}")


# --------------------------------------------------------------------------
# wrk


def wrk_cmd(script: str, conns: int, seconds: float, url: str, out: Path,
            extra_env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.update({"BENCH_LUA": str(LUA), "BENCH_OUT": str(out), "BENCH_THREADS": str(WRK_THREADS)})
    env.update(extra_env or {})
    cmd = ["wrk", "-t", str(WRK_THREADS), "-c", str(conns), "-d", f"{int(seconds)}s",
           "--timeout", "5s", "-s", str(LUA / script), url]
    return cmd, env


def summarize(raw: dict) -> dict:
    secs = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    e = raw["errors"]
    return {
        "requests": raw["requests"],
        "seconds": round(secs, 2),
        "rps": round(raw["requests"] / secs, 1) if secs else 0.0,
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "max_ms": lat["max"] / 1000,
        "errors": sum(e.values()),
        "error_detail": e,
    }


def wrk(name: str, script: str, conns: int, url: str, seconds: int = 0, warmup: int = -1,
        extra_env: dict[str, str] | None = None) -> dict:
    """Warm up, then measure; returns the summary of the measured run."""
    seconds = seconds or DURATION
    warmup = WARMUP if warmup < 0 else warmup
    if warmup > 0:
        cmd, env = wrk_cmd(script, conns, warmup, url, RUN_DIR / f"{name}.warmup.json", extra_env)
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    out = RUN_DIR / f"{name}.json"
    cmd, env = wrk_cmd(script, conns, seconds, url, out, extra_env)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    (RUN_DIR / f"{name}.wrk.txt").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise RuntimeError(f"wrk {name}: {res.stderr}")
    return summarize(json.loads(out.read_text()))


def fmt_result(r: dict) -> str:
    return f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']}"


# --------------------------------------------------------------------------
# SMTP sink for (f)


class SmtpSink:
    """A minimal SMTP server that records when each recipient's message ends."""

    def __init__(self):
        self.received: dict[str, float] = {}
        self.messages = 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._session, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        def say(line: str):
            writer.write(line.encode() + b"\r\n")

        say("220 gatehouse-bench-sink ESMTP")
        rcpts: list[str] = []
        try:
            while True:
                await writer.drain()
                raw = await reader.readline()
                if not raw:
                    break
                line = raw.decode("latin-1").strip()
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    say("250-gatehouse-bench-sink")
                    say("250 8BITMIME")
                elif verb == "HELO":
                    say("250 gatehouse-bench-sink")
                elif verb == "MAIL":
                    rcpts = []
                    say("250 OK")
                elif verb == "RCPT":
                    m = re.search(r"<([^>]*)>", line)
                    rcpts.append((m.group(1) if m else line[8:]).lower())
                    say("250 OK")
                elif verb == "DATA":
                    say("354 end with <CRLF>.<CRLF>")
                    await writer.drain()
                    while True:
                        data = await reader.readline()
                        if not data or data in (b".\r\n", b".\n"):
                            break
                    now = time.monotonic()
                    self.messages += 1
                    for r in rcpts:
                        self.received.setdefault(r, now)
                    say("250 OK queued")
                elif verb in ("RSET", "NOOP"):
                    if verb == "RSET":
                        rcpts = []
                    say("250 OK")
                elif verb == "QUIT":
                    say("221 bye")
                    await writer.drain()
                    break
                else:
                    say("502 not implemented")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


# --------------------------------------------------------------------------
# Services


class Stack:
    """API + worker on one database."""

    def __init__(self, db: str, smtp_port: int, label: str):
        self.db = db
        self.label = label
        self.api_port = free_port()
        self.worker_port = free_port()
        self.env = dict(os.environ)
        for k in [k for k in self.env if k.startswith(("BENCH_", "CARGO"))]:
            del self.env[k]
        self.env.update({
            "DATABASE_URL": db_url(db),
            "REDIS_URL": REDIS_URL,
            "REDIS_NAMESPACE": NAMESPACE + "-" + label,
            "JWT_SECRET": JWT_SECRET,
            "API_ADDR": f"127.0.0.1:{self.api_port}",
            "WORKER_ADDR": f"127.0.0.1:{self.worker_port}",
            "PUBLIC_URL": f"http://127.0.0.1:{self.api_port}",
            "RATE_LIMITS": "off",
            "COOKIE_SECURE": "false",
            "MAIL_TRANSPORT": "smtp",
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            # Tokens minted at the start must outlive the whole run.
            "ACCESS_TOKEN_TTL": "2h",
            # Never fire the scheduled purge during a run; (g) triggers it.
            "PURGE_SCHEDULE": "0 0 0 1 1 *",
            "BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
            "BOOTSTRAP_ADMIN_PASSWORD": PASSWORD,
            "LOG_FORMAT": "json",
            "RUST_LOG": os.environ.get("BENCH_RUST_LOG", "info"),
        })
        self.api: Proc | None = None
        self.worker: Proc | None = None
        self.client = Api(self.api_port)
        self.url = f"http://127.0.0.1:{self.api_port}"

    def start(self) -> dict:
        self.worker = Proc(f"{self.label}-worker", [str(BIN / "gatehouse-worker")], self.env)
        worker_ready = wait_http(self.worker_port, "/health", 60, self.worker)
        self.api = Proc(f"{self.label}-api", [str(BIN / "gatehouse-api")], self.env)
        api_ready = wait_http(self.api_port, "/health/ready", 60, self.api)
        return {"worker_ready_s": round(worker_ready, 3), "api_ready_s": round(api_ready, 3)}

    def stop(self):
        for p in (self.api, self.worker):
            if p:
                p.stop()


JWT_SECRET = secrets.token_urlsafe(48)
ADMIN_EMAIL = "bench-admin@bench.test"


def seed_bench_users(db: str, phc: str) -> list[str]:
    psql(db, f"""
        INSERT INTO users (id, email, password_hash, role, is_verified, verified_at)
        SELECT gen_random_uuid(), 'bench-' || i || '@bench.test', '{phc}', 'user', true, now()
        FROM generate_series(1, {N_USERS}) AS i;
    """)
    return [f"bench-{i}@bench.test" for i in range(1, N_USERS + 1)]


def login_many(api: Api, emails: list[str]) -> list[dict]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda e: api.login(e, PASSWORD), emails))


# --------------------------------------------------------------------------
# Scenarios


def scenario_i() -> dict:
    m, t, p = argon2_params()
    # Each of its three measurements runs BENCH_DURATION after one untimed
    # hash, like every other scenario (issue 7: at least 10 s after warm-up).
    secs = DURATION
    log(f"(i) argon2id bound: m={m} t={t} p={p}, {secs}s per measurement")
    out = subprocess.run([ARGON2, "bound", str(m), str(t), str(p), str(secs), str(CORES)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    log(f"    per core {r['per_core_hps']:.1f}/s (alloc {r['single_alloc_hps']:.1f}, reuse "
        f"{r['single_reuse_hps']:.1f}) x {CORES} = {r['bound_hps']:.1f}/s; "
        f"{CORES} threads at once {r['parallel_hps']:.1f}/s")
    return r


def argon2_params() -> tuple[int, int, int]:
    src = (ROOT / "api/src/hashing/argon.rs").read_text()
    get = lambda n: int(re.search(rf"pub const {n}: u32 = ([\d_]+);", src).group(1).replace("_", ""))
    return get("M_COST"), get("T_COST"), get("P_COST")


def scenario_j() -> dict:
    db = create_db(DB_PREFIX + "_pgbench")
    subprocess.run(["pgbench", "-h", PGHOST, "-p", PGPORT, "-U", PGUSER, "-i", "-q", "-s", "1", db],
                   capture_output=True, check=True)
    conns = 64

    def run(secs: int) -> str:
        return subprocess.run(["pgbench", "-h", PGHOST, "-p", PGPORT, "-U", PGUSER, "-S", "-M",
                               "prepared", "-c", str(conns), "-j", str(WRK_THREADS), "-T", str(secs),
                               db], capture_output=True, text=True, check=True).stdout

    log(f"(j) pgbench -S -M prepared -c {conns} -j {WRK_THREADS}")
    if WARMUP:
        run(WARMUP)
    out = run(DURATION)
    (RUN_DIR / "j.pgbench.txt").write_text(out)
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    drop_db(db)
    log(f"    {tps:.0f} selects/s")
    return {"clients": conns, "tps": tps, "latency_avg_ms": float(lat.group(1)) if lat else None}


def scenario_f(stack: Stack, sink: SmtpSink) -> dict:
    total = SIGNUP_RATE * (WARMUP + DURATION)
    log(f"(f) signup -> email at {SIGNUP_RATE}/s for {WARMUP}+{DURATION}s ({total} signups)")
    api = stack.client
    sent: dict[str, float] = {}
    statuses: dict[int, int] = {}
    signup_lat: list[float] = []
    lock = threading.Lock()

    def signup(i: int):
        email = f"signup-{i}-{secrets.token_hex(3)}@bench.test"
        t0 = time.monotonic()
        status, _ = api.call("POST", "/auth/signup",
                             {"email": email, "password": "Zq-" + secrets.token_hex(8)})
        t1 = time.monotonic()
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            if status == 201:
                sent[email] = t0
                if i >= SIGNUP_RATE * WARMUP:
                    signup_lat.append(t1 - t0)
        return i, email, t0

    order: list[tuple[int, str, float]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        start = time.monotonic() + 0.1
        futures = []
        for i in range(total):
            target = start + i / SIGNUP_RATE
            pause = target - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(signup, i))
        order = [f.result() for f in futures]
    elapsed = time.monotonic() - start
    measured = {email for i, email, _ in order if i >= SIGNUP_RATE * WARMUP and email in sent}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not measured <= sink.received.keys():
        time.sleep(0.1)
    lat = sorted(sink.received[e] - sent[e] for e in measured if e in sink.received)
    missing = len(measured) - len(lat)
    signup_lat.sort()
    r = {
        "rate_target": SIGNUP_RATE,
        "rate_achieved": round(total / elapsed, 1),
        "signups": total,
        "statuses": {str(k): v for k, v in statuses.items()},
        "measured": len(measured),
        "emails_missing": missing,
        "p50_ms": round(pct(lat, 50) * 1000, 1),
        "p99_ms": round(pct(lat, 99) * 1000, 1),
        "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "signup_http_p50_ms": round(pct(signup_lat, 50) * 1000, 1),
        "signup_http_p99_ms": round(pct(signup_lat, 99) * 1000, 1),
    }
    log(f"    signup->email p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, missing {missing}, "
        f"statuses {r['statuses']}")
    return r


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))
    return values[k]


class RssSampler:
    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self.stop_flag = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid)[0])
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> int:
        self.stop_flag.set()
        self.t.join()
        return self.peak


def seed_purge_data(db: str) -> dict:
    """STALE unverified users older than UNVERIFIED_TTL, evenly interleaved
    with VERIFIED verified ones (2 M users signed up over ~23 days), in
    signup order, with time-ordered (v7-style) ids as the API makes them.
    Secondary indexes are dropped for the bulk insert and rebuilt after
    (minutes faster, same final schema); then VACUUM ANALYZE, so the purge
    and the raw delete start from the same settled table."""
    total = STALE + VERIFIED
    t0 = time.monotonic()
    psql(db, f"""
        CREATE TABLE bench_seed_indexes AS
            SELECT indexname, indexdef FROM pg_indexes
            WHERE schemaname = 'public' AND tablename = 'users' AND indexname <> 'users_pkey';
        DO $$ DECLARE r record; BEGIN
            FOR r IN SELECT indexname FROM bench_seed_indexes LOOP
                EXECUTE format('DROP INDEX %I', r.indexname);
            END LOOP;
        END $$;
        INSERT INTO users (id, email, password_hash, role, is_verified, verified_at, created_at, updated_at)
        SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7'
                || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
               'user-' || i || '@seed.bench', '{PHC}', 'user',
               NOT stale, CASE WHEN NOT stale THEN t END, t, t
        FROM generate_series({total}, 1, -1) AS i,
             LATERAL (SELECT now() - interval '49 hours' - i * interval '1 second' AS t,
                             md5(i::text) AS h,
                             (i::bigint * {STALE} / {total}) > ((i - 1)::bigint * {STALE} / {total}) AS stale) AS x;
    """)
    t1 = time.monotonic()
    psql(db, """
        SET maintenance_work_mem = '512MB';
        DO $$ DECLARE r record; BEGIN
            FOR r IN SELECT indexdef FROM bench_seed_indexes LOOP EXECUTE r.indexdef; END LOOP;
        END $$;
        DROP TABLE bench_seed_indexes;
    """)
    t2 = time.monotonic()
    psql(db, "VACUUM (ANALYZE) users;")
    t3 = time.monotonic()
    size = psql(db, "SELECT pg_size_pretty(pg_total_relation_size('users'))")
    stale = int(psql(db, "SELECT count(*) FROM users WHERE NOT is_verified "
                         "AND created_at < now() - interval '48 hours'"))
    return {"insert_s": round(t1 - t0, 1), "index_s": round(t2 - t1, 1),
            "vacuum_s": round(t3 - t2, 1), "users_size": size, "stale_rows": stale}


def scenario_g(stack: Stack, tokens_file: Path) -> dict:
    api = stack.client
    admin = api.login(ADMIN_EMAIL, PASSWORD)["access_token"]
    pace = {"BENCH_DELAY_MS": str(PURGE_ME_DELAY_MS)} if PURGE_ME_DELAY_MS else {}
    env = {"BENCH_TOKENS": str(tokens_file), **pace}
    log(f"(g) GET /me at 8 connections before the purge (pause {PURGE_ME_DELAY_MS} ms per request)")
    before = wrk("g_me_before", "me.lua", 8, stack.url, extra_env=env)
    log(f"    before: {fmt_result(before)}")
    # GET /me for as long as the purge runs; stopped with SIGINT (wrk then
    # reports what it measured).
    out = RUN_DIR / "g_me_during.json"
    cmd, wenv = wrk_cmd("me.lua", 8, 3600, stack.url, out, env)
    during_proc = subprocess.Popen(cmd, env=wenv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1)
    status, body = api.call("POST", "/admin/jobs/purge", {"dry_run": False}, token=admin)
    if status != 202:
        during_proc.kill()
        raise RuntimeError(f"purge request: {status} {body}")
    run_id = body["run_id"]
    log(f"    purge queued (run {run_id}); measuring GET /me while it runs")
    row = None
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        got = psql(stack.db, f"""SELECT status, users_deleted,
                   extract(epoch FROM finished_at - started_at), coalesce(error, '')
                   FROM purge_runs WHERE id = '{run_id}'""")
        if got and got.split("|")[0] != "running":
            row = got.split("|")
            break
        time.sleep(0.2)
    during_proc.send_signal(signal.SIGINT)
    text = during_proc.communicate(timeout=30)[0].decode(errors="replace")
    (RUN_DIR / "g_me_during.wrk.txt").write_text(text)
    if row is None:
        raise RuntimeError("purge did not finish in 30 min")
    status, deleted, seconds, error = row[0], int(row[1]), float(row[2]), row[3]
    during = summarize(json.loads(out.read_text())) if out.exists() else None
    r = {
        "status": status,
        "error": error or None,
        "users_deleted": deleted,
        "seconds": round(seconds, 3),
        "rows_per_s": round(deleted / seconds) if seconds else None,
        "me_delay_ms": PURGE_ME_DELAY_MS,
        "me_before": before,
        "me_during": during,
        "remaining_users": int(psql(stack.db, "SELECT count(*) FROM users")),
    }
    log(f"    purge {status}: {deleted} users in {seconds:.2f}s = {r['rows_per_s']} rows/s")
    if during:
        log(f"    during: {fmt_result(during)}")
    return r


def scenario_k(db: str) -> dict:
    log("(k) one plain DELETE on a fresh copy")
    out = psql(db, "DELETE FROM users WHERE NOT is_verified "
                   "AND created_at < now() - interval '48 hours';", timing=True)
    ms = float(re.search(r"Time: ([\d.]+) ms", out).group(1))
    log(f"    {ms / 1000:.2f}s")
    return {"seconds": round(ms / 1000, 3), "rows_per_s": round(STALE / (ms / 1000))}


# --------------------------------------------------------------------------
# Main


PHC = ""


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    pg = psql("postgres", "SHOW server_version")
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"nproc": CORES, "cpu": model, "mem_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "postgres": pg, "wrk": wrk_v.strip(),
            "git": subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                  capture_output=True, text=True).stdout.strip()}


def wait_for_quiet_machine() -> None:
    """Other engineers' builds, tests and fuzzers share these cores: wait
    until no build runs and the machine is nearly idle for a few seconds."""
    if os.environ.get("BENCH_WAIT_IDLE", "1") == "0":
        return
    limit = env_int("BENCH_WAIT_MAX", 1800)
    end = time.monotonic() + limit
    said = False
    while True:
        before = cpu_ticks()
        time.sleep(3)
        used = foreign_cpu(before, cpu_ticks(), include_services=True)
        share = sum(x[1] for x in used) / (3 * CORES)
        busy = busy_processes()
        if share < 0.1 and not busy:
            if said:
                log("machine is quiet")
            return
        if time.monotonic() > end:
            log(f"warning: still busy after {limit}s; measuring anyway (numbers will be flagged)")
            return
        if not said:
            log(f"waiting for a quiet machine (up to {limit}s): {share:.0%} CPU used by "
                f"{', '.join(n for n, _ in used[:4]) or '-'}; builds: {', '.join(busy[:4]) or '-'}")
            said = True


def main() -> int:
    global PHC
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    results: dict = {"run_id": RUN_ID, "started_at": dt.datetime.now(dt.UTC).isoformat(),
                     "machine": machine(),
                     "settings": {"duration_s": DURATION, "warmup_s": WARMUP,
                                  "scenarios": "".join(sorted(SCENARIOS)), "stale": STALE,
                                  "verified": VERIFIED, "signup_rate": SIGNUP_RATE,
                                  "purge_me_delay_ms": PURGE_ME_DELAY_MS,
                                  "wrk_threads": WRK_THREADS},
                     "scenarios": {}, "busy": {}}
    S = results["scenarios"]
    log(f"run {RUN_ID}: {results['machine']}")

    monitor = ForeignMonitor()

    def check_busy(label: str):
        monitor.label = label
        busy = busy_processes()
        if busy:
            log(f"warning: other builds/tests running during {label}: {', '.join(busy[:5])}")

    wait_for_quiet_machine()
    m, t, p = argon2_params()
    PHC = subprocess.run([ARGON2, "phc", PASSWORD, str(m), str(t), str(p)], capture_output=True,
                         text=True, check=True).stdout.strip()

    # (i) and (j) first, while nothing else of ours runs.
    if "i" in SCENARIOS:
        check_busy("i")
        S["i_argon2"] = scenario_i()
    if "j" in SCENARIOS:
        check_busy("j")
        S["j_pgbench"] = scenario_j()

    sink = SmtpSink()
    main_db = create_db(DB_PREFIX + "_main")
    stack = Stack(main_db, sink.port, "main")
    check_busy("startup")
    log("starting worker and API (main database)")
    startup = stack.start()
    # Idle = settled after start-up (the bootstrap admin's hash at start
    # leaves the hashing pool's memory mapped for KEEP_MEMORY = 2 s).
    time.sleep(IDLE_SETTLE_S)
    idle_rss, _ = rss_kib(stack.api.pid)
    log(f"(h) API ready {startup['api_ready_s']}s after start, idle RSS {idle_rss / 1024:.1f} MiB")
    h = {"startup": startup, "idle_rss_mib": round(idle_rss / 1024, 1),
         "worker_idle_rss_mib": round(rss_kib(stack.worker.pid)[0] / 1024, 1)}
    S["h_memory_startup"] = h

    emails = seed_bench_users(main_db, PHC)
    n_sessions = ME_TOKENS + 2 * REFRESH_SESSIONS
    log(f"seeded {len(emails)} users; logging in {n_sessions} sessions")
    pairs = login_many(stack.client, emails[:n_sessions])
    tokens_file = RUN_DIR / "access_tokens.txt"
    tokens_file.write_text("\n".join(p["access_token"] for p in pairs[:ME_TOKENS]) + "\n")
    # (e) rotates each token once: separate sessions for warm-up and run.
    refresh_warm = RUN_DIR / "refresh_tokens_warmup.txt"
    refresh_warm.write_text("\n".join(
        p["refresh_token"] for p in pairs[ME_TOKENS:ME_TOKENS + REFRESH_SESSIONS]) + "\n")
    refresh_file = RUN_DIR / "refresh_tokens.txt"
    refresh_file.write_text("\n".join(
        p["refresh_token"] for p in pairs[ME_TOKENS + REFRESH_SESSIONS:]) + "\n")
    emails_file = RUN_DIR / "emails.txt"
    emails_file.write_text("\n".join(emails) + "\n")
    me_env = {"BENCH_TOKENS": str(tokens_file)}
    login_env = {"BENCH_EMAILS": str(emails_file), "BENCH_PASSWORD": PASSWORD}

    if "d" in SCENARIOS:
        check_busy("d")
        log("(d) GET /health/live at 64 connections")
        S["d_health"] = wrk("d_health", "health.lua", 64, stack.url)
        log(f"    {fmt_result(S['d_health'])}")
    if "a" in SCENARIOS:
        check_busy("a")
        log("(a) GET /me at 64 connections")
        S["a_me"] = wrk("a_me", "me.lua", 64, stack.url, extra_env=me_env)
        log(f"    {fmt_result(S['a_me'])}")
    if "b" in SCENARIOS or "h" in SCENARIOS:
        check_busy("b")
        log("(b) POST /auth/login at 16 connections")
        sampler = RssSampler(stack.api.pid)
        S["b_login"] = wrk("b_login", "login.lua", 16, stack.url, extra_env=login_env)
        peak = sampler.stop()
        h["login_peak_rss_mib"] = round(peak / 1024, 1)
        log(f"    {fmt_result(S['b_login'])}; peak RSS {peak / 1024:.1f} MiB")
        if "i" in SCENARIOS:
            # The shared host's speed drifts over minutes (per-core rates of
            # 47-67 hashes/s in one afternoon): measure (i) again right
            # after (b); the budget uses the mean of both measurements.
            check_busy("i")
            S["i_argon2_after_b"] = scenario_i()
    if "c" in SCENARIOS:
        check_busy("c")
        log("(c) GET /me at 8 connections, alone")
        alone = wrk("c_me_alone", "me.lua", 8, stack.url, extra_env=me_env)
        log(f"    alone: {fmt_result(alone)}")
        log("(c) GET /me at 8 connections while (b) runs")
        flood_out = RUN_DIR / "c_login_flood.json"
        cmd, env = wrk_cmd("login.lua", 16, WARMUP + DURATION + 3, stack.url, flood_out, login_env)
        flood = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        under = wrk("c_me_flood", "me.lua", 8, stack.url, extra_env=me_env)
        flood.wait()
        login_during = summarize(json.loads(flood_out.read_text()))
        S["c_me_alone_vs_flood"] = {"alone": alone, "under_login_flood": under,
                                    "login_during": login_during}
        log(f"    under flood: {fmt_result(under)}; logins meanwhile {login_during['rps']:.0f}/s")
    if "e" in SCENARIOS:
        check_busy("e")
        log("(e) POST /auth/refresh rotation at 16 connections")
        if WARMUP:
            wrk("e_refresh_warmup", "refresh.lua", 16, stack.url, seconds=WARMUP, warmup=0,
                extra_env={"BENCH_TOKENS": str(refresh_warm)})
        S["e_refresh"] = wrk("e_refresh", "refresh.lua", 16, stack.url, warmup=0,
                             extra_env={"BENCH_TOKENS": str(refresh_file)})
        log(f"    {fmt_result(S['e_refresh'])}")
    if "f" in SCENARIOS:
        check_busy("f")
        S["f_signup_email"] = scenario_f(stack, sink)
    time.sleep(IDLE_SETTLE_S)
    h["idle_rss_after_load_mib"] = round(rss_kib(stack.api.pid)[0] / 1024, 1)
    h["api_hwm_mib"] = round(rss_kib(stack.api.pid)[1] / 1024, 1)
    log(f"(h) idle RSS after the load: {h['idle_rss_after_load_mib']} MiB")
    stack.stop()

    if "g" in SCENARIOS or "k" in SCENARIOS:
        check_busy("seed")
        log(f"seeding {STALE} stale unverified + {VERIFIED} verified users")
        purge_db = create_db(DB_PREFIX + "_purge", template=main_db)
        seed = seed_purge_data(purge_db)
        log(f"    insert {seed['insert_s']}s, indexes {seed['index_s']}s, vacuum {seed['vacuum_s']}s, "
            f"users {seed['users_size']}, stale {seed['stale_rows']}")
        raw_db = create_db(DB_PREFIX + "_raw", template=purge_db)
        S["g_seed"] = seed
        if "g" in SCENARIOS:
            check_busy("g")
            pstack = Stack(purge_db, sink.port, "purge")
            pstack.start()
            try:
                S["g_purge"] = scenario_g(pstack, tokens_file)
            finally:
                pstack.stop()
        if "k" in SCENARIOS:
            check_busy("k")
            S["k_raw_delete"] = scenario_k(raw_db)
        drop_db(raw_db)
        drop_db(purge_db)
    sink.stop()

    monitor.stop()
    results["busy"] = monitor.summary()
    results["budgets"] = budgets(S)
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{RUN_ID}.json").write_text(json.dumps(results, indent=2))
    shutil.copy(RESULTS / f"{RUN_ID}.json", RESULTS / "latest.json")
    log(f"JSON: {RESULTS / (RUN_ID + '.json')} (logs in {RUN_DIR})")
    return 0 if all(b["pass"] for b in results["budgets"] if b["pass"] is not None) else 1


def argon2_bound(S: dict) -> dict:
    """(i): the mean of the measurements before the stack starts and right after (b)."""
    runs = [S[k] for k in ("i_argon2", "i_argon2_after_b") if k in S]
    mean = lambda key: sum(r[key] for r in runs) / len(runs)
    return {"bound_hps": mean("bound_hps"), "per_core_hps": mean("per_core_hps"),
            "parallel_hps": mean("parallel_hps"), "cores": runs[0]["cores"], "runs": len(runs)}


def budgets(S: dict) -> list[dict]:
    out = []

    def add(name, value, limit, ok, unit=""):
        out.append({"budget": name, "value": value, "limit": limit, "unit": unit,
                    "pass": None if ok is None else bool(ok)})

    if "b_login" in S and "i_argon2" in S:
        v = S["b_login"]["rps"] / argon2_bound(S)["bound_hps"]
        add("login (b) >= 90% of argon2id bound (i)", round(v, 3), 0.9, v >= 0.9)
    if "c_me_alone_vs_flood" in S:
        c = S["c_me_alone_vs_flood"]
        v = c["under_login_flood"]["p99_ms"] / c["alone"]["p99_ms"]
        add("GET /me p99 under login flood (c) <= 3x alone", round(v, 2), 3.0, v <= 3.0)
    if "a_me" in S and "j_pgbench" in S:
        v = S["a_me"]["rps"] / S["j_pgbench"]["tps"]
        add("GET /me (a) >= 50% of point-select ceiling (j)", round(v, 3), 0.5, v >= 0.5)
    if "g_purge" in S and "k_raw_delete" in S:
        v = S["g_purge"]["seconds"] / S["k_raw_delete"]["seconds"]
        add("purge (g) <= 1.5x raw delete (k)", round(v, 2), 1.5, v <= 1.5)
    if "g_purge" in S and S["g_purge"].get("me_during"):
        g = S["g_purge"]
        v = g["me_during"]["p99_ms"] / g["me_before"]["p99_ms"]
        add("GET /me p99 during purge (g) <= 2x before", round(v, 2), 2.0, v <= 2.0)
    if "f_signup_email" in S:
        f = S["f_signup_email"]
        ok = f["p99_ms"] < 1000 and f["emails_missing"] == 0 and f["rate_achieved"] >= 0.95 * f["rate_target"]
        add(f"signup-to-email p99 (f) < 1 s at {f['rate_target']}/s", f["p99_ms"], 1000, ok, "ms")
    if "h_memory_startup" in S:
        v = S["h_memory_startup"]["idle_rss_mib"]
        add("idle RSS (h) < 30 MiB", v, 30, v < 30, "MiB")
    return out


def report(results: dict) -> None:
    S = results["scenarios"]
    rows = []

    def row(name, r, note=""):
        rows.append((name, f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                     str(r["errors"]), note))

    if "a_me" in S:
        row("(a) GET /me, 64 conn", S["a_me"])
    if "b_login" in S:
        note = ""
        if "i_argon2" in S:
            i = argon2_bound(S)
            note = (f"{S['b_login']['rps'] / i['parallel_hps']:.2f} of what {i['cores']} "
                    f"hashing threads at once do in (i)")
        row("(b) POST /auth/login, 16 conn", S["b_login"], note)
    if "c_me_alone_vs_flood" in S:
        c = S["c_me_alone_vs_flood"]
        row("(c) GET /me, 8 conn, alone", c["alone"])
        row("(c) GET /me, 8 conn, under (b)", c["under_login_flood"],
            f"logins meanwhile {c['login_during']['rps']:.0f}/s")
    if "d_health" in S:
        row("(d) GET /health/live, 64 conn", S["d_health"])
    if "e_refresh" in S:
        row("(e) POST /auth/refresh, 16 conn", S["e_refresh"])
    if "f_signup_email" in S:
        f = S["f_signup_email"]
        rows.append((f"(f) signup -> email at {f['rate_target']}/s", f"{f['rate_achieved']:.0f}",
                     f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}", str(f["emails_missing"]),
                     f"signup HTTP p99 {f['signup_http_p99_ms']} ms"))
    if "g_purge" in S:
        g = S["g_purge"]
        rows.append(("(g) purge 1M of 2M users", f"{g['rows_per_s']} rows/s", "", "", "",
                     f"{g['seconds']:.2f} s, {g['status']}"))
        pace = f", {g['me_delay_ms']} ms pause" if g["me_delay_ms"] else ""
        row(f"(g) GET /me, 8 conn{pace}, before purge", g["me_before"])
        if g.get("me_during"):
            row(f"(g) GET /me, 8 conn{pace}, during purge", g["me_during"])
    if "h_memory_startup" in S:
        h = S["h_memory_startup"]
        rows.append(("(h) API memory, startup", "", "", "", "",
                     f"idle {h['idle_rss_mib']} MiB; peak in (b) {h.get('login_peak_rss_mib')} MiB; "
                     f"idle after load {h.get('idle_rss_after_load_mib')} MiB; ready in "
                     f"{h['startup']['api_ready_s']} s"))
    if "i_argon2" in S:
        i = argon2_bound(S)
        each = " and ".join(f"{S[k]['per_core_hps']:.1f}" for k in ("i_argon2", "i_argon2_after_b") if k in S)
        rows.append(("(i) argon2id bound", f"{i['bound_hps']:.1f} hashes/s", "", "", "",
                     f"{i['per_core_hps']:.1f}/s per core (mean of {each}) x {i['cores']}; "
                     f"{i['cores']} threads at once {i['parallel_hps']:.1f}/s"))
    if "j_pgbench" in S:
        rows.append(("(j) pgbench -S -M prepared, 64 cl", f"{S['j_pgbench']['tps']:.0f}", "", "", "",
                     "point selects/s"))
    if "k_raw_delete" in S:
        k = S["k_raw_delete"]
        rows.append(("(k) one plain DELETE", f"{k['rows_per_s']} rows/s", "", "", "",
                     f"{k['seconds']:.2f} s"))

    lines = ["| scenario | req/s | p50 ms | p99 ms | errors | notes |", "|---|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "| budget | measured | limit | result |", "|---|---:|---:|---|"]
    for b in results["budgets"]:
        verdict = "n/a" if b["pass"] is None else ("PASS" if b["pass"] else "FAIL")
        lines.append(f"| {b['budget']} | {b['value']}{(' ' + b['unit']) if b['unit'] else ''} | "
                     f"{b['limit']}{(' ' + b['unit']) if b['unit'] else ''} | {verdict} |")
    if results["busy"]:
        lines += ["", "WARNING: other processes used CPU during: " + "; ".join(
            f"{label} ({b['foreign_cpu_share']:.0%}: {', '.join(b['top'])})"
            for label, b in results["busy"].items())]
    text = "\n".join(lines)
    (RUN_DIR / "table.md").write_text(text + "\n")
    print("\n" + text + "\n", flush=True)


def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    code = 1
    try:
        code = main()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        code = 130
    except Exception as e:  # noqa: BLE001 - report, then clean up
        log(f"error: {e}")
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        cleanup()
    sys.exit(code)
