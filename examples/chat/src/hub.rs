//! The sockets of this replica, by room, and local delivery.
//!
//! Each socket has a bounded queue of outgoing frames, drained by its own
//! writer task. Delivery never waits: a socket whose queue is full is too
//! slow to keep up, so it is told to close (1013) and leaves the room at
//! once; the rest of the room is unaffected.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{Message, Utf8Bytes};
use tokio::sync::{mpsc, watch};

use crate::messages::MessageOut;
use crate::protocol::{ServerFrame, close};

/// Why a socket is being closed: the close frame and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
    /// `chat_ws_closed_total{reason=...}`.
    pub label: &'static str,
}

impl CloseReason {
    pub const SLOW: Self = Self {
        code: close::TRY_AGAIN_LATER,
        reason: "too slow: send queue full",
        label: "slow",
    };
    pub const WRITE_TIMEOUT: Self = Self {
        code: close::TRY_AGAIN_LATER,
        reason: "too slow: write timed out",
        label: "slow",
    };
    pub const HEARTBEAT: Self = Self {
        code: close::TRY_AGAIN_LATER,
        reason: "no answer to pings",
        label: "heartbeat",
    };
    pub const SHUTDOWN: Self = Self {
        code: close::GOING_AWAY,
        reason: "server shutting down",
        label: "shutdown",
    };
    pub const AUTH_MISSING: Self = Self {
        code: close::AUTH,
        reason: "first frame must be auth",
        label: "auth_failed",
    };
    pub const AUTH_TIMEOUT: Self = Self {
        code: close::AUTH,
        reason: "no auth frame in time",
        label: "auth_failed",
    };
    pub const AUTH_INVALID: Self = Self {
        code: close::AUTH,
        reason: "invalid token",
        label: "auth_failed",
    };
    pub const AUTH_OTHER_USER: Self = Self {
        code: close::AUTH,
        reason: "token of another user",
        label: "auth_failed",
    };
    pub const REVOKED: Self = Self {
        code: close::AUTH,
        reason: "session revoked",
        label: "revoked",
    };
    pub const EXPIRED: Self = Self {
        code: close::AUTH,
        reason: "token expired",
        label: "expired",
    };
    pub const BINARY: Self = Self {
        code: close::POLICY,
        reason: "text frames only",
        label: "protocol",
    };
}

/// The two channels into a socket's writer task.
#[derive(Clone)]
pub struct Outbox {
    /// Frames to send, bounded.
    pub frames: mpsc::Sender<Message>,
    /// Close now (first reason wins).
    pub control: mpsc::Sender<CloseReason>,
}

