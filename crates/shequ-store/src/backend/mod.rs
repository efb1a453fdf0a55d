//! The two databases behind the log. Everything that differs between SQLite and PostgreSQL
//! (SQL dialect, column types, connection settings) lives in `sqlite.rs` and `postgres.rs`;
//! the statements that are the same on both are run here, once, through `with_pool!`;
//! everything that must not differ (which append wins, positions, the chain) is decided once,
//! in `crate::plan`.

/// A SELECT of whole events, completed at compile time: no SQL is built from runtime strings.
macro_rules! select_event {
    ($rest:literal) => {
        concat!(
            "SELECT position, stream, revision, event_id, event_type, event_version, ",
            "data, metadata, recorded_at, hash FROM events ",
            $rest
        )
    };
}

/// `$body` run with `$pool` bound to the sqlx pool of whichever database the log is in, and
/// `$database` naming its module (`sqlite` or `postgres`): for what is the same on both but
/// for a few dialect steps. Statements in the body use numbered `$n` parameters, which
/// SQLite takes too. The body is compiled once for each database; rows decode with
/// `values::SqlxRow`.
macro_rules! with_pool {
    ($backend:expr, $pool:ident => $body:expr) => {
        with_pool!($backend, $pool, _database => $body)
    };
    ($backend:expr, $pool:ident, $database:ident => $body:expr) => {
        match $backend {
            Backend::Sqlite($pool, _) => {
                #[allow(unused_imports)]
                use crate::backend::sqlite as $database;
                $body
            }
            Backend::Postgres($pool) => {
                #[allow(unused_imports)]
                use crate::backend::postgres as $database;
                $body
            }
        }
    };
}

mod postgres;
mod sqlite;
mod sqlite_bulk;
mod values;

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::error::StoreError;
use crate::import_lookup::{check_batch, ImportLookup};
use crate::page::{CheckedPage, PageCheck};
use crate::plan::{plan_batch, AppendRequest, Head, Planned, WriterCache};
use crate::record::RecordedEvent;
use values::{to_i64, to_u64, SqlxRow};

/// Which database a log lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            BackendKind::Sqlite => "SQLite",
            BackendKind::Postgres => "PostgreSQL",
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// sqlx's pool for everything, and rusqlite's readers for bulk reads (`sqlite_bulk`).
    Sqlite(sqlx::SqlitePool, sqlite_bulk::Readers),
    Postgres(sqlx::PgPool),
}

