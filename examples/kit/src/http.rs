//! HTTP plumbing of an app: the common layer stack (request ids, tracing,
//! timeouts, body limit, security headers, problem+json for framework
//! errors), Prometheus metrics, health probe bodies and graceful serving.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;

use crate::error::{AppError, problem_response};

struct MetricNames {
    requests: &'static str,
    duration: &'static str,
}

static METRIC_NAMES: OnceLock<MetricNames> = OnceLock::new();
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds, shared by every histogram of an app.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Install the Prometheus recorder (once) and describe the HTTP metrics,
/// named `<prefix>_http_requests_total` and
/// `<prefix>_http_request_duration_seconds`. Every histogram is rendered
/// with [`LATENCY_BUCKETS`].
pub fn init_metrics(prefix: &'static str) -> Option<PrometheusHandle> {
    let names = METRIC_NAMES.get_or_init(|| MetricNames {
        requests: Box::leak(format!("{prefix}_http_requests_total").into_boxed_str()),
        duration: Box::leak(format!("{prefix}_http_request_duration_seconds").into_boxed_str()),
    });
    let handle = HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone();
    metrics::describe_counter!(
        names.requests,
        "HTTP requests answered, by method, route template and status."
    );
    metrics::describe_histogram!(
        names.duration,
        metrics::Unit::Seconds,
        "HTTP request latency, by method, route template and status."
    );
    handle
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_text() -> Response {
    let body = HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Count and time requests by route template (low cardinality).
pub async fn track_metrics(req: Request<Body>, next: Next) -> Response {
    let start = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let res = next.run(req).await;
    if let Some(names) = METRIC_NAMES.get() {
        let status = res.status().as_u16().to_string();
        let labels = [("method", method), ("path", path), ("status", status)];
        metrics::counter!(names.requests, &labels).increment(1);
        metrics::histogram!(names.duration, &labels).record(start.elapsed().as_secs_f64());
    }
    res
}

/// Turn any error response that is not already JSON (405 from the router,
/// 408 from the timeout layer, 413 from the body limit, a WebSocket
/// upgrade refused by axum) into problem+json.
pub async fn problem_for_framework_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
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
        StatusCode::UPGRADE_REQUIRED => (
            "upgrade_required",
            "This path only accepts WebSocket connections.",
        ),
        s if s.is_server_error() => ("internal_error", "An unexpected error occurred."),
        _ => ("bad_request", "The request could not be processed."),
    };
    let mut problem = problem_response(status, code, detail, None);
    // Keep headers such as `Allow` or `WWW-Authenticate`.
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// 404 for unknown paths.
pub async fn not_found() -> AppError {
    AppError::not_found("No route matches this path.")
}

/// 405 for a known path with another method.
pub async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This method is not allowed on this path.",
    )
}

/// The layers every app puts around its routes (state already applied).
pub fn with_common_layers(router: Router, max_body: usize, timeout: Duration) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    router
        .layer(axum::middleware::from_fn(track_metrics))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn(problem_for_framework_errors))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Body of `/health/live` and `/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Each dependency: `ok` or `down` (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub checks: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `/health/live`: the process serves HTTP.
pub fn live() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        checks: None,
    })
}

/// `/health/ready`: 200 when every check passed, else 503.
pub fn ready(checks: &[(&str, bool)]) -> (StatusCode, axum::Json<Health>) {
    let all = checks.iter().all(|(_, ok)| *ok);
    let map = checks
        .iter()
        .map(|(name, ok)| {
            let word = if *ok { "ok" } else { "down" };
            ((*name).to_owned(), serde_json::Value::from(word))
        })
        .collect();
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Health {
            status: if all { "ok" } else { "unavailable" },
            checks: Some(map),
        }),
    )
}

/// Serve until `shutdown` resolves, then finish in-flight requests.
/// WebSockets leave hyper's connection tracking once upgraded: the app
/// closes them itself.
///
/// `send_buffer` caps each connection's kernel send buffer (`SO_SNDBUF`).
/// Linux otherwise grows it up to `net.ipv4.tcp_wmem` (4 MiB), even towards
/// a client that reads nothing: a server with long-lived sockets then holds
/// megabytes per stalled client, and notices the stall only when they are
/// full.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    send_buffer: Option<usize>,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(move |tcp| {
        if let Some(bytes) = send_buffer
            && let Err(e) = socket2::SockRef::from(&*tcp).set_send_buffer_size(bytes)
        {
            tracing::warn!(error = %e, "cannot set the socket send buffer");
        }
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
