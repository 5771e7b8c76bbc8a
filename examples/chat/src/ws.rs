//! `GET /ws?room=<room>`: one chat socket.
//!
//! Life of a socket:
//! 1. Upgrade (the room is checked first: 422 otherwise). The token never
//!    travels in the URL.
//! 2. The first frame, within `WS_AUTH_TIMEOUT` (10 s), must be
//!    `{"type":"auth","token":...}` with a token `gatehouse-verify`
//!    accepts; otherwise close 4401. The server answers `authenticated`
//!    and the socket joins its room.
//! 3. `message` frames are stored, then published through Redis; every
//!    socket of the room, on every replica, the sender's included, receives
//!    the stored message once.
//! 4. A new `auth` frame with a fresh token of the same user extends the
//!    socket past the first token's expiry. The socket closes with 4401 when
//!    its token expires without one, or as soon as Gatehouse revokes the
//!    session (the verifier's revocation events: Redis, or the HTTP feed).
//! 5. Outgoing frames go through a bounded queue drained by a writer task:
//!    a client that lets it fill, or whose writes stall, is closed with
//!    1013 and never slows the room. Pings every `WS_PING_INTERVAL`; a
//!    client silent for two intervals is closed (1013). Shutdown: 1001.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
    rejection::WebSocketUpgradeRejection,
};
use axum::http::StatusCode;
use axum::response::Response;
use example_kit::extract::ApiQuery;
use example_kit::text::{self, Lines};
use example_kit::{AppError, AppResult};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use gatehouse_verify::Claims;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::display_name;
use crate::hub::{CloseReason, Outbox};
use crate::messages::{BODY_MAX, MessageOut, NewMessage, valid_room};
use crate::protocol::{ClientFrame, ServerFrame};
use crate::state::AppState;

/// Largest frame accepted from a client (a 2,000-character body is at most
/// 8 KB of UTF-8; a token about 1 KB).
const MAX_FRAME_BYTES: usize = 32 * 1024;
/// How long the close frame may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    room: String,
}

/// Upgrade to a chat socket for `room`.
pub async fn upgrade(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> AppResult<Response> {
    if !valid_room(&query.room) {
        return Err(AppError::invalid(
            "room",
            "invalid_room",
            "room must be 1 to 64 of a-z, 0-9, _ and -",
        ));
    }
    let ws = ws.map_err(|_| {
        AppError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "This path only accepts WebSocket connections.",
        )
    })?;
    if state.shutting_down() {
        return Err(AppError::unavailable("The server is shutting down."));
    }
    Ok(ws
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run_socket(socket, query.room, state)))
}

async fn run_socket(socket: WebSocket, room: String, state: AppState) {
    let _open = state.hub.open_socket();
    let (sink, stream) = socket.split();
    let (frames, frames_rx) = mpsc::channel(state.sockets.ws_send_queue as usize);
    let (control, control_rx) = mpsc::channel(1);
    let outbox = Outbox { frames, control };
    let mut writer = tokio::spawn(write_loop(
        sink,
        frames_rx,
        control_rx,
        state.sockets.ws_write_timeout,
    ));

    let ended = Socket {
        state: &state,
        room: &room,
        outbox: &outbox,
        stream,
    }
    .run(&mut writer)
    .await;

    let reason = match ended {
        Ended::Close(reason) => {
            outbox.close(reason);
            tokio::time::timeout(CLOSE_TIMEOUT * 2, &mut writer)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        }
        Ended::Writer(reason) => reason,
        Ended::ClientLeft => None,
    };
    writer.abort();
    let label = reason.map_or("client", |r| r.label);
    metrics::counter!("chat_ws_closed_total", "reason" => label).increment(1);
    if reason.is_some_and(|r| r.label == "slow" || r.label == "heartbeat") {
        metrics::counter!("chat_slow_clients_dropped_total").increment(1);
    }
    tracing::debug!(room, reason = label, "socket closed");
}

