//! `SendEmailChangeNotice`.

use uuid::Uuid;

user_job! {
    /// Tell the old address that a change was requested, with a revert link valid 7 days.
    SendEmailChangeNotice, "email-change-notice", change_id: Uuid
}
