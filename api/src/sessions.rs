//! Sessions (`/auth/login`, `/auth/token`, `/auth/refresh`, `/auth/logout`):
//! login, refresh rotation with reuse detection, and logout. A session row
//! is one refresh-token family.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use gatehouse_shared::domain::{Email, Password};
use gatehouse_shared::models::revocation::token_iat;
use gatehouse_shared::models::{AuditAction, AuditEvent, NewSession, Session, User};
use serde_json::json;
use uuid::Uuid;

use crate::auth::tokens::TokenKind;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::hashing::Verified;
use crate::ratelimit::Client;
use crate::state::AppState;

/// Both tokens of a session, ready to send.
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    /// Seconds until the session (and the refresh cookie) expires.
    pub refresh_max_age: i64,
    pub user_id: Uuid,
    /// After a login: the device cookie's new value (see `ratelimit`).
    pub device: Option<String>,
}

/// Why a login failed, before it is mapped to JSON or OAuth2 errors.
#[derive(Debug)]
pub enum LoginError {
    InvalidCredentials,
    NotVerified,
    /// An admin disabled the account (told only after a correct password).
    Disabled,
    Other(ApiError),
}

impl From<ApiError> for LoginError {
    fn from(e: ApiError) -> Self {
        Self::Other(e)
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => ApiError::invalid_credentials(),
            LoginError::NotVerified => ApiError::forbidden(
                "email_not_verified",
                "Verify your email address before logging in.",
            ),
            LoginError::Disabled => ApiError::account_disabled(),
            LoginError::Other(e) => e,
        }
    }
}

pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Check credentials and open a session. Unknown emails run a dummy hash so
/// both failures take the same time and give the same answer.
pub async fn login(
    state: &AppState,
    email: &str,
    password: String,
    client: ClientInfo,
    from: &Client,
) -> Result<TokenPair, LoginError> {
    // Budgets per IP and per account + client, the account's ceiling and
    // the soft-lock delay: one round trip (see `ratelimit`).
    let account = email.trim().to_ascii_lowercase();
    let gate = state.limits.login_gate(&account, from);
    state.limits.check_login(&gate).await?;
    let result = check_credentials(state, email, password, client.ip.as_deref()).await;
    match &result {
        Ok(_) => state.limits.login_succeeded(&gate).await,
        Err(LoginError::InvalidCredentials) => state.limits.login_failed(&gate).await,
        Err(_) => {}
    }
    let user = result?;
    let ip = client.ip.clone();
    let mut pair = open_session(state, &user, client).await?;
    pair.device = Some(state.limits.device_cookie(&account, from));
    state
        .audit
        .record(AuditEvent::new(AuditAction::Login).by_self(user.id).ip(ip));
    Ok(pair)
}

/// Check the password of a signed-in user outside login (`current_password`
/// of `PATCH /me`, and every other endpoint that asks for it again). It
/// draws on the same budgets and soft-lock as login for this account and
/// client, so a stolen access token cannot guess the password faster than
/// a login form could (issue 11, item 6). A wrong password is 422 with
/// `current_password` / `invalid_password`; over budget, 429.
pub async fn check_current_password(
    state: &AppState,
    user: &User,
    password: String,
    client: &Client,
) -> ApiResult<()> {
    let gate = state
        .limits
        .login_gate(&user.email.trim().to_ascii_lowercase(), client);
    state.limits.check_login(&gate).await?;
    let ok = match Password::candidate(password) {
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
        state.limits.login_succeeded(&gate).await;
        return Ok(());
    }
    state.limits.login_failed(&gate).await;
    let ip = client.ip.map(|ip| ip.to_string());
    audit_login_failed(
        state,
        ip.as_deref(),
        Some(user.id),
        &user.email,
        "wrong_current_password",
    );
    Err(wrong_current_password())
}

/// 422 naming `current_password`.
pub fn wrong_current_password() -> ApiError {
    ApiError::validation(vec![FieldError::new(
        "current_password",
        "invalid_password",
        "current_password is incorrect",
    )])
}

