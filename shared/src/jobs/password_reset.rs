//! `SendPasswordReset`.

user_job! {
    /// Email a password-reset link (`forgot`). The token is made by the worker and stored as a keyed hash in `password_resets` (row keyed on this job's outbox id).
    SendPasswordReset, "password-reset"
}
