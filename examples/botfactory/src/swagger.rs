//! Swagger UI (vendored, no CDN) at `/docs`, document at `/openapi.json`.
//!
//! Its Authorize button logs in through Gatehouse's `/auth/token`, a
//! cross-origin request. Swagger UI adds `X-Requested-With` to that
//! request, which would make it need a CORS preflight that Gatehouse's CORS
//! settings do not allow; our initializer drops the header, so the login is
//! a simple form POST and Gatehouse only has to list this app's origin in
//! `CORS_ALLOWED_ORIGINS`.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa_swagger_ui::{Config, SwaggerUi};

const DOCS: &str = "/docs";
const DOCUMENT: &str = "/openapi.json";

/// Drops Swagger UI's `X-Requested-With` header from every request.
const INTERCEPTOR: &str = "SwaggerUIBundle({\n    requestInterceptor: (req) => { if (req.headers) { delete req.headers['X-Requested-With']; } return req; },";

pub fn router(doc: utoipa::openapi::OpenApi) -> Router {
    let config = Arc::new(Config::new([DOCUMENT]));
    let initializer = get(move || {
        let config = config.clone();
        async move { initializer(config) }
    });
    Router::new()
        .route(&format!("{DOCS}/swagger-initializer.js"), initializer)
        .merge(SwaggerUi::new(DOCS).url(DOCUMENT, doc))
}

fn initializer(config: Arc<Config<'static>>) -> Response {
    match utoipa_swagger_ui::serve("swagger-initializer.js", config) {
        Ok(Some(file)) => {
            let js =
                String::from_utf8_lossy(&file.bytes).replacen("SwaggerUIBundle({", INTERCEPTOR, 1);
            ([(header::CONTENT_TYPE, "text/javascript")], js).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