impl Outbox {
    /// Queue a frame; a full queue closes the socket as too slow.
    pub fn send(&self, frame: Message) -> bool {
        match self.frames.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = self.control.try_send(CloseReason::SLOW);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn close(&self, reason: CloseReason) {
        let _ = self.control.try_send(reason);
    }
}

/// Ids of recently delivered messages of a room, so a message that arrives
/// twice (live and again from the catch-up after a Redis reconnect) is
/// delivered once.
#[derive(Default)]
struct Recent {
    ids: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Recent {
    const CAPACITY: usize = 4096;

    /// True the first time `id` is seen.
    fn insert(&mut self, id: i64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

#[derive(Default)]
struct Room {
    sockets: HashMap<u64, Outbox>,
    recent: Recent,
}

pub struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
    next_id: AtomicU64,
    /// Open sockets (authenticated or not), for the drain at shutdown.
    open: watch::Sender<usize>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            rooms: Mutex::default(),
            next_id: AtomicU64::new(1),
            open: watch::Sender::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain maps behind; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// Count an upgraded socket until the guard drops.
    pub fn open_socket(self: &Arc<Self>) -> OpenSocket {
        self.open.send_modify(|n| *n += 1);
        metrics::gauge!("chat_ws_connections").increment(1.0);
        OpenSocket { hub: self.clone() }
    }

    /// Sockets open on this replica.
    pub fn open_sockets(&self) -> usize {
        *self.open.borrow()
    }

    /// Wait until every socket is gone (or `timeout`).
    pub async fn drained(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.open.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }

    /// Add an authenticated socket to a room; it leaves when the guard drops.
    pub fn join(self: &Arc<Self>, room: &str, outbox: Outbox) -> Membership {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.rooms)
            .entry(room.to_owned())
            .or_default()
            .sockets
            .insert(id, outbox);
        Membership {
            hub: self.clone(),
            room: room.to_owned(),
            id,
        }
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = lock(&self.rooms);
        if let Some(r) = rooms.get_mut(room) {
            r.sockets.remove(&id);
            if r.sockets.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Rooms with at least one socket here.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.rooms).keys().cloned().collect()
    }

    /// Queue `message` to every socket of its room on this replica, once.
    /// Returns how many sockets got it.
    pub fn deliver(&self, message: &MessageOut) -> usize {
        let mut rooms = lock(&self.rooms);
        let Some(room) = rooms.get_mut(&message.room) else {
            return 0;
        };
        if !room.recent.insert(message.id) {
            return 0;
        }
        let frame = Message::Text(Utf8Bytes::from(ServerFrame::Message(message).to_json()));
        let mut delivered = 0;
        let mut dropped = Vec::new();
        for (id, outbox) in &room.sockets {
            if outbox.send(frame.clone()) {
                delivered += 1;
            } else {
                dropped.push(*id);
            }
        }
        for id in &dropped {
            room.sockets.remove(id);
        }
        if room.sockets.is_empty() {
            rooms.remove(&message.room);
        }
        metrics::counter!("chat_messages_delivered_total").increment(delivered as u64);
        delivered
    }

    /// Sockets of a room on this replica.
    pub fn room_size(&self, room: &str) -> usize {
        lock(&self.rooms).get(room).map_or(0, |r| r.sockets.len())
    }
}

/// An upgraded socket, counted until dropped.
pub struct OpenSocket {
    hub: Arc<Hub>,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.hub.open.send_modify(|n| *n = n.saturating_sub(1));
        metrics::gauge!("chat_ws_connections").decrement(1.0);
    }
}

/// A socket's place in a room; leaving is dropping it.
pub struct Membership {
    hub: Arc<Hub>,
    room: String,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(&self.room, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, room: &str) -> MessageOut {
        MessageOut {
            id,
            room: room.into(),
            author_id: uuid::Uuid::nil(),
            author_name: "user-00000000".into(),
            body: "hi".into(),
            created_at: "2026-12-01T10:00:00.000000Z".into(),
        }
    }

    fn outbox(capacity: usize) -> (Outbox, mpsc::Receiver<Message>, mpsc::Receiver<CloseReason>) {
        let (frames, frx) = mpsc::channel(capacity);
        let (control, crx) = mpsc::channel(1);
        (Outbox { frames, control }, frx, crx)
    }

    #[tokio::test]
    async fn delivers_once_per_socket_and_drops_slow_ones() {
        let hub = Arc::new(Hub::default());
        let (a, mut a_rx, _a_ctl) = outbox(8);
        let (slow, _slow_rx, mut slow_ctl) = outbox(1);
        let (other, mut other_rx, _o) = outbox(8);
        let _ma = hub.join("lobby", a);
        let _ms = hub.join("lobby", slow);
        let _mo = hub.join("elsewhere", other);

        assert_eq!(hub.deliver(&message(1, "lobby")), 2);
        // The same id again (live + catch-up) is not delivered twice.
        assert_eq!(hub.deliver(&message(1, "lobby")), 0);
        // The slow socket's queue (1) is full: it is told to close and leaves.
        assert_eq!(hub.deliver(&message(2, "lobby")), 1);
        assert_eq!(slow_ctl.try_recv().ok(), Some(CloseReason::SLOW));
        assert_eq!(hub.room_size("lobby"), 1);
        assert_eq!(hub.deliver(&message(3, "lobby")), 1);

        let mut got = Vec::new();
        while let Ok(Message::Text(t)) = a_rx.try_recv() {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
            got.push(v["id"].as_i64().expect("id"));
        }
        assert_eq!(got, [1, 2, 3]);
        assert!(other_rx.try_recv().is_err(), "other rooms get nothing");
    }

    #[tokio::test]
    async fn leaving_empties_the_room_and_drain_counts_sockets() {
        let hub = Arc::new(Hub::default());
        let open = hub.open_socket();
        let (a, _rx, _ctl) = outbox(8);
        let m = hub.join("lobby", a);
        assert_eq!(hub.rooms(), ["lobby"]);
        drop(m);
        assert!(hub.rooms().is_empty());
        assert_eq!(hub.open_sockets(), 1);
        assert!(!hub.drained(std::time::Duration::from_millis(10)).await);
        drop(open);
        assert!(hub.drained(std::time::Duration::from_millis(10)).await);
    }
}
