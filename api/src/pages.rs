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

pub const RESET_PASSWORD: LinkPage = LinkPage {
    path: "/reset-password",
    form_title: "Choose a new password",
    form_message: "Enter a new password for your account. Every device signed in to it will be signed out.",
    button: "Set new password",
    done_title: "Password changed",
    done_message: "Your password has been changed and every session was signed out.",
    done_hint: "Sign in with your new password.",
    invalid_message: "This password reset link is invalid, has expired or was already used.",
    invalid_hint: "Reset links last 30 minutes, work once, and only the newest one works. Ask for a new one from the sign-in screen.",
};

pub const EMAIL_CONFIRM: LinkPage = LinkPage {
    path: "/email/confirm",
    form_title: "Confirm your new email",
    form_message: "Confirm that this address is yours to make it the email of your account. Other devices will be signed out.",
    button: "Confirm my new email",
    done_title: "Email address changed",
    done_message: "This is now the email address of your account.",
    done_hint: "Sign in with this address from now on.",
    invalid_message: "This confirmation link is invalid, has expired or was already used.",
    invalid_hint: "Ask for the change again from the app; only the newest link works.",
};

pub const EMAIL_REVERT: LinkPage = LinkPage {
    path: "/email/revert",
    form_title: "Undo the email change",
    form_message: "The email address of your account was changed. If you did not ask for this, restore this address; every device will be signed out.",
    button: "Restore my email address",
    done_title: "Email address restored",
    done_message: "Your account uses this email address again and every session was signed out.",
    done_hint: "Sign in, and change your password if you did not make the change yourself.",
    invalid_message: "This link is invalid, has expired or was already used.",
    invalid_hint: "Links to undo an email change last 7 days.",
};

impl LinkPage {
    /// The GET of a page that asks for a new password: the form, empty.
    pub fn password_form(&self, token: Option<String>) -> Page {
        match token {
            Some(token) => self.password_page(StatusCode::OK, token, None),
            None => self.invalid(),
        }
    }

    /// The password form; with `error`, the refused password's reason
    /// next to the field (the token stays in the form, still unused).
    fn password_page(&self, status: StatusCode, token: String, error: Option<String>) -> Page {
        Page::new(
            status,
            "password.html",
            context! {
                title => self.form_title,
                message => self.form_message,
                action => Value::from_safe_string(self.path.to_owned()),
                button => self.button,
                token,
                error,
            },
        )
    }

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
    raw_field_in(raw, name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The first value of `name`, as typed (passwords are not trimmed); ""
/// when absent, which the password policy refuses.
pub fn raw_field_in(raw: Option<&[u8]>, name: &str) -> Option<String> {
    form_urlencoded::parse(raw?)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
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

/// `POST /reset-password` (`token=`, `password=`): set the new password.
/// A password the policy refuses shows the form again with the reason; the
/// token stays usable.
pub async fn reset_password(
    state: &AppState,
    token: Option<String>,
    password: String,
    ip: Option<String>,
) -> Page {
    let Some(token) = token else {
        return RESET_PASSWORD.invalid();
    };
    match crate::password::reset(state, &token, password, ip).await {
        Ok(()) => RESET_PASSWORD.done(),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let reason = e
                .errors
                .as_ref()
                .and_then(|errors| errors.first())
                .map(|f| f.message.clone())
                .unwrap_or_else(|| e.detail.clone());
            RESET_PASSWORD.password_page(e.status, token, Some(reason))
        }
        Err(e) => RESET_PASSWORD.error(e),
    }
}

/// `POST /email/confirm`: switch the account to the new address.
pub async fn confirm_email(state: &AppState, token: Option<String>, ip: Option<String>) -> Page {
    let Some(token) = token else {
        return EMAIL_CONFIRM.invalid();
    };
    match crate::email::confirm_link(state, &token, ip).await {
        Ok(_) => EMAIL_CONFIRM.done(),
        Err(e) => EMAIL_CONFIRM.error(e),
    }
}

/// `POST /email/revert`: restore the old address.
pub async fn revert_email(state: &AppState, token: Option<String>, ip: Option<String>) -> Page {
    let Some(token) = token else {
        return EMAIL_REVERT.invalid();
    };
    match crate::email::revert(state, &token, ip).await {
        Ok(()) => EMAIL_REVERT.done(),
        Err(e) => EMAIL_REVERT.error(e),
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
            RESET_PASSWORD.password_form(Some("t<\"&>".into())),
            RESET_PASSWORD.password_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "t<\"&>".into(),
                Some("This password is too common.".into()),
            ),
            RESET_PASSWORD.done(),
            RESET_PASSWORD.invalid(),
            EMAIL_CONFIRM.form(Some("t<\"&>".into())),
            EMAIL_CONFIRM.done(),
            EMAIL_CONFIRM.error(ApiError::email_taken()),
            EMAIL_REVERT.form(Some("t<\"&>".into())),
            EMAIL_REVERT.done(),
            EMAIL_REVERT.invalid(),
        ];
        for page in pages {
            let html = page.render().expect("every page renders");
            assert!(html.starts_with("<!doctype html>"), "{html}");
            assert!(html.contains(STYLESHEET_PATH), "{html}");
            assert!(!html.contains("t<\""), "the token is escaped: {html}");
        }
    }

    /// The password form labels its field and shows the refusal next to it.
    #[test]
    fn item_8_password_form_is_labelled_and_shows_the_error() {
        let html = RESET_PASSWORD
            .password_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "tok".into(),
                Some("This password is too common.".into()),
            )
            .render()
            .expect("the password page renders");
        assert!(
            html.contains(r#"<label for="password">New password</label>"#),
            "{html}"
        );
        assert!(html.contains(r#"<input id="password" name="password" type="password""#));
        assert!(html.contains(r#"<form method="post" action="/reset-password">"#));
        assert!(html.contains(r#"name="token" value="tok""#));
        assert!(html.contains(
            r#"id="password-error" class="error" role="alert">This password is too common.<"#
        ));
        assert!(html.contains(r#"aria-invalid="true""#));
        let empty = RESET_PASSWORD
            .password_form(Some("tok".into()))
            .render()
            .expect("the password page renders");
        assert!(!empty.contains("password-error\""), "{empty}");
        assert_eq!(
            RESET_PASSWORD.password_form(None).status,
            StatusCode::BAD_REQUEST
        );
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
