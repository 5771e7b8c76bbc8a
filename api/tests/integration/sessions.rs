//! Sessions: login, the OAuth2 token endpoint, refresh rotation and reuse
//! detection, logout.

use crate::common::{PASSWORD, TestApp, assert_refresh_refused, problem, refresh};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_tokens_cookie_and_no_store() {
    let app = TestApp::spawn().await;
    let id = app.verified_user("kim@example.com").await;
    let res = app
        .post(
            "/auth/login",
            json!({"email": "KIM@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    // The refresh cookie (the device cookie of the login soft-lock is the
    // other Set-Cookie; their order is not fixed).
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("gatehouse_refresh="))
        .unwrap();
    for part in [
        "gatehouse_refresh=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/auth",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 900);
    assert_eq!(v["user_id"], id.to_string());
    assert!(cookie.contains(v["refresh_token"].as_str().unwrap()));
    let me: Value = app
        .get_auth("/me", v["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "kim@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_email_look_identical() {
    let app = TestApp::spawn().await;
    app.verified_user("lee@example.com").await;
    let wrong = app
        .post(
            "/auth/login",
            json!({"email": "lee@example.com", "password": "not the password"}),
        )
        .await;
    let unknown = app
        .post(
            "/auth/login",
            json!({"email": "nobody@example.com", "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    let a: Value = wrong.json().await.unwrap();
    let b: Value = unknown.json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a["code"], "invalid_credentials");
}

#[tokio::test(flavor = "multi_thread")]
async fn unverified_login_is_403_only_after_correct_password() {
    let app = TestApp::spawn().await;
    app.signup("new@example.com").await;
    let res = app
        .post(
            "/auth/login",
            json!({"email": "new@example.com", "password": "wrong password!"}),
        )
        .await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app
        .post(
            "/auth/login",
            json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await;
    problem(res, StatusCode::FORBIDDEN, "email_not_verified").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_login_can_be_turned_off() {
    let app = TestApp::spawn_with(&[("require-verified-login", "false")]).await;
    app.signup("relaxed@example.com").await;
    app.login("relaxed@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_validation() {
    let app = TestApp::spawn().await;
    let res = app.post("/auth/login", json!({})).await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_token_endpoint() {
    let app = TestApp::spawn().await;
    app.verified_user("oauth@example.com").await;
    let form = |body: &'static str| {
        app.client
            .post(app.url("/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let res = form("grant_type=password&username=oauth%40example.com&password=correct+horse+battery+staple&scope=").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();

    let res = form("grant_type=password&username=oauth%40example.com&password=nope")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");

    let res = form("grant_type=client_credentials").await.unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "unsupported_grant_type");
    let res = form("username=x").await.unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");

    let body = format!("grant_type=refresh_token&refresh_token={refresh}");
    let res = app
        .client
        .post(app.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .client
        .post(app.url("/auth/token"))
        .json(&json!({"grant_type": "password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rehashes_outdated_hashes() {
    use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
    let app = TestApp::spawn().await;
    let id = app.verified_user("legacy@example.com").await;
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(4096, 1, 1, None).unwrap(),
    )
    .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
    .unwrap()
    .to_string();
    let mut conn = app.db.conn().await;
    gatehouse_shared::models::User::set_password_hash(&mut conn, id, &weak)
        .await
        .unwrap();
    app.login("legacy@example.com", PASSWORD).await;
    let user = gatehouse_shared::models::User::find(&mut conn, id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        user.password_hash
    );
}

async fn refresh_ok(app: &TestApp, token: &str) -> (String, String) {
    let res = refresh(app, token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: Value = res.json().await.unwrap();
    (
        v["access_token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_and_reuse_detection_revoke_one_family_only() {
    let app = TestApp::spawn().await;
    let first = app.logged_in("rot@example.com").await;
    let other = app.login("rot@example.com", PASSWORD).await;

    let (_, r2) = refresh_ok(&app, &first.refresh).await;
    let (a3, r3) = refresh_ok(&app, &r2).await;
    assert_ne!(r3, r2);
    assert_eq!(app.get_auth("/me", &a3).await.status(), StatusCode::OK);

    // The first token is two generations old: a replay.
    assert_refresh_refused(&app, &first.refresh, "refresh_token_reused").await;
    // The whole family is dead: its newest refresh token and its access token.
    problem(
        refresh(&app, &r3).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    app.assert_token_refused(&a3).await;
    // The other session lives on.
    assert_eq!(
        app.get_auth("/me", &other.access).await.status(),
        StatusCode::OK
    );
    refresh_ok(&app, &other.refresh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parent_token_within_grace_gets_the_current_token() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("tabs@example.com").await;
    let (_, r2) = refresh_ok(&app, &t.refresh).await;
    // A second tab presents the parent right after: no reuse alarm.
    let (_, again) = refresh_ok(&app, &t.refresh).await;
    let claims = |tok: &str| -> Value {
        let payload = tok.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims(&again)["jti"], claims(&r2)["jti"]);
    refresh_ok(&app, &r2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_after_grace_window_is_detected() {
    let app = TestApp::spawn_with(&[("refresh-reuse-grace", "1s")]).await;
    let t = app.logged_in("slow@example.com").await;
    refresh_ok(&app, &t.refresh).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_refresh_refused(&app, &t.refresh, "refresh_token_reused").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_rejects_the_old_access_token_at_once() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("bye@example.com").await;
    let other = app.login("bye@example.com", PASSWORD).await;
    let res = app.post_auth("/auth/logout", &t.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    app.assert_token_refused(&t.access).await;
    assert_refresh_refused(&app, &t.refresh, "invalid_refresh_token").await;
    assert_eq!(
        app.get_auth("/me", &other.access).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_ends_every_session() {
    let app = TestApp::spawn().await;
    let a = app.logged_in("all@example.com").await;
    let b = app.login("all@example.com", PASSWORD).await;
    let res = app.post_auth("/auth/logout?scope=all", &a.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for token in [&a.access, &b.access] {
        app.assert_token_refused(token).await;
    }
    let res = app
        .post_auth("/auth/logout?scope=everything", &b.access)
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_from_cookie_and_cross_site_refusal() {
    let app = TestApp::spawn().await;
    let t = app.logged_in("cookie@example.com").await;
    let cookie = format!("gatehouse_refresh={}", t.refresh);
    let res = app
        .post_headers(
            "/auth/refresh",
            &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
        )
        .await;
    problem(res, StatusCode::FORBIDDEN, "cross_site_request").await;
    let res = app
        .post_headers(
            "/auth/refresh",
            &[("cookie", &cookie), ("origin", "https://evil.example")],
        )
        .await;
    problem(res, StatusCode::FORBIDDEN, "cross_site_request").await;
    let res = app
        .post_headers(
            "/auth/refresh",
            &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("gatehouse_refresh=")
    );
    let res = app
        .client
        .post(app.url("/auth/refresh"))
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}

// ---- `/me/sessions` and `/users/{id}/sessions` (issue 13 item 3).

mod item_3 {
    use gatehouse_shared::domain::Role;
    use gatehouse_shared::models::AuditAction;
    use reqwest::StatusCode;
    use serde_json::{Value, json};

    use crate::common::{PASSWORD, TestApp, assert_refresh_refused, problem};

    async fn login_with_agent(app: &TestApp, email: &str, agent: &str) -> crate::common::Tokens {
        let res = app
            .client
            .post(app.url("/auth/login"))
            .header("user-agent", agent)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let v: Value = res.json().await.unwrap();
        crate::common::Tokens {
            access: v["access_token"].as_str().unwrap().to_owned(),
            refresh: v["refresh_token"].as_str().unwrap().to_owned(),
            user_id: v["user_id"].as_str().unwrap().parse().unwrap(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn item_3_my_sessions_list_marks_the_current_one_with_a_sanitised_agent() {
        let app = TestApp::spawn().await;
        app.verified_user("list@example.com").await;
        let long = format!("Browser/1.0\t\t(X11;   Linux) {}", "x".repeat(400));
        let a = login_with_agent(&app, "list@example.com", &long).await;
        let b = login_with_agent(&app, "list@example.com", "Phone/2.0").await;
        let res = app.get_auth("/me/sessions", &a.access).await;
        assert_eq!(res.status(), StatusCode::OK);
        let v: Value = res.json().await.unwrap();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        // Newest first; exactly one current.
        assert_eq!(items[0]["user_agent"], "Phone/2.0");
        assert_eq!(items[0]["current"], false);
        assert_eq!(items[1]["current"], true);
        let agent = items[1]["user_agent"].as_str().unwrap();
        assert!(agent.starts_with("Browser/1.0 (X11; Linux) xxx"), "{agent}");
        assert_eq!(agent.chars().count(), 255);
        assert_eq!(items[1]["ip"], "127.0.0.1");
        for key in ["id", "created_at", "last_used_at"] {
            assert!(items[0][key].is_string(), "{key}");
        }
        // The other session sees itself as current.
        let v: Value = app
            .get_auth("/me/sessions", &b.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["items"][0]["current"], true);
        // Unauthenticated is 401.
        let res = app
            .client
            .get(app.url("/me/sessions"))
            .send()
            .await
            .unwrap();
        problem(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn item_3_revoking_one_session_and_another_users_session_is_404() {
        let app = TestApp::spawn().await;
        let mine = app.logged_in("owner@example.com").await;
        let second = app.login("owner@example.com", PASSWORD).await;
        let theirs = app.logged_in("other@example.com").await;
        let list: Value = app
            .get_auth("/me/sessions", &theirs.access)
            .await
            .json()
            .await
            .unwrap();
        let their_sid = list["items"][0]["id"].as_str().unwrap().to_owned();
        let res = app
            .delete_auth(&format!("/me/sessions/{their_sid}"), &mine.access)
            .await;
        problem(res, StatusCode::NOT_FOUND, "not_found").await;
        // Their session is untouched.
        assert_eq!(
            app.get_auth("/me", &theirs.access).await.status(),
            StatusCode::OK
        );
        // Unknown id: 404 too; a malformed one 422.
        let res = app
            .delete_auth(
                &format!("/me/sessions/{}", uuid::Uuid::now_v7()),
                &mine.access,
            )
            .await;
        problem(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = app.delete_auth("/me/sessions/nope", &mine.access).await;
        problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        // My second session: revoked, its tokens refused at once.
        let list: Value = app
            .get_auth("/me/sessions", &mine.access)
            .await
            .json()
            .await
            .unwrap();
        let second_sid = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == false)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let res = app
            .delete_auth(&format!("/me/sessions/{second_sid}"), &mine.access)
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        app.assert_token_refused(&second.access).await;
        assert_refresh_refused(&app, &second.refresh, "invalid_refresh_token").await;
        assert_eq!(
            app.get_auth("/me", &mine.access).await.status(),
            StatusCode::OK
        );
        let events = app.audit_of(AuditAction::SessionRevoked).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].subject_id, Some(mine.user_id));
        assert_eq!(events[0].details["session_id"], second_sid);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn item_3_delete_my_sessions_keeps_the_current_one() {
        let app = TestApp::spawn().await;
        let here = app.logged_in("many@example.com").await;
        let a = app.login("many@example.com", PASSWORD).await;
        let b = app.login("many@example.com", PASSWORD).await;
        let res = app.delete_auth("/me/sessions", &here.access).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        app.assert_token_refused(&a.access).await;
        app.assert_token_refused(&b.access).await;
        let v: Value = app
            .get_auth("/me/sessions", &here.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 1);
        assert_eq!(v["items"][0]["current"], true);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn item_3_admins_list_and_revoke_a_users_sessions() {
        let app = TestApp::spawn().await;
        let admin = app.admin("boss@example.com").await;
        let user = app.logged_in("worker@example.com").await;
        let path = format!("/users/{}/sessions", user.user_id);
        let v: Value = app
            .get_auth(&path, &admin.access)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 1);
        assert_eq!(v["items"][0]["current"], false);
        // Plain users may not; unknown users are 404.
        problem(
            app.get_auth(&path, &user.access).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        problem(
            app.delete_auth(&path, &user.access).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        let ghost = format!("/users/{}/sessions", uuid::Uuid::now_v7());
        problem(
            app.get_auth(&ghost, &admin.access).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        problem(
            app.delete_auth(&ghost, &admin.access).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        let res = app.delete_auth(&path, &admin.access).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        app.assert_token_refused(&user.access).await;
        let v: Value = app
            .get_auth(&path, &admin.access)
            .await
            .json()
            .await
            .unwrap();
        assert!(v["items"].as_array().unwrap().is_empty());
        let events = app.audit_of(AuditAction::SessionRevoked).await;
        assert_eq!(events[0].actor_id, Some(admin.user_id));
        assert_eq!(events[0].subject_id, Some(user.user_id));
        let _ = Role::User;
    }
}
