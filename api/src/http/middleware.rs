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
    let mut res = next.run(req).await;
    res.extensions_mut().insert(RouteLabel(path.clone()));
    let status = res.status().as_u16().to_string();
    let labels = [("method", method), ("path", path), ("status", status)];
    metrics::counter!("gatehouse_http_requests_total", &labels).increment(1);
    metrics::histogram!("gatehouse_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    res
}

/// Headers a request may carry (hyper refuses more with an empty 431, at
/// twice this; see `crate::server`).
pub const MAX_HEADER_COUNT: usize = 100;

/// 431 problem+json when a request's headers exceed `MAX_HEADER_BYTES`
/// (names + values) or `MAX_HEADER_COUNT`. Hyper's own limits sit above
/// these, so clients get a body saying what went wrong; past hyper's read
/// buffer (about 400 KB) hyper still answers an empty 431 itself.
pub async fn header_limits(max_bytes: usize, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > max_bytes || headers.len() > MAX_HEADER_COUNT {
        return problem_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!(
                "The request headers are too large (at most {max_bytes} bytes and {MAX_HEADER_COUNT} fields)."
            ),
            None,
        );
    }
    next.run(req).await
}

/// Largest document `cache_validators` buffers to hash (the Swagger UI
/// bundle is about 1.4 MB).
const MAX_CACHED_BODY: usize = 8 * 1024 * 1024;

/// `ETag` and `Cache-Control` for the OpenAPI document and the Swagger UI
/// assets, and 304 for a matching `If-None-Match`. Their content is fixed
/// for the life of the process, so each path's tag is computed once (a
/// SHA-256 of the body) and remembered; a revalidation then costs no body.
pub async fn cache_validators(req: Request, next: Next) -> Response {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static TAGS: OnceLock<Mutex<HashMap<String, axum::http::HeaderValue>>> = OnceLock::new();

    let path = req.uri().path().to_owned();
    let cacheable = req.method() == axum::http::Method::GET
        && (path == "/openapi.json" || path == "/docs" || path.starts_with("/docs/"));
    if !cacheable {
        return next.run(req).await;
    }
    // The document and the UI's page and settings change with a deploy:
    // revalidate every time. The UI's own files may be reused for an hour.
    let is_asset = path.starts_with("/docs/")
        && !path.ends_with('/')
        && !path.ends_with(".html")
        && !path.ends_with("swagger-initializer.js");
    let cache_control = axum::http::HeaderValue::from_static(if is_asset {
        "public, max-age=3600"
    } else {
        "no-cache"
    });
    let tags = TAGS.get_or_init(Default::default);
    let known = tags.lock().ok().and_then(|t| t.get(&path).cloned());
    if let Some(tag) = &known
        && if_none_match(req.headers(), tag)
    {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res.headers_mut().insert(header::ETAG, tag.clone());
        res.headers_mut()
            .insert(header::CACHE_CONTROL, cache_control);
        return res;
    }
    let res = next.run(req).await;
    if res.status() != StatusCode::OK {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_CACHED_BODY).await else {
        return problem_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An unexpected error occurred.",
            None,
        );
    };
    let tag = match known {
        Some(tag) => tag,
        None => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&bytes);
            // Weak: the same tag covers the gzip and br encodings.
            let text = format!("W/\"{}\"", hex_prefix(&digest));
            let Ok(tag) = axum::http::HeaderValue::from_str(&text) else {
                return Response::from_parts(parts, Body::from(bytes));
            };
            if let Ok(mut t) = tags.lock() {
                t.insert(path, tag.clone());
            }
            tag
        }
    };
    parts.headers.insert(header::ETAG, tag);
    parts.headers.insert(header::CACHE_CONTROL, cache_control);
    Response::from_parts(parts, Body::from(bytes))
}

/// The first 16 bytes of a digest as lowercase hex.
fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `If-None-Match` lists `tag` (weak comparison) or is `*`.
pub fn if_none_match(headers: &HeaderMap, tag: &axum::http::HeaderValue) -> bool {
    let Ok(tag) = tag.to_str() else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == opaque(tag))
}

/// The route template that answered, for the request log line (set by
/// `track_metrics`, which runs inside the router where it is known).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// One `info` line per request: method, route template (never the raw
/// path or query, which can hold emails), status, latency, request id.
/// Runs outside every other layer but the request id, so 408, 413 and 431
/// answers are logged too.
pub async fn log_requests(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let res = next.run(req).await;
    let route = res
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0.as_str());
    tracing::info!(
        target: "gatehouse_api::request",
        method = %method,
        route = %route,
        status = res.status().as_u16(),
        latency_ms = (start.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
        request_id = %request_id,
        "request"
    );
    res
}
