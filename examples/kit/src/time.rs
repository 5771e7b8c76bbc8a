//! Timestamps on the wire: RFC 3339 in UTC with a `Z` and microseconds,
//! like Gatehouse (`2026-11-25T08:43:20.123456Z`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

pub fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

/// The wire form of a timestamp.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Epoch seconds (JWT `exp`) as a wire timestamp; out of range → the epoch.
pub fn from_epoch(secs: i64) -> String {
    format(&DateTime::from_timestamp(secs, 0).unwrap_or_default())
}
