//! The socket protocol's JSON text frames (see README "Socket protocol").

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::messages::MessageOut;

/// What a client sends. Unknown fields are ignored, so clients may add
/// their own (e.g. a local id) without breaking.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The first frame, and again with a fresh token to extend the socket.
    Auth { token: String },
    /// A chat line for the socket's room.
    Message { body: String },
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// Answer to every accepted `auth` frame.
    Authenticated {
        user_id: Uuid,
        author_name: &'a str,
        room: &'a str,
        /// When the token expires (RFC 3339); send a fresh `auth` before.
        expires_at: String,
    },
    /// A message of the room (every socket of the room, the sender's included).
    Message(&'a MessageOut),
    /// Something the client sent was refused; the socket stays open.
    Error { code: &'a str, message: &'a str },
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and UUIDs always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Close codes.
pub mod close {
    /// Missing, bad, expired or revoked token (first frame, re-auth, revocation, expiry).
    pub const AUTH: u16 = 4401;
    /// The server is shutting down; reconnect (another replica will answer).
    pub const GOING_AWAY: u16 = 1001;
    /// The client could not keep up (send queue full, write or heartbeat timeout).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The client broke the protocol (binary frame, oversized frame).
    pub const POLICY: u16 = 1008;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"auth","token":"t","extra":1}"#).expect("auth");
        assert!(matches!(f, ClientFrame::Auth { token } if token == "t"));
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"message","body":"hi"}"#).expect("message");
        assert!(matches!(f, ClientFrame::Message { body } if body == "hi"));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        let m = MessageOut {
            id: 7,
            room: "lobby".into(),
            author_id: Uuid::nil(),
            author_name: "user-00000000".into(),
            body: "hi".into(),
            created_at: "2026-12-01T10:00:00.000000Z".into(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&ServerFrame::Message(&m).to_json()).expect("json");
        assert_eq!(v["type"], "message");
        assert_eq!(v["id"], 7);
        assert_eq!(v["room"], "lobby");
        assert_eq!(v["body"], "hi");
        let v: serde_json::Value = serde_json::from_str(
            &ServerFrame::Error {
                code: "rate_limited",
                message: "slow down",
            }
            .to_json(),
        )
        .expect("json");
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"rate_limited","message":"slow down"})
        );
    }
}
