//! `SendAccountDeleted`.

user_job! {
    /// Tell a user their account was deleted at their request. Unlike the
    /// other jobs it carries the address: the user row is gone by the time it
    /// runs, and there is nothing left to re-read.
    detached SendAccountDeleted, "account-deleted", email: String
}
