//! Pagination behind every list: `limit` and `offset` parsed and checked
//! once ([`PageParams`]), split from the list's own filters ([`Paged`]),
//! and answered as a page type made by [`page_of!`](crate::page_of).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use gatehouse_shared::models::PageRequest;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::extract::parse_query;
use crate::error::{ApiError, FieldError, FieldErrors};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// `limit` and `offset` of every list.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    #[param(minimum = 0, default = 0)]
    pub offset: Option<i64>,
}

impl PageParams {
    /// Check `limit` (1..=200, default 50) and `offset` (>= 0, default 0),
    /// adding a field error for each bad value, so a list reports them
    /// together with its own filters' errors.
    pub fn check(self, errors: &mut FieldErrors) -> PageRequest {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        let offset = self.offset.unwrap_or(0);
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.push(FieldError::new(
                "limit",
                "out_of_range",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        if offset < 0 {
            errors.push(FieldError::new(
                "offset",
                "out_of_range",
                "offset must be 0 or more",
            ));
        }
        PageRequest { limit, offset }
    }

    /// The checked page, or 422 naming each bad value.
    pub fn validate(self) -> Result<PageRequest, ApiError> {
        let mut errors = FieldErrors::default();
        let page = self.check(&mut errors);
        errors.finish(|| Some(page))
    }
}

/// A list's query string: `limit`/`offset`, and the list's own filters `F`
/// (every other parameter; unknown ones are 422 if `F` denies them).
pub struct Paged<F> {
    pub page: PageParams,
    pub filter: F,
}

impl<F: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Paged<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let (paging, rest): (Vec<_>, Vec<_>) = form_urlencoded::parse(query.as_bytes())
            .partition(|(name, _)| name == "limit" || name == "offset");
        let encode = |pairs: Vec<_>| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        };
        Ok(Self {
            page: parse_query(&encode(paging))?,
            filter: parse_query(&encode(rest))?,
        })
    }
}

/// A concrete page type: `page_of!(UserPage, UserOut, "A page of users.")`.
/// One named type per list, not a generic `PageOut<T>`: utoipa inlines a
/// generic's argument, which gives clients duplicate models (a
/// `PageOutUserOutItemsItem` beside `UserOut`); this one `$ref`s its items.
#[macro_export]
macro_rules! page_of {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            /// Items matching the filters, over all pages.
            pub total: i64,
            /// The page size applied.
            pub limit: i64,
            /// Items skipped before this page.
            pub offset: i64,
        }

        impl $name {
            /// Convert a model page into its wire form.
            pub fn new<M>(
                page: gatehouse_shared::models::Page<M>,
                request: gatehouse_shared::models::PageRequest,
            ) -> Self
            where
                $item: From<M>,
            {
                Self {
                    items: page.items.into_iter().map(<$item>::from).collect(),
                    total: page.total,
                    limit: request.limit,
                    offset: request.offset,
                }
            }
        }
    };
}
