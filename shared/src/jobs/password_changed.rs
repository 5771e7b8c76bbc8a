//! `SendPasswordChanged`.

user_job! {
    /// Tell a user their password was changed (after a reset).
    SendPasswordChanged, "password-changed"
}
