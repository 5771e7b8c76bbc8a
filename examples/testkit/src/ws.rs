//! A WebSocket client for the chat's tests (tokio-tungstenite).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the next frame was.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Json(Value),
    /// A close frame: code and reason.
    Close(u16, String),
    /// The connection ended without a close frame (or broke).
    Ended,
    /// Nothing within the timeout.
    Timeout,
}

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { stream }
    }

    /// Connect with a small receive buffer, so a client that stops reading
    /// backs up the server quickly (a stalled phone on a bad network).
    pub async fn connect_with_recv_buffer(url: &str, bytes: u32) -> Self {
        let request = url.into_client_request().unwrap();
        let host = request.uri().host().unwrap().to_owned();
        let port = request.uri().port_u16().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let addr = format!("{host}:{port}").parse().unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let (stream, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
        Self { stream }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.stream.send(m).await.unwrap();
    }

    /// Send `{"type":"auth","token":...}` and expect `authenticated`.
    pub async fn auth(&mut self, token: &str) -> Value {
        self.send_json(json!({"type": "auth", "token": token}))
            .await;
        let v = self.next_json(Duration::from_secs(10)).await;
        assert_eq!(v["type"], "authenticated", "{v}");
        v
    }

    /// Send a chat line.
    pub async fn say(&mut self, body: &str) {
        self.send_json(json!({"type": "message", "body": body}))
            .await;
    }

    /// The next frame that matters (pings and pongs are skipped).
    pub async fn next(&mut self, timeout: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.stream.next()).await else {
                return Frame::Timeout;
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    return Frame::Json(serde_json::from_str(t.as_str()).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(Frame::Close(1005, String::new()), |f| {
                        Frame::Close(u16::from(f.code), f.reason.to_string())
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Frame::Ended,
            }
        }
    }

    /// The next JSON frame; panics on anything else.
    pub async fn next_json(&mut self, timeout: Duration) -> Value {
        match self.next(timeout).await {
            Frame::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// The next `message` frame (other frame types are skipped).
    pub async fn next_message(&mut self, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next_json(left).await;
            if v["type"] == "message" {
                return v;
            }
        }
    }

    /// Read every frame already received, without waiting; how many were
    /// `message` frames.
    pub async fn drain_messages(&mut self) -> usize {
        let mut n = 0;
        loop {
            match self.next(Duration::ZERO).await {
                Frame::Json(v) if v["type"] == "message" => n += 1,
                Frame::Json(_) => {}
                Frame::Timeout => return n,
                other => panic!("the socket ended: {other:?}"),
            }
        }
    }

    /// Expect a close frame within `timeout`; its code and reason.
    pub async fn expect_close(&mut self, timeout: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Frame::Close(code, reason) => return (code, reason),
                Frame::Json(_) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Nothing but pings for `quiet`: no frame arrives.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        match self.next(quiet).await {
            Frame::Timeout => {}
            other => panic!("expected no frame, got {other:?}"),
        }
    }
}
