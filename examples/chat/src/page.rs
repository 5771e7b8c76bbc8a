//! The static page (HTML, CSS, JS embedded in the binary; no CDN, no
//! framework). The only server-side touch is Gatehouse's public URL, written
//! into a `<meta>` tag, and a Content-Security-Policy that lets the page
//! talk to this server and Gatehouse only.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

const INDEX: &str = include_str!("../static/index.html");
const SCRIPT: &str = include_str!("../static/app.js");
const STYLE: &str = include_str!("../static/style.css");

pub struct Page {
    index: String,
    csp: HeaderValue,
}

impl Page {
    /// `gatehouse_url` is Gatehouse as browsers reach it.
    pub fn new(gatehouse_url: &str, gatehouse_origin: &str) -> anyhow::Result<Self> {
        let index = INDEX.replace("{{GATEHOUSE_URL}}", &html_escape(gatehouse_url));
        // 'self' covers ws:/wss: to this host (CSP Level 3).
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' {gatehouse_origin}; img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
        );
        Ok(Self {
            index,
            csp: HeaderValue::from_str(&csp)?,
        })
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn asset(page: &Page, content_type: &'static str, body: String) -> Response {
    let mut res = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, page.csp.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

pub async fn index(State(state): State<AppState>) -> Response {
    asset(
        &state.page,
        "text/html; charset=utf-8",
        state.page.index.clone(),
    )
}

pub async fn script(State(state): State<AppState>) -> Response {
    asset(
        &state.page,
        "text/javascript; charset=utf-8",
        SCRIPT.to_owned(),
    )
}

pub async fn style(State(state): State<AppState>) -> Response {
    asset(&state.page, "text/css; charset=utf-8", STYLE.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gatehouse_url_is_escaped_into_the_page() {
        let page = Page::new("http://gh.example/\"><script>", "http://gh.example").expect("page");
        assert!(
            page.index
                .contains("http://gh.example/&quot;&gt;&lt;script&gt;")
        );
        assert!(!page.index.contains("{{GATEHOUSE_URL}}"));
        let csp = page.csp.to_str().expect("ascii");
        assert!(csp.contains("connect-src 'self' http://gh.example;"));
    }
}
