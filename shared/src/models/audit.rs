//! The audit trail: who did what to whom, when, and from which address.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Page, PageRequest, paginate};
use crate::schema::audit_events;

/// What happened. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Signup,
    Login,
    LoginFailed,
    Refresh,
    RefreshReuseDetected,
    Logout,
    LogoutAll,
    EmailVerified,
    UserUpdated,
    UserDeleted,
    PurgeRequested,
    KeysRotated,
    KeysListed,
    PasswordResetRequested,
    PasswordReset,
    EmailChangeRequested,
    EmailChangeConfirmed,
    EmailChangeReverted,
    SessionRevoked,
    AccountDeleted,
    UserDisabled,
    UserEnabled,
    PurgeReminderSent,
}

impl AuditAction {
    pub const ALL: [AuditAction; 23] = [
        Self::Signup,
        Self::Login,
        Self::LoginFailed,
        Self::Refresh,
        Self::RefreshReuseDetected,
        Self::Logout,
        Self::LogoutAll,
        Self::EmailVerified,
        Self::UserUpdated,
        Self::UserDeleted,
        Self::PurgeRequested,
        Self::KeysRotated,
        Self::KeysListed,
        Self::PasswordResetRequested,
        Self::PasswordReset,
        Self::EmailChangeRequested,
        Self::EmailChangeConfirmed,
        Self::EmailChangeReverted,
        Self::SessionRevoked,
        Self::AccountDeleted,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::PurgeReminderSent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::Refresh => "refresh",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::EmailVerified => "email_verified",
            Self::UserUpdated => "user_updated",
            Self::UserDeleted => "user_deleted",
            Self::PurgeRequested => "purge_requested",
            Self::KeysRotated => "keys_rotated",
            Self::KeysListed => "keys_listed",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset => "password_reset",
            Self::EmailChangeRequested => "email_change_requested",
            Self::EmailChangeConfirmed => "email_change_confirmed",
            Self::EmailChangeReverted => "email_change_reverted",
            Self::SessionRevoked => "session_revoked",
            Self::AccountDeleted => "account_deleted",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::PurgeReminderSent => "purge_reminder_sent",
        }
    }
}

/// One audit record. `actor_id` is who acted (null when nobody was
/// authenticated, e.g. a failed login); `subject_id` is the user affected.
/// No foreign keys: the trail outlives the users it mentions.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
pub struct AuditEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub subject_id: Option<Uuid>,
    pub action: String,
    pub ip: Option<String>,
    pub details: serde_json::Value,
}

/// Filters of the audit list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events where this user is the actor or the subject.
    pub user_id: Option<Uuid>,
    pub action: Option<AuditAction>,
}

impl AuditEvent {
    /// A new event stamped now, with a time-ordered id.
    pub fn new(action: AuditAction) -> Self {
        Self {
            id: Uuid::now_v7(),
            occurred_at: Utc::now(),
            actor_id: None,
            subject_id: None,
            action: action.as_str().to_owned(),
            ip: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn actor(mut self, id: Uuid) -> Self {
        self.actor_id = Some(id);
        self
    }

    pub fn subject(mut self, id: Uuid) -> Self {
        self.subject_id = Some(id);
        self
    }

    /// Actor and subject at once: the user acting on their own account.
    pub fn by_self(self, id: Uuid) -> Self {
        self.actor(id).subject(id)
    }

    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Insert one event (inside the caller's transaction, if any).
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<usize> {
        diesel::insert_into(audit_events::table)
            .values(self)
            .execute(conn)
            .await
    }

    /// Insert many events with one statement.
    pub async fn insert_batch(
        conn: &mut AsyncPgConnection,
        events: &[AuditEvent],
    ) -> QueryResult<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        diesel::insert_into(audit_events::table)
            .values(events)
            .execute(conn)
            .await
    }

    fn filtered(filter: &AuditFilter) -> audit_events::BoxedQuery<'static, diesel::pg::Pg> {
        let mut query = audit_events::table.into_boxed();
        if let Some(user) = filter.user_id {
            // Served by a BitmapOr of the actor and subject indexes.
            query = query.filter(
                audit_events::actor_id
                    .eq(user)
                    .or(audit_events::subject_id.eq(user)),
            );
        }
        if let Some(action) = filter.action {
            query = query.filter(audit_events::action.eq(action.as_str()));
        }
        query
    }

    /// Newest first, with the total count of matching events.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> QueryResult<Page<Self>> {
        let items = Self::filtered(filter)
            .order((audit_events::occurred_at.desc(), audit_events::id.desc()))
            .select(Self::as_select());
        paginate(conn, Self::filtered(filter).count(), items, page).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_match_serde() {
        for action in AuditAction::ALL {
            let json = serde_json::to_value(action).expect("serialize");
            assert_eq!(json, action.as_str());
        }
    }
}
