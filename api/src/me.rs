//! The caller's own account (`/me`): read it, change names and password.

use diesel_async::AsyncConnection;
use gatehouse_shared::domain::{Password, PersonName};
use gatehouse_shared::models::{Session, User, UserChanges};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::ratelimit::Client;
use crate::state::AppState;

pub struct ProfileChanges {
    pub first_name: Option<Option<PersonName>>,
    pub last_name: Option<Option<PersonName>>,
    pub new_password: Option<(Password, String)>,
}

/// Update the caller's own profile. A password change needs the current
/// password and ends every other session.
pub async fn update_profile(
    state: &AppState,
    user: &User,
    session_id: Uuid,
    changes: ProfileChanges,
    client: &Client,
) -> ApiResult<User> {
    let mut update = UserChanges {
        first_name: changes.first_name.map(|n| n.map(PersonName::into_inner)),
        last_name: changes.last_name.map(|n| n.map(PersonName::into_inner)),
        ..Default::default()
    };
    let changing_password = changes.new_password.is_some();
    if let Some((new_password, current)) = changes.new_password {
        // Counts against the login budget and soft-lock (issue 11, item 6).
        crate::sessions::check_current_password(state, user, current, client).await?;
        update.password_hash = Some(
            state
                .hasher
                .hash(&new_password)
                .await
                .map_err(ApiError::internal)?,
        );
    }
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let updated = User::update(conn, user.id, update)
            .await?
            .ok_or_else(ApiError::invalid_token)?;
        if changing_password {
            // Other sessions end; the caller's own, which just proved the
            // password, keeps its tokens.
            Session::end_all_for_user(conn, user.id, Some(session_id), "password_changed").await?;
        }
        Ok(updated)
    })
    .await
}
