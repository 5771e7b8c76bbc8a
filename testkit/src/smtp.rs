//! A real SMTP listener on 127.0.0.1 that stores every message it accepts.
//! Speaks enough of RFC 5321 for lettre: EHLO/HELO, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The raw message, with dot-stuffing and quoted-printable soft line
    /// breaks removed.
    pub data: String,
}

impl ReceivedMail {
    /// The 6-digit code from the subject line.
    pub fn code(&self) -> Option<String> {
        let subject = self
            .data
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("subject:"))?;
        let digits: String = subject.chars().filter(char::is_ascii_digit).collect();
        (digits.len() >= 6).then(|| digits[digits.len() - 6..].to_owned())
    }

    /// The link token (`token=` followed by 64 hex characters).
    pub fn link_token(&self) -> Option<String> {
        let start = self.data.find("token=")? + "token=".len();
        let token: String = self.data[start..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        (token.len() == 64).then_some(token)
    }
}

#[derive(Clone)]
pub struct MailSink {
    pub port: u16,
    inbox: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl MailSink {
    pub async fn start() -> Self {
        Self::start_with_delay(Duration::ZERO).await
    }

    /// A sink that waits `delay` before accepting each message (a slow
    /// server keeps jobs in flight).
    pub async fn start_with_delay(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let store = inbox.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(socket, store, delay).await;
                });
            }
        });
        Self { port, inbox }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub async fn all(&self) -> Vec<ReceivedMail> {
        self.inbox.lock().await.clone()
    }

    pub async fn to(&self, address: &str) -> Vec<ReceivedMail> {
        let address = address.to_ascii_lowercase();
        self.inbox
            .lock()
            .await
            .iter()
            .filter(|m| m.to.iter().any(|t| t.to_ascii_lowercase() == address))
            .cloned()
            .collect()
    }

    /// Wait until at least `n` messages to `address` arrived; return them.
    pub async fn wait_for(&self, address: &str, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        crate::eventually(timeout, &format!("{n} email(s) to {address}"), || async {
            let got = self.to(address).await;
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

fn addr_of(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line[start..end].trim().to_owned()
}

async fn session(
    socket: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<ReceivedMail>>>,
    delay: Duration,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write
        .write_all(b"220 gatehouse-test-smtp ready\r\n")
        .await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write
                .write_all(b"250-gatehouse-test-smtp\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("MAIL FROM") {
            from = addr_of(&line);
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO") {
            to.push(addr_of(&line));
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if lines.read_line(&mut l).await? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                let l = l.strip_prefix('.').map(str::to_owned).unwrap_or(l);
                data.push_str(&l);
            }
            tokio::time::sleep(delay).await;
            let data = data.replace("=\r\n", "").replace("=3D", "=");
            store.lock().await.push(ReceivedMail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            write.write_all(b"250 OK: queued\r\n").await?;
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"502 Command not implemented\r\n").await?;
        }
    }
}
