//! `promtool check metrics` on both binaries' `/metrics` (issue 16 item
//! 11). `scripts/promtool-check.sh` (run by `.ci/run`) unpacks Debian's
//! `prometheus` package, sets `PROMTOOL` and runs this test; without
//! promtool it is skipped with a note.

use std::process::Stdio;
use std::time::Duration;

use gatehouse_testkit::eventually;
use gatehouse_testkit::process::Proc;
use tokio::io::AsyncWriteExt;

use crate::common::Ctx;

fn promtool() -> Option<String> {
    if let Ok(path) = std::env::var("PROMTOOL") {
        return Some(path);
    }
    std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "promtool".into())
}

/// Exit status and output of `promtool check metrics` on `text`.
async fn check(promtool: &str, text: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_the_metrics_of_both_binaries() {
    let Some(promtool) = promtool() else {
        eprintln!("skipped: no promtool (run scripts/promtool-check.sh, or set PROMTOOL)");
        return;
    };
    let ctx = Ctx::new().await;
    let env = ctx.worker_env(&[]);
    let worker_addr = env
        .iter()
        .find(|(k, _)| *k == "WORKER_ADDR")
        .map(|(_, v)| v.clone())
        .unwrap();
    let _worker = Proc::spawn("gatehouse-worker", &env);
    let (_api, base) = crate::common::spawn_api(&ctx, &gatehouse_testkit::redis_url()).await;
    let client = reqwest::Client::new();
    // One request, so the request series (histogram buckets) exist.
    client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    let worker_metrics = eventually(Duration::from_secs(30), "worker metrics", || async {
        let res = client
            .get(format!("http://{worker_addr}/metrics"))
            .send()
            .await
            .ok()?;
        res.text().await.ok()
    })
    .await;
    let api_metrics = gatehouse_testkit::get_text(&client, &format!("{base}/metrics")).await;
    assert!(
        api_metrics.contains("# TYPE gatehouse_http_request_duration_seconds histogram"),
        "request duration is a histogram:\n{api_metrics}"
    );
    assert!(api_metrics.contains("gatehouse_http_request_duration_seconds_bucket{"));
    for (binary, text) in [("worker", &worker_metrics), ("api", &api_metrics)] {
        let (ok, said) = check(&promtool, text).await;
        assert!(
            ok && said.trim().is_empty(),
            "promtool on the {binary}'s metrics: {said}\n{text}"
        );
    }
}
