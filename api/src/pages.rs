//! Hosted pages: the small HTML pages behind the links Gatehouse emails
//! (`/verify`, `/reset-password`, `/email/confirm`, `/email/revert`).
//!
//! Each page calls the use case of its JSON twin and renders the outcome;
//! `routes/pages.rs` serves them. A GET only renders a form (mail scanners
//! follow links): the POST that form sends is what consumes a token. The
//! HTML is server-rendered from the templates in `api/templates/pages/`
//! (minijinja, escaped), styled by one stylesheet Gatehouse serves itself,
//! and needs no JavaScript. Every page carries a strict
//! Content-Security-Policy and is never cached (its form holds a token).
//! The pages are not in the OpenAPI document: they are not JSON API.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value, context};
use sha2::{Digest, Sha256};

use crate::accounts;
use crate::error::ApiError;
use crate::state::AppState;

/// Nothing but Gatehouse's own stylesheet may load, forms post only here,
/// and no site may frame the page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Where the stylesheet is served.
pub const STYLESHEET_PATH: &str = "/assets/gatehouse.css";

/// The stylesheet, embedded in the binary.
pub const STYLESHEET: &str = include_str!("../templates/pages/gatehouse.css");

/// Its strong `ETag`: a content hash, so a new build revalidates.
pub static STYLESHEET_ETAG: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(STYLESHEET.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
});

/// Longest token a page accepts (the emailed ones are 43 characters);
/// anything longer is refused without a database lookup.
const MAX_TOKEN_CHARS: usize = 200;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/pages/base.html")),
    (
        "confirm.html",
        include_str!("../templates/pages/confirm.html"),
    ),
    (
        "password.html",
        include_str!("../templates/pages/password.html"),
    ),
    (
        "result.html",
        include_str!("../templates/pages/result.html"),
    ),
];

/// The templates, parsed once. A template that fails to parse is left out
/// and its pages answer the plain fallback (and log); the unit test below
/// renders every page, so that cannot ship.
static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(error = %e, template = name, "page template does not parse");
        }
    }
    env
});

/// A rendered page: status, template and its variables.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    template: &'static str,
    context: Value,
    retry_after: Option<u64>,
}

impl Page {
    fn new(status: StatusCode, template: &'static str, context: Value) -> Self {
        Self {
            status,
            template,
            context,
            retry_after: None,
        }
    }

    fn success(title: &str, message: &str, hint: &str) -> Self {
        Self::new(
            StatusCode::OK,
            "result.html",
            context! { title, message, hint, kind => "success" },
        )
    }

    fn failure(status: StatusCode, title: &str, message: &str, hint: &str) -> Self {
        Self::new(
            status,
            "result.html",
            context! { title, message, hint, kind => "failure" },
        )
    }

    /// The page as HTML (for tests and the response).
    pub fn render(&self) -> Result<String, minijinja::Error> {
        ENV.get_template(self.template)?.render(&self.context)
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let (status, body) = match self.render() {
            Ok(html) => (self.status, html),
            Err(e) => {
                // Display only: the debug form would print the variables.
                tracing::error!(error = %e, template = self.template, "page failed to render");
                (StatusCode::INTERNAL_SERVER_ERROR, FALLBACK_HTML.to_owned())
            }
        };
        let mut res = (status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        // The router sets these two for every response; set here as well
        // so that the pages do not depend on a layer's order.
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        // The token is in the URL: never send it on as a Referer.
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        // The form holds the token: keep it out of every cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        res
    }
}

const FALLBACK_HTML: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
    <title>Error · Gatehouse</title></head><body><h1>Something went wrong</h1>\
    <p>Try again in a minute.</p></body></html>";

/// The texts of one kind of emailed link.
#[derive(Debug)]
pub struct LinkPage {
    /// Its path: the GET shows the form, the POST does the work.
    pub path: &'static str,
    pub form_title: &'static str,
    pub form_message: &'static str,
    pub button: &'static str,
    pub done_title: &'static str,
    pub done_message: &'static str,
    pub done_hint: &'static str,
    /// Shown when the token is unknown, expired, used or replaced.
    pub invalid_message: &'static str,
    pub invalid_hint: &'static str,
}

pub const VERIFY: LinkPage = LinkPage {
    path: "/verify",
    form_title: "Verify your email",
    form_message: "Confirm that this email address is yours to activate your account.",
    button: "Verify my email",
    done_title: "Email verified",
    done_message: "Your email address is verified.",
    done_hint: "You can close this page and sign in.",
    invalid_message: "This verification link is invalid or has expired.",
    invalid_hint: "Links last 24 hours and only the newest one works. Sign in or ask the app to send a new verification email.",
};

impl LinkPage {
    /// The GET: a button that posts the token back to the same path. A
    /// missing or oversized token gets the invalid-link page at once.
    pub fn form(&self, token: Option<String>) -> Page {
        let Some(token) = token else {
            return self.invalid();
        };
        Page::new(
            StatusCode::OK,
            "confirm.html",
            context! {
                title => self.form_title,
                message => self.form_message,
                // Our own constant path: unescaped (the escaper writes `/` as `&#x2f;`).
                action => Value::from_safe_string(self.path.to_owned()),
                button => self.button,
                token,
            },
        )
    }

