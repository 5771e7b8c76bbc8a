//! User administration (`/users`, and `gatehouse-api admin promote`): list,
//! read, change and delete users.
//!
//! Every change here writes its audit event in the same transaction as the
//! change itself (not through the best-effort writer of `crate::audit`):
//! these events are rare and matter for security, so a role change can
//! never commit without its trail, nor the trail without the change.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use gatehouse_shared::domain::{Email, PersonName, Role};
use gatehouse_shared::models::{
    AuditAction, AuditEvent, Page, PageRequest, Session, User, UserChanges, UserFilter,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A validated `PATCH /users/{id}`. `None` leaves a field alone; for names
/// `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct UserUpdate {
    pub first_name: Option<Option<PersonName>>,
    pub last_name: Option<Option<PersonName>>,
    pub email: Option<Email>,
    pub role: Option<Role>,
    pub is_verified: Option<bool>,
    pub is_active: Option<bool>,
}

fn not_found() -> ApiError {
    ApiError::not_found("No user with this id.")
}

/// Newest first, filtered, with the total count.
pub async fn list(
    state: &AppState,
    filter: &UserFilter,
    page: PageRequest,
) -> ApiResult<Page<User>> {
    let mut conn = state.db.get().await?;
    Ok(User::list(&mut conn, filter, page).await?)
}

/// One user by id.
pub async fn get(state: &AppState, id: Uuid) -> ApiResult<User> {
    let mut conn = state.db.get().await?;
    User::find(&mut conn, id).await?.ok_or_else(not_found)
}

/// Who may send which fields: an admin anything, on anyone; a plain user
/// only names, only on their own account. Checked before the fields are
/// validated, so a forbidden request learns nothing about them.
pub fn authorize_update(actor: &User, target: Uuid, privileged_fields: bool) -> ApiResult<()> {
    if actor.is_admin() {
        return Ok(());
    }
    if actor.id != target {
        return Err(ApiError::forbidden(
            "forbidden",
            "Only admins may change other users.",
        ));
    }
    if privileged_fields {
        return Err(ApiError::forbidden(
            "forbidden",
            "Only admins may change email, role or verification state.",
        ));
    }
    Ok(())
}

/// The actor's role is re-checked under the admin lock, not only when the
/// request began: an admin demoted or deleted a moment ago changes nothing.
/// Called after the last-admin check, so of two admins removing each other
/// at once the second is told `last_admin` (the rule it would break).
fn still_admin(admins: &[Uuid], actor: Uuid) -> ApiResult<()> {
    if admins.contains(&actor) {
        Ok(())
    } else {
        Err(ApiError::admin_only())
    }
}

/// True when removing `target`'s admin role would leave no admin.
fn is_last_admin(target: &User, admins: &[Uuid]) -> bool {
    target.is_admin() && !admins.iter().any(|id| *id != target.id)
}

/// Apply a partial update and answer the updated user. Demoting the last
/// admin is 409 `last_admin`; an email already used is 409 `email_taken`.
pub async fn update_user(
    state: &AppState,
    actor: &User,
    target_id: Uuid,
    update: UserUpdate,
    ip: Option<String>,
) -> ApiResult<User> {
    let privileged = update.email.is_some()
        || update.role.is_some()
        || update.is_verified.is_some()
        || update.is_active.is_some();
    authorize_update(actor, target_id, privileged)?;
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        // Admins serialise on the admin rows (see `User::lock_admin_ids`).
        let admins = if actor.is_admin() {
            User::lock_admin_ids(conn).await?
        } else {
            Vec::new()
        };
        let before = User::lock(conn, target_id).await?.ok_or_else(not_found)?;
        if let Some(role) = update.role
            && role != Role::Admin
            && is_last_admin(&before, &admins)
        {
            return Err(ApiError::last_admin());
        }
        // Disabling (or demoting) the last *active* admin would leave
        // nobody able to administer: 409 as well. The admin rows are
        // locked above, so two admins disabling each other serialise.
        let removes_admin =
            update.is_active == Some(false) || update.role.is_some_and(|r| r != Role::Admin);
        if removes_admin && before.is_admin() && before.is_active {
            let active = User::active_admin_ids(conn).await?;
            if !active.iter().any(|id| *id != before.id) {
                return Err(ApiError::last_admin());
            }
        }
        if actor.is_admin() {
            still_admin(&admins, actor.id)?;
        }
        apply(conn, Some(actor.id), before, update, ip).await
    })
    .await
}

/// `gatehouse-api admin promote`: give an existing account the admin role,
/// with its audit event (actor "cli": the operator at the console).
/// Returns `None` when no account has this email.
pub async fn promote(conn: &mut AsyncPgConnection, email: &Email) -> ApiResult<Option<User>> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let Some(found) = User::find_by_email(conn, email).await? else {
            return Ok(None);
        };
        let before = User::lock(conn, found.id).await?.ok_or_else(not_found)?;
        let update = UserUpdate {
            role: Some(Role::Admin),
            ..Default::default()
        };
        apply(conn, None, before, update, None).await.map(Some)
    })
    .await
}

