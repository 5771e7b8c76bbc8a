//! Administration: the authorization matrix of every protected route, the
//! user list, user changes and deletion, the last-admin rule under
//! concurrency, purge requests and purge history.

use std::time::Duration;

use diesel::QueryableByName;
use diesel_async::{AsyncConnection, RunQueryDsl};
use gatehouse_shared::domain::Role;
use gatehouse_shared::models::{OutboxEntry, PurgeRun, User};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, Tokens, problem};

fn id_of(v: &Value) -> Uuid {
    v["id"].as_str().unwrap().parse().unwrap()
}

fn ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

async fn json_ok(res: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    res.json().await.unwrap()
}

// ---------------------------------------------------------------------------
// Authorization matrix
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// A plain user; acts on their own id.
    User,
    /// Another plain user, acting on the first user's id.
    OtherUser,
    Admin,
    /// An admin demoted a moment ago, using their old token.
    DemotedAdmin,
    /// A user deleted a moment ago, using their old token.
    DeletedUser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    GetMe,
    PatchMe,
    Logout,
    ListUsers,
    GetUser,
    PatchUser,
    DeleteUser,
    Purge,
    Runs,
    Audit,
}

const EVERYONE: [Who; 6] = [
    Who::Anonymous,
    Who::User,
    Who::OtherUser,
    Who::Admin,
    Who::DemotedAdmin,
    Who::DeletedUser,
];

const ROUTES: [Route; 10] = [
    Route::GetMe,
    Route::PatchMe,
    Route::Logout,
    Route::ListUsers,
    Route::GetUser,
    Route::PatchUser,
    Route::DeleteUser,
    Route::Purge,
    Route::Runs,
    Route::Audit,
];

/// The expected status and, for failures, the problem code.
fn expected(route: Route, who: Who) -> (StatusCode, &'static str) {
    use Route::*;
    use Who::*;
    match who {
        Anonymous => return (StatusCode::UNAUTHORIZED, "missing_token"),
        DeletedUser => return (StatusCode::UNAUTHORIZED, "invalid_token"),
        _ => {}
    }
    let forbidden = (StatusCode::FORBIDDEN, "forbidden");
    match route {
        GetMe | PatchMe => (StatusCode::OK, ""),
        Logout => (StatusCode::NO_CONTENT, ""),
        PatchUser if matches!(who, User | Admin) => (StatusCode::OK, ""),
        PatchUser => forbidden,
        DeleteUser if who == Admin => (StatusCode::NO_CONTENT, ""),
        Purge if who == Admin => (StatusCode::ACCEPTED, ""),
        ListUsers | GetUser | Runs | Audit if who == Admin => (StatusCode::OK, ""),
        _ => forbidden,
    }
}

/// One cell's world: a fresh target user with a live session, and the
/// principal (whose id is `None` for an anonymous caller).
struct Cell {
    target: Tokens,
    principal: Option<Tokens>,
}

async fn setup(app: &TestApp, root: &Tokens, who: Who, n: usize) -> Cell {
    let target_id = app
        .insert_user(&format!("target{n}@example.com"), Role::User, true)
        .await;
    let target = app.session_for(target_id).await;
    let principal = match who {
        Who::Anonymous => None,
        Who::User => Some(app.session_for(target_id).await),
        Who::OtherUser => {
            let id = app
                .insert_user(&format!("other{n}@example.com"), Role::User, true)
                .await;
            Some(app.session_for(id).await)
        }
        Who::Admin => {
            let id = app
                .insert_user(&format!("admin{n}@example.com"), Role::Admin, true)
                .await;
            Some(app.session_for(id).await)
        }
        Who::DemotedAdmin => {
            let id = app
                .insert_user(&format!("demoted{n}@example.com"), Role::Admin, true)
                .await;
            let tokens = app.session_for(id).await;
            let res = app
                .patch_auth(
                    &format!("/users/{id}"),
                    &root.access,
                    json!({"role": "user"}),
                )
                .await;
            assert_eq!(json_ok(res, StatusCode::OK).await["role"], "user");
            Some(tokens)
        }
        Who::DeletedUser => {
            let id = app
                .insert_user(&format!("deleted{n}@example.com"), Role::User, true)
                .await;
            let tokens = app.session_for(id).await;
            let res = app.delete_auth(&format!("/users/{id}"), &root.access).await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
            Some(tokens)
        }
    };
    Cell { target, principal }
}

