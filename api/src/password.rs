//! Password reset (`/auth/password/forgot`, `/auth/password/reset`). The
//! hosted page `/reset-password` calls the same two functions.
//!
//! `forgot` answers the same whether or not the email has an account: both
//! paths run the same rate limits and comparable database work (a row lock
//! and a transaction), and the email leaves through the outbox after the
//! response. The worker makes the 256-bit token and stores only its keyed
//! hash; a newer request replaces the user's reset row, which kills older
//! tokens at once.

use diesel_async::AsyncConnection;
use gatehouse_shared::domain::{Email, Password};
use gatehouse_shared::jobs::{self, SendPasswordChanged, SendPasswordReset};
use gatehouse_shared::models::password_reset::{self, PasswordReset};
use gatehouse_shared::models::{AuditAction, AuditEvent, Session, User, UserChanges};
use serde_json::json;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::ratelimit::{Class, Client};
use crate::state::AppState;

/// Which path `forgot` took; only metrics and tests see it, never the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgotPath {
    /// An active account: its reset was (re)started and the email queued.
    Known,
    /// No (active) account: the same limits and a dummy transaction ran.
    Unknown,
}

/// `POST /auth/password/forgot`: start a reset if the email has an active
/// account. Rate limited per client IP and per email (known or not alike,
/// so a 429 reveals nothing either). Malformed email → 422.
pub async fn forgot(state: &AppState, email: &str, ip: Option<String>) -> ApiResult<()> {
    forgot_path(state, email, ip).await.map(|_| ())
}

/// [`forgot`], telling which path ran (for tests and metrics).
pub async fn forgot_path(
    state: &AppState,
    email: &str,
    ip: Option<String>,
) -> ApiResult<ForgotPath> {
    let email = Email::parse(email)
        .map_err(|e| ApiError::validation(vec![FieldError::from_invalid("email", e)]))?;
    state
        .limits
        .hit_ip(Class::ForgotIp, ip.as_deref().and_then(|s| s.parse().ok()))
        .await?;
    state
        .limits
        .hit(Class::ForgotAccount, email.as_str())
        .await?;
    let mut conn = state.db.get().await?;
    let user = User::find_by_email(&mut conn, &email)
        .await?
        .filter(|u| u.is_active);
    let Some(user) = user else {
        // The unknown path does comparable work: one transaction with a
        // row lock, like the known path's upsert and outbox insert.
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            PasswordReset::dummy_request(conn).await
        })
        .await?;
        metrics::counter!("gatehouse_password_forgot_total", "path" => "unknown").increment(1);
        state.audit.record(
            AuditEvent::new(AuditAction::PasswordResetRequested)
                .ip(ip)
                .details(json!({
                    "known": false,
                    "email_hash": gatehouse_shared::sha256_hex(email.as_str().as_bytes()),
                })),
        );
        return Ok(ForgotPath::Unknown);
    };
    let entry = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let job = SendPasswordReset::new(user.id);
            PasswordReset::request(conn, user.id, job.outbox_id).await?;
            jobs::enqueue(conn, &job).await
        })
        .await?;
    state.dispatch(vec![entry]);
    metrics::counter!("gatehouse_password_forgot_total", "path" => "known").increment(1);
    state.audit.record(
        AuditEvent::new(AuditAction::PasswordResetRequested)
            .subject(user.id)
            .ip(ip)
            .details(json!({"known": true})),
    );
    Ok(ForgotPath::Known)
}

/// A reset token from a link: 64 hex characters (256 bits).
fn well_formed(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `POST /auth/password/reset`: set a new password with an emailed token.
/// Wrong, expired or used token → 400 `invalid_token`; a password the
/// policy refuses → 422 on `new_password` (the token stays usable). On
/// success: the token is spent, every session ends, the login soft-lock of
/// the account is cleared, the email counts as verified (the user proved
/// the inbox), and a "password changed" notice is queued.
pub async fn reset(
    state: &AppState,
    token: &str,
    new_password: String,
    ip: Option<String>,
) -> ApiResult<()> {
    state
        .limits
        .hit_ip(Class::VerifyIp, ip.as_deref().and_then(|s| s.parse().ok()))
        .await?;
    let token = token.trim();
    if !well_formed(token) {
        return Err(ApiError::invalid_link_token());
    }
    let hash = password_reset::token_hash(&state.secrets, token);
    let ip_addr = ip.as_deref().and_then(|s| s.parse().ok());
    let mut conn = state.db.get().await?;
    let user_id = PasswordReset::find_valid(&mut conn, &hash)
        .await?
        .ok_or_else(ApiError::invalid_link_token)?;
    let user = User::find(&mut conn, user_id)
        .await?
        .ok_or_else(ApiError::invalid_link_token)?;
    let email = Email::parse(&user.email)
        .map_err(|_| ApiError::internal(anyhow::anyhow!("stored email invalid")))?;
    let password = Password::parse(new_password, Some(&email)).map_err(|e| {
        ApiError::validation(vec![FieldError::from_invalid("new_password", e.into())])
    })?;
    let new_hash = state
        .hasher
        .hash(&password)
        .await
        .map_err(ApiError::internal)?;
    let entry = conn
        .transaction::<_, ApiError, _>(async |conn| {
            // Spending is one conditional UPDATE: of two concurrent resets
            // with the same token, one wins and the other is 400.
            let spent = PasswordReset::consume(conn, &hash)
                .await?
                .filter(|id| *id == user.id)
                .ok_or_else(ApiError::invalid_link_token)?;
            User::update(
                conn,
                spent,
                UserChanges {
                    password_hash: Some(new_hash),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(ApiError::invalid_link_token)?;
            User::mark_verified(conn, spent).await?;
            AuditEvent::new(AuditAction::PasswordReset)
                .by_self(spent)
                .ip(ip)
                .insert(conn)
                .await?;
            let entry = jobs::enqueue(conn, &SendPasswordChanged::new(spent)).await?;
            // Last: every session ends; tokens minted before are refused.
            Session::end_all_for_user(conn, spent, None, "password_reset").await?;
            Ok(entry)
        })
        .await?;
    state.dispatch(vec![entry]);
    // The owner proved the inbox: the login soft-lock is lifted.
    let client = Client {
        ip: ip_addr,
        device: None,
    };
    state
        .limits
        .clear_after_reset(email.as_str(), &client)
        .await;
    Ok(())
}