    pub fn done(&self) -> Page {
        Page::success(self.done_title, self.done_message, self.done_hint)
    }

    /// The link cannot be used (unknown, expired, used or replaced).
    pub fn invalid(&self) -> Page {
        Page::failure(
            StatusCode::BAD_REQUEST,
            "This link cannot be used",
            self.invalid_message,
            self.invalid_hint,
        )
    }

    /// The page for a failed use case.
    pub fn error(&self, err: ApiError) -> Page {
        error_page(err, || self.invalid())
    }
}

/// Map a use case's error to a page: a refused token is the link's own
/// invalid page; rate limits and outages get pages of their own; any other
/// client error shows its (generic, English) detail.
fn error_page(err: ApiError, invalid: impl FnOnce() -> Page) -> Page {
    match err.status {
        StatusCode::TOO_MANY_REQUESTS => {
            let mut page = Page::failure(
                err.status,
                "Too many attempts",
                "There were too many attempts from your network.",
                "Wait a few minutes, then reload this page.",
            );
            page.retry_after = err.retry_after;
            page
        }
        s if s.is_server_error() => {
            // The API error's Debug carries its cause chain; no secret is in it.
            tracing::error!(error = ?err, "page request failed");
            Page::failure(
                s,
                "Something went wrong",
                "Gatehouse could not complete this request.",
                "Nothing was changed by the failure. Try again in a minute.",
            )
        }
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::GONE => invalid(),
        s => Page::failure(s, "This link cannot be used", &err.detail, ""),
    }
}

/// The `token` of a query string or form body: the first one, trimmed;
/// `None` when absent, blank or oversized.
pub fn token_in(raw: Option<&[u8]>) -> Option<String> {
    field_in(raw, "token").filter(|t| t.chars().count() <= MAX_TOKEN_CHARS)
}

/// The first value of `name` in a form-urlencoded string, trimmed; `None`
/// when absent or blank. Never fails: bad encodings decode lossily.
pub fn field_in(raw: Option<&[u8]>, name: &str) -> Option<String> {
    form_urlencoded::parse(raw?)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `POST /verify`: verify the account of the emailed link.
pub async fn verify(state: &AppState, token: Option<String>, ip: Option<String>) -> Page {
    let Some(token) = token else {
        return VERIFY.invalid();
    };
    match accounts::verify_link(state, &token, ip).await {
        Ok(_) => VERIFY.done(),
        Err(e) => VERIFY.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template parses and every kind of page renders, escaped.
    #[test]
    fn every_page_renders() {
        let pages = [
            VERIFY.form(Some("t<\"&>".into())),
            VERIFY.done(),
            VERIFY.invalid(),
            VERIFY.error(ApiError::too_many_requests(30)),
            VERIFY.error(ApiError::unavailable("down")),
        ];
        for page in pages {
            let html = page.render().unwrap();
            assert!(html.starts_with("<!doctype html>"), "{html}");
            assert!(html.contains(STYLESHEET_PATH), "{html}");
            assert!(!html.contains("t<\""), "the token is escaped: {html}");
        }
    }

    #[test]
    fn token_in_takes_the_first_non_blank_bounded_token() {
        assert_eq!(token_in(Some(b"token=abc&token=def")), Some("abc".into()));
        assert_eq!(token_in(Some(b"token=%20a%2Bb%20")), Some("a+b".into()));
        assert_eq!(token_in(Some(b"token=")), None);
        assert_eq!(token_in(Some(b"other=1")), None);
        assert_eq!(token_in(None), None);
        let long = format!("token={}", "a".repeat(MAX_TOKEN_CHARS + 1));
        assert_eq!(token_in(Some(long.as_bytes())), None);
        assert_eq!(
            token_in(Some(b"token=%FF%FE")),
            Some("\u{fffd}\u{fffd}".into())
        );
    }
}
