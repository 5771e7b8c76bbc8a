//! Benchmark driver for the example apps; run it through `bench/apps.sh`.
//!
//! (o) chat fan-out: two `chat` replicas, `BENCH_ROOMS` rooms of
//!     `BENCH_ROOM_SIZE` sockets (spread over both replicas), `BENCH_RATE`
//!     messages/s in total, each sent by a socket of the room; latency from
//!     send to receipt on every socket of the room. Budget: p99 < 50 ms.
//! (p) BotFactory `GET /bots/me` against Gatehouse's own `GET /me`, the same
//!     closed-loop client with `BENCH_CONNS` connections for both; the ratio.
//!
//! Tokens come from the in-process Gatehouse stand-in (EdDSA, JWKS, feed):
//! the apps verify them exactly as they verify Gatehouse's. Settings
//! (environment): BENCH_BIN (directory of the release binaries),
//! BENCH_DURATION (10 s), BENCH_WARMUP (3 s), BENCH_RATE (1000),
//! BENCH_ROOMS (10), BENCH_ROOM_SIZE (50), BENCH_CONNS (64),
//! BENCH_SCENARIOS (`o,p`), BENCH_OUT (JSON file to write).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use example_testkit::{FakeGatehouse, FakeOptions, ScratchDb};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bin_dir() -> PathBuf {
    std::env::var_os("BENCH_BIN")
        .map(PathBuf::from)
        .expect("BENCH_BIN: directory of the release binaries (bench/apps.sh sets it)")
}

