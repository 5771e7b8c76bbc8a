//! One job per file. Handlers re-read rows and finish quietly when the work
//! is gone or already done: delivery is at least once.

pub mod purge;
pub mod verify_email;
