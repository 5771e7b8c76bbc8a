use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, problem};

#[tokio::test(flavor = "multi_thread")]
async fn signup_creates_unverified_user_and_queues_email() {
    let app = TestApp::spawn().await;
    let res = app
        .post("/auth/signup", json!({"email": "Ada@Example.com", "password": PASSWORD, "first_name": " Ada ", "last_name": ""}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(location, format!("/users/{}", body["id"].as_str().unwrap()));
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["first_name"], "Ada");
    assert_eq!(body["last_name"], Value::Null);
    assert_eq!(body["role"], "user");
    assert_eq!(body["is_verified"], false);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    let text = body.to_string();
    assert!(!text.contains("argon2") && !text.contains("password"));
    // The verification job was written to the outbox in the same transaction.
    let mut conn = app.db.conn().await;
    let id = body["id"].as_str().unwrap().parse().unwrap();
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let jobs = gatehouse_shared::models::OutboxEntry::recent_for_user(
        &mut conn,
        id,
        "verify-email",
        since,
    )
    .await
    .unwrap();
    assert_eq!(jobs.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_email_in_other_case_is_409() {
    let app = TestApp::spawn().await;
    app.signup("grace@example.com").await;
    let res = app
        .post(
            "/auth/signup",
            json!({"email": "GRACE@Example.COM", "password": "another fine passphrase"}),
        )
        .await;
    problem(res, StatusCode::CONFLICT, "email_taken").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn weak_common_and_own_email_passwords_are_422() {
    let app = TestApp::spawn().await;
    for (password, code) in [
        ("short", "password_too_short"),
        ("password123", "password_too_common"),
        ("iloveyou2", "password_too_common"),
        ("linus@example.com", "password_contains_email"),
    ] {
        let res = app
            .post(
                "/auth/signup",
                json!({"email": "linus@example.com", "password": password}),
            )
            .await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], "password");
        assert_eq!(v["errors"][0]["code"], code, "{password}");
    }
    let long = "x".repeat(129);
    let res = app
        .post(
            "/auth/signup",
            json!({"email": "linus@example.com", "password": long}),
        )
        .await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"][0]["code"], "password_too_long");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_invalid_field_is_listed() {
    let app = TestApp::spawn().await;
    let res = app
        .post("/auth/signup", json!({"first_name": "x".repeat(101)}))
        .await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "first_name"]);
    let res = app
        .post(
            "/auth/signup",
            json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"][0]["code"], "invalid_email");
}

#[tokio::test(flavor = "multi_thread")]
async fn mass_assignment_is_refused() {
    let app = TestApp::spawn().await;
    for field in ["role", "is_verified", "id"] {
        let mut body = json!({"email": "mallory@example.com", "password": PASSWORD});
        body[field] = json!("admin");
        let res = app.post("/auth/signup", body).await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], field);
        assert_eq!(v["errors"][0]["code"], "unknown_field");
    }
}

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
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
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
async fn bootstrap_admin_is_created_once_and_verified() {
    let app = TestApp::spawn_with(&[
        ("bootstrap-admin-email", "root@example.com"),
        ("bootstrap-admin-password", "an admin passphrase"),
    ])
    .await;
    let tokens = app.login("root@example.com", "an admin passphrase").await;
    let me: Value = app
        .get_auth("/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "admin");
    assert_eq!(me["is_verified"], true);
    // Running it again changes nothing.
    gatehouse_api::accounts::bootstrap_admin(&app.state)
        .await
        .unwrap();
    let mut conn = app.db.conn().await;
    assert_eq!(
        gatehouse_shared::models::User::count(&mut conn)
            .await
            .unwrap(),
        1
    );
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
