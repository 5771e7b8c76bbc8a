//! The HTTP edge every route shares: extractors that turn client mistakes
//! into problem+json, JSON error classification, pagination, wire types,
//! the OpenAPI response sets, and the cross-cutting middleware.

pub mod dto;
pub mod extract;
pub mod json;
pub mod middleware;
pub mod pagination;
pub mod responses;
