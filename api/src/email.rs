//! Email change (`POST /me/email`, `/auth/email/confirm`,
//! `/auth/email/revert`). The hosted pages `/email/confirm` and
//! `/email/revert` call [`confirm_link`] and [`revert`].
//!
//! The user row keeps the old address until the new one is confirmed, so
//! an unconfirmed address is never used for login, notices or the purge.
//! The new address gets a link and a 6-digit code; the old one a notice
//! with a revert link valid 7 days. Secrets are made by the worker and
//! stored only as keyed hashes.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use gatehouse_shared::domain::Email;
use gatehouse_shared::jobs::{self, SendEmailChangeConfirm, SendEmailChangeNotice};
use gatehouse_shared::models::email_change::{self, EmailChange, NewEmailChange};
use gatehouse_shared::models::{
    AuditAction, AuditEvent, Session, User, UserChanges, is_unique_violation,
};
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::me::check_current_password;
use crate::ratelimit::{Class, Client};
use crate::state::AppState;

fn invalid_code() -> ApiError {
    ApiError::bad_request(
        "invalid_code",
        "The confirmation code is invalid or expired.",
    )
}

fn well_formed(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `POST /me/email`: request a change to `new_email` after checking the
/// password (login budget and soft-lock). Supersedes a pending request.
/// 409 `email_taken` when the address already has an account.
pub async fn request_change(
    state: &AppState,
    user: &User,
    new_email: Email,
    current_password: String,
    client: &Client,
) -> ApiResult<()> {
    let ip = client.ip.map(|ip| ip.to_string());
    if new_email.as_str() == user.email.to_ascii_lowercase() {
        return Err(ApiError::validation(vec![FieldError::new(
            "new_email",
            "same_email",
            "new_email is already the account's address",
        )]));
    }
    check_current_password(state, user, current_password, client).await?;
    let mut conn = state.db.get().await?;
    if User::find_by_email(&mut conn, &new_email).await?.is_some() {
        return Err(ApiError::email_taken());
    }
    let entries = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let me = User::lock(conn, user.id)
                .await?
                .ok_or_else(ApiError::invalid_token)?;
            EmailChange::cancel_pending(conn, me.id).await?;
            let change_id = Uuid::now_v7();
            let confirm = SendEmailChangeConfirm::new(me.id, change_id);
            let notice = SendEmailChangeNotice::new(me.id, change_id);
            NewEmailChange {
                id: change_id,
                user_id: me.id,
                old_email: me.email.clone(),
                new_email: new_email.as_str().to_owned(),
                confirm_job_id: confirm.outbox_id,
                notice_job_id: notice.outbox_id,
            }
            .insert(conn)
            .await?;
            AuditEvent::new(AuditAction::EmailChangeRequested)
                .by_self(me.id)
                .ip(ip)
                .details(
                    json!({"change_id": change_id, "old": me.email, "new": new_email.as_str()}),
                )
                .insert(conn)
                .await?;
            Ok(vec![
                jobs::enqueue(conn, &confirm).await?,
                jobs::enqueue(conn, &notice).await?,
            ])
        })
        .await?;
    state.dispatch(entries);
    Ok(())
}

/// Switch the user's address to the change's new one, in the caller's
/// transaction, with the change row locked. `keep` is the session that
/// confirmed (a code with a session), which survives with stale tokens;
/// every other session ends.
async fn switch(
    conn: &mut AsyncPgConnection,
    change: &EmailChange,
    keep: Option<Uuid>,
    method: &str,
    ip: Option<String>,
) -> ApiResult<User> {
    let me = User::lock(conn, change.user_id)
        .await?
        .ok_or_else(ApiError::invalid_link_token)?;
    if me.email != change.old_email {
        // The address changed by another way meanwhile: this change is stale.
        return Err(ApiError::invalid_link_token());
    }
    let updated = match User::update(
        conn,
        me.id,
        UserChanges {
            email: Some(change.new_email.clone()),
            ..Default::default()
        },
    )
    .await
    {
        Ok(u) => u.ok_or_else(ApiError::invalid_link_token)?,
        // Someone signed up with the address since the request.
        Err(e) if is_unique_violation(&e) => return Err(ApiError::email_taken()),
        Err(e) => return Err(e.into()),
    };
    EmailChange::mark_confirmed(conn, change.id).await?;
    // The new address proved its inbox.
    let updated = User::mark_verified(conn, me.id).await?.unwrap_or(updated);
    AuditEvent::new(AuditAction::EmailChangeConfirmed)
        .by_self(me.id)
        .ip(ip)
        .details(json!({
            "change_id": change.id, "old": change.old_email,
            "new": change.new_email, "method": method,
        }))
        .insert(conn)
        .await?;
    Session::end_all_for_user(conn, me.id, keep, "email_changed").await?;
    if let Some(sid) = keep {
        Session::stale(conn, sid).await?;
    }
    Ok(updated)
}