/// Send queued frames; close when told to (or when a write stalls).
/// Returns the close reason it sent, if any.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut frames: mpsc::Receiver<Message>,
    mut control: mpsc::Receiver<CloseReason>,
    write_timeout: Duration,
) -> Option<CloseReason> {
    let reason = loop {
        tokio::select! {
            biased;
            reason = control.recv() => break reason,
            frame = frames.recv() => {
                let Some(frame) = frame else { break None };
                tokio::select! {
                    biased;
                    reason = control.recv() => break reason,
                    sent = tokio::time::timeout(write_timeout, sink.send(frame)) => match sent {
                        Ok(Ok(())) => {}
                        // The connection is gone: nothing to close.
                        Ok(Err(_)) => return None,
                        Err(_) => break Some(CloseReason::WRITE_TIMEOUT),
                    }
                }
            }
        }
    };
    if let Some(r) = reason {
        let frame = Message::Close(Some(CloseFrame {
            code: r.code,
            reason: Utf8Bytes::from_static(r.reason),
        }));
        // A stalled client may never take it: then the drop ends the TCP connection.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(frame)).await;
    }
    reason
}

/// How the reading side ended.
enum Ended {
    /// Close with this reason (the writer sends it).
    Close(CloseReason),
    /// The writer stopped by itself (stalled client, broken connection).
    Writer(Option<CloseReason>),
    /// The client closed or the connection broke.
    ClientLeft,
}

/// A next frame from the client, before authentication.
enum First {
    Text(Utf8Bytes),
    Binary,
    Gone,
}

struct Socket<'a> {
    state: &'a AppState,
    room: &'a str,
    outbox: &'a Outbox,
    stream: SplitStream<WebSocket>,
}

/// The identity on a socket, replaced by every successful re-auth.
struct Identity {
    claims: Claims,
    name: String,
    expires: Instant,
}

impl Identity {
    fn new(claims: Claims) -> Self {
        let left = claims.exp - chrono::Utc::now().timestamp();
        let expires = Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0));
        Self {
            name: display_name(&claims),
            claims,
            expires,
        }
    }
}

/// Token bucket for incoming messages: `rate` per second, bursts of `2 × rate`.
struct RateLimit {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        Self {
            tokens: rate * 2.0,
            rate,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Socket<'_> {
    fn send(&self, frame: &ServerFrame<'_>) {
        self.outbox
            .send(Message::Text(Utf8Bytes::from(frame.to_json())));
    }

    fn error(&self, code: &str, message: &str) {
        self.send(&ServerFrame::Error { code, message });
    }

    fn authenticated(&self, id: &Identity) {
        self.send(&ServerFrame::Authenticated {
            user_id: id.claims.sub,
            author_name: &id.name,
            room: self.room,
            expires_at: example_kit::time::from_epoch(id.claims.exp),
        });
    }