/// Record a failed login. The attempted email is kept only as a SHA-256
/// hash, and only when no account was identified; the password never.
fn audit_login_failed(
    state: &AppState,
    ip: Option<&str>,
    user: Option<Uuid>,
    attempted_email: &str,
    reason: &str,
) {
    let mut event = AuditEvent::new(AuditAction::LoginFailed).ip(ip.map(str::to_owned));
    event = match user {
        Some(id) => event.subject(id).details(json!({"reason": reason})),
        None => {
            let normalized = attempted_email.trim().to_lowercase();
            event.details(json!({
                "reason": reason,
                "email_hash": gatehouse_shared::sha256_hex(normalized.as_bytes()),
            }))
        }
    };
    state.audit.record(event);
}

/// The password check alone: the user, or why not.
async fn check_credentials(
    state: &AppState,
    email: &str,
    password: String,
    ip: Option<&str>,
) -> Result<User, LoginError> {
    let attempted = email;
    let email = Email::parse(email).ok();
    let Some(password) = Password::candidate(password) else {
        audit_login_failed(state, ip, None, attempted, "malformed_password");
        return Err(LoginError::InvalidCredentials);
    };
    let user = match &email {
        Some(email) => {
            let mut conn = state.db.get().await.map_err(ApiError::from)?;
            User::find_by_email(&mut conn, email)
                .await
                .map_err(ApiError::from)?
        }
        None => None,
    };
    let Some(user) = user else {
        state
            .hasher
            .verify_dummy(&password)
            .await
            .map_err(ApiError::internal)?;
        audit_login_failed(state, ip, None, attempted, "unknown_email");
        return Err(LoginError::InvalidCredentials);
    };
    let Verified { ok, needs_rehash } = state
        .hasher
        .verify(&password, &user.password_hash)
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        audit_login_failed(state, ip, Some(user.id), attempted, "wrong_password");
        return Err(LoginError::InvalidCredentials);
    }
    if needs_rehash {
        // Parameters changed since this hash was made: upgrade it now.
        let hash = state
            .hasher
            .hash(&password)
            .await
            .map_err(ApiError::internal)?;
        let mut conn = state.db.get().await.map_err(ApiError::from)?;
        User::set_password_hash(&mut conn, user.id, &hash)
            .await
            .map_err(ApiError::from)?;
        // `open_session` compares the hash it minted against this one.
        let mut user = user;
        user.password_hash = hash;
        return finish_checks(state, ip, attempted, user);
    }
    finish_checks(state, ip, attempted, user)
}

/// The checks after a correct password: disabled, then unverified.
fn finish_checks(
    state: &AppState,
    ip: Option<&str>,
    attempted: &str,
    user: User,
) -> Result<User, LoginError> {
    if !user.is_active {
        audit_login_failed(state, ip, Some(user.id), attempted, "account_disabled");
        return Err(LoginError::Disabled);
    }
    if state.config.require_verified_login && !user.is_verified {
        audit_login_failed(state, ip, Some(user.id), attempted, "email_not_verified");
        return Err(LoginError::NotVerified);
    }
    Ok(user)
}

/// Create a session row and sign its first token pair.
pub async fn open_session(
    state: &AppState,
    user: &User,
    client: ClientInfo,
) -> ApiResult<TokenPair> {
    let ttl = ChronoDuration::from_std(state.config.refresh_token_ttl)
        .unwrap_or(ChronoDuration::days(30));
    let session = NewSession {
        id: Uuid::now_v7(),
        user_id: user.id,
        refresh_jti: Uuid::new_v4(),
        expires_at: Utc::now() + ttl,
        user_agent: client.user_agent,
        ip: client.ip,
    };
    let mut conn = state.db.get().await?;
    // The token carries the user as read here, under a share lock: a role
    // change racing this login either waits for it (and then stales the
    // new session too) or is seen (see `models::revocation`).
    let (user, session, now) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let (locked, now) = User::lock_for_minting(conn, user.id)
                .await?
                .ok_or_else(ApiError::invalid_credentials)?;
            // A password reset or change that committed after the password
            // was checked wins the race: the old password opens nothing.
            if locked.password_hash != user.password_hash || !locked.is_active {
                return Err(ApiError::invalid_credentials());
            }
            let user = locked;
            let session = session.insert(conn).await?;
            Ok((user, session, now))
        })
        .await?;
    sign_pair(state, &user, &session, session.refresh_jti, now)
}

