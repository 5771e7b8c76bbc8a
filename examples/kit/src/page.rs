//! Offset pagination exactly like Gatehouse's lists: `limit` (1..=200,
//! default 50) and `offset` (>= 0, default 0); answers
//! `{items, total, limit, offset}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, FieldError};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// `limit` and `offset` of a list.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    #[param(minimum = 0, default = 0)]
    pub offset: Option<i64>,
}

impl PageParams {
    /// Validated `(limit, offset)`; every bad value is named in one 422.
    pub fn bounds(self) -> Result<(i64, i64), AppError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        let offset = self.offset.unwrap_or(0);
        let mut errors = Vec::new();
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
        if errors.is_empty() {
            Ok((limit, offset))
        } else {
            Err(AppError::validation(errors))
        }
    }
}

/// A page of items with the total count.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Items over all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_default_and_refuse_out_of_range() {
        assert_eq!(PageParams::default().bounds().ok(), Some((50, 0)));
        let e = PageParams {
            limit: Some(201),
            offset: Some(-1),
        }
        .bounds()
        .expect_err("out of range");
        let fields: Vec<_> = e
            .errors
            .expect("errors")
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["limit", "offset"]);
    }
}
