//! Against the real `gatehouse-api`: tokens it mints are accepted, ownership
//! holds, and a logout is refused at BotFactory within a second.

use std::time::Duration;

use example_testkit::{Gatehouse, Setup};

use crate::common::{Ctx, within};

#[tokio::test(flavor = "multi_thread")]
async fn real_gatehouse_tokens_ownership_and_logout() {
    let ctx = Ctx::with(Gatehouse::real(Setup::default()).await, &[]).await;
    let alice = ctx.client().await;
    let bob = ctx.client().await;
    let bot = ctx.create_bot(&alice.access_token, "Real").await;
    let path = format!("/bots/{}", bot["id"].as_str().unwrap());
    assert_eq!(
        ctx.get("/bots/me", &alice.access_token).await.body["total"],
        1
    );
    assert_eq!(
        ctx.get("/bots/me", &bob.access_token).await.body["total"],
        0
    );
    ctx.get(&path, &bob.access_token)
        .await
        .problem(404, "not_found");
    let me = ctx.get("/clients/me", &alice.access_token).await;
    assert_eq!(me.body["id"], alice.user_id.to_string());

    assert_eq!(ctx.gatehouse.logout(&alice.access_token).await, 204);
    within(
        Duration::from_secs(1),
        "the logged-out token refused",
        || async { ctx.get("/bots/me", &alice.access_token).await.status == 401 },
    )
    .await;
    ctx.get(&path, &alice.access_token)
        .await
        .problem(401, "invalid_token");
    assert_eq!(ctx.get("/bots/me", &bob.access_token).await.status, 200);
}
