//! Pagination shared by every list: a total count and one page of rows.

use diesel::QueryResult;
use diesel::dsl::{Limit, Offset};
use diesel::query_dsl::methods::{LimitDsl, OffsetDsl};
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;

/// Which page: validated `limit` and `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub offset: i64,
}

/// A page of results with the total count, as every list endpoint returns.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// Run `count` (the filtered query's `count()`) and one page of `items`
/// (the same filters, ordered). Two statements: a window count would make
/// PostgreSQL read every matching row before the limit.
///
/// Boxed: the future is then checked `Send` once, here, instead of at
/// every handler (where rustc fails to prove it through these bounds).
pub fn paginate<'c, C, Q, T>(
    conn: &'c mut AsyncPgConnection,
    count: C,
    items: Q,
    page: PageRequest,
) -> BoxFuture<'c, QueryResult<Page<T>>>
where
    C: LoadQuery<'static, AsyncPgConnection, i64> + Send + 'static,
    Q: LimitDsl,
    Limit<Q>: OffsetDsl,
    Offset<Limit<Q>>: LoadQuery<'static, AsyncPgConnection, T> + Send + 'static,
    T: Send + 'static,
{
    let items = items.limit(page.limit).offset(page.offset);
    Box::pin(async move {
        let total = count.get_result(conn).await?;
        let items = items.load(conn).await?;
        Ok(Page { items, total })
    })
}
