//! The caller's own account (`/me`): read it, change names and password,
//! delete it. Every check of `current_password` here counts against the
//! login budget and soft-lock ([`check_current_password`]).

use diesel_async::AsyncConnection;
use gatehouse_shared::domain::{Password, PersonName};
use gatehouse_shared::jobs::{self, SendAccountDeleted};
use gatehouse_shared::models::{AuditAction, AuditEvent, Session, User, UserChanges};
use serde_json::json;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::ratelimit::Client;
use crate::state::AppState;

/// Check `current_password` of a signed-in user as a login would: the
/// login budgets and soft-lock of this account and client, and a wrong
/// password counted (and audited) as a failed login, so a stolen access
/// token cannot guess the password faster than the login endpoint allows.
/// Used by `PATCH /me`, `POST /me/email` and `DELETE /me`; it forwards to
/// the shared check of `crate::sessions` (one place owns the rules).
pub async fn check_current_password(
    state: &AppState,
    user: &User,
    current: String,
    client: &Client,
) -> ApiResult<()> {
    crate::sessions::check_current_password(state, user, current, client).await
}

pub struct ProfileChanges {
    pub first_name: Option<Option<PersonName>>,
    pub last_name: Option<Option<PersonName>>,
    pub new_password: Option<(Password, String)>,
}

/// Update the caller's own profile. A password change needs the current
/// password and ends every other session.
pub async fn update_profile(
    state: &AppState,
    user: &User,
    session_id: Uuid,
    changes: ProfileChanges,
    client: &Client,
) -> ApiResult<User> {
    let mut update = UserChanges {
        first_name: changes.first_name.map(|n| n.map(PersonName::into_inner)),
        last_name: changes.last_name.map(|n| n.map(PersonName::into_inner)),
        ..Default::default()
    };
    let changing_password = changes.new_password.is_some();
    if let Some((new_password, current)) = changes.new_password {
        // Counts against the login budget and soft-lock (issue 11, item 6).
        check_current_password(state, user, current, client).await?;
        update.password_hash = Some(
            state
                .hasher
                .hash(&new_password)
                .await
                .map_err(ApiError::internal)?,
        );
    }
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let updated = User::update(conn, user.id, update)
            .await?
            .ok_or_else(ApiError::invalid_token)?;
        if changing_password {
            // Other sessions end; the caller's own, which just proved the
            // password, keeps its tokens.
            Session::end_all_for_user(conn, user.id, Some(session_id), "password_changed").await?;
        }
        Ok(updated)
    })
    .await
}

/// `DELETE /me`: the owner deletes their account after proving the
/// password. Sessions go with the row (the deletion trigger publishes them
/// on the revocation feed); the audit event and the notice email are
/// written in the same transaction. The last active admin cannot delete
/// themselves (409), as with `DELETE /users/{id}`.
pub async fn delete_account(
    state: &AppState,
    user: &User,
    current_password: String,
    client: &Client,
) -> ApiResult<()> {
    check_current_password(state, user, current_password, client).await?;
    let ip = client.ip.map(|ip| ip.to_string());
    let mut conn = state.db.get().await?;
    let entry = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let admins = User::lock_admin_ids(conn).await?;
            let me = User::lock(conn, user.id)
                .await?
                .ok_or_else(ApiError::invalid_token)?;
            if me.is_admin() && me.is_active {
                let active = User::active_admin_ids(conn).await?;
                if !active.iter().any(|id| *id != me.id && admins.contains(id)) {
                    return Err(ApiError::last_admin());
                }
            }
            User::delete(conn, me.id).await?;
            AuditEvent::new(AuditAction::AccountDeleted)
                .by_self(me.id)
                .ip(ip)
                .details(json!({"email": me.email, "role": me.role()}))
                .insert(conn)
                .await?;
            Ok(jobs::enqueue(conn, &SendAccountDeleted::new(me.id, me.email.clone())).await?)
        })
        .await?;
    state.dispatch(vec![entry]);
    Ok(())
}
