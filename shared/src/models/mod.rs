//! Models and their queries: the only place SQL lives. Functions take a
//! connection so callers can compose them inside one transaction.

pub mod audit;
pub mod email_change;
pub mod job_run;
pub mod outbox;
pub mod page;
pub mod password_reset;
pub mod purge_run;
pub mod revocation;
pub mod session;
pub mod signing_key;
pub mod user;
pub mod verification;

pub use audit::{AuditAction, AuditEvent, AuditFilter};
pub use email_change::{EmailChange, NewEmailChange};
pub use job_run::JobRun;
pub use outbox::OutboxEntry;
pub use password_reset::PasswordReset;
pub use purge_run::PurgeRun;
pub use revocation::Revocation;
pub use session::{NewSession, Session};
pub use signing_key::SigningKey;
pub use user::{NewUser, User, UserChanges, UserFilter};
pub use verification::EmailVerification;

pub use page::{Page, PageRequest, paginate};

/// True when the error is a unique-constraint violation.
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
