//! The caller's own account (`/me`): read it, change names and password,
//! delete it. Every check of `current_password` here counts against the
//! login budget and soft-lock ([`check_current_password`]).

use diesel_async::AsyncConnection;
use gatehouse_shared::domain::{Password, PersonName};
use gatehouse_shared::jobs::{self, SendAccountDeleted};
use gatehouse_shared::models::{AuditAction, AuditEvent, Session, User, UserChanges};
use serde_json::json;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::ratelimit::Class;
use crate::state::AppState;

/// Check `current_password` of a signed-in user as a login would: the
/// per-account login budget, the soft-lock delay, and a wrong password
/// counted as a failed login. A stolen access token therefore cannot
/// guess the password faster than the login endpoint allows.
///
/// This is the one place that checks a password outside login (`PATCH
/// /me`, `POST /me/email`, `DELETE /me`). The login-limits work (helper
/// `limits`) owns the budget rules; when its shared function lands, this
/// wrapper forwards to it.
pub async fn check_current_password(
    state: &AppState,
    user: &User,
    current: String,
    ip: Option<String>,
) -> ApiResult<()> {
    let account = user.email.trim().to_ascii_lowercase();
    state.limits.hit(Class::LoginAccount, &account).await?;
    state.limits.check_login_delay(&account).await?;
    let ok = match Password::candidate(current) {
        Some(candidate) => {
            state
                .hasher
                .verify(&candidate, &user.password_hash)
                .await
                .map_err(ApiError::internal)?
                .ok
        }
        None => false,
    };
    if ok {
        state.limits.reset_login_failures(&account).await;
        return Ok(());
    }
    state.limits.record_login_failure(&account).await;
    state.audit.record(
        AuditEvent::new(AuditAction::LoginFailed)
            .by_self(user.id)
            .ip(ip)
            .details(json!({"reason": "wrong_current_password"})),
    );
    Err(wrong_current_password())
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
    ip: Option<String>,
) -> ApiResult<User> {
    let mut update = UserChanges {
        first_name: changes.first_name.map(|n| n.map(PersonName::into_inner)),
        last_name: changes.last_name.map(|n| n.map(PersonName::into_inner)),
        ..Default::default()
    };
    let changing_password = changes.new_password.is_some();
    if let Some((new_password, current)) = changes.new_password {
        check_current_password(state, user, current, ip).await?;
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

fn wrong_current_password() -> ApiError {
    ApiError::validation(vec![FieldError::new(
        "current_password",
        "invalid_password",
        "current_password is incorrect",
    )])
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
    ip: Option<String>,
) -> ApiResult<()> {
    check_current_password(state, user, current_password, ip.clone()).await?;
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
