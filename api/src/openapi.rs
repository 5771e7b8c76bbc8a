//! The OpenAPI 3.1 document: metadata and security schemes. Paths come from
//! the `routes!` registrations, so the routes and the docs cannot drift.

use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme,
};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        description = "User management and authentication: signup, email verification, JWT access and refresh tokens with rotation, roles and administration.\n\nAll errors are RFC 9457 `application/problem+json` bodies with a stable `code`.",
        license(name = "MIT")
    ),
    modifiers(&SecurityAddon),
    // Referenced by the response sets of `crate::http::responses`.
    components(schemas(Problem, FieldError)),
    tags(
        (name = "auth", description = "Signup, login, tokens, logout and email verification."),
        (name = "me", description = "The caller's own account."),
        (name = "users", description = "User administration (admins; users may edit their own names)."),
        (name = "admin", description = "Jobs and the audit log (admins)."),
        (name = "health", description = "Liveness and readiness probes."),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
                "/auth/token",
                Scopes::new(),
            ))])),
        );
    }
}
