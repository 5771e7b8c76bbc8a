//! Handlers and their OpenAPI annotations, one module per resource. Each
//! exposes `router()`; `crate::api_routes` merges them. A handler extracts,
//! parses into domain types, calls the use case of the same name
//! (`crate::<resource>`), and maps the result to a wire type.

pub mod accounts;
pub mod audit;
pub mod email;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod me;
pub mod pages;
pub mod password;
pub mod revocations;
pub mod sessions;
pub mod users;
