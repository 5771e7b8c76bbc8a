//! `SendPurgeReminder`.

user_job! {
    /// Remind an unverified account, 24 h before its purge, with a fresh verification link.
    SendPurgeReminder, "purge-reminder"
}
