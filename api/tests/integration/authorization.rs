//! Cross-cutting: who may call every protected route (anonymous, user,
//! owner, admin), with the status, the problem code and the lasting effect.

use crate::common::{TestApp, Tokens, id_of, ids, json_ok, problem};
use gatehouse_shared::domain::Role;
use gatehouse_shared::models::{OutboxEntry, User};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

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
            let res = app.set_role(&root.access, id, "user").await;
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
