//! The OpenAPI document: metadata and security schemes. Paths come from the
//! `routes!` registrations, so routes and docs cannot drift.

use utoipa::OpenApi;
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "BotFactory",
        description = "Clients create and manage their own bots. Identity comes from Gatehouse: sign up and log in there; BotFactory verifies Gatehouse's access tokens with `gatehouse-verify` (public keys, revocation feed) and holds no secret.\n\nIn Swagger UI, **Authorize** logs in through Gatehouse's `/auth/token` (OAuth2 password flow: your Gatehouse email and password).\n\nAll errors are RFC 9457 `application/problem+json` bodies with a stable `code`.",
        license(name = "MIT", identifier = "MIT")
    ),
    tags(
        (name = "bots", description = "The caller's bots."),
        (name = "clients", description = "The caller."),
        (name = "health", description = "Liveness and readiness probes."),
    ),
    components(schemas(example_kit::Problem, example_kit::FieldError))
)]
pub struct ApiDoc;

/// Add the security schemes: bearer, and OAuth2 password flow whose token
/// URL is Gatehouse's `/auth/token` as browsers reach it.
pub fn add_security(doc: &mut utoipa::openapi::OpenApi, gatehouse_public_url: &str) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("A Gatehouse access token."))
                .build(),
        ),
    );
    components.add_security_scheme(
        "oauth2",
        SecurityScheme::OAuth2(OAuth2::with_description(
            [Flow::Password(Password::new(
                format!("{gatehouse_public_url}/auth/token"),
                Scopes::new(),
            ))],
            "Log in with your Gatehouse email and password.",
        )),
    );
}
