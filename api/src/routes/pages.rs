//! The hosted pages behind emailed links (`GET`/`POST /verify`, ...) and
//! their stylesheet. Plain axum routes, not `OpenApiRouter`: HTML pages
//! are not part of the JSON API's document (like `/docs`). Each GET only
//! renders a form; the POST (form-urlencoded, to the same path) calls
//! `crate::pages`, which calls the use case and picks the page.
//!
//! CSRF: the token in the form is itself the secret, and the pages set and
//! read no cookie, so a forged cross-site post can do nothing the link's
//! holder could not.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::extract::ClientIp;
use crate::http::middleware;
use crate::pages::{
    self, EMAIL_CONFIRM, EMAIL_REVERT, Page, RESET_PASSWORD, STYLESHEET, STYLESHEET_ETAG,
    STYLESHEET_PATH, VERIFY,
};
use crate::ratelimit::Class;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(VERIFY.path, get(verify_form).post(verify))
        .route(
            RESET_PASSWORD.path,
            get(reset_password_form).post(reset_password),
        )
        .route(
            EMAIL_CONFIRM.path,
            get(confirm_email_form).post(confirm_email),
        )
        .route(EMAIL_REVERT.path, get(revert_email_form).post(revert_email))
        .route(STYLESHEET_PATH, get(stylesheet))
}

/// `GET /verify?token=`: the button that verifies (consumes nothing).
async fn verify_form(RawQuery(query): RawQuery) -> Page {
    VERIFY.form(query_token(query))
}

/// `POST /verify` (`token=`): verify, then the verified or failure page.
async fn verify(State(state): State<AppState>, ip: ClientIp, body: Bytes) -> Page {
    // The same per-IP budget as `POST /auth/verify`.
    if let Err(e) = state.limits.hit_ip(Class::VerifyIp, ip.0).await {
        return VERIFY.error(e);
    }
    pages::verify(&state, pages::token_in(Some(&body)), ip.text()).await
}

/// The `token` of a GET's query string.
fn query_token(query: Option<String>) -> Option<String> {
    pages::token_in(query.as_deref().map(str::as_bytes))
}

/// `GET /reset-password?token=`: the new-password form (consumes nothing).
async fn reset_password_form(RawQuery(query): RawQuery) -> Page {
    RESET_PASSWORD.password_form(query_token(query))
}

/// `POST /reset-password` (`token=`, `password=`). The use case applies
/// its own rate limit.
async fn reset_password(State(state): State<AppState>, ip: ClientIp, body: Bytes) -> Page {
    let password = pages::raw_field_in(Some(&body), "password").unwrap_or_default();
    pages::reset_password(&state, pages::token_in(Some(&body)), password, ip.text()).await
}

/// `GET /email/confirm?token=`: the button that confirms the new address.
async fn confirm_email_form(RawQuery(query): RawQuery) -> Page {
    EMAIL_CONFIRM.form(query_token(query))
}

/// `POST /email/confirm` (`token=`).
async fn confirm_email(State(state): State<AppState>, ip: ClientIp, body: Bytes) -> Page {
    pages::confirm_email(&state, pages::token_in(Some(&body)), ip.text()).await
}

/// `GET /email/revert?token=`: the button that restores the old address.
async fn revert_email_form(RawQuery(query): RawQuery) -> Page {
    EMAIL_REVERT.form(query_token(query))
}

/// `POST /email/revert` (`token=`).
async fn revert_email(State(state): State<AppState>, ip: ClientIp, body: Bytes) -> Page {
    pages::revert_email(&state, pages::token_in(Some(&body)), ip.text()).await
}

/// `GET /assets/gatehouse.css`: cacheable, revalidated by `ETag`.
async fn stylesheet(headers: HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&STYLESHEET_ETAG).unwrap_or(HeaderValue::from_static("\"0\""));
    let cached = middleware::if_none_match(&headers, &etag);
    let common = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ),
        (header::ETAG, etag),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        STYLESHEET,
    )
        .into_response()
}
