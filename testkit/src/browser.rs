//! Headless Chromium for end-to-end tests of HTML pages, through
//! chromedriver (WebDriver) and `fantoccini`. Enable with the testkit's
//! `browser` feature.
//!
//! ```no_run
//! # async fn t() {
//! use gatehouse_testkit::browser::Browser;
//! let browser = Browser::start().await;            // one chromedriver per test
//! let alice = browser.session("alice").await;      // a fresh profile each
//! alice.goto("http://127.0.0.1:8080/").await;
//! alice.fill("#login-email", "alice@example.com").await;
//! alice.click("#login-submit").await;
//! alice.wait_text("#status", "live", std::time::Duration::from_secs(10)).await;
//! alice.screenshot("logged-in").await;             // target/screenshots/alice-logged-in.png
//! # }
//! ```
//!
//! Needs `chromium` and `chromedriver` on `PATH` (Debian: `apt-get install
//! chromium chromium-driver`); override with `CHROME_BIN` and
//! `CHROMEDRIVER`. Each session gets its own user-data-dir (cookies do not
//! leak between sessions) and is headless with background networking,
//! component updates and sync disabled. Screenshots go to
//! `SCREENSHOT_DIR` (default `target/screenshots/` of the workspace, which
//! git ignores); a `wait_*` that times out saves a screenshot and the page
//! source there before panicking.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A chromedriver process; sessions connect to it. Killed on drop.
pub struct Browser {
    driver: Child,
    url: String,
}

impl Browser {
    /// Start chromedriver on a free port and wait until it is ready.
    pub async fn start() -> Self {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = crate::free_port();
        let mut cmd = Command::new(&program);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let driver = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {program} ({e}); install chromium and chromium-driver")
        });
        let addr = format!("127.0.0.1:{port}");
        crate::eventually(Duration::from_secs(20), "chromedriver ready", || {
            let addr = addr.clone();
            async move { driver_ready(&addr).await.then_some(()) }
        })
        .await;
        let url = format!("http://{addr}");
        Self { driver, url }
    }

    /// A new browser session with a fresh profile. `name` prefixes its
    /// screenshots.
    pub async fn session(&self, name: &str) -> Session {
        let profile = std::env::temp_dir().join(format!(
            "gatehouse-browser-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut options = json!({ "args": args });
        if let Some(bin) = chrome_binary() {
            options["binary"] = Value::from(bin);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), Value::from("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        let connect = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await;
        let client = match connect {
            Ok(client) => client,
            Err(e) => panic!("cannot open a Chromium session: {e}"),
        };
        Session {
            client,
            name: name.to_owned(),
            profile,
        }
    }

    /// The chromedriver process id.
    pub fn pid(&self) -> Option<u32> {
        self.driver.id()
    }
}

fn chrome_binary() -> Option<String> {
    if let Ok(bin) = std::env::var("CHROME_BIN") {
        return Some(bin);
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(str::to_owned)
}

/// chromedriver's `/status` says it is ready. A bare HTTP/1.1 GET read
/// until the answer says so (chromedriver ignores HTTP/1.0 and may keep the
/// connection open), bounded by a timeout.
async fn driver_ready(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
            if body.windows(12).any(|w| w == b"\"ready\":true") {
                return Some(true);
            }
        }
        Some(false)
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Where screenshots and page dumps go (created on demand).
pub fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/screenshots"
            ))
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One browser session (a window with its own profile).
pub struct Session {
    pub client: Client,
    pub name: String,
    profile: PathBuf,
}

impl Session {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The first element matching a CSS selector, waiting up to 10 s.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => self.fail(&format!("no element {css}: {e}")).await,
        }
    }

    /// Clear an input and type `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// The visible text of an element ("" when absent or hidden).
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Texts of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for el in self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            out.push(el.text().await.unwrap_or_default());
        }
        out
    }

    /// Run JavaScript in the page and return its result.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Wait until the element's text contains `needle`; its full text.
    pub async fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!(
                    "{css} never contained {needle:?}; last text: {text:?}"
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until `count` elements match `css`.
    pub async fn wait_count(&self, css: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let texts = self.texts(css).await;
            if texts.len() >= count {
                return texts;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!(
                    "{css}: {} of {count} elements: {texts:?}",
                    texts.len()
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Save `<dir>/<session>-<label>.png`; returns its path.
    pub async fn screenshot(&self, label: &str) -> PathBuf {
        let path = screenshot_dir().join(format!("{}-{label}.png", self.name));
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(&path, png);
        }
        path
    }

    /// Save a screenshot and the page source, then panic with `why`.
    pub async fn fail(&self, why: &str) -> ! {
        let shot = self.screenshot("failure").await;
        if let Ok(html) = self.client.source().await {
            let _ = std::fs::write(shot.with_extension("html"), html);
        }
        panic!(
            "{} (browser session {}): see {}",
            why,
            self.name,
            shot.display()
        );
    }

    /// End the session and remove its profile.
    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
