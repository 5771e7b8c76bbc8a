//! Account use cases: signup, email verification and resend, and the
//! creation of admins (bootstrap and CLI).

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use gatehouse_shared::domain::{Email, Password, PersonName, Role};
use gatehouse_shared::jobs::{self, Job, SendVerificationEmail};
use gatehouse_shared::models::verification::{self, EmailVerification};
use gatehouse_shared::models::{
    AuditAction, AuditEvent, NewUser, OutboxEntry, User, is_unique_violation,
};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub struct Signup {
    pub email: Email,
    pub password: Password,
    pub first_name: Option<PersonName>,
    pub last_name: Option<PersonName>,
}

/// Create an unverified user and, in the same transaction, the outbox row
/// of its verification email.
pub async fn signup(state: &AppState, input: Signup, ip: Option<String>) -> ApiResult<User> {
    {
        // Cheap pre-check so a duplicate costs no hash; the unique index
        // still decides under a race.
        let mut conn = state.db.get().await?;
        if User::find_by_email(&mut conn, &input.email)
            .await?
            .is_some()
        {
            return Err(ApiError::email_taken());
        }
    }
    let hash = state
        .hasher
        .hash(&input.password)
        .await
        .map_err(ApiError::internal)?;
    let new = NewUser {
        id: Uuid::now_v7(),
        email: input.email.into_inner(),
        password_hash: hash,
        first_name: input.first_name.map(PersonName::into_inner),
        last_name: input.last_name.map(PersonName::into_inner),
        role: Role::User.as_str().into(),
        is_verified: false,
        verified_at: None,
    };
    let mut conn = state.db.get().await?;
    let (user, entry) = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let user = new.insert(conn).await?;
            let entry = jobs::enqueue(conn, &SendVerificationEmail::new(user.id)).await?;
            Ok((user, entry))
        })
        .await
        .map_err(ApiError::from_user_write)?;
    state.dispatch(vec![entry]);
    state
        .audit
        .record(AuditEvent::new(AuditAction::Signup).by_self(user.id).ip(ip));
    Ok(user)
}

/// Insert a verified admin (bootstrap and CLI). Returns false if the email
/// already has an account.
pub async fn create_admin(
    conn: &mut AsyncPgConnection,
    email: Email,
    hash: String,
) -> ApiResult<bool> {
    let new = NewUser {
        id: Uuid::now_v7(),
        email: email.into_inner(),
        password_hash: hash,
        first_name: None,
        last_name: None,
        role: Role::Admin.as_str().into(),
        is_verified: true,
        verified_at: Some(Utc::now()),
    };
    match new.insert(conn).await {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `gatehouse-api admin create`: [`create_admin`] with its audit event
/// (`signup`, actor "cli", role admin) in the same transaction. `false` when
/// the email is taken (nothing written).
pub async fn create_admin_from_cli(
    conn: &mut AsyncPgConnection,
    email: Email,
    hash: String,
) -> ApiResult<bool> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        if !create_admin(conn, email.clone(), hash).await? {
            return Ok(false);
        }
        let user = User::find_by_email(conn, &email)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("admin vanished after insert")))?;
        AuditEvent::new(AuditAction::Signup)
            .subject(user.id)
            .details(serde_json::json!({"actor": "cli", "role": "admin"}))
            .insert(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// `BOOTSTRAP_ADMIN_EMAIL` + `BOOTSTRAP_ADMIN_PASSWORD`: create a verified
/// admin at startup if that email has no account.
pub async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (
        state
            .config
            .bootstrap_admin_email
            .as_deref()
            .filter(|s| !s.is_empty()),
        state
            .config
            .bootstrap_admin_password
            .clone()
            .filter(|s| !s.is_empty()),
    ) else {
        return Ok(());
    };
    let email =
        Email::parse(email).map_err(|e| anyhow::anyhow!("BOOTSTRAP_ADMIN_EMAIL: {}", e.message))?;
    let password = Password::parse(password, Some(&email))
        .map_err(|e| anyhow::anyhow!("BOOTSTRAP_ADMIN_PASSWORD: {}", e.message()))?;
    let mut conn = state.db.get().await?;
    if User::find_by_email(&mut conn, &email).await?.is_some() {
        return Ok(());
    }
    let hash = state.hasher.hash(&password).await?;
    if create_admin(&mut conn, email.clone(), hash)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail))?
    {
        tracing::info!(email = %email, "bootstrap admin created");
    }
    Ok(())
}

fn invalid_code() -> ApiError {
    ApiError::bad_request(
        "invalid_code",
        "The verification code or link is invalid or expired.",
    )
}

enum CodeCheck {
    Verified(User),
    Wrong,
}

