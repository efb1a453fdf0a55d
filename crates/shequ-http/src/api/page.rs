//! Pages of a list: a page size limit, and the cursor that continues a page.

use serde::Serialize;

use crate::error::ApiError;

/// Items per page when the caller does not say.
pub const PAGE_LIMIT_DEFAULT: usize = 50;
/// The most items one page may hold.
pub const PAGE_LIMIT_MAX: usize = 500;

/// One page of a list, and the cursor that continues it (null on the last page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `items` asked for with `limit`: a full page continues after its last item.
    pub fn of(items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Self {
        let next_cursor = match items.len() == limit {
            true => items.last().map(cursor_of),
            false => None,
        };
        Page { items, next_cursor }
    }
}

/// The page size asked for, 1–[`PAGE_LIMIT_MAX`] ([`PAGE_LIMIT_DEFAULT`] when not given).
pub fn limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(PAGE_LIMIT_DEFAULT) {
        limit @ 1..=PAGE_LIMIT_MAX => Ok(limit),
        other => Err(ApiError::bad_request(format!("limit: {other} is not 1–{PAGE_LIMIT_MAX}"))),
    }
}