    async fn next_before_auth(&mut self) -> First {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Text(t))) => return First::Text(t),
                Some(Ok(Message::Binary(_))) => return First::Binary,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return First::Gone,
            }
        }
    }

    /// The token of an `auth` frame, verified.
    async fn verify(&self, text: &str) -> Result<Claims, CloseReason> {
        match serde_json::from_str::<ClientFrame>(text) {
            Ok(ClientFrame::Auth { token }) => {
                self.state.verifier.verify(&token).await.map_err(|e| {
                    tracing::debug!(reason = e.reason(), "socket token refused");
                    CloseReason::AUTH_INVALID
                })
            }
            _ => Err(CloseReason::AUTH_MISSING),
        }
    }

    async fn run(mut self, writer: &mut tokio::task::JoinHandle<Option<CloseReason>>) -> Ended {
        let mut shutdown = self.state.shutdown.clone();
        // Subscribe before verifying, so no revocation slips in between.
        let mut revocations = self.state.verifier.revocations();

        let auth_timeout = self.state.sockets.ws_auth_timeout;
        let first = tokio::select! {
            first = tokio::time::timeout(auth_timeout, self.next_before_auth()) => first,
            _ = shutdown.changed() => return Ended::Close(CloseReason::SHUTDOWN),
        };
        let text = match first {
            Err(_) => return Ended::Close(CloseReason::AUTH_TIMEOUT),
            Ok(First::Gone) => return Ended::ClientLeft,
            Ok(First::Binary) => return Ended::Close(CloseReason::AUTH_MISSING),
            Ok(First::Text(text)) => text,
        };
        let mut identity = match self.verify(text.as_str()).await {
            Ok(claims) => Identity::new(claims),
            Err(reason) => return Ended::Close(reason),
        };
        if self.state.verifier.is_revoked(&identity.claims) {
            return Ended::Close(CloseReason::REVOKED);
        }
        let _membership = self.state.hub.join(self.room, self.outbox.clone());
        self.authenticated(&identity);
        metrics::counter!("chat_ws_authenticated_total").increment(1);

        let ping_every = self.state.sockets.ws_ping_interval;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let mut last_heard = Instant::now();
        let mut limit = RateLimit::new(self.state.sockets.ws_message_rate);
        let mut revocations_open = true;

        loop {
            tokio::select! {
                reason = &mut *writer => return Ended::Writer(reason.ok().flatten()),
                frame = self.stream.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            match serde_json::from_str::<ClientFrame>(text.as_str()) {
                                Ok(ClientFrame::Message { body }) => {
                                    if limit.allow() {
                                        self.post(&identity, &body).await;
                                    } else {
                                        metrics::counter!("chat_messages_rejected_total", "reason" => "rate_limited").increment(1);
                                        self.error("rate_limited", "Too many messages; slow down.");
                                    }
                                }
                                Ok(ClientFrame::Auth { token }) => {
                                    match self.state.verifier.verify(&token).await {
                                        Ok(claims) if claims.sub == identity.claims.sub => {
                                            identity = Identity::new(claims);
                                            self.authenticated(&identity);
                                        }
                                        Ok(_) => return Ended::Close(CloseReason::AUTH_OTHER_USER),
                                        Err(_) => return Ended::Close(CloseReason::AUTH_INVALID),
                                    }
                                }
                                Err(_) => {
                                    metrics::counter!("chat_messages_rejected_total", "reason" => "invalid_frame").increment(1);
                                    self.error("invalid_frame", "Expected {\"type\":\"message\",\"body\":...} or {\"type\":\"auth\",\"token\":...}.");
                                }
                            }
                        }
                        Some(Ok(Message::Binary(_))) => return Ended::Close(CloseReason::BINARY),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return Ended::ClientLeft,
                    }
                }
                revocation = revocations.recv(), if revocations_open => match revocation {
                    Ok(r) if r.applies_to(&identity.claims) => return Ended::Close(CloseReason::REVOKED),
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        if self.state.verifier.is_revoked(&identity.claims) {
                            return Ended::Close(CloseReason::REVOKED);
                        }
                    }
                    // The verifier stopped (shutdown): the shutdown branch closes us.
                    Err(RecvError::Closed) => revocations_open = false,
                },
                () = tokio::time::sleep_until(identity.expires) => return Ended::Close(CloseReason::EXPIRED),
                _ = shutdown.changed() => return Ended::Close(CloseReason::SHUTDOWN),
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > ping_every * 2 {
                        return Ended::Close(CloseReason::HEARTBEAT);
                    }
                    self.outbox.send(Message::Ping(Default::default()));
                }
            }
        }
    }

    /// Store a message, then publish it to every replica (this one too).
    async fn post(&self, identity: &Identity, body: &str) {
        let body = match text::required("body", body, 1, BODY_MAX, Lines::Multi) {
            Ok(body) => body,
            Err(e) => {
                metrics::counter!("chat_messages_rejected_total", "reason" => "invalid_body")
                    .increment(1);
                self.error("invalid_body", &e.message);
                return;
            }
        };
        let stored = async {
            let mut conn = self.state.db.get().await.map_err(anyhow::Error::from)?;
            NewMessage {
                room: self.room,
                author_id: identity.claims.sub,
                author_name: &identity.name,
                body: &body,
            }
            .insert(&mut conn)
            .await
            .map_err(anyhow::Error::from)
        }
        .await;
        let message = match stored {
            Ok(m) => MessageOut::from(m),
            Err(e) => {
                tracing::error!(error = %e, "cannot store a chat message");
                self.error("unavailable", "The message could not be stored; try again.");
                return;
            }
        };
        metrics::counter!("chat_messages_received_total").increment(1);
        // The message is stored: a failed publish only delays it for the
        // others (history, and the catch-up after Redis comes back).
        if let Err(e) = self.state.fanout.publish(&message).await {
            tracing::warn!(error = %e, id = message.id, "cannot publish a chat message");
            metrics::counter!("chat_publish_failures_total").increment(1);
            self.error(
                "not_delivered",
                "The message was stored but could not be delivered live; it is in the history.",
            );
        }
    }
}
