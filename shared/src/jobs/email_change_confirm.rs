//! `SendEmailChangeConfirm`.

use uuid::Uuid;

user_job! {
    /// Email the confirmation link and 6-digit code of an email change to the new address.
    SendEmailChangeConfirm, "email-change-confirm", change_id: Uuid
}