async fn call(app: &TestApp, route: Route, token: Option<&str>, target: Uuid) -> reqwest::Response {
    let user = format!("/users/{target}");
    let (method, path, body) = match route {
        Route::GetMe => (Method::GET, "/me", None),
        Route::PatchMe => (Method::PATCH, "/me", Some(json!({"first_name": "Matrix"}))),
        Route::Logout => (Method::POST, "/auth/logout", None),
        Route::ListUsers => (Method::GET, "/users", None),
        Route::GetUser => (Method::GET, user.as_str(), None),
        Route::PatchUser => (
            Method::PATCH,
            user.as_str(),
            Some(json!({"first_name": "Patched"})),
        ),
        Route::DeleteUser => (Method::DELETE, user.as_str(), None),
        Route::Purge => (
            Method::POST,
            "/admin/jobs/purge",
            Some(json!({"dry_run": true})),
        ),
        Route::Runs => (Method::GET, "/admin/jobs/runs", None),
        Route::Audit => (Method::GET, "/admin/audit", None),
    };
    app.send_auth(method, path, token, body).await
}

/// Check the body (and lasting effect) of a successful call.
async fn check_success(
    app: &TestApp,
    root: &Tokens,
    route: Route,
    who: Who,
    cell: &Cell,
    res: reqwest::Response,
) {
    let principal = cell.principal.as_ref().unwrap();
    let target = cell.target.user_id;
    let what = format!("{route:?} as {who:?}");
    match route {
        Route::GetMe | Route::PatchMe => {
            let v: Value = res.json().await.unwrap();
            assert_eq!(id_of(&v), principal.user_id, "{what}");
            let role = if who == Who::Admin { "admin" } else { "user" };
            assert_eq!(v["role"], role, "{what}: the database decides the role");
            if route == Route::PatchMe {
                assert_eq!(v["first_name"], "Matrix", "{what}");
            }
        }
        Route::Logout => {
            assert_eq!(res.headers()["cache-control"], "no-store");
            app.assert_token_refused(&principal.access).await;
        }
        Route::ListUsers => {
            let v: Value = res.json().await.unwrap();
            assert_eq!(
                (v["limit"].as_i64(), v["offset"].as_i64()),
                (Some(50), Some(0))
            );
            assert!(v["total"].as_i64().unwrap() >= 2, "{what}");
            assert!(ids(&v).contains(&target), "{what}: newest users first");
        }
        Route::GetUser => {
            let v: Value = res.json().await.unwrap();
            assert_eq!(id_of(&v), target, "{what}");
            assert!(v["email"].as_str().unwrap().starts_with("target"));
            assert!(v.get("password_hash").is_none());
        }
        Route::PatchUser => {
            let v: Value = res.json().await.unwrap();
            assert_eq!(id_of(&v), target, "{what}");
            assert_eq!(v["first_name"], "Patched", "{what}");
            assert_eq!(v["role"], "user", "{what}");
        }
        Route::DeleteUser => {
            let gone = app
                .get_auth(&format!("/users/{target}"), &root.access)
                .await;
            problem(gone, StatusCode::NOT_FOUND, "not_found").await;
            // The deleted user's session went with the row.
            app.assert_token_refused(&cell.target.access).await;
        }
        Route::Purge => {
            let v: Value = res.json().await.unwrap();
            let run_id: Uuid = v["run_id"].as_str().unwrap().parse().unwrap();
            let mut conn = app.db.conn().await;
            let entry = OutboxEntry::find(&mut conn, run_id).await.unwrap().unwrap();
            assert_eq!(entry.queue, "purge");
            assert_eq!(entry.payload["dry_run"], true);
            assert_eq!(entry.payload["requested_by"], principal.user_id.to_string());
        }
        Route::Runs | Route::Audit => {
            let v: Value = res.json().await.unwrap();
            assert!(v["items"].is_array(), "{what}");
            assert!(v["total"].as_i64().unwrap() >= 0, "{what}");
            assert_eq!(
                (v["limit"].as_i64(), v["offset"].as_i64()),
                (Some(50), Some(0))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_matrix_covers_every_protected_route() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let mut n = 0;
    for route in ROUTES {
        for who in EVERYONE {
            n += 1;
            let cell = setup(&app, &root, who, n).await;
            let token = cell.principal.as_ref().map(|t| t.access.as_str());
            let res = call(&app, route, token, cell.target.user_id).await;
            let (status, code) = expected(route, who);
            let what = format!("{route:?} as {who:?}");
            assert_eq!(res.status(), status, "{what}");
            if status.is_success() {
                check_success(&app, &root, route, who, &cell, res).await;
            } else {
                if status == StatusCode::UNAUTHORIZED {
                    assert_eq!(res.headers()["www-authenticate"], "Bearer", "{what}");
                }
                let v = problem(res, status, code).await;
                assert!(v["detail"].as_str().is_some(), "{what}");
                // A refused change changed nothing.
                let mut conn = app.db.conn().await;
                let target = User::find(&mut conn, cell.target.user_id).await.unwrap();
                let target = target.expect("a refused call must not delete the target");
                assert_eq!(target.first_name, None, "{what}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// GET /users: pagination and filters
// ---------------------------------------------------------------------------

struct Seeded {
    root: Tokens,
    /// Every user, oldest first (root included).
    all: Vec<Uuid>,
    ada: Uuid,
    grace: Uuid,
    alan: Uuid,
    linus: Uuid,
    barbara: Uuid,
}

async fn seed(app: &TestApp) -> Seeded {
    let root = app.admin("root@admin.example").await;
    let mut all = vec![root.user_id];
    let mut add =
        async |email: &str, role: Role, verified: bool, first: Option<&str>, last: Option<&str>| {
            let id = app
                .insert_user_named(email, role, verified, first, last)
                .await;
            all.push(id);
            id
        };
    let ada = add(
        "ada@analytical.example",
        Role::User,
        true,
        Some("Ada"),
        Some("Lovelace"),
    )
    .await;
    let grace = add(
        "grace@navy.example",
        Role::User,
        false,
        Some("Grace"),
        Some("Hopper"),
    )
    .await;
    let alan = add(
        "alan@bletchley.example",
        Role::Admin,
        true,
        Some("Alan"),
        Some("Turing"),
    )
    .await;
    let linus = add("linus@kernel.example", Role::User, true, None, None).await;
    let barbara = add(
        "barbara@mit.example",
        Role::User,
        false,
        Some("Barbara"),
        Some("Liskov"),
    )
    .await;
    for i in 0..20 {
        add(
            &format!("filler{i:02}@example.com"),
            Role::User,
            true,
            None,
            None,
        )
        .await;
    }
    Seeded {
        root,
        all,
        ada,
        grace,
        alan,
        linus,
        barbara,
    }
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.get_auth(&format!("/users{query}"), token).await;
    json_ok(res, StatusCode::OK).await
}

#[tokio::test(flavor = "multi_thread")]
async fn user_list_pages_newest_first() {
    let app = TestApp::spawn().await;
    let s = seed(&app).await;
    let t = &s.root.access;
    let newest_first: Vec<Uuid> = s.all.iter().rev().copied().collect();

    let page = list(&app, t, "").await;
    assert_eq!(page["total"], 26);
    assert_eq!(page["limit"], 50);
    assert_eq!(page["offset"], 0);
    assert_eq!(ids(&page), newest_first);
    let first = &page["items"][0];
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(first.get("password_hash").is_none());

    let page = list(&app, t, "?limit=10&offset=20").await;
    assert_eq!(page["total"], 26);
    assert_eq!(
        (page["limit"].as_i64(), page["offset"].as_i64()),
        (Some(10), Some(20))
    );
    assert_eq!(ids(&page), newest_first[20..]);
    let page = list(&app, t, "?limit=200").await;
    assert_eq!(ids(&page).len(), 26);

    // Past the end: no items, the right total.
    let page = list(&app, t, "?offset=1000").await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["total"], 26);
    assert_eq!(page["offset"], 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_list_rejects_bad_parameters_naming_them() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-5", "limit"),
        ("offset=-1", "offset"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("offset=ten", "offset"),
        ("role=root", "role"),
        ("role=Admin", "role"),
        ("is_verified=maybe", "is_verified"),
        ("q=ab", "q"),
        ("q=", ""),
        ("sort=email", "sort"),
    ] {
        let res = app.get_auth(&format!("/users?{query}"), &root.access).await;
        if field.is_empty() {
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "{query}: empty q is no search"
            );
            continue;
        }
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], field, "{query}: {v}");
    }
    // Both bad values are reported at once.
    let res = app.get_auth("/users?limit=0&offset=-1", &root.access).await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    // The other lists share the rules.
    for path in [
        "/admin/jobs/runs?limit=0",
        "/admin/audit?offset=-1",
        "/admin/jobs/runs?limit=x",
    ] {
        let res = app.get_auth(path, &root.access).await;
        problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn user_list_filters() {
    let app = TestApp::spawn().await;
    let s = seed(&app).await;
    let t = &s.root.access;
    let cases: Vec<(&str, Vec<Uuid>)> = vec![
        ("role=admin", vec![s.alan, s.root.user_id]),
        ("is_verified=false", vec![s.barbara, s.grace]),
        ("role=user&is_verified=false", vec![s.barbara, s.grace]),
        ("role=admin&is_verified=false", vec![]),
        // q: email, first name, last name; any case; substrings.
        ("q=KERNEL", vec![s.linus]),
        ("q=barb", vec![s.barbara]),
        ("q=hopp", vec![s.grace]),
        ("q=lovelace", vec![s.ada]),
        ("q=ring", vec![s.alan]),
        ("q=%20ada%20", vec![s.ada]),
        (
            "q=.example",
            vec![s.barbara, s.linus, s.alan, s.grace, s.ada, s.root.user_id],
        ),
        // Combined with AND.
        ("q=.example&role=admin", vec![s.alan, s.root.user_id]),
        (
            "q=.example&is_verified=false&role=user",
            vec![s.barbara, s.grace],
        ),
        ("q=hopper&is_verified=true", vec![]),
        // LIKE wildcards are literal characters.
        ("q=___", vec![]),
        ("q=%25%25%25", vec![]),
    ];
    for (query, want) in cases {
        let page = list(&app, t, &format!("?{query}")).await;
        assert_eq!(ids(&page), want, "{query}");
        assert_eq!(page["total"], want.len(), "{query}");
    }
    // Filters and pages together.
    let page = list(&app, t, "?q=.example&limit=2&offset=1").await;
    assert_eq!(ids(&page), vec![s.linus, s.alan]);
    assert_eq!(page["total"], 6);
    let page = list(&app, t, "?is_verified=true&limit=1").await;
    assert_eq!(page["total"], 26 - 2);
    assert_eq!(page["items"][0]["is_verified"], true);
}

// ---------------------------------------------------------------------------
// GET, PATCH, DELETE /users/{id}
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn get_user_by_id() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let id = app.insert_user("kim@example.com", Role::User, false).await;
    let v = json_ok(
        app.get_auth(&format!("/users/{id}"), &root.access).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["email"], "kim@example.com");
    assert_eq!(v["is_verified"], false);
    assert_eq!(v["first_name"], Value::Null);
    let missing = format!("/users/{}", Uuid::now_v7());
    problem(
        app.get_auth(&missing, &root.access).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for bad in ["/users/42", "/users/not-a-uuid"] {
        let res = app.get_auth(bad, &root.access).await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], "id");
    }
    for res in [
        app.delete_auth(&missing, &root.access).await,
        app.patch_auth(&missing, &root.access, json!({"first_name": "X"}))
            .await,
    ] {
        problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_patches_every_field() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let id = app.insert_user("sam@example.com", Role::User, false).await;
    let path = format!("/users/{id}");
    let res = app
        .patch_auth(
            &path,
            &root.access,
            json!({"first_name": " Sam ", "last_name": "Altmann", "email": "Samuel@Example.COM",
                   "role": "admin", "is_verified": true}),
        )
        .await;
    let v = json_ok(res, StatusCode::OK).await;
    assert_eq!(v["first_name"], "Sam");
    assert_eq!(v["last_name"], "Altmann");
    assert_eq!(v["email"], "samuel@example.com");
    assert_eq!(v["role"], "admin");
    assert_eq!(v["is_verified"], true);
    assert_ne!(v["updated_at"], v["created_at"]);
    let mut conn = app.db.conn().await;
    let user = User::find(&mut conn, id).await.unwrap().unwrap();
    assert!(user.verified_at.is_some());
    // Partial: absent fields stay; null clears a name; un-verifying clears
    // the verification time.
    let res = app
        .patch_auth(
            &path,
            &root.access,
            json!({"last_name": null, "is_verified": false, "role": "user"}),
        )
        .await;
    let v = json_ok(res, StatusCode::OK).await;
    assert_eq!(v["first_name"], "Sam");
    assert_eq!(v["last_name"], Value::Null);
    assert_eq!(
        (v["role"].as_str(), v["is_verified"].as_bool()),
        (Some("user"), Some(false))
    );
    let user = User::find(&mut conn, id).await.unwrap().unwrap();
    assert!(user.verified_at.is_none());
    // An empty patch changes nothing.
    let same = json_ok(
        app.patch_auth(&path, &root.access, json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(same, v);
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_validation_and_conflicts() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let id = app.insert_user("one@example.com", Role::User, true).await;
    app.insert_user("two@example.com", Role::User, true).await;
    let path = format!("/users/{id}");
    let res = app
        .patch_auth(&path, &root.access, json!({"email": "TWO@example.com"}))
        .await;
    problem(res, StatusCode::CONFLICT, "email_taken").await;
    let res = app
        .patch_auth(&path, &root.access, json!({"email": "one@EXAMPLE.com"}))
        .await;
    assert_eq!(
        json_ok(res, StatusCode::OK).await["email"],
        "one@example.com"
    );
    for (body, field, code) in [
        (json!({"email": "not-an-email"}), "email", "invalid_email"),
        (
            json!({"first_name": "x".repeat(101)}),
            "first_name",
            "too_long",
        ),
        (json!({"role": "root"}), "role", "invalid_type"),
        (json!({"is_verified": "yes"}), "is_verified", "invalid_type"),
        (
            json!({"password_hash": "x"}),
            "password_hash",
            "unknown_field",
        ),
        (json!({"id": Uuid::now_v7()}), "id", "unknown_field"),
        (
            json!({"created_at": "2020-01-01T00:00:00Z"}),
            "created_at",
            "unknown_field",
        ),
    ] {
        let res = app.patch_auth(&path, &root.access, body.clone()).await;
        let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], field, "{body}");
        assert_eq!(v["errors"][0]["code"], code, "{body}");
    }
    // Every invalid field at once.
    let res = app
        .patch_auth(
            &path,
            &root.access,
            json!({"email": "x", "last_name": "\u{7}"}),
        )
        .await;
    let v = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_users_change_only_their_own_names() {
    let app = TestApp::spawn().await;
    let me_id = app.insert_user("me@example.com", Role::User, true).await;
    let me = app.session_for(me_id).await;
    let other = app.insert_user("other@example.com", Role::User, true).await;
    let mine = format!("/users/{me_id}");
    let res = app
        .patch_auth(
            &mine,
            &me.access,
            json!({"first_name": "Mia", "last_name": "Wong"}),
        )
        .await;
    let v = json_ok(res, StatusCode::OK).await;
    assert_eq!(
        (v["first_name"].as_str(), v["last_name"].as_str()),
        (Some("Mia"), Some("Wong"))
    );
    for body in [
        json!({"role": "admin"}),
        json!({"role": "user"}),
        json!({"is_verified": true}),
        json!({"email": "me2@example.com"}),
        json!({"first_name": "Mia", "role": "admin"}),
    ] {
        let res = app.patch_auth(&mine, &me.access, body.clone()).await;
        problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Someone else's account: 403 whatever the body, even an invalid one.
    for body in [
        json!({"first_name": "Evil"}),
        json!({"first_name": "x".repeat(500)}),
    ] {
        let res = app
            .patch_auth(&format!("/users/{other}"), &me.access, body)
            .await;
        problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Including an id that does not exist: no enumeration.
    let res = app
        .patch_auth(
            &format!("/users/{}", Uuid::now_v7()),
            &me.access,
            json!({"first_name": "X"}),
        )
        .await;
    problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let mut conn = app.db.conn().await;
    let user = User::find(&mut conn, me_id).await.unwrap().unwrap();
    assert_eq!(
        (user.role.as_str(), user.email.as_str()),
        ("user", "me@example.com")
    );
    let user = User::find(&mut conn, other).await.unwrap().unwrap();
    assert_eq!(user.first_name, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn role_change_and_deletion_apply_on_the_next_request() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let id = app
        .insert_user("rising@example.com", Role::User, true)
        .await;
    let t = app.session_for(id).await;
    problem(
        app.get_auth("/users", &t.access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Promoted: the same token is an admin's on the very next request.
    let res = app
        .patch_auth(
            &format!("/users/{id}"),
            &root.access,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.get_auth("/users", &t.access).await.status(),
        StatusCode::OK
    );
    // Demoted again: refused at once.
    let res = app
        .patch_auth(
            &format!("/users/{id}"),
            &root.access,
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    problem(
        app.get_auth("/users", &t.access).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Deleted: every session of the user is gone, refresh included.
    let second = app.session_for(id).await;
    let res = app.delete_auth(&format!("/users/{id}"), &root.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for token in [&t.access, &second.access] {
        app.assert_token_refused(token).await;
    }
    let res = app
        .post("/auth/refresh", json!({"refresh_token": second.refresh}))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let mut conn = app.db.conn().await;
    assert!(User::find(&mut conn, id).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------
// The last admin
// ---------------------------------------------------------------------------

async fn admin_count(app: &TestApp) -> usize {
    let mut conn = app.db.conn().await;
    conn.transaction::<_, diesel::result::Error, _>(async |c| User::lock_admin_ids(c).await)
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_only_admin_cannot_be_deleted_or_demoted() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let me = format!("/users/{}", root.user_id);
    problem(
        app.delete_auth(&me, &root.access).await,
        StatusCode::CONFLICT,
        "last_admin",
    )
    .await;
    let res = app
        .patch_auth(&me, &root.access, json!({"role": "user"}))
        .await;
    problem(res, StatusCode::CONFLICT, "last_admin").await;
    // Harmless changes to the last admin still work.
    let res = app
        .patch_auth(
            &me,
            &root.access,
            json!({"role": "admin", "first_name": "Root"}),
        )
        .await;
    assert_eq!(json_ok(res, StatusCode::OK).await["first_name"], "Root");
    assert_eq!(admin_count(&app).await, 1);
    // With a second admin, an admin may step down or be deleted.
    let second = app
        .insert_user("second@example.com", Role::Admin, true)
        .await;
    let res = app
        .patch_auth(&me, &root.access, json!({"role": "user"}))
        .await;
    assert_eq!(json_ok(res, StatusCode::OK).await["role"], "user");
    let second_t = app.session_for(second).await;
    let res = app
        .delete_auth(&format!("/users/{second}"), &second_t.access)
        .await;
    problem(res, StatusCode::CONFLICT, "last_admin").await;
    let res = app.delete_auth(&me, &second_t.access).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(admin_count(&app).await, 1);
}

#[derive(QueryableByName)]
struct Waiting {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Run `race` while a transaction of the test holds every admin row, and
/// release the rows only once both requests are queued on them: both are
/// past authentication and reach the last-admin check at the same moment.
async fn race<F: Future>(app: &TestApp, race: F) -> F::Output {
    let mut gate = app.db.conn().await;
    let mut probe = app.db.conn().await;
    // Lock first; `race` is lazy and starts only inside the join below.
    diesel::sql_query("BEGIN").execute(&mut gate).await.unwrap();
    User::lock_admin_ids(&mut gate).await.unwrap();
    let (out, ()) = tokio::join!(race, async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let w: Waiting = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result(&mut probe)
            .await
            .unwrap();
            if w.n >= 2 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "requests never queued"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        diesel::sql_query("COMMIT")
            .execute(&mut gate)
            .await
            .unwrap();
    });
    out
}

/// Remove every admin, so the next round starts with exactly two.
async fn clear_admins(app: &TestApp) {
    let mut conn = app.db.conn().await;
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        for id in User::lock_admin_ids(c).await? {
            User::delete(c, id).await?;
        }
        Ok(())
    })
    .await
    .unwrap();
}

async fn two_admins(app: &TestApp, tag: &str) -> (Tokens, Tokens) {
    let a = app
        .insert_user(&format!("a-{tag}@example.com"), Role::Admin, true)
        .await;
    let b = app
        .insert_user(&format!("b-{tag}@example.com"), Role::Admin, true)
        .await;
    (app.session_for(a).await, app.session_for(b).await)
}

fn one_wins(statuses: [StatusCode; 2], success: StatusCode) {
    let wins = statuses.iter().filter(|s| **s == success).count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((wins, conflicts), (1, 1), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_admins_deleting_each_other_leave_one() {
    let app = TestApp::spawn().await;
    for round in 0..3 {
        let (a, b) = two_admins(&app, &format!("del{round}")).await;
        let (path_a, path_b) = (
            format!("/users/{}", a.user_id),
            format!("/users/{}", b.user_id),
        );
        let (ra, rb) = race(&app, async {
            tokio::join!(
                app.delete_auth(&path_b, &a.access),
                app.delete_auth(&path_a, &b.access),
            )
        })
        .await;
        let statuses = [ra.status(), rb.status()];
        one_wins(statuses, StatusCode::NO_CONTENT);
        let loser = if statuses[0] == StatusCode::CONFLICT {
            ra
        } else {
            rb
        };
        problem(loser, StatusCode::CONFLICT, "last_admin").await;
        assert_eq!(admin_count(&app).await, 1);
        clear_admins(&app).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_admins_demoting_each_other_leave_one() {
    let app = TestApp::spawn().await;
    for round in 0..3 {
        let (a, b) = two_admins(&app, &format!("dem{round}")).await;
        let demote = json!({"role": "user"});
        let (path_a, path_b) = (
            format!("/users/{}", a.user_id),
            format!("/users/{}", b.user_id),
        );
        let (ra, rb) = race(&app, async {
            tokio::join!(
                app.patch_auth(&path_b, &a.access, demote.clone()),
                app.patch_auth(&path_a, &b.access, demote.clone()),
            )
        })
        .await;
        one_wins([ra.status(), rb.status()], StatusCode::OK);
        assert_eq!(admin_count(&app).await, 1);
        clear_admins(&app).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_race_without_a_gate_keeps_an_admin() {
    // Unsynchronised: either both requests meet at the lock (one 409) or
    // the second arrives after the first committed (its token is then
    // dead, 401). Never both succeed, never zero admins.
    let app = TestApp::spawn().await;
    for round in 0..5 {
        let (a, b) = two_admins(&app, &format!("plain{round}")).await;
        let (path_a, path_b) = (
            format!("/users/{}", a.user_id),
            format!("/users/{}", b.user_id),
        );
        let (ra, rb) = tokio::join!(
            app.delete_auth(&path_b, &a.access),
            app.delete_auth(&path_a, &b.access),
        );
        let statuses = [ra.status(), rb.status()];
        let wins = statuses
            .iter()
            .filter(|s| **s == StatusCode::NO_CONTENT)
            .count();
        assert_eq!(wins, 1, "{statuses:?}");
        assert!(
            statuses.iter().all(|s| [
                StatusCode::NO_CONTENT,
                StatusCode::CONFLICT,
                StatusCode::UNAUTHORIZED
            ]
            .contains(s)),
            "{statuses:?}"
        );
        assert_eq!(admin_count(&app).await, 1);
        clear_admins(&app).await;
    }
}

// ---------------------------------------------------------------------------
// Purge requests and history
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn purge_requests_are_queued_through_the_outbox() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let post = |body: Option<&'static str>, content_type: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url("/admin/jobs/purge"))
            .bearer_auth(&root.access);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        req.send()
    };
    let mut conn = app.db.conn().await;
    for (body, ct, dry_run) in [
        (None, None, false),
        (Some(""), Some("application/json"), false),
        (Some("{}"), Some("application/json"), false),
        (Some(r#"{"dry_run": true}"#), Some("application/json"), true),
        (
            Some(r#"{"dry_run": false}"#),
            Some("application/json"),
            false,
        ),
    ] {
        let res = post(body, ct).await.unwrap();
        let v = json_ok(res, StatusCode::ACCEPTED).await;
        let run_id: Uuid = v["run_id"].as_str().unwrap().parse().unwrap();
        let entry = OutboxEntry::find(&mut conn, run_id).await.unwrap().unwrap();
        assert_eq!(entry.queue, "purge");
        assert_eq!(entry.payload["dry_run"], dry_run, "{body:?}");
        assert_eq!(entry.payload["outbox_id"], run_id.to_string());
        assert_eq!(entry.payload["requested_by"], root.user_id.to_string());
    }
    for (body, ct, status, code) in [
        (
            r#"{"dry_run": "yes"}"#,
            "application/json",
            422,
            "validation_failed",
        ),
        (
            r#"{"force": true}"#,
            "application/json",
            422,
            "validation_failed",
        ),
        ("{", "application/json", 400, "malformed_json"),
        (
            "dry_run=true",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
    ] {
        let res = post(Some(body), Some(ct)).await.unwrap();
        problem(res, StatusCode::from_u16(status).unwrap(), code).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_history_is_listed_newest_first() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let mut conn = app.db.conn().await;
    let tick = chrono::Utc::now() - chrono::Duration::hours(1);
    let scheduled = PurgeRun::start(
        "schedule",
        Some(tick),
        false,
        "worker-a",
        None,
        Uuid::now_v7(),
    );
    assert!(scheduled.claim(&mut conn).await.unwrap());
    let counts = gatehouse_shared::models::purge_run::PurgeCounts {
        users: 3,
        sessions: 5,
        codes: 7,
    };
    PurgeRun::finish(&mut conn, scheduled.id, counts, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let manual = PurgeRun::start(
        "manual",
        None,
        true,
        "worker-b",
        Some(root.user_id),
        Uuid::now_v7(),
    );
    assert!(manual.claim(&mut conn).await.unwrap());

    let v = json_ok(
        app.get_auth("/admin/jobs/runs", &root.access).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["total"], 2);
    assert_eq!(ids(&v), vec![manual.id, scheduled.id]);
    let running = &v["items"][0];
    assert_eq!(running["trigger"], "manual");
    assert_eq!(running["status"], "running");
    assert_eq!(running["dry_run"], true);
    assert_eq!(running["scheduled_for"], Value::Null);
    assert_eq!(running["finished_at"], Value::Null);
    assert_eq!(running["error"], Value::Null);
    assert_eq!(running["requested_by"], root.user_id.to_string());
    assert_eq!(running["worker"], "worker-b");
    let done = &v["items"][1];
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["requested_by"], Value::Null);
    assert_eq!(
        (
            done["users_deleted"].as_i64(),
            done["sessions_deleted"].as_i64(),
            done["codes_deleted"].as_i64()
        ),
        (Some(3), Some(5), Some(7))
    );
    for field in ["scheduled_for", "started_at", "finished_at"] {
        let t = done[field].as_str().unwrap();
        assert!(t.ends_with('Z'), "{field}: {t}");
        chrono::DateTime::parse_from_rfc3339(t).unwrap();
    }
    let mut keys: Vec<&str> = done
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "codes_deleted",
            "dry_run",
            "error",
            "finished_at",
            "id",
            "requested_by",
            "scheduled_for",
            "sessions_deleted",
            "started_at",
            "status",
            "trigger",
            "users_deleted",
            "worker",
        ]
    );
    let v = json_ok(
        app.get_auth("/admin/jobs/runs?limit=1&offset=1", &root.access)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&v), vec![scheduled.id]);
    assert_eq!(v["total"], 2);
    let v = json_ok(
        app.get_auth("/admin/jobs/runs?offset=9", &root.access)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (v["items"].as_array().unwrap().len(), v["total"].as_i64()),
        (0, Some(2))
    );
}
