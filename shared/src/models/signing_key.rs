//! Signing keys in PostgreSQL and their life cycle:
//! `next` (published, waiting) → `current` (signs) → `previous` (published
//! until its last token expired) → `retired` (unpublished, private half
//! erased). Every transition runs in one transaction under an advisory
//! lock, so replicas and workers acting at once agree on one key set.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::Page;
use crate::keys::{EDDSA, KeyError, KeyPair, KeySealer, KeyTiming, PublicJwk};
use crate::schema::signing_keys;

/// Advisory lock serialising every change of the key set.
const KEYS_LOCK_KEY: i64 = 0x6761_7465_6b65_7973; // "gatekeys"

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published, not signing yet.
    Next,
    /// Signs new access tokens.
    Current,
    /// No longer signs; published until its last token expired.
    Previous,
    /// No longer published; private half erased.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Current => "current",
            Self::Previous => "previous",
            Self::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "next" => Self::Next,
            "current" => Self::Current,
            "previous" => Self::Previous,
            "retired" => Self::Retired,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = signing_keys, primary_key(kid), check_for_backend(diesel::pg::Pg))]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: String,
    pub state: String,
    pub public_jwk: serde_json::Value,
    /// `KeySealer::seal` output; `None` once retired.
    pub private_key: Option<Vec<u8>>,
    /// Published from here (within one refresh period).
    pub created_at: DateTime<Utc>,
    /// Became current.
    pub activated_at: Option<DateTime<Utc>>,
    /// Stopped signing.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Left the JWKS.
    pub retired_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// What one rotation step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Rotation {
    /// `next` became `current`, `current` became `previous`, a new `next`
    /// was created.
    Rotated {
        activated: String,
        deactivated: Option<String>,
        created: String,
        retired: Vec<String>,
    },
    /// The next key has not been published for one JWKS cache period yet;
    /// nothing changed but the retirement of expired previous keys.
    Waiting {
        next: String,
        usable_from: DateTime<Utc>,
        retired: Vec<String>,
    },
}

impl SigningKey {
    pub fn key_state(&self) -> Option<KeyState> {
        KeyState::parse(&self.state)
    }

    pub fn jwk(&self) -> Result<PublicJwk, KeyError> {
        serde_json::from_value(self.public_jwk.clone()).map_err(|_| KeyError::MalformedPublicKey)
    }

    /// Decrypt the private half.
    pub fn open(&self, sealer: &KeySealer) -> Result<KeyPair, KeyError> {
        let sealed = self.private_key.as_deref().ok_or(KeyError::Decrypt)?;
        KeyPair::open(sealer, self.jwk()?, sealed)
    }

    /// Every key not retired (what the API loads), newest first.
    pub async fn unretired(conn: &mut AsyncPgConnection) -> QueryResult<Vec<SigningKey>> {
        signing_keys::table
            .filter(signing_keys::state.ne(KeyState::Retired.as_str()))
            .order(signing_keys::created_at.desc())
            .select(SigningKey::as_select())
            .load(conn)
            .await
    }

    /// Every key, newest first (admin list).
    pub async fn list(
        conn: &mut AsyncPgConnection,
        limit: i64,
        offset: i64,
    ) -> QueryResult<Page<SigningKey>> {
        let total = signing_keys::table.count().get_result(conn).await?;
        let items = signing_keys::table
            .order((signing_keys::created_at.desc(), signing_keys::kid.asc()))
            .limit(limit)
            .offset(offset)
            .select(SigningKey::as_select())
            .load(conn)
            .await?;
        Ok(Page { items, total })
    }

    async fn lock_set(conn: &mut AsyncPgConnection) -> QueryResult<()> {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(KEYS_LOCK_KEY)
            .execute(conn)
            .await
            .map(|_| ())
    }

    async fn create(
        conn: &mut AsyncPgConnection,
        sealer: &KeySealer,
        state: KeyState,
        now: DateTime<Utc>,
    ) -> Result<String, KeyStoreError> {
        let pair = KeyPair::generate()?;
        let row = SigningKey {
            kid: pair.kid().to_owned(),
            algorithm: EDDSA.into(),
            state: state.as_str().into(),
            public_jwk: serde_json::to_value(&pair.jwk).map_err(|_| KeyError::Encode)?,
            private_key: Some(pair.seal(sealer)?),
            created_at: now,
            activated_at: (state == KeyState::Current).then_some(now),
            deactivated_at: None,
            retired_at: None,
        };
        diesel::insert_into(signing_keys::table)
            .values(&row)
            .execute(conn)
            .await?;
        Ok(row.kid)
    }

