//! The chat page in headless Chromium: two people sign up through Gatehouse,
//! verify their email, log in, exchange messages; a reload logs in again
//! through Gatehouse's cookie; a logout closes the socket with 4401.

use std::time::Duration;

use example_testkit::{Gatehouse, Setup, local_origin};
use gatehouse_testkit::browser::{Browser, Session};

use crate::common::Chat;

const UI: Duration = Duration::from_secs(15);

/// Sign up, verify with the emailed code, log in; the socket goes live.
async fn sign_up_and_log_in(page: &Session, chat: &Chat, email: &str) {
    sign_up_and_verify(page, chat.url(0), &chat.gatehouse, email).await;
    page.click("#login-submit").await;
    page.wait_text("#status", "live in #lobby", UI).await;
    page.wait_text("#whoami", email, UI).await;
    page.screenshot("live").await;
}

/// Sign up on the page, see that login waits for the email, verify with the
/// code Gatehouse sent.
async fn sign_up_and_verify(page: &Session, chat_url: &str, gatehouse: &Gatehouse, email: &str) {
    page.goto(&format!("{chat_url}/")).await;
    page.fill("#signup-email", email).await;
    page.fill("#signup-password", example_testkit::PASSWORD)
        .await;
    page.click("#signup-submit").await;
    page.wait_text("#notice", "Check your inbox", UI).await;
    page.screenshot("signed-up").await;
    // Logging in before verifying is refused with a hint.
    page.fill("#login-password", example_testkit::PASSWORD)
        .await;
    page.click("#login-submit").await;
    page.wait_text("#notice", "Verify your email first", UI)
        .await;

    let code = gatehouse.verification_code(email).await;
    page.fill("#verify-code", &code).await;
    page.click("#verify-submit").await;
    page.wait_text("#notice", "Email verified", UI).await;
}

async fn say(page: &Session, body: &str) {
    page.fill("#message-input", body).await;
    page.click("#send").await;
}

pub async fn two_browsers_chat(real: bool) {
    let port = gatehouse_testkit::free_port();
    let setup = Setup {
        cors_origins: vec![local_origin(port)],
        require_verified: true,
        ..Setup::default()
    };
    let gatehouse = if real {
        Gatehouse::real(setup).await
    } else {
        Gatehouse::fake(setup).await
    };
    let mut chat = Chat::start(gatehouse, 0, &[]).await;
    chat.add_replica_on(port).await;
    let browser = Browser::start().await;
    let alice = browser.session("chat-alice").await;
    let bob = browser.session("chat-bob").await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (alice_email, bob_email) = (
        format!("alice-{tag}@example.com"),
        format!("bob-{tag}@example.com"),
    );
    sign_up_and_log_in(&alice, &chat, &alice_email).await;
    sign_up_and_log_in(&bob, &chat, &bob_email).await;

    say(&alice, "Hello Bob").await;
    bob.wait_text("#messages", "Hello Bob", UI).await;
    say(&bob, "Hi Alice <b>not bold</b>").await;
    alice
        .wait_text("#messages", "Hi Alice <b>not bold</b>", UI)
        .await;
    // Text stays text.
    let bold = alice
        .js("return document.querySelectorAll('#messages b').length")
        .await;
    assert_eq!(bold, 0);
    let lines = alice.wait_count("#messages li", 2, UI).await;
    assert!(
        lines[0].contains("Hello Bob") && lines[1].contains("Hi Alice"),
        "{lines:?}"
    );
    alice.screenshot("conversation").await;

    // A reload: the access token was only in memory, Gatehouse's cookie
    // logs Bob in again, and the history fills the list.
    bob.goto(&format!("{}/", chat.url(0))).await;
    bob.wait_text("#status", "live in #lobby", UI).await;
    let lines = bob.wait_count("#messages li", 2, UI).await;
    assert!(lines[0].contains("Hello Bob"), "{lines:?}");
    let stored = bob
        .js("return Object.keys(localStorage).length + Object.keys(sessionStorage).length")
        .await;
    assert_eq!(stored, 0, "no token in web storage");
    bob.screenshot("reloaded").await;

    // Alice logs out at Gatehouse: the chat server closes her socket (4401).
    alice.click("#logout").await;
    let notice = alice
        .wait_text(
            "#notice",
            "closed the socket (code 4401",
            Duration::from_secs(3),
        )
        .await;
    assert!(notice.contains("session revoked"), "{notice}");
    assert!(
        alice
            .find("#login-form")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    alice.screenshot("logged-out").await;

    // Bob is still live.
    say(&bob, "Still here").await;
    bob.wait_text("#messages", "Still here", UI).await;
    assert_eq!(chat.stored("lobby").await.len(), 3);
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_sign_up_chat_reload_and_log_out() {
    two_browsers_chat(false).await;
}

/// The page's account calls against the real `gatehouse-api` and worker:
/// sign-up, the verification email's code, login and the cookie refresh all
/// pass Gatehouse's CORS and cookie rules. (This chat server trusts another
/// issuer, so it refuses the socket; the page then refreshes once through
/// the cookie, is refused again and stops with a clear message instead of
/// looping.)
#[tokio::test(flavor = "multi_thread")]
async fn the_page_signs_up_verifies_and_logs_in_through_the_real_gatehouse() {
    let port = gatehouse_testkit::free_port();
    let real = Gatehouse::real(Setup {
        cors_origins: vec![local_origin(port)],
        require_verified: true,
        ..Setup::default()
    })
    .await;
    let real_url = real.url().to_owned();
    let mut chat = Chat::start(
        Gatehouse::fake(Setup::default()).await,
        0,
        &[("GATEHOUSE_PUBLIC_URL", real_url.as_str())],
    )
    .await;
    chat.add_replica_on(port).await;
    let browser = Browser::start().await;
    let page = browser.session("chat-real-gatehouse").await;
    let email = format!("real-{}@example.com", uuid::Uuid::new_v4().simple());
    sign_up_and_verify(&page, chat.url(0), &real, &email).await;
    page.click("#login-submit").await;
    page.wait_text("#notice", "does not accept Gatehouse's token", UI)
        .await;
    page.screenshot("refused-by-another-issuer").await;
    page.close().await;
}
