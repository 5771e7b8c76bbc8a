//! The OpenAPI 3.1 document: metadata and security schemes. Paths come from
//! the `routes!` registrations, so the routes and the docs cannot drift.

use utoipa::openapi::security::{Flow, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        description = "User management and authentication: signup, email verification, JWT access and refresh tokens with rotation, roles and administration.\n\nAll errors are RFC 9457 `application/problem+json` bodies with a stable `code`.",
        license(name = "MIT", identifier = "MIT")
    ),
    // Relative: the document is served by the API it describes, so tools
    // resolve it against wherever they fetched it (any PUBLIC_URL).
    servers((url = "/", description = "This Gatehouse instance")),
    modifiers(&SecurityAddon),
    // Referenced by the response sets of `crate::http::responses`.
    components(schemas(Problem, FieldError)),
    tags(
        (name = "auth", description = "Signup, login, tokens, logout and email verification."),
        (name = "me", description = "The caller's own account."),
        (name = "users", description = "User administration (admins; users may edit their own names)."),
        (name = "admin", description = "Jobs, signing keys and the audit log (admins)."),
        (name = "discovery", description = "What other services read to trust Gatehouse tokens without a secret: the public keys (JWKS), the discovery document and the revocation feed."),
        (name = "health", description = "Liveness and readiness probes."),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // One scheme: OAuth2's password flow is what Swagger UI's Authorize
        // dialog needs (email + password, no pasting), and its tokens are
        // sent as `Authorization: Bearer`, which every client also accepts
        // for a token obtained elsewhere.
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::Password(Password::new("/auth/token", Scopes::new()))],
                "Log in with the account's email as `username`; the access token is then sent as `Authorization: Bearer <token>`.",
            )),
        );
    }
}
