//! Cross-cutting HTTP behaviour: problem+json for framework errors, the
//! same-origin check for cookie requests, request metrics.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{ApiError, ApiResult, problem_response};
use crate::state::AppState;

/// Turn any error response that is not already JSON (405 from the router,
/// 408 from the timeout layer, 413 from the body limit) into problem+json.
/// HTML error pages (the hosted pages' failures) stay as they are.
pub async fn problem_for_framework_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json_or_page = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json") || v.starts_with("text/html"));
    if is_json_or_page {
        return res;
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "No route matches this path."),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This method is not allowed on this path.",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "The request took too long."),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "The request body is too large."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "Unsupported content type.")
        }
        s if s.is_server_error() => ("internal_error", "An unexpected error occurred."),
        _ => ("bad_request", "The request could not be processed."),
    };
    let mut problem = problem_response(status, code, detail, None);
    // Keep headers such as `Allow` from the original response.
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// 404 for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("No route matches this path.")
}

/// 405 for a known path with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This method is not allowed on this path.",
    )
}

/// CSRF defence for requests authenticated by the refresh cookie: refuse
/// them when the browser says they are cross-site, or when `Origin` is
/// neither this host nor an allowed origin. Requests with neither header
/// (non-browser clients) pass.
pub fn check_same_origin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let refuse = || {
        ApiError::forbidden(
            "cross_site_request",
            "Cross-site requests may not use the refresh cookie.",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site.eq_ignore_ascii_case("cross-site")
    {
        return Err(refuse());
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let origin = origin.trim_end_matches('/');
    if state.allowed_origins.iter().any(|o| o == origin) {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let same_host = origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host));
    if same_host { Ok(()) } else { Err(refuse()) }
}

/// Count requests and time them by route template (low cardinality).
pub async fn track_metrics(req: Request<Body>, next: Next) -> Response {
    let start = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [("method", method), ("path", path), ("status", status)];
    metrics::counter!("gatehouse_http_requests_total", &labels).increment(1);
    metrics::histogram!("gatehouse_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    res
}