/// Sign a session's pair at database time `now`: `iat` is never before the
/// session's `not_before`, so a token minted right after a change (even in
/// the same second) is accepted at once.
fn sign_pair(
    state: &AppState,
    user: &User,
    session: &Session,
    jti: Uuid,
    now: DateTime<Utc>,
) -> ApiResult<TokenPair> {
    let iat = token_iat(now, session.not_before);
    let access = state
        .tokens
        .issue_access_at(user.id, session.id, user.role().as_str(), iat)
        .map_err(ApiError::internal)?;
    let refresh = state
        .tokens
        .issue_refresh_at(user.id, session.id, jti, session.expires_at, iat)
        .map_err(ApiError::internal)?;
    Ok(TokenPair {
        access_token: access.token,
        refresh_token: refresh.token,
        expires_in: state.tokens.access_ttl.as_secs(),
        refresh_max_age: (session.expires_at - Utc::now()).num_seconds(),
        user_id: user.id,
        device: None,
    })
}

#[derive(Debug)]
pub enum RefreshError {
    Invalid,
    Reused,
    Other(ApiError),
}

impl From<ApiError> for RefreshError {
    fn from(e: ApiError) -> Self {
        Self::Other(e)
    }
}

impl From<diesel::result::Error> for RefreshError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Other(e.into())
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid => ApiError::unauthorized(
                "invalid_refresh_token",
                "The refresh token is invalid, expired or revoked.",
            ),
            RefreshError::Reused => ApiError::unauthorized(
                "refresh_token_reused",
                "This refresh token was already used; the session has been revoked.",
            ),
            RefreshError::Other(e) => e,
        }
    }
}

// Lives for one call; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Rotation {
    Issue(User, Session, Uuid, DateTime<Utc>),
    Reused,
}

/// Rotate a refresh token. The current token gets a successor. Its parent,
/// presented again within the grace window (two tabs refreshing at once),
/// receives the current token again. Any other old token of the family is
/// a replay: the whole session is revoked, other sessions stay alive.
pub async fn refresh(
    state: &AppState,
    token: &str,
    ip: Option<String>,
) -> Result<TokenPair, RefreshError> {
    let claims = state
        .tokens
        .decode(token, TokenKind::Refresh)
        .map_err(|_| RefreshError::Invalid)?;
    let grace = ChronoDuration::from_std(state.config.refresh_reuse_grace)
        .unwrap_or(ChronoDuration::seconds(10));
    let mut conn = state.db.get().await.map_err(ApiError::from)?;
    let outcome = conn
        .transaction::<_, RefreshError, _>(async |conn| {
            // User first, then session: the order every change takes (see
            // `models::revocation`); the user as the token will carry it.
            let (user, db_now) = User::lock_for_minting(conn, claims.sub)
                .await?
                .ok_or(RefreshError::Invalid)?;
            let now = Utc::now();
            let session = Session::lock(conn, claims.sid)
                .await?
                .ok_or(RefreshError::Invalid)?;
            if session.user_id != claims.sub || !session.is_active(now) || !user.is_active {
                return Err(RefreshError::Invalid);
            }
            if claims.jti == session.refresh_jti {
                let next = Uuid::new_v4();
                Session::rotate(conn, session.id, claims.jti, next).await?;
                return Ok(Rotation::Issue(user, session, next, db_now));
            }
            let in_grace = session.previous_jti == Some(claims.jti)
                && session.rotated_at.is_some_and(|t| now - t <= grace);
            if in_grace {
                Session::touch(conn, session.id).await?;
                let current = session.refresh_jti;
                return Ok(Rotation::Issue(user, session, current, db_now));
            }
            Session::end(conn, session.id, "refresh_token_reused").await?;
            Ok(Rotation::Reused)
        })
        .await?;
    match outcome {
        Rotation::Issue(user, session, jti, now) => {
            let pair = sign_pair(state, &user, &session, jti, now)?;
            state.audit.record(
                AuditEvent::new(AuditAction::Refresh)
                    .by_self(user.id)
                    .ip(ip)
                    .details(json!({"session_id": session.id})),
            );
            Ok(pair)
        }
        Rotation::Reused => {
            state.audit.record(
                AuditEvent::new(AuditAction::RefreshReuseDetected)
                    .subject(claims.sub)
                    .ip(ip)
                    .details(json!({"session_id": claims.sid})),
            );
            tracing::warn!(session = %claims.sid, user = %claims.sub, "refresh token reuse detected; session revoked");
            metrics::counter!("gatehouse_refresh_reuse_total").increment(1);
            Err(RefreshError::Reused)
        }
    }
}

