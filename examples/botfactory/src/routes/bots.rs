//! `/bots`: a client's own bots. Every query is scoped to the caller, so a
//! bot of another client answers 404 exactly like an absent one.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use example_kit::db::DbPool;
use example_kit::extract::{ApiJson, ApiQuery, IdPath, double_option};
use example_kit::page::{Page, PageParams};
use example_kit::text::{self, Lines};
use example_kit::{AppError, AppResult, FieldError, Problem};
use gatehouse_verify::Verified;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Client;
use crate::bots::{Bot, BotChanges, NAME_UNIQUE, NewBot};
use crate::state::AppState;

pub const NAME_MAX: usize = 64;
pub const DESCRIPTION_MAX: usize = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_bot))
        .routes(routes!(list_my_bots))
        .routes(routes!(get_bot, update_bot, delete_bot))
}

/// A bot as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BotOut {
    pub id: Uuid,
    /// The Gatehouse user id of the owner (the caller).
    pub owner_id: Uuid,
    #[schema(example = "Weather bot")]
    pub name: String,
    pub description: Option<String>,
    #[serde(serialize_with = "example_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "example_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl From<Bot> for BotOut {
    fn from(b: Bot) -> Self {
        Self {
            id: b.id,
            owner_id: b.owner_id,
            name: b.name,
            description: b.description,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

/// A page of the caller's bots.
#[derive(Debug, Serialize, ToSchema)]
pub struct BotPage {
    pub items: Vec<BotOut>,
    /// The caller's bots over all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl From<Page<BotOut>> for BotPage {
    fn from(p: Page<BotOut>) -> Self {
        Self {
            items: p.items,
            total: p.total,
            limit: p.limit,
            offset: p.offset,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBot {
    /// 1 to 64 characters, unique among the caller's bots (ignoring case).
    #[schema(example = "Weather bot", min_length = 1, max_length = 64)]
    pub name: String,
    /// Up to 1,000 characters; blank means none.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBot {
    /// New name (1 to 64 characters); absent = unchanged.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64)]
    pub name: Option<Option<String>>,
    /// New description; `null` or blank clears it; absent = unchanged.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub description: Option<Option<String>>,
}

fn parse_name(value: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    text::required("name", value, 1, NAME_MAX, Lines::Single)
        .map_err(|e| errors.push(e))
        .ok()
}

fn parse_description(value: Option<&str>, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    text::optional("description", value, DESCRIPTION_MAX, Lines::Multi)
        .map_err(|e| errors.push(e))
        .ok()
}

fn name_taken(e: diesel::result::Error) -> AppError {
    if example_kit::error::is_unique_violation(&e, NAME_UNIQUE) {
        AppError::conflict("name_taken", "You already have a bot with this name.")
    } else {
        e.into()
    }
}

/// Create a bot.
///
/// Creates a bot owned by the caller. The name is 1 to 64 characters and
/// unique among the caller's bots, ignoring case (409 `name_taken`).
/// Answers 201 with the bot and its `Location`.
#[utoipa::path(post, path = "/bots", tag = "bots",
    request_body = CreateBot,
    responses(
        (status = 201, description = "Created.", body = BotOut,
            headers(("Location" = String, description = "`/bots/{id}`"))),
        (status = 400, description = "Malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked token.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`: the caller already has a bot with this name.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid, missing or unknown fields.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = [])))]
async fn create_bot(
    State(db): State<DbPool>,
    Verified(client): Verified<Client>,
    ApiJson(body): ApiJson<CreateBot>,
) -> AppResult<(StatusCode, HeaderMap, Json<BotOut>)> {
    let mut errors = Vec::new();
    let name = parse_name(&body.name, &mut errors);
    let description = parse_description(body.description.as_deref(), &mut errors);
    let (Some(name), Some(description)) = (name, description) else {
        return Err(AppError::validation(errors));
    };
    let mut conn = db.get().await?;
    let bot = NewBot {
        id: Uuid::now_v7(),
        owner_id: client.id,
        name,
        description,
    }
    .insert(&mut conn)
    .await
    .map_err(name_taken)?;
    metrics::counter!("botfactory_bots_created_total").increment(1);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/bots/{}", bot.id)) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(bot.into())))
}

/// List my bots.
///
/// The caller's bots, newest first, `limit` per page (1 to 200, default 50)
/// from `offset`, with the total count.
#[utoipa::path(get, path = "/bots/me", tag = "bots",
    params(PageParams),
    responses(
        (status = 200, description = "A page of the caller's bots.", body = BotPage),
        (status = 401, description = "Missing, invalid, expired or revoked token.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `limit` or `offset`, or an unknown parameter.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = [])))]
async fn list_my_bots(
    State(db): State<DbPool>,
    Verified(client): Verified<Client>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> AppResult<Json<BotPage>> {
    let (limit, offset) = page.bounds()?;
    let mut conn = db.get().await?;
    let (bots, total) = Bot::list_owned(&mut conn, client.id, limit, offset).await?;
    Ok(Json(
        Page {
            items: bots.into_iter().map(BotOut::from).collect(),
            total,
            limit,
            offset,
        }
        .into(),
    ))
}

fn not_found() -> AppError {
    AppError::not_found("No bot of yours has this id.")
}

/// Get one of my bots.
///
/// 404 when the bot does not exist or belongs to another client.
#[utoipa::path(get, path = "/bots/{id}", tag = "bots",
    params(("id" = Uuid, Path, description = "The bot id.")),
    responses(
        (status = 200, description = "The bot.", body = BotOut),
        (status = 401, description = "Missing, invalid, expired or revoked token.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bot of the caller has this id.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = [])))]
async fn get_bot(
    State(db): State<DbPool>,
    Verified(client): Verified<Client>,
    IdPath(id): IdPath,
) -> AppResult<Json<BotOut>> {
    let mut conn = db.get().await?;
    let bot = Bot::find_owned(&mut conn, client.id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(bot.into()))
}

/// Change one of my bots.
///
/// Partial update: absent fields stay as they are; `description: null`
/// clears the description. 404 when the bot is not the caller's, 409
/// `name_taken` when the new name clashes with another of their bots.
#[utoipa::path(patch, path = "/bots/{id}", tag = "bots",
    params(("id" = Uuid, Path, description = "The bot id.")),
    request_body = UpdateBot,
    responses(
        (status = 200, description = "The updated bot.", body = BotOut),
        (status = 400, description = "Malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked token.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bot of the caller has this id.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or unknown fields, or an id that is not a UUID.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = [])))]
async fn update_bot(
    State(db): State<DbPool>,
    Verified(client): Verified<Client>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<UpdateBot>,
) -> AppResult<Json<BotOut>> {
    let mut errors = Vec::new();
    let name = match body.name {
        None => None,
        Some(None) => {
            errors.push(FieldError::new("name", "required", "name cannot be null"));
            None
        }
        Some(Some(name)) => parse_name(&name, &mut errors),
    };
    let description = match body.description {
        None => None,
        Some(value) => parse_description(value.as_deref(), &mut errors),
    };
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let mut conn = db.get().await?;
    let bot = if name.is_none() && description.is_none() {
        Bot::find_owned(&mut conn, client.id, id).await?
    } else {
        let changes = BotChanges {
            name,
            description,
            updated_at: None,
        };
        Bot::update_owned(&mut conn, client.id, id, changes)
            .await
            .map_err(name_taken)?
    };
    Ok(Json(bot.ok_or_else(not_found)?.into()))
}

/// Delete one of my bots.
///
/// 204 on success; 404 when the bot is not the caller's.
#[utoipa::path(delete, path = "/bots/{id}", tag = "bots",
    params(("id" = Uuid, Path, description = "The bot id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Missing, invalid, expired or revoked token.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bot of the caller has this id.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = [])))]
async fn delete_bot(
    State(db): State<DbPool>,
    Verified(client): Verified<Client>,
    IdPath(id): IdPath,
) -> AppResult<StatusCode> {
    let mut conn = db.get().await?;
    if Bot::delete_owned(&mut conn, client.id, id).await? {
        metrics::counter!("botfactory_bots_deleted_total").increment(1);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