/// Verify with the emailed 6-digit code. Each wrong code counts; after 5 the
/// code is dead.
///
/// A wrong code gets the same `invalid_code` answer whether the account is
/// unverified, already verified or unknown, so the endpoint reveals no
/// accounts (issue 11, item 1). Every one of those paths runs the same
/// statements (user lookup, row lock, keyed hash, attempt update) so the
/// timing does not tell them apart either: an unknown email locks and
/// updates the nil id (no row), a verified account's code only gains
/// attempts. The right code, still unexpired, answers 200 again for an
/// already verified account (verifying twice is harmless): the attempt
/// cap no longer guards anything there, and the per-account rate limit
/// bounds guessing.
pub async fn verify_code(
    state: &AppState,
    email: &Email,
    code: &str,
    ip: Option<String>,
) -> ApiResult<User> {
    let mut conn = state.db.get().await?;
    let user = User::find_by_email(&mut conn, email).await?;
    let user_id = user.as_ref().map_or(Uuid::nil(), |u| u.id);
    let already_verified = user.as_ref().is_some_and(|u| u.is_verified);
    let well_formed = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
    let expected = verification::code_hash(&state.secrets, user_id, code);
    let outcome = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let row = EmailVerification::lock(conn, user_id).await?;
            let now = Utc::now();
            let usable =
                row.filter(|r| r.code_usable(now) || (already_verified && r.code_expires_at > now));
            let matches = well_formed
                && usable
                    .is_some_and(|r| bool::from(r.code_hash.as_bytes().ct_eq(expected.as_bytes())));
            if !matches {
                // Counts on an unverified account's live code; on a dead
                // code, a verified account's or the nil id it changes nothing
                // that matters, and keeps the paths alike.
                EmailVerification::record_failed_attempt(conn, user_id).await?;
                return Ok(CodeCheck::Wrong);
            }
            EmailVerification::spend_code(conn, user_id).await?;
            let user = User::mark_verified(conn, user_id)
                .await?
                .ok_or_else(invalid_code)?;
            Ok(CodeCheck::Verified(user))
        })
        .await?;
    match outcome {
        CodeCheck::Verified(verified) => {
            // A second verification writes no second audit event.
            if !already_verified {
                audit_verified(state, verified.id, "code", ip);
            }
            Ok(verified)
        }
        CodeCheck::Wrong => Err(invalid_code()),
    }
}

/// Verify with the token from the emailed link.
pub async fn verify_link(state: &AppState, token: &str, ip: Option<String>) -> ApiResult<User> {
    if token.is_empty() || token.len() > 200 {
        return Err(invalid_code());
    }
    let mut conn = state.db.get().await?;
    let row =
        EmailVerification::find_by_link(&mut conn, &verification::link_hash(&state.secrets, token))
            .await?
            .ok_or_else(invalid_code)?;
    // A second click answers the same, without a second audit event.
    if let Some(user) = User::find(&mut conn, row.user_id)
        .await?
        .filter(|u| u.is_verified)
    {
        return Ok(user);
    }
    let user = User::mark_verified(&mut conn, row.user_id)
        .await?
        .ok_or_else(invalid_code)?;
    audit_verified(state, user.id, "link", ip);
    Ok(user)
}

fn audit_verified(state: &AppState, user_id: Uuid, method: &str, ip: Option<String>) {
    state.audit.record(
        AuditEvent::new(AuditAction::EmailVerified)
            .by_self(user_id)
            .ip(ip)
            .details(serde_json::json!({"method": method})),
    );
}

/// Queue a fresh code if the account exists, is unverified, and is within
/// its cooldown and hourly cap. The caller always answers 202.
pub async fn resend_verification(state: &AppState, email: &Email) -> ApiResult<()> {
    let mut conn = state.db.get().await?;
    let Some(user) = User::find_by_email(&mut conn, email).await? else {
        return Ok(());
    };
    if user.is_verified {
        return Ok(());
    }
    let cooldown =
        chrono::Duration::from_std(state.config.verify_resend_cooldown).unwrap_or_default();
    let cap = state.config.verify_resend_hourly_cap;
    let entry = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // Serialise concurrent resends of one account on its row.
            if User::lock(conn, user.id).await?.is_none() {
                return Ok(None);
            }
            let now = Utc::now();
            let recent = OutboxEntry::recent_for_user(
                conn,
                user.id,
                SendVerificationEmail::QUEUE,
                now - chrono::Duration::hours(1),
            )
            .await?;
            let cooling = recent.first().is_some_and(|last| now - *last < cooldown);
            if cooling || recent.len() >= cap {
                return Ok(None);
            }
            jobs::enqueue(conn, &SendVerificationEmail::new(user.id))
                .await
                .map(Some)
        })
        .await?;
    if let Some(entry) = entry {
        state.dispatch(vec![entry]);
    }
    Ok(())
}