/// Confirm with the token of the emailed link (no session needed). Every
/// session of the user ends. 400 `invalid_token`; 409 `email_taken` if the
/// address got an account meanwhile.
pub async fn confirm_link(state: &AppState, token: &str, ip: Option<String>) -> ApiResult<User> {
    state
        .limits
        .hit_ip(Class::VerifyIp, ip.as_deref().and_then(|s| s.parse().ok()))
        .await?;
    let token = token.trim();
    if !well_formed(token) {
        return Err(ApiError::invalid_link_token());
    }
    let hash = email_change::token_hash(&state.secrets, token);
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let change = EmailChange::lock_by_token(conn, &hash)
            .await?
            .ok_or_else(ApiError::invalid_link_token)?;
        switch(conn, &change, None, "link", ip).await
    })
    .await
}

enum CodeOutcome {
    Switched(Box<User>),
    Wrong,
}

/// Confirm with the 6-digit code, signed in: the caller's session survives
/// (its tokens go stale, a refresh continues), every other one ends. Five
/// wrong codes kill the code.
pub async fn confirm_code(
    state: &AppState,
    user: &User,
    session_id: Uuid,
    code: &str,
    ip: Option<String>,
) -> ApiResult<User> {
    state
        .limits
        .hit(Class::VerifyAccount, &user.id.to_string())
        .await?;
    let code = code.trim();
    let well_formed = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
    let mut conn = state.db.get().await?;
    let outcome = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let change = EmailChange::lock_pending_of_user(conn, user.id)
                .await?
                .filter(|c| c.code_usable(chrono::Utc::now()))
                .ok_or_else(invalid_code)?;
            let expected = email_change::code_hash(&state.secrets, change.id, code);
            let matches = well_formed
                && change
                    .code_hash
                    .as_deref()
                    .is_some_and(|h| bool::from(h.as_bytes().ct_eq(expected.as_bytes())));
            if !matches {
                // Committed: the attempt counts even though the answer is 400.
                EmailChange::record_failed_code(conn, change.id).await?;
                return Ok(CodeOutcome::Wrong);
            }
            let user = switch(conn, &change, Some(session_id), "code", ip).await?;
            Ok(CodeOutcome::Switched(Box::new(user)))
        })
        .await?;
    match outcome {
        CodeOutcome::Switched(user) => Ok(*user),
        CodeOutcome::Wrong => Err(invalid_code()),
    }
}

/// `POST /auth/email/revert`: the old address says "this was not me".
/// Restores the old address (if the change was confirmed), cancels pending
/// changes and ends every session. 400 `invalid_token` for a wrong, used or
/// expired (7 days) token; 409 `email_taken` if the old address got another
/// account meanwhile.
pub async fn revert(state: &AppState, token: &str, ip: Option<String>) -> ApiResult<()> {
    state
        .limits
        .hit_ip(Class::VerifyIp, ip.as_deref().and_then(|s| s.parse().ok()))
        .await?;
    let token = token.trim();
    if !well_formed(token) {
        return Err(ApiError::invalid_link_token());
    }
    let hash = email_change::revert_hash(&state.secrets, token);
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let change = EmailChange::lock_by_revert(conn, &hash)
            .await?
            .ok_or_else(ApiError::invalid_link_token)?;
        let me = User::lock(conn, change.user_id)
            .await?
            .ok_or_else(ApiError::invalid_link_token)?;
        if me.email != change.old_email {
            match User::update(
                conn,
                me.id,
                UserChanges {
                    email: Some(change.old_email.clone()),
                    ..Default::default()
                },
            )
            .await
            {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(ApiError::email_taken()),
                Err(e) => return Err(e.into()),
            }
        }
        EmailChange::mark_reverted(conn, change.id).await?;
        EmailChange::cancel_pending(conn, me.id).await?;
        AuditEvent::new(AuditAction::EmailChangeReverted)
            .by_self(me.id)
            .ip(ip)
            .details(json!({
                "change_id": change.id, "restored": change.old_email,
                "from": me.email,
            }))
            .insert(conn)
            .await?;
        Session::end_all_for_user(conn, me.id, None, "email_reverted").await?;
        Ok(())
    })
    .await
}
