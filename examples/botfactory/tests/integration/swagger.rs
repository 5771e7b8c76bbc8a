//! Swagger UI in headless Chromium: Authorize logs in through Gatehouse's
//! `/auth/token` (cross-origin, Gatehouse's CORS), then the caller creates
//! a bot and lists "my bots".

use std::time::Duration;

use example_testkit::{App, Gatehouse, Setup, local_origin};
use gatehouse_testkit::browser::{Browser, Session};

use crate::common::Ctx;

/// BotFactory on a port Gatehouse's CORS allows.
async fn setup(real_login: bool) -> (Ctx, Option<Gatehouse>) {
    let port = gatehouse_testkit::free_port();
    let setup = Setup {
        cors_origins: vec![local_origin(port)],
        ..Setup::default()
    };
    let fake = Gatehouse::fake(setup.clone()).await;
    let real = if real_login {
        Some(Gatehouse::real(setup).await)
    } else {
        None
    };
    let db = example_testkit::ScratchDb::new("botfactory").await;
    let mut env = fake.app_env();
    env.push(("DATABASE_URL", db.url.clone()));
    if let Some(real) = &real {
        env.push(("GATEHOUSE_PUBLIC_URL", real.url().to_owned()));
    }
    let app = App::spawn_on("botfactory", port, &env).await;
    (
        Ctx {
            gatehouse: fake,
            app,
            db,
            http: reqwest::Client::new(),
        },
        real,
    )
}

/// Sign up at `gatehouse`, then Authorize in Swagger UI with that account.
async fn authorize(page: &Session, app_url: &str, gatehouse: &Gatehouse) -> String {
    let login = gatehouse.login_new_user().await;
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/me", gatehouse.url()))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let email = me["email"].as_str().unwrap().to_owned();
    page.goto(&format!("{app_url}/docs/")).await;
    page.click(".auth-wrapper .authorize").await;
    page.fill("#oauth_username", &email).await;
    page.fill("#oauth_password", example_testkit::PASSWORD)
        .await;
    page.click(".auth-container:has(#oauth_username) .auth-btn-wrapper .authorize")
        .await;
    // Swagger shows "Logout" once the token request succeeded.
    page.wait_text(".modal-ux-content", "Logout", Duration::from_secs(10))
        .await;
    page.screenshot("authorized").await;
    page.click(".btn-done").await;
    email
}

/// Run one operation with "Try it out"; the response body text.
async fn try_it(page: &Session, op_id: &str, body: Option<&str>) -> (String, String) {
    let op = format!("#operations-{op_id}");
    page.click(&format!("{op} .opblock-summary")).await;
    page.click(&format!("{op} .try-out__btn")).await;
    if let Some(body) = body {
        page.fill(&format!("{op} textarea.body-param__text"), body)
            .await;
    }
    page.click(&format!("{op} .execute")).await;
    let status_css = format!("{op} .live-responses-table tr.response .response-col_status");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = page.text(&status_css).await;
        if !status.trim().is_empty() {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            page.fail(&format!("{op_id}: no response shown")).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = page
        .text(&format!(
            "{op} .live-responses-table tr.response .response-col_description"
        ))
        .await;
    (status, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_authorize_through_gatehouse_then_create_and_list_bots() {
    let (ctx, _) = setup(false).await;
    let browser = Browser::start().await;
    let page = browser.session("botfactory-swagger").await;
    authorize(&page, &ctx.app.url, &ctx.gatehouse).await;

    let (status, text) = try_it(
        &page,
        "bots-create_bot",
        Some(r#"{"name": "From Swagger"}"#),
    )
    .await;
    assert!(status.contains("201"), "{status}: {text}");
    let (status, text) = try_it(&page, "bots-list_my_bots", None).await;
    assert!(status.contains("200"), "{status}: {text}");
    assert!(text.contains("From Swagger"), "{text}");
    page.screenshot("my-bots").await;
    let rows = ctx.bot_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "From Swagger");
    page.close().await;
}

/// Authorize against the real `gatehouse-api`: its CORS lets BotFactory's
/// Swagger UI log in. (Its tokens are accepted by BotFactory once Gatehouse
/// signs with EdDSA: see `e2e.rs`.)
#[tokio::test(flavor = "multi_thread")]
async fn swagger_authorize_reaches_the_real_gatehouse() {
    let (ctx, real) = setup(true).await;
    let real = real.unwrap();
    let browser = Browser::start().await;
    let page = browser.session("botfactory-swagger-real").await;
    authorize(&page, &ctx.app.url, &real).await;
    page.close().await;
}