fn spawn(name: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(res) = client.get(format!("{url}/health/ready")).send().await
            && res.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} not ready after 60 s");
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// (o) chat fan-out latency.
async fn fanout(fake: &FakeGatehouse, namespace: &str) -> Value {
    let duration = Duration::from_secs(env_num("BENCH_DURATION", 10));
    let warmup = Duration::from_secs(env_num("BENCH_WARMUP", 3));
    let rate = env_num("BENCH_RATE", 1000).max(1);
    let rooms = env_num("BENCH_ROOMS", 10).max(1) as usize;
    let room_size = env_num("BENCH_ROOM_SIZE", 50).max(1) as usize;

    let db = ScratchDb::new("bench_chat").await;
    let chat_ns = format!("{namespace}-chat");
    let mut replicas = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..2 {
        let port = gatehouse_testkit::free_port();
        let env = vec![
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", gatehouse_testkit::redis_url()),
            ("REDIS_NAMESPACE", chat_ns.clone()),
            ("GATEHOUSE_URL", fake.url.clone()),
            ("GATEHOUSE_REDIS_URL", gatehouse_testkit::redis_url()),
            ("GATEHOUSE_REDIS_NAMESPACE", namespace.to_owned()),
            ("APP_ADDR", format!("127.0.0.1:{port}")),
            ("WS_MESSAGE_RATE", "1000".into()),
            ("DB_POOL_SIZE", "16".into()),
        ];
        replicas.push(spawn("chat", &env));
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    for url in &urls {
        wait_ready(url).await;
    }

    // Sockets: room r, member i on replica i % 2. Each has a writer channel.
    let start = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut writers: Vec<Vec<mpsc::UnboundedSender<String>>> = Vec::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    for r in 0..rooms {
        let mut room = Vec::new();
        for i in 0..room_size {
            let url = format!(
                "{}/ws?room=bench-{r}",
                urls[i % 2].replacen("http", "ws", 1)
            );
            let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            let (mut sink, mut stream) = ws.split();
            let login = fake.login_new_user();
            sink.send(Message::Text(
                json!({"type": "auth", "token": login.access_token})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
            // Wait for `authenticated`.
            loop {
                if let Some(Ok(Message::Text(t))) = stream.next().await
                    && t.as_str().contains("\"authenticated\"")
                {
                    break;
                }
            }
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            tokio::spawn(async move {
                while let Some(body) = rx.recv().await {
                    let frame = json!({"type": "message", "body": body}).to_string();
                    if sink.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
            });
            let (received, latencies) = (received.clone(), latencies.clone());
            let mut stopped = stopped.clone();
            readers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let msg = tokio::select! {
                        msg = stream.next() => match msg {
                            Some(Ok(msg)) => msg,
                            _ => break,
                        },
                        _ = stopped.changed() => break,
                    };
                    let Message::Text(t) = msg else { continue };
                    let now = start.elapsed().as_micros() as u64;
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    // "<seq> <sent, µs since start> <m = measured | w = warm-up>"
                    let mut parts = v["body"].as_str().unwrap_or_default().split(' ').skip(1);
                    let (Some(sent), Some(phase)) = (
                        parts.next().and_then(|s| s.parse::<u64>().ok()),
                        parts.next(),
                    ) else {
                        continue;
                    };
                    if phase == "m" {
                        received.fetch_add(1, Ordering::Relaxed);
                        mine.push(now.saturating_sub(sent));
                    }
                }
                latencies.lock().await.append(&mut mine);
            }));
            room.push(tx);
        }
        writers.push(room);
    }
    eprintln!(
        "(o) {} sockets connected in {:?}",
        rooms * room_size,
        start.elapsed()
    );

    // Send `rate` messages/s, rooms in turn, members in turn.
    let began = start.elapsed();
    let (measure_from, measure_to) = (began + warmup, began + warmup + duration);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut k: usize = 0;
    let mut sent_measured: u64 = 0;
    loop {
        tick.tick().await;
        let now = start.elapsed();
        if now >= measure_to {
            break;
        }
        let (room, member) = (k % rooms, (k / rooms) % room_size);
        let phase = if now >= measure_from { "m" } else { "w" };
        let _ = writers[room][member].send(format!("{k} {} {phase}", now.as_micros()));
        if phase == "m" {
            sent_measured += 1;
        }
        k += 1;
    }
    // Let the last ones arrive, then stop the readers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(writers);
    let _ = stop.send(true);
    for r in readers {
        let _ = r.await;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let expected = sent_measured * room_size as u64;
    let got = received.load(Ordering::Relaxed);
    let secs = duration.as_secs_f64();
    let result = json!({
        "scenario": "o",
        "name": "chat fan-out, 2 replicas",
        "rooms": rooms, "room_size": room_size, "rate": rate,
        "sent_per_s": (sent_measured as f64 / secs).round(),
        "delivered_per_s": (got as f64 / secs).round(),
        "expected_deliveries": expected, "deliveries": got,
        "p50_ms": percentile(&lat, 0.50), "p90_ms": percentile(&lat, 0.90),
        "p99_ms": percentile(&lat, 0.99), "max_ms": percentile(&lat, 1.0),
        "budget": "p99 < 50 ms, every delivery made",
        "pass": percentile(&lat, 0.99) < 50.0 && got == expected,
    });
    for mut r in replicas {
        let _ = r.start_kill();
        let _ = r.wait().await;
    }
    result
}

/// Closed loop: `conns` workers GET `url` with their token for `duration`.
async fn load(url: &str, tokens: &[String], conns: usize, duration: Duration) -> Value {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .unwrap();
    let stop = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (client, url, token) = (
            client.clone(),
            url.to_owned(),
            tokens[c % tokens.len()].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < stop {
                let t = Instant::now();
                match client.get(&url).bearer_auth(&token).send().await {
                    Ok(res) if res.status() == 200 => {
                        let _ = res.bytes().await;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    lat.sort_unstable();
    json!({
        "requests": lat.len(), "errors": errors,
        "rps": (lat.len() as f64 / duration.as_secs_f64()).round(),
        "p50_ms": percentile(&lat, 0.50), "p99_ms": percentile(&lat, 0.99),
    })
}

/// (p) BotFactory `GET /bots/me` against Gatehouse's `GET /me`.
async fn bots_vs_me(fake: &FakeGatehouse, namespace: &str) -> Value {
    let duration = Duration::from_secs(env_num("BENCH_DURATION", 10));
    let warmup = Duration::from_secs(env_num("BENCH_WARMUP", 3));
    let conns = env_num("BENCH_CONNS", 64) as usize;
    let http = reqwest::Client::new();

    // Gatehouse on its own migrated database.
    let gh_db = gatehouse_testkit::TestDb::new().await;
    let gh_port = gatehouse_testkit::free_port();
    let gh_url = format!("http://127.0.0.1:{gh_port}");
    let _gatehouse = spawn(
        "gatehouse-api",
        &[
            ("DATABASE_URL", gh_db.url.clone()),
            ("REDIS_URL", gatehouse_testkit::redis_url()),
            ("REDIS_NAMESPACE", format!("{namespace}-gh")),
            (
                "JWT_SECRET",
                "apps-bench-secret-0123456789-0123456789-xyz".into(),
            ),
            ("API_ADDR", format!("127.0.0.1:{gh_port}")),
            ("RATE_LIMITS", "off".into()),
            ("REQUIRE_VERIFIED_LOGIN", "false".into()),
            ("DB_POOL_SIZE", "16".into()),
        ],
    );
    wait_ready(&gh_url).await;
    let mut gh_tokens = Vec::new();
    for i in 0..16 {
        let email = format!("bench{i}-{}@example.com", uuid::Uuid::new_v4().simple());
        let body = json!({"email": email, "password": example_testkit::PASSWORD});
        http.post(format!("{gh_url}/auth/signup"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let v: Value = http
            .post(format!("{gh_url}/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        gh_tokens.push(v["access_token"].as_str().unwrap().to_owned());
    }

    // BotFactory, five bots per client.
    let bf_db = ScratchDb::new("bench_bf").await;
    let bf_port = gatehouse_testkit::free_port();
    let bf_url = format!("http://127.0.0.1:{bf_port}");
    let _botfactory = spawn(
        "botfactory",
        &[
            ("DATABASE_URL", bf_db.url.clone()),
            ("GATEHOUSE_URL", fake.url.clone()),
            ("GATEHOUSE_REDIS_URL", gatehouse_testkit::redis_url()),
            ("GATEHOUSE_REDIS_NAMESPACE", namespace.to_owned()),
            ("APP_ADDR", format!("127.0.0.1:{bf_port}")),
            ("DB_POOL_SIZE", "16".into()),
        ],
    );
    wait_ready(&bf_url).await;
    let mut bf_tokens = Vec::new();
    for _ in 0..16 {
        let token = fake.login_new_user().access_token;
        for b in 0..5 {
            http.post(format!("{bf_url}/bots"))
                .bearer_auth(&token)
                .json(&json!({"name": format!("bot {b}")}))
                .send()
                .await
                .unwrap();
        }
        bf_tokens.push(token);
    }

    let mut out = json!({"scenario": "p", "name": "BotFactory GET /bots/me vs Gatehouse GET /me", "conns": conns});
    for (key, url, tokens) in [
        ("gatehouse_me", format!("{gh_url}/me"), &gh_tokens),
        (
            "botfactory_bots_me",
            format!("{bf_url}/bots/me"),
            &bf_tokens,
        ),
    ] {
        load(&url, tokens, conns, warmup).await;
        out[key] = load(&url, tokens, conns, duration).await;
    }
    let ratio = out["botfactory_bots_me"]["rps"].as_f64().unwrap_or(0.0)
        / out["gatehouse_me"]["rps"].as_f64().unwrap_or(1.0).max(1.0);
    out["ratio"] = json!((ratio * 100.0).round() / 100.0);
    out
}

#[tokio::main]
async fn main() {
    let scenarios = std::env::var("BENCH_SCENARIOS").unwrap_or_else(|_| "o,p".into());
    let namespace = gatehouse_testkit::redis_namespace();
    let fake = FakeGatehouse::start(
        &namespace,
        FakeOptions {
            access_ttl: Duration::from_secs(3600),
            ..FakeOptions::default()
        },
    )
    .await;
    let mut results = Vec::new();
    if scenarios.contains('o') {
        let r = fanout(&fake, &namespace).await;
        println!(
            "(o) chat fan-out {}x{} at {}/s: p50 {} ms, p99 {} ms, max {} ms; {} of {} deliveries; {}",
            r["rooms"],
            r["room_size"],
            r["rate"],
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
            r["deliveries"],
            r["expected_deliveries"],
            if r["pass"] == true {
                "PASS"
            } else {
                "FAIL (budget p99 < 50 ms, all delivered)"
            }
        );
        results.push(r);
    }
    if scenarios.contains('p') {
        let r = bots_vs_me(&fake, &namespace).await;
        println!(
            "(p) GET /me {} req/s (p99 {} ms) | BotFactory GET /bots/me {} req/s (p99 {} ms) | ratio {}",
            r["gatehouse_me"]["rps"],
            r["gatehouse_me"]["p99_ms"],
            r["botfactory_bots_me"]["rps"],
            r["botfactory_bots_me"]["p99_ms"],
            r["ratio"]
        );
        results.push(r);
    }
    gatehouse_testkit::clear_redis_namespace(&gatehouse_testkit::redis_url(), &namespace).await;
    let out = json!({"results": results});
    if let Some(path) = std::env::var_os("BENCH_OUT") {
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    }
    let failed = results.iter().any(|r| r["pass"] == false);
    std::process::exit(i32::from(failed));
}