    async fn set_state(
        conn: &mut AsyncPgConnection,
        kid: &str,
        state: KeyState,
        now: DateTime<Utc>,
    ) -> QueryResult<usize> {
        let row = signing_keys::table.find(kid);
        match state {
            KeyState::Current => {
                diesel::update(row)
                    .set((
                        signing_keys::state.eq(state.as_str()),
                        signing_keys::activated_at.eq(Some(now)),
                    ))
                    .execute(conn)
                    .await
            }
            KeyState::Previous => {
                diesel::update(row)
                    .set((
                        signing_keys::state.eq(state.as_str()),
                        signing_keys::deactivated_at.eq(Some(now)),
                    ))
                    .execute(conn)
                    .await
            }
            KeyState::Retired => {
                diesel::update(row)
                    .set((
                        signing_keys::state.eq(state.as_str()),
                        signing_keys::retired_at.eq(Some(now)),
                        signing_keys::private_key.eq(None::<Vec<u8>>),
                    ))
                    .execute(conn)
                    .await
            }
            KeyState::Next => {
                diesel::update(row)
                    .set(signing_keys::state.eq(state.as_str()))
                    .execute(conn)
                    .await
            }
        }
    }

    /// First start: with no current key, create one (signing at once: no
    /// token exists yet) and its successor. Replicas starting together
    /// queue on the lock; the first creates, the others find the keys.
    /// Also checks that `sealer` opens the current key, so a wrong
    /// `JWT_SECRET` stops the process at start. Returns the kids created.
    pub async fn ensure(
        conn: &mut AsyncPgConnection,
        sealer: &KeySealer,
    ) -> Result<Vec<String>, KeyStoreError> {
        conn.transaction::<_, KeyStoreError, _>(async |conn| {
            Self::lock_set(conn).await?;
            let keys = Self::unretired(conn).await?;
            let now = Utc::now();
            let mut created = Vec::new();
            let current = keys
                .iter()
                .find(|k| k.key_state() == Some(KeyState::Current));
            match current {
                Some(key) => {
                    key.open(sealer)?;
                }
                None => created.push(Self::create(conn, sealer, KeyState::Current, now).await?),
            }
            if !keys.iter().any(|k| k.key_state() == Some(KeyState::Next)) {
                created.push(Self::create(conn, sealer, KeyState::Next, now).await?);
            }
            Ok(created)
        })
        .await
    }

    /// One rotation step, at `now`: retire previous keys whose last token
    /// has expired; then, if the next key has been published for one JWKS
    /// cache period, make it current, the current one previous, and create
    /// a new next key. Otherwise report when it will be usable.
    pub async fn rotate(
        conn: &mut AsyncPgConnection,
        sealer: &KeySealer,
        timing: &KeyTiming,
        now: DateTime<Utc>,
    ) -> Result<Rotation, KeyStoreError> {
        conn.transaction::<_, KeyStoreError, _>(async |conn| {
            Self::lock_set(conn).await?;
            let keys = Self::unretired(conn).await?;
            let mut retired = Vec::new();
            for key in &keys {
                let expired = key.key_state() == Some(KeyState::Previous)
                    && key
                        .deactivated_at
                        .is_none_or(|at| timing.retire_after(at) <= now);
                if expired {
                    Self::set_state(conn, &key.kid, KeyState::Retired, now).await?;
                    retired.push(key.kid.clone());
                }
            }
            let find = |state| keys.iter().find(|k| k.key_state() == Some(state));
            let next = match find(KeyState::Next) {
                Some(next) => next,
                None => {
                    // No successor (a first rotation or repaired data):
                    // create one now; it signs after one cache period.
                    let next = Self::create(conn, sealer, KeyState::Next, now).await?;
                    return Ok(Rotation::Waiting {
                        next,
                        usable_from: timing.usable_from(now),
                        retired,
                    });
                }
            };
            let usable_from = timing.usable_from(next.created_at);
            if now < usable_from {
                return Ok(Rotation::Waiting {
                    next: next.kid.clone(),
                    usable_from,
                    retired,
                });
            }
            // Order matters: each partial unique index allows one row.
            let deactivated = match find(KeyState::Current) {
                Some(current) => {
                    Self::set_state(conn, &current.kid, KeyState::Previous, now).await?;
                    Some(current.kid.clone())
                }
                None => None,
            };
            Self::set_state(conn, &next.kid, KeyState::Current, now).await?;
            let created = Self::create(conn, sealer, KeyState::Next, now).await?;
            Ok(Rotation::Rotated {
                activated: next.kid.clone(),
                deactivated,
                created,
                retired,
            })
        })
        .await
    }
}
