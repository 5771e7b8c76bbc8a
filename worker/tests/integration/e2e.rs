//! The real binaries: signup → email → verify → login.

use std::time::Duration;

use gatehouse_testkit::process::Proc;
use serde_json::{Value, json};

use crate::common::Ctx;

#[tokio::test(flavor = "multi_thread")]
async fn signup_email_verify_login_through_the_binaries() {
    let ctx = Ctx::new().await;
    let (mut api, base) = crate::common::spawn_api(&ctx, &gatehouse_testkit::redis_url()).await;
    let worker_env = ctx.worker_env(&[]);
    let worker_addr = worker_env
        .iter()
        .find(|(k, _)| *k == "WORKER_ADDR")
        .map(|(_, v)| v.clone())
        .unwrap();
    let mut worker = Proc::spawn("gatehouse-worker", &worker_env);
    let client = reqwest::Client::new();

    let password = "an end to end passphrase";
    for email in ["code@example.com", "link@example.com"] {
        let res = post_json(
            &client,
            &format!("{base}/auth/signup"),
            json!({"email": email, "password": password}),
        )
        .await;
        assert_eq!(res.status(), 201);
        let res = post_json(
            &client,
            &format!("{base}/auth/login"),
            json!({"email": email, "password": password}),
        )
        .await;
        assert_eq!(res.status(), 403, "unverified login is refused");
    }

    let mail = ctx
        .mail
        .wait_for("code@example.com", 1, Duration::from_secs(20))
        .await
        .remove(0);
    let res = post_json(
        &client,
        &format!("{base}/auth/verify"),
        json!({"email": "code@example.com", "code": mail.code().unwrap()}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["is_verified"], true);

    let mail = ctx
        .mail
        .wait_for("link@example.com", 1, Duration::from_secs(20))
        .await
        .remove(0);
    let res = post_json(
        &client,
        &format!("{base}/auth/verify"),
        json!({"token": mail.link_token().unwrap()}),
    )
    .await;
    assert_eq!(res.status(), 200);

    for email in ["code@example.com", "link@example.com"] {
        let res = post_json(
            &client,
            &format!("{base}/auth/login"),
            json!({"email": email, "password": password}),
        )
        .await;
        assert_eq!(res.status(), 200);
        let tokens: Value = res.json().await.unwrap();
        let me: Value = client
            .get(format!("{base}/me"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["email"], email);
    }

    // The worker reports healthy and counts the jobs it did.
    let health = client
        .get(format!("http://{worker_addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["checks"]["postgres"], "ok");
    assert_eq!(health["checks"]["workers"], "ok");
    let metrics =
        gatehouse_testkit::get_text(&client, &format!("http://{worker_addr}/metrics")).await;
    assert!(
        metrics.contains("gatehouse_jobs_done_total{queue=\"verify-email\"} 2"),
        "{metrics}"
    );
    api.signal("TERM");
    worker.signal("TERM");
    assert!(api.wait().await.success(), "API exits cleanly on SIGTERM");
    assert!(
        worker.wait().await.success(),
        "worker exits cleanly on SIGTERM"
    );
}

/// Issue 13: signup → forgot → email → reset → login with the new password.
#[tokio::test(flavor = "multi_thread")]
async fn item_1_signup_forgot_email_reset_login_through_the_binaries() {
    let ctx = Ctx::new().await;
    let (mut api, base) = crate::common::spawn_api(&ctx, &gatehouse_testkit::redis_url()).await;
    let mut worker = Proc::spawn("gatehouse-worker", &ctx.worker_env(&[]));
    let client = reqwest::Client::new();
    let email = "forgetful@example.com";
    let res = post_json(
        &client,
        &format!("{base}/auth/signup"),
        json!({"email": email, "password": "the first passphrase"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    // The signup's verification email first, then the reset email.
    ctx.mail.wait_for(email, 1, Duration::from_secs(20)).await;
    let res = post_json(
        &client,
        &format!("{base}/auth/password/forgot"),
        json!({"email": email}),
    )
    .await;
    assert_eq!(res.status(), 202);
    let mails = ctx.mail.wait_for(email, 2, Duration::from_secs(20)).await;
    let mail = mails
        .iter()
        .find(|m| m.data.contains("/reset-password?token="))
        .expect("the reset email");
    let token = mail.link_token().unwrap();
    assert!(mail.data.contains(&format!(
        "https://app.example.com/reset-password?token={token}"
    )));
    let res = post_json(
        &client,
        &format!("{base}/auth/password/reset"),
        json!({"token": token, "new_password": "the second passphrase"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    // The reset proved the inbox: login works without the verification step.
    let res = post_json(
        &client,
        &format!("{base}/auth/login"),
        json!({"email": email, "password": "the second passphrase"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = post_json(
        &client,
        &format!("{base}/auth/login"),
        json!({"email": email, "password": "the first passphrase"}),
    )
    .await;
    assert_eq!(res.status(), 401);
    // And the "password changed" notice arrives.
    let mails = ctx.mail.wait_for(email, 3, Duration::from_secs(20)).await;
    assert!(mails.iter().any(|m| m.data.contains("was just changed")));
    api.signal("TERM");
    worker.signal("TERM");
    assert!(api.wait().await.success());
    assert!(worker.wait().await.success());
}

async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> reqwest::Response {
    client.post(url).json(&body).send().await.unwrap()
}
