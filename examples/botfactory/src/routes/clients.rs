//! `/clients/me`: the caller, as Gatehouse's token names them.

use axum::Json;
use axum::extract::State;
use example_kit::db::DbPool;
use example_kit::{AppResult, Problem};
use gatehouse_verify::Verified;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Client;
use crate::bots::Bot;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me))
}

/// The caller. Gatehouse owns the account (email, names): read those from
/// Gatehouse's `GET /me` with the same token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientOut {
    /// The Gatehouse user id.
    pub id: Uuid,
    /// `user` or `admin`, as of the token.
    pub role: String,
    /// The Gatehouse session the token belongs to.
    pub session_id: Uuid,
    /// How many bots the caller owns.
    pub bot_count: i64,
    /// When the caller's access token expires (RFC 3339).
    #[schema(format = DateTime)]
    pub token_expires_at: String,
}

/// Who am I.
///
/// The caller from the verified token, with their bot count.
#[utoipa::path(get, path = "/clients/me", tag = "clients",
    responses(
        (status = 200, description = "The caller.", body = ClientOut),
        (status = 401, description = "Missing, invalid, expired or revoked token.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = [])))]
async fn get_me(
    State(db): State<DbPool>,
    Verified(client): Verified<Client>,
) -> AppResult<Json<ClientOut>> {
    let mut conn = db.get().await?;
    let bot_count = Bot::count_owned(&mut conn, client.id).await?;
    Ok(Json(ClientOut {
        id: client.id,
        role: client.role,
        session_id: client.session_id,
        bot_count,
        token_expires_at: example_kit::time::from_epoch(client.expires_at),
    }))
}