/// End the current session, or every session of the user.
pub async fn logout(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    all: bool,
    ip: Option<String>,
) -> ApiResult<()> {
    let mut conn = state.db.get().await?;
    let (action, revoked) = if all {
        let ended = Session::end_all_for_user(&mut conn, user_id, None, "logout_all").await?;
        (AuditAction::LogoutAll, ended.len())
    } else {
        let ended = Session::end(&mut conn, session_id, "logout").await?;
        (AuditAction::Logout, ended.len())
    };
    state.audit.record(
        AuditEvent::new(action)
            .by_self(user_id)
            .ip(ip)
            .details(json!({"session_id": session_id, "sessions_revoked": revoked})),
    );
    Ok(())
}

// ---- The caller's sessions (`/me/sessions`) and a user's, for admins
// (`/users/{id}/sessions`). Revoking goes through `Session::end` /
// `Session::end_all_for_user`, so access tokens die at once and the
// revocation feed carries it.

fn session_not_found() -> ApiError {
    ApiError::not_found("No such session.")
}

/// A user's live sessions, newest first.
pub async fn list_of_user(state: &AppState, user_id: Uuid) -> ApiResult<Vec<Session>> {
    let mut conn = state.db.get().await?;
    Ok(Session::live_of_user(&mut conn, user_id).await?)
}

/// Admins: a user's live sessions; 404 when the user does not exist.
pub async fn list_for_admin(state: &AppState, user_id: Uuid) -> ApiResult<Vec<Session>> {
    let mut conn = state.db.get().await?;
    User::find(&mut conn, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("No user with this id."))?;
    Ok(Session::live_of_user(&mut conn, user_id).await?)
}

/// Revoke one of the caller's own sessions. Another user's session id is
/// 404, exactly like an unknown one.
pub async fn revoke_own(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    ip: Option<String>,
) -> ApiResult<()> {
    let mut conn = state.db.get().await?;
    Session::find_live_of_user(&mut conn, session_id, user_id)
        .await?
        .ok_or_else(session_not_found)?;
    Session::end(&mut conn, session_id, "revoked_by_user").await?;
    state.audit.record(
        AuditEvent::new(AuditAction::SessionRevoked)
            .by_self(user_id)
            .ip(ip)
            .details(json!({"session_id": session_id, "sessions_revoked": 1})),
    );
    Ok(())
}

/// Revoke every session of `user_id` except `keep` (the caller's own for
/// `DELETE /me/sessions`; none for an admin's `DELETE /users/{id}/sessions`).
pub async fn revoke_all(
    state: &AppState,
    actor: Uuid,
    user_id: Uuid,
    keep: Option<Uuid>,
    ip: Option<String>,
) -> ApiResult<usize> {
    let mut conn = state.db.get().await?;
    let reason = if keep.is_some() {
        "revoked_by_user"
    } else {
        "revoked_by_admin"
    };
    let ended = conn
        .transaction::<_, ApiError, _>(async |conn| {
            User::find(conn, user_id)
                .await?
                .ok_or_else(|| ApiError::not_found("No user with this id."))?;
            Ok(Session::end_all_for_user(conn, user_id, keep, reason).await?)
        })
        .await?;
    state.audit.record(
        AuditEvent::new(AuditAction::SessionRevoked)
            .actor(actor)
            .subject(user_id)
            .ip(ip)
            .details(json!({"scope": "all", "kept": keep, "sessions_revoked": ended.len()})),
    );
    Ok(ended.len())
}

/// `gatehouse-api admin sessions revoke --user`: end every session of a
/// user, with a `logout_all` event (actor "cli") in the same transaction.
/// Returns how many sessions ended.
pub async fn revoke_all_from_cli(conn: &mut AsyncPgConnection, user_id: Uuid) -> ApiResult<usize> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let ended = Session::end_all_for_user(conn, user_id, None, "revoked_by_cli").await?;
        AuditEvent::new(AuditAction::LogoutAll)
            .subject(user_id)
            .details(json!({"actor": "cli", "sessions_revoked": ended.len()}))
            .insert(conn)
            .await?;
        Ok(ended.len())
    })
    .await
}
