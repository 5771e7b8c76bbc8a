//! The hosted pages behind emailed links (`src/routes/pages.rs` ↔
//! `src/pages.rs`): a GET consumes nothing, the POST does the work, the
//! headers lock the page down, and nothing is loaded from elsewhere. The
//! browser test at the end drives headless Chromium through the real
//! worker's email.

use std::time::Duration;

use gatehouse_shared::models::User;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::common::{PASSWORD, TestApp, id_of};

const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A link token as the worker makes them (64 hex characters).
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// An unverified user with a known link `TOKEN`.
async fn unverified_with_link(app: &TestApp, email: &str) -> Uuid {
    let id = id_of(&app.signup(email).await);
    app.issue_verification(id, "123456", TOKEN, chrono::Duration::minutes(15))
        .await;
    id
}

async fn is_verified(app: &TestApp, id: Uuid) -> bool {
    let mut conn = app.db.conn().await;
    User::find(&mut conn, id)
        .await
        .unwrap()
        .unwrap()
        .is_verified
}

async fn post_form(app: &TestApp, path: &str, form: &[(&str, &str)]) -> Response {
    app.client
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Assert an HTML page with the hosted pages' headers; its body.
async fn page(res: Response, status: StatusCode) -> String {
    assert_eq!(res.status(), status);
    let h = res.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let html = res.text().await.unwrap();
    assert_self_contained(&html);
    html
}

/// No script, no external asset: the only URL the page names is our
/// stylesheet, and forms post to a path of ours.
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for banned in [
        "<script",
        "javascript:",
        "http://",
        "https://",
        "src=",
        "style=",
        " onclick=",
        " onload=",
        " onsubmit=",
        "<iframe",
        "@import",
    ] {
        assert!(!lower.contains(banned), "page contains {banned:?}: {html}");
    }
    assert!(html.contains(r#"<link rel="stylesheet" href="/assets/gatehouse.css">"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn item_8_verify_get_shows_a_button_and_consumes_nothing() {
    let app = TestApp::spawn().await;
    let id = unverified_with_link(&app, "get@example.com").await;

    for _ in 0..2 {
        let html = page(
            app.get(&format!("/verify?token={TOKEN}")).await,
            StatusCode::OK,
        )
        .await;
        assert!(
            html.contains(r#"<h1 id="title">Verify your email</h1>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<form method="post" action="/verify">"#),
            "{html}"
        );
        assert!(
            html.contains(&format!(r#"name="token" value="{TOKEN}""#)),
            "{html}"
        );
        assert!(html.contains(r#"<button type="submit" id="submit">Verify my email</button>"#));
    }
    // A mail scanner's GET changed nothing: still unverified, link alive.
    assert!(!is_verified(&app, id).await);
    let html = page(
        post_form(&app, "/verify", &[("token", TOKEN)]).await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("Email verified"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn item_8_verify_post_verifies_and_shows_the_verified_page() {
    let app = TestApp::spawn().await;
    let id = unverified_with_link(&app, "post@example.com").await;

    let html = page(
        post_form(&app, "/verify", &[("token", TOKEN)]).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        html.contains(r#"<h1 id="title">Email verified</h1>"#),
        "{html}"
    );
    assert!(html.contains(r#"class="success""#), "{html}");
    assert!(is_verified(&app, id).await);
    // The account can log in now.
    app.login("post@example.com", PASSWORD).await;
    // A second click (the link is still in the inbox) says the same.
    let html = page(
        post_form(&app, "/verify", &[("token", TOKEN)]).await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("Email verified"), "{html}");
    // Audited as a link verification.
    app.flush_audit().await;
    let mut conn = app.db.conn().await;
    let events: Vec<(String, Value)> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use gatehouse_shared::schema::audit_events::dsl as a;
        a::audit_events
            .filter(a::subject_id.eq(id))
            .select((a::action, a::details))
            .load(&mut conn)
            .await
            .unwrap()
    };
    let verified: Vec<_> = events
        .iter()
        .filter(|(action, _)| action == "email_verified")
        .collect();
    assert_eq!(verified.len(), 1, "{events:?}");
    assert_eq!(verified[0].1["method"], "link");
}

#[tokio::test(flavor = "multi_thread")]
async fn item_8_verify_with_a_bad_expired_or_missing_token_shows_the_failure_page() {
    let app = TestApp::spawn().await;
    let id = unverified_with_link(&app, "bad@example.com").await;

    let invalid = |html: &str| {
        assert!(html.contains("This link cannot be used"), "{html}");
        assert!(html.contains("invalid or has expired"), "{html}");
        assert!(html.contains(r#"class="failure""#), "{html}");
        assert!(!html.contains("<form"), "{html}");
    };
    // Unknown token, blank token, no token, an oversized one.
    let long = "a".repeat(201);
    for form in [
        vec![("token", "f".repeat(64))],
        vec![("token", "   ".to_owned())],
        vec![],
        vec![("token", long.clone())],
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        invalid(
            &page(
                post_form(&app, "/verify", &form).await,
                StatusCode::BAD_REQUEST,
            )
            .await,
        );
    }
    // A GET without a usable token shows the failure at once, no form.
    for query in [
        "/verify",
        "/verify?token=",
        &format!("/verify?token={long}"),
    ] {
        invalid(&page(app.get(query).await, StatusCode::BAD_REQUEST).await);
    }
    // A body that is not a form at all is no token either (not a 415/500).
    let res = app
        .client
        .post(app.url("/verify"))
        .header("content-type", "application/json")
        .body(r#"{"token": 1}"#)
        .send()
        .await
        .unwrap();
    invalid(&page(res, StatusCode::BAD_REQUEST).await);

    // An expired link.
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use gatehouse_shared::schema::email_verifications::dsl as ev;
        let mut conn = app.db.conn().await;
        diesel::update(ev::email_verifications.find(id))
            .set(ev::link_expires_at.eq(chrono::Utc::now() - chrono::Duration::minutes(1)))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    invalid(
        &page(
            post_form(&app, "/verify", &[("token", TOKEN)]).await,
            StatusCode::BAD_REQUEST,
        )
        .await,
    );
    assert!(
        !is_verified(&app, id).await,
        "no failure verified the account"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn item_8_verify_page_is_rate_limited_per_ip_with_a_page() {
    let app = TestApp::spawn_with(&[("rate-limit-verify-ip", "2/1m")]).await;
    for _ in 0..2 {
        page(
            post_form(&app, "/verify", &[("token", TOKEN)]).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let res = post_form(&app, "/verify", &[("token", TOKEN)]).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let html = page(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(html.contains("Too many attempts"), "{html}");
    // The GET is not limited: it does nothing.
    page(
        app.get(&format!("/verify?token={TOKEN}")).await,
        StatusCode::OK,
    )
    .await;
}

/// `/reset-password`, `/email/confirm`, `/email/revert`: the GET shows the
/// form (a labelled password field, or a button) that posts the token back,
/// and a missing or unknown token is the failure page.
#[tokio::test(flavor = "multi_thread")]
async fn item_8_reset_and_email_pages_show_forms_that_post_the_token() {
    let app = TestApp::spawn().await;
    let html = page(
        app.get(&format!("/reset-password?token={TOKEN}")).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        html.contains(r#"<form method="post" action="/reset-password">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<label for="password">New password</label>"#),
        "{html}"
    );
    assert!(html.contains(r#"autocomplete="new-password""#), "{html}");
    assert!(
        html.contains(&format!(r#"name="token" value="{TOKEN}""#)),
        "{html}"
    );
    for (path, button) in [
        ("/email/confirm", "Confirm my new email"),
        ("/email/revert", "Restore my email address"),
    ] {
        let html = page(
            app.get(&format!("{path}?token={TOKEN}")).await,
            StatusCode::OK,
        )
        .await;
        assert!(
            html.contains(&format!(r#"<form method="post" action="{path}">"#)),
            "{html}"
        );
        assert!(
            html.contains(&format!(r#"id="submit">{button}</button>"#)),
            "{html}"
        );
        assert!(
            html.contains(&format!(r#"name="token" value="{TOKEN}""#)),
            "{html}"
        );
    }
    for path in ["/reset-password", "/email/confirm", "/email/revert"] {
        let html = page(app.get(path).await, StatusCode::BAD_REQUEST).await;
        assert!(
            html.contains("This link cannot be used") && !html.contains("<form"),
            "{html}"
        );
        let html = page(post_form(&app, path, &[]).await, StatusCode::BAD_REQUEST).await;
        assert!(html.contains("This link cannot be used"), "{html}");
        let res = post_form(
            &app,
            path,
            &[("token", TOKEN), ("password", "a new passphrase 42")],
        )
        .await;
        let html = page(res, StatusCode::BAD_REQUEST).await;
        assert!(html.contains("This link cannot be used"), "{html}");
    }
}

/// `/reset-password`: the GET consumes nothing, a weak password shows the
/// form again with the reason (the token still works), a good one sets the
/// password, and the used link is refused.
#[tokio::test(flavor = "multi_thread")]
async fn item_8_reset_password_page_shows_weak_passwords_then_resets() {
    let app = TestApp::spawn().await;
    let email = "page-reset@example.com";
    let id = app
        .insert_user(email, gatehouse_shared::domain::Role::User, true)
        .await;
    app.issue_reset(id, TOKEN, chrono::Duration::minutes(30))
        .await;
    for _ in 0..2 {
        page(
            app.get(&format!("/reset-password?token={TOKEN}")).await,
            StatusCode::OK,
        )
        .await;
    }
    for weak in ["password123", email] {
        let res = post_form(
            &app,
            "/reset-password",
            &[("token", TOKEN), ("password", weak)],
        )
        .await;
        let html = page(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            html.contains(r#"id="password-error" class="error""#),
            "{html}"
        );
        assert!(
            html.contains(&format!(r#"name="token" value="{TOKEN}""#)),
            "{html}"
        );
    }
    app.login(email, PASSWORD).await;
    let new = "a brand new page passphrase";
    let res = post_form(
        &app,
        "/reset-password",
        &[("token", TOKEN), ("password", new)],
    )
    .await;
    let html = page(res, StatusCode::OK).await;
    assert!(html.contains("Password changed"), "{html}");
    app.login(email, new).await;
    let res = post_form(
        &app,
        "/reset-password",
        &[("token", TOKEN), ("password", "yet another passphrase")],
    )
    .await;
    let html = page(res, StatusCode::BAD_REQUEST).await;
    assert!(html.contains("This link cannot be used"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn item_8_stylesheet_is_served_with_etag_and_cache_control() {
    let app = TestApp::spawn().await;
    let res = app.get("/assets/gatehouse.css").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(res.headers()["cache-control"], "public, max-age=3600");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 4, "{etag}");
    let css = res.text().await.unwrap();
    assert!(css.contains(".card"), "{css}");
    assert!(
        !css.contains("url("),
        "no external or embedded asset: {css}"
    );

    let res = app
        .client
        .get(app.url("/assets/gatehouse.css"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert!(res.text().await.unwrap().is_empty());
    let res = app
        .client
        .get(app.url("/assets/gatehouse.css"))
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn item_8_pages_are_not_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/auth/verify"), "the JSON twin is");
    for path in [
        "/verify",
        "/reset-password",
        "/email/confirm",
        "/email/revert",
        "/assets/gatehouse.css",
    ] {
        assert!(!paths.contains_key(path), "{path} is in the document");
    }
    // Another method on a page's path is still a problem+json 405.
    let res = app.client.put(app.url("/verify")).send().await.unwrap();
    crate::common::problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

/// The token of the first `{path}?token=` link in an email, with the link's
/// base checked: the worker's `PUBLIC_URL` is this API.
fn link_in(mail: &gatehouse_testkit::ReceivedMail, base: &str, path: &str) -> String {
    let prefix = format!("{base}{path}?token=");
    let start = mail
        .data
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in {}", mail.data))
        + prefix.len();
    let token: String = mail.data[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("{prefix}{token}")
}

/// The real worker binary on this app's database, Redis namespace and
/// secret, mailing `mail` with links under the app's address.
fn spawn_worker(
    app: &TestApp,
    mail: &gatehouse_testkit::MailSink,
) -> gatehouse_testkit::process::Proc {
    let config = &app.state.config;
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", app.db.url.clone()),
        ("REDIS_URL", gatehouse_testkit::redis_url()),
        ("REDIS_NAMESPACE", config.redis.redis_namespace.clone()),
        ("JWT_SECRET", crate::common::JWT_SECRET.into()),
        ("MAIL_TRANSPORT", "smtp".into()),
        ("SMTP_URL", mail.url()),
        ("PUBLIC_URL", app.base.clone()),
        (
            "WORKER_ADDR",
            format!("127.0.0.1:{}", gatehouse_testkit::free_port()),
        ),
        ("DB_POOL_SIZE", "4".into()),
        ("OUTBOX_SWEEP_INTERVAL", "500ms".into()),
    ];
    gatehouse_testkit::process::Proc::spawn("gatehouse-worker", &env)
}

/// Headless Chromium: sign up over the API, the real worker emails the
/// link, open it, click the button → the verified page. Screenshots go to
/// `target/screenshots/` (git-ignored).
#[tokio::test(flavor = "multi_thread")]
async fn item_8_browser_opens_the_emailed_link_and_verifies() {
    use gatehouse_testkit::browser::Browser;

    let app = TestApp::spawn().await;
    let mail = gatehouse_testkit::MailSink::start().await;
    let _worker = spawn_worker(&app, &mail);
    let email = "browser@example.com";
    let id = id_of(&app.signup(email).await);

    let message = mail
        .wait_for(email, 1, Duration::from_secs(30))
        .await
        .remove(0);
    let link = link_in(&message, &app.base, "/verify");

    let browser = Browser::start().await;
    let tab = browser.session("pages-verify").await;
    tab.goto(&link).await;
    tab.wait_text("#title", "Verify your email", Duration::from_secs(10))
        .await;
    // The stylesheet loaded under the CSP (the button is styled).
    let background = tab
        .js("return getComputedStyle(document.getElementById('submit')).backgroundColor")
        .await;
    assert_eq!(background, "rgb(36, 87, 197)");
    tab.screenshot("1-verify-form").await;
    assert!(
        !is_verified(&app, id).await,
        "opening the link consumed nothing"
    );

    tab.click("#submit").await;
    tab.wait_text("#title", "Email verified", Duration::from_secs(10))
        .await;
    tab.screenshot("2-verified").await;
    assert!(is_verified(&app, id).await);
    app.login(email, PASSWORD).await;

    // Forgot the password: the reset link from the email, a weak password
    // (the reason shows on the page), then a good one.
    let res = app
        .post("/auth/password/forgot", serde_json::json!({"email": email}))
        .await;
    assert!(res.status().is_success(), "forgot: {}", res.status());
    let message = mail
        .wait_for(email, 2, Duration::from_secs(30))
        .await
        .into_iter()
        .find(|m| m.data.contains("/reset-password?token="))
        .expect("a reset email");
    tab.goto(&link_in(&message, &app.base, "/reset-password"))
        .await;
    tab.wait_text("#title", "Choose a new password", Duration::from_secs(10))
        .await;
    tab.screenshot("3-reset-form").await;
    tab.fill("#password", "password123").await;
    tab.click("#submit").await;
    // The element appears with the answer to the post.
    let reason = tab.find("#password-error").await.text().await.unwrap();
    assert!(!reason.is_empty(), "the reason is shown");
    tab.screenshot("4-weak-password").await;
    let new = "a browser made passphrase";
    tab.fill("#password", new).await;
    tab.click("#submit").await;
    tab.wait_text("#title", "Password changed", Duration::from_secs(10))
        .await;
    tab.screenshot("5-password-changed").await;
    app.login(email, new).await;
    tab.close().await;
}
