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
use crate::pages::{self, Page, STYLESHEET, STYLESHEET_ETAG, STYLESHEET_PATH, VERIFY};
use crate::ratelimit::Class;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(VERIFY.path, get(verify_form).post(verify))
        .route(STYLESHEET_PATH, get(stylesheet))
}

/// `GET /verify?token=`: the button that verifies (consumes nothing).
async fn verify_form(RawQuery(query): RawQuery) -> Page {
    VERIFY.form(pages::token_in(query.as_deref().map(str::as_bytes)))
}

/// `POST /verify` (`token=`): verify, then the verified or failure page.
async fn verify(State(state): State<AppState>, ip: ClientIp, body: Bytes) -> Page {
    // The same per-IP budget as `POST /auth/verify`.
    if let Err(e) = state.limits.hit_ip(Class::VerifyIp, ip.0).await {
        return VERIFY.error(e);
    }
    pages::verify(&state, pages::token_in(Some(&body)), ip.text()).await
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
