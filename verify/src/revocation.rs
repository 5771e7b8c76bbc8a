//! What the verifier knows from the revocation feed: `max(not_before)` per
//! session, forgotten once every token it concerns has expired.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::Claims;
use crate::util::lock;

/// A session's tokens minted before `not_before` are dead: the session was
/// revoked (logout, revoke, password change or reset, disable, deletion) or
/// changed (role or email change; the session lives on and newer tokens of
/// it are accepted).
///
/// Sent to [`Verifier::revocations`](crate::Verifier::revocations)
/// subscribers when it tells the verifier something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revocation {
    /// The session.
    pub sid: Uuid,
    /// Epoch seconds: a token of this session with `iat < not_before` is dead.
    pub not_before: i64,
}

impl Revocation {
    /// Whether this revocation kills the token these claims came from. A
    /// WebSocket server closes the socket when this is true.
    pub fn applies_to(&self, claims: &Claims) -> bool {
        claims.sid == self.sid && claims.iat < self.not_before
    }
}

/// One feed item, on HTTP (`items[]`) and on Redis (the whole message).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FeedItem {
    /// Present on both; only HTTP answers move the verifier's cursor.
    #[serde(default)]
    pub(crate) cursor: Option<i64>,
    pub(crate) sid: Uuid,
    pub(crate) not_before: i64,
}

impl FeedItem {
    pub(crate) fn revocation(&self) -> Revocation {
        Revocation {
            sid: self.sid,
            not_before: self.not_before,
        }
    }
}

/// `GET /.well-known/revocations?since=<cursor>`.
#[derive(Debug, Deserialize)]
pub(crate) struct FeedPage {
    pub(crate) items: Vec<FeedItem>,
    pub(crate) next_cursor: Option<i64>,
}

/// `max(not_before)` per session, bounded by the token lifetime.
pub(crate) struct Revocations {
    by_sid: RwLock<HashMap<Uuid, i64>>,
    /// Max token lifetime + leeway, in seconds: an entry older than this
    /// can only concern tokens that have expired anyway.
    keep_secs: i64,
    events: broadcast::Sender<Revocation>,
}

impl Revocations {
    pub(crate) fn new(keep_secs: i64, events_capacity: usize) -> Self {
        let (events, _) = broadcast::channel(events_capacity);
        Self {
            by_sid: RwLock::new(HashMap::new()),
            keep_secs,
            events,
        }
    }

    /// Record an entry; `true` (and an event) when it raises the session's
    /// `not_before`. Re-applying an entry, or an older one, changes nothing.
    pub(crate) fn apply(&self, r: Revocation, now: i64) -> bool {
        if now > r.not_before.saturating_add(self.keep_secs) {
            return false;
        }
        let raised = {
            let mut map = lock::write(&self.by_sid);
            let current = map.entry(r.sid).or_insert(i64::MIN);
            if r.not_before > *current {
                *current = r.not_before;
                true
            } else {
                false
            }
        };
        if raised {
            // No receiver is fine.
            let _ = self.events.send(r);
        }
        raised
    }

    /// Whether a token of `sid` issued at `iat` is dead.
    pub(crate) fn is_revoked(&self, sid: Uuid, iat: i64) -> bool {
        lock::read(&self.by_sid)
            .get(&sid)
            .is_some_and(|&not_before| iat < not_before)
    }

    /// Forget entries every token of which has expired; returns how many.
    pub(crate) fn sweep(&self, now: i64) -> usize {
        let mut map = lock::write(&self.by_sid);
        let before = map.len();
        map.retain(|_, nb| now <= nb.saturating_add(self.keep_secs));
        before - map.len()
    }

    pub(crate) fn len(&self) -> usize {
        lock::read(&self.by_sid).len()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Revocation> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(sid: Uuid, not_before: i64) -> Revocation {
        Revocation { sid, not_before }
    }

    #[test]
    fn keeps_the_max_not_before_and_reapplying_is_harmless() {
        let r = Revocations::new(100, 16);
        let mut events = r.subscribe();
        let sid = Uuid::new_v4();
        assert!(r.apply(rev(sid, 1_000), 1_000));
        // Same entry again (Redis then HTTP), then an older one: no change.
        assert!(!r.apply(rev(sid, 1_000), 1_000));
        assert!(!r.apply(rev(sid, 900), 1_000));
        assert!(r.is_revoked(sid, 999));
        assert!(!r.is_revoked(sid, 1_000), "minted at not_before: alive");
        assert!(!r.is_revoked(Uuid::new_v4(), 0));
        assert_eq!(events.try_recv().unwrap(), rev(sid, 1_000));
        assert!(events.try_recv().is_err(), "one event per new fact");
        // A later change moves it on.
        assert!(r.apply(rev(sid, 1_010), 1_010));
        assert!(r.is_revoked(sid, 1_005));
        assert_eq!(events.try_recv().unwrap(), rev(sid, 1_010));
    }

    #[test]
    fn entries_expire_with_the_token_lifetime() {
        let r = Revocations::new(100, 16);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        r.apply(rev(a, 1_000), 1_000);
        r.apply(rev(b, 1_050), 1_050);
        assert_eq!(r.sweep(1_100), 0, "not_before + keep is still kept");
        assert_eq!(r.sweep(1_101), 1);
        assert_eq!(r.len(), 1);
        assert!(!r.is_revoked(a, 999));
        assert!(r.is_revoked(b, 1_049));
        assert_eq!(r.sweep(1_151), 1);
        assert_eq!(r.len(), 0);
        // Entries that arrive already expired are not stored.
        assert!(!r.apply(rev(a, 1_000), 2_000));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_revocation_applies_to_older_tokens_of_its_session_only() {
        let sid = Uuid::new_v4();
        let claims = |sid, iat| Claims {
            iss: "gatehouse".into(),
            aud: "gatehouse".into(),
            sub: Uuid::new_v4(),
            sid,
            role: "user".into(),
            iat,
            nbf: iat,
            exp: iat + 900,
            jti: Uuid::new_v4(),
            extra: Default::default(),
        };
        let r = rev(sid, 1_000);
        assert!(r.applies_to(&claims(sid, 999)));
        assert!(!r.applies_to(&claims(sid, 1_000)));
        assert!(!r.applies_to(&claims(Uuid::new_v4(), 999)));
    }

    #[test]
    fn feed_items_parse_from_http_and_redis_shapes() {
        let page: FeedPage = serde_json::from_str(
            r#"{"items":[{"cursor":123,"sid":"6f1c3a52-5f4e-4a8e-9d6a-4f7f3f0b1c2d","not_before":1764460800}],"next_cursor":123}"#,
        )
        .unwrap();
        assert_eq!(page.next_cursor, Some(123));
        assert_eq!(page.items[0].cursor, Some(123));
        assert_eq!(page.items[0].not_before, 1_764_460_800);
        let item: FeedItem = serde_json::from_str(
            r#"{"sid":"6f1c3a52-5f4e-4a8e-9d6a-4f7f3f0b1c2d","not_before":5}"#,
        )
        .unwrap();
        assert_eq!(item.cursor, None);
    }
}