/// `gatehouse-api admin users verify`: mark the email verified, with a
/// `user_updated` event (actor "cli"), as an admin's PATCH would.
pub async fn verify_from_cli(conn: &mut AsyncPgConnection, id: Uuid) -> ApiResult<User> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let before = User::lock(conn, id).await?.ok_or_else(not_found)?;
        let update = UserUpdate {
            is_verified: Some(true),
            ..Default::default()
        };
        apply(conn, None, before, update, None).await
    })
    .await
}

/// Write the fields of `update` that differ from `before`, with one
/// `user_updated` event naming them (old and new values of email, role and
/// verification), in the caller's transaction. Authorization and the
/// last-admin rule are the caller's.
/// `actor` is `None` for the operator's CLI: the event's details then say
/// `"actor": "cli"`.
async fn apply(
    conn: &mut AsyncPgConnection,
    actor: Option<Uuid>,
    before: User,
    update: UserUpdate,
    ip: Option<String>,
) -> ApiResult<User> {
    let mut changes = UserChanges::default();
    let mut fields: Vec<&str> = Vec::new();
    let mut details = Map::new();
    if let Some(name) = update.first_name {
        let name = name.map(PersonName::into_inner);
        if name != before.first_name {
            fields.push("first_name");
            changes.first_name = Some(name);
        }
    }
    if let Some(name) = update.last_name {
        let name = name.map(PersonName::into_inner);
        if name != before.last_name {
            fields.push("last_name");
            changes.last_name = Some(name);
        }
    }
    if let Some(email) = update.email
        && email.as_str() != before.email
    {
        fields.push("email");
        details.insert(
            "email".into(),
            json!({"old": before.email, "new": email.as_str()}),
        );
        changes.email = Some(email.into_inner());
    }
    if let Some(role) = update.role
        && role != before.role()
    {
        fields.push("role");
        details.insert("role".into(), json!({"old": before.role(), "new": role}));
        changes.role = Some(role.as_str().into());
    }
    if let Some(verified) = update.is_verified
        && verified != before.is_verified
    {
        fields.push("is_verified");
        details.insert(
            "is_verified".into(),
            json!({"old": before.is_verified, "new": verified}),
        );
        changes.is_verified = Some(verified);
        changes.verified_at = Some(verified.then(Utc::now));
    }
    let mut toggled = None;
    if let Some(active) = update.is_active
        && active != before.is_active
    {
        fields.push("is_active");
        details.insert(
            "is_active".into(),
            json!({"old": before.is_active, "new": active}),
        );
        changes.is_active = Some(active);
        toggled = Some(active);
    }
    if fields.is_empty() {
        return Ok(before);
    }
    let updated = User::update(conn, before.id, changes)
        .await
        .map_err(ApiError::from_user_write)?
        .ok_or_else(not_found)?;
    details.insert("fields".into(), json!(fields));
    let ip_copy = ip.clone();
    if actor.is_none() {
        details.insert("actor".into(), json!("cli"));
    }
    let mut event = AuditEvent::new(AuditAction::UserUpdated)
        .subject(before.id)
        .ip(ip)
        .details(Value::Object(details));
    if let Some(actor) = actor {
        event = event.actor(actor);
    }
    event.insert(conn).await?;
    if let Some(active) = toggled {
        // Its own event too, so the trail can be filtered for it.
        let action = if active {
            AuditAction::UserEnabled
        } else {
            AuditAction::UserDisabled
        };
        let mut event = AuditEvent::new(action).subject(before.id).ip(ip_copy);
        if let Some(actor) = actor {
            event = event.actor(actor);
        }
        event.insert(conn).await?;
    }
    if toggled == Some(false) {
        // Disabled: every session ends (refresh refused, access tokens
        // stale at once). Last, so the feed's lock is held only to commit.
        Session::end_all_for_user(conn, before.id, None, "account_disabled").await?;
        return Ok(updated);
    }
    // A new role or email: every access token issued before is refused
    // from now on; the sessions survive, so a refresh carries the change.
    // Last, so the feed's lock is held only until the commit.
    if fields.contains(&"role") || fields.contains(&"email") {
        Session::stale_all_for_user(conn, before.id).await?;
    }
    Ok(updated)
}

/// Delete a user. Their sessions and codes go with the row (`ON DELETE
/// CASCADE`), so their next request is 401; the deletion trigger on
/// `sessions` publishes each live one on the revocation feed, so apps
/// refuse their tokens too. Deleting the last admin is 409.
pub async fn delete_user(
    state: &AppState,
    actor: &User,
    target_id: Uuid,
    ip: Option<String>,
) -> ApiResult<()> {
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let admins = User::lock_admin_ids(conn).await?;
        let target = User::lock(conn, target_id).await?.ok_or_else(not_found)?;
        if is_last_admin(&target, &admins) {
            return Err(ApiError::last_admin());
        }
        still_admin(&admins, actor.id)?;
        if !User::delete(conn, target_id).await? {
            return Err(not_found());
        }
        AuditEvent::new(AuditAction::UserDeleted)
            .actor(actor.id)
            .subject(target_id)
            .ip(ip)
            .details(json!({"email": target.email, "role": target.role()}))
            .insert(conn)
            .await?;
        Ok(())
    })
    .await
}
