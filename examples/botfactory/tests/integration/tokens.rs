//! Authentication: only live Gatehouse access tokens get in.

use std::time::Duration;

use example_testkit::{FakeGatehouse, FakeOptions};
use reqwest::Method;

use crate::common::{Ctx, within};

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_bad_tokens_are_401_problems() {
    let ctx = Ctx::new().await;
    let res = ctx.send(Method::GET, "/bots/me", None, None).await;
    res.problem(401, "missing_token");
    assert_eq!(res.header("www-authenticate"), "Bearer");
    assert_eq!(res.body["type"], "urn:gatehouse:problem:missing_token");

    let res = ctx.get("/clients/me", "not.a.jwt").await;
    res.problem(401, "invalid_token");
    assert_eq!(
        res.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );

    // A well-formed token from a key Gatehouse never published.
    let stranger = FakeGatehouse::start("unused", FakeOptions::default()).await;
    let forged = stranger.login_new_user();
    ctx.get("/bots/me", &forged.access_token)
        .await
        .problem(401, "invalid_token");

    // An expired token of a real session.
    let alice = ctx.client().await;
    let fake = ctx.gatehouse.as_fake().unwrap();
    let short = fake.mint(&alice, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(7)).await; // past the verifier's 5 s leeway
    ctx.get("/bots/me", &short)
        .await
        .problem(401, "invalid_token");
    // The session's normal token still works.
    assert_eq!(ctx.get("/bots/me", &alice.access_token).await.status, 200);

    // Nothing was created on the way.
    assert!(ctx.bot_rows().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logged_out_token_is_refused_within_a_second() {
    let ctx = Ctx::new().await;
    let alice = ctx.client().await;
    let other_session = ctx.gatehouse.login(&email_of(&ctx, &alice).await).await;
    ctx.create_bot(&alice.access_token, "Before logout").await;

    assert_eq!(ctx.gatehouse.logout(&alice.access_token).await, 204);
    let took = within(
        Duration::from_secs(1),
        "the logged-out token refused",
        || async { ctx.get("/bots/me", &alice.access_token).await.status == 401 },
    )
    .await;
    let res = ctx.get("/bots/me", &alice.access_token).await;
    res.problem(401, "invalid_token");
    let res = ctx
        .post(
            "/bots",
            &alice.access_token,
            serde_json::json!({"name": "After"}),
        )
        .await;
    res.problem(401, "invalid_token");
    // The user's other session is unaffected and sees the bot.
    let res = ctx.get("/bots/me", &other_session.access_token).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["total"], 1);
    assert_eq!(ctx.bot_rows().await.len(), 1);
    eprintln!("logout reached BotFactory in {took:?}");
}

/// The email of a test user (the fake keeps it; GET /me tells).
async fn email_of(ctx: &Ctx, login: &example_testkit::Login) -> String {
    let me: serde_json::Value = ctx
        .http
        .get(format!("{}/me", ctx.gatehouse.url()))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["email"].as_str().unwrap().to_owned()
}