impl Backend {
    /// Connects to `url` (`sqlite://PATH`, created if missing, or `postgres://…`). Migrations
    /// are not run here; see [`Backend::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        match scheme {
            "sqlite" if is_in_memory(url) => Err(StoreError::InMemory),
            "sqlite" => {
                let pool = sqlite::connect(url).await?;
                let readers = sqlite_bulk::Readers::new(pool.connect_options().get_filename());
                Ok(Backend::Sqlite(pool, readers))
            }
            "postgres" | "postgresql" => Ok(Backend::Postgres(postgres::connect(url).await?)),
            // Only the scheme is echoed: the rest of a URL may hold a password.
            _ => Err(StoreError::UnsupportedUrl(scheme.to_owned())),
        }
    }

    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::Sqlite(..) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(pool, _) => sqlite::migrate(pool).await?,
            Backend::Postgres(pool) => sqlx::migrate!("../../migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Commits one batch of appends in one transaction. Either the whole batch is durable or
    /// none of it is.
    ///
    /// The fast path plans from the writer's memory and writes rows and head in one go, on
    /// condition that the head is still the one this writer left; the slow path locks the
    /// head, looks up what the batch touches, plans and writes. Both plan with `plan_batch`.
    pub async fn commit_batch(
        &self,
        requests: &[AppendRequest],
        recorded_at: DateTime<Utc>,
        cache: &mut WriterCache,
    ) -> Result<Planned, StoreError> {
        if let Some(planned) = cache.plan(requests, recorded_at) {
            let written = with_pool!(self, pool, database => database::write_planned(pool, &planned).await?);
            if written {
                cache.remember(&planned, false);
                return Ok(planned);
            }
        }
        let planned = self.lock_and_commit(requests, recorded_at).await?;
        cache.remember(&planned, cache.head() != Some(planned.base));
        Ok(planned)
    }

    async fn lock_and_commit(
        &self,
        requests: &[AppendRequest],
        recorded_at: DateTime<Utc>,
    ) -> Result<Planned, StoreError> {
        let streams: BTreeSet<&str> = requests.iter().map(|request| request.stream.as_str()).collect();
        // Each append's own ids (is it a retry?) and the event it builds on (is it there?).
        let event_ids: Vec<Uuid> = requests
            .iter()
            .flat_map(|request| request.events.iter().map(|event| event.event_id).chain(request.after))
            .collect();
        with_pool!(self, pool, database => {
            let mut transaction = pool.begin().await?;
            let (head, stream_revisions, existing) =
                database::lock_head_and_look_up(&mut transaction, &streams, &event_ids).await?;
            let planned = plan_batch(head, stream_revisions, existing, requests, recorded_at);
            let written = database::write_rows(&mut transaction, &planned).await?;
            assert!(written, "the head cannot move while this transaction holds its lock");
            transaction.commit().await?;
            Ok(planned)
        })
    }

    /// One stream's events with `revision >= from_revision`, in revision order.
    pub async fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let query = select_event!("WHERE stream = $1 AND revision >= $2 ORDER BY revision");
        with_pool!(self, pool => {
            let rows = sqlx::query(query).bind(stream).bind(to_i64(from_revision)).fetch_all(pool).await?;
            rows.iter().map(SqlxRow::read_event).collect()
        })
    }

    /// At most `limit` of one stream's events after `after_position`, in revision order.
    pub async fn read_stream_after(
        &self,
        stream: &str,
        after_position: u64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let query = select_event!("WHERE stream = $1 AND position > $2 ORDER BY revision LIMIT $3");
        with_pool!(self, pool => {
            let query = sqlx::query(query).bind(stream).bind(to_i64(after_position)).bind(i64::from(limit));
            query.fetch_all(pool).await?.iter().map(SqlxRow::read_event).collect()
        })
    }

    /// The last (stream, revision) of the page of `page_events` events with `position <= up_to`
    /// that follows `after` in the streams of `range`, in (stream, revision) order; none if
    /// fewer are left. `after` is never before `range.from`.
    pub async fn category_page_end(
        &self,
        range: &StreamRange,
        after: (&str, i64),
        up_to: u64,
        page_events: u32,
    ) -> Result<Option<(String, i64)>, StoreError> {
        // From the (stream, revision) index alone. The row value alone is the lower bound, so
        // the search starts there; `stream >= $1` besides would start it at the category's
        // first stream (on SQLite).
        let query = "SELECT stream, revision FROM events WHERE (stream, revision) > ($1, $2) \
                     AND stream < $3 AND position <= $4 ORDER BY stream, revision LIMIT 1 OFFSET $5";
        with_pool!(self, pool => {
            let end = sqlx::query(query)
                .bind(after.0)
                .bind(after.1)
                .bind(&range.to)
                .bind(to_i64(up_to))
                .bind(i64::from(page_events) - 1)
                .fetch_optional(pool)
                .await?;
            end.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
        })
    }

    /// The events after `after` up to and including `until`, in (stream, revision) order,
    /// with `position <= up_to`: at most `limit`, which the caller knows the range holds.
    pub async fn read_category_range(
        &self,
        after: (&str, i64),
        until: (&str, i64),
        up_to: u64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Backend::Sqlite(_, readers) => {
                sqlite_bulk::read_category_range(readers, after, until, up_to, limit).await
            }
            Backend::Postgres(pool) => postgres::read_category_range(pool, after, until, up_to, limit).await,
        }
    }

    /// The first position recorded after `time`, if any.
    pub async fn first_recorded_after(&self, time: DateTime<Utc>) -> Result<Option<u64>, StoreError> {
        // On SQLite `recorded_at` is sqlx's RFC 3339 text in UTC (0, 3, 6 or 9 fraction
        // digits, `+00:00`), whose byte order is time order; the bound time is written the
        // same way.
        let query = "SELECT min(position) FROM events WHERE recorded_at > $1";
        let position: Option<i64> =
            with_pool!(self, pool => sqlx::query_scalar(query).bind(time).fetch_one(pool).await?);
        position.map(|position| to_u64(position, position, "position")).transpose()
    }

    /// Events with `position >= from_position`, in position order, at most `limit`.
    pub async fn read_page(&self, from_position: u64, limit: u32) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Backend::Sqlite(_, readers) => sqlite_bulk::read_page(readers, from_position, limit).await,
            Backend::Postgres(pool) => postgres::read_page(pool, from_position, limit).await,
        }
    }

    /// [`Backend::read_page`] as `verify` checks it: each row is hashed as the driver holds
    /// it, and no event is built.
    pub async fn check_page(
        &self,
        from_position: u64,
        limit: u32,
        check: PageCheck,
    ) -> Result<CheckedPage, StoreError> {
        match self {
            Backend::Sqlite(_, readers) => {
                sqlite_bulk::check_page(readers, from_position, limit, check).await
            }
            Backend::Postgres(pool) => postgres::check_page(pool, from_position, limit, check).await,
        }
    }

    /// Imports one batch of exported events as they are, in one transaction: locks the head,
    /// looks up what the batch touches, has `import_lookup::check_batch` decide, inserts the
    /// rows as they are (each with its own `recorded_at`) and moves the head. `base` is the
    /// head the batch follows; returns the new head.
    pub async fn import_batch(&self, base: Head, rows: &[RecordedEvent]) -> Result<Head, StoreError> {
        let streams: BTreeSet<&str> = rows.iter().map(|row| row.stream.as_str()).collect();
        let event_ids: Vec<Uuid> = rows.iter().map(|row| row.event_id).collect();
        with_pool!(self, pool, database => {
            let mut transaction = pool.begin().await?;
            let (head, stream_revisions, existing) =
                database::lock_head_and_look_up(&mut transaction, &streams, &event_ids).await?;
            let any_events = match base.position {
                0 => {
                    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM events)")
                        .fetch_one(&mut *transaction)
                        .await?
                }
                _ => false,
            };
            let existing_event_ids = existing.into_keys().collect();
            let found = ImportLookup { head, any_events, stream_revisions, existing_event_ids };
            let next = check_batch(found, base, rows)?;
            database::insert_rows(&mut transaction, rows).await?;
            sqlx::query("UPDATE log_head SET position = $1, hash = $2 WHERE id = 1")
                .bind(to_i64(next.position))
                .bind(next.hash.as_slice())
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok(next)
        })
    }

    pub async fn head(&self) -> Result<Head, StoreError> {
        let query = "SELECT position, hash FROM log_head WHERE id = 1";
        with_pool!(self, pool => sqlx::query(query).fetch_one(pool).await?.read_head())
    }

    pub async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let query = "SELECT position FROM subscription_checkpoints WHERE name = $1";
        let position: Option<i64> =
            with_pool!(self, pool => sqlx::query_scalar(query).bind(name).fetch_optional(pool).await?);
        position.map(|position| to_u64(position, position, "checkpoint")).transpose()
    }

    pub async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let query = "INSERT INTO subscription_checkpoints (name, position, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                     updated_at = excluded.updated_at";
        let now = Utc::now();
        with_pool!(self, pool => {
            sqlx::query(query).bind(name).bind(to_i64(position)).bind(now).execute(pool).await?;
        });
        Ok(())
    }

    /// One round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Backend::Sqlite(pool, readers) => {
                readers.close();
                pool.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// Whether a `sqlite:` URL names an in-memory database (`sqlite::memory:`, `sqlite://:memory:`,
/// `mode=memory`), as sqlx reads it.
fn is_in_memory(url: &str) -> bool {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory")
}

/// The stream names of one category, `category-…`, as a range of names in byte order: from
/// `category-` up to, not including, `category.` (`.` is the byte after `-`).
#[derive(Debug, Clone)]
pub(crate) struct StreamRange {
    pub from: String,
    pub to: String,
}

impl StreamRange {
    pub fn category(category: &shequ_domain::Category) -> Self {
        Self { from: format!("{}-", category.as_str()), to: format!("{}.", category.as_str()) }
    }
}
