use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::values::{corrupt, is_unique_violation, to_hash, to_i64, to_u64, SqlxRow};
use crate::error::StoreError;
use crate::plan::{Existing, Head, Planned};
use crate::record::RecordedEvent;

/// The number of rows one multi-row INSERT carries on SQLite, whose statements take at most
/// 32,766 bound values (10 per row here).
const ROWS_PER_INSERT_MAX: usize = 1_000;
/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT_MS: u64 = 10_000;
const CONNECTIONS_MAX: u32 = 8;
/// How many rows sqlx's SQLite thread may hand over before the reader takes them (sqlx's
/// default is 50). With 50 the thread stops and is woken again every few dozen rows of a
/// 5,000-row page; a page is collected whole anyway, so a longer queue costs no memory that
/// the page does not (BENCHMARKS.md, issue 5).
const ROW_BUFFER_ROWS: usize = 2_000;

async fn connect_once(url: &str) -> Result<SqlitePool, StoreError> {
    // WAL with synchronous=FULL: an append is acknowledged only after its commit is on disk.
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .foreign_keys(true)
        .row_buffer_size(ROW_BUFFER_ROWS);
    let pool = SqlitePoolOptions::new().max_connections(CONNECTIONS_MAX).connect_with(options).await?;
    Ok(pool)
}

/// How often opening or migrating a file is tried while another process holds it.
const OPEN_ATTEMPTS: u32 = 20;
const OPEN_RETRY_MS: u64 = 50;

/// Opens the file, retrying while another process is creating it at the same moment.
pub(super) async fn connect(url: &str) -> Result<SqlitePool, StoreError> {
    retry_while_busy(|| connect_once(url)).await
}

/// Brings the schema up to date. sqlx locks PostgreSQL migrations but not SQLite ones, so
/// two processes opening a new file at once can both try migration 1; each migration is one
/// transaction, so the loser wrote nothing and simply looks again.
pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let migrator = sqlx::migrate!("../../migrations/sqlite");
    retry_while_busy(|| async { migrator.run(pool).await.map_err(StoreError::from) }).await
}

async fn retry_while_busy<T, F, Fut>(mut operation: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(error) if attempt < OPEN_ATTEMPTS && is_contention(&error) => {
                tracing::debug!(%error, attempt, "another process is opening the database; trying again");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(OPEN_RETRY_MS)).await;
            }
            result => return result,
        }
    }
}

/// A lock held by another process (SQLITE_BUSY, SQLITE_LOCKED), or a migration that another
/// process applied first.
fn is_contention(error: &StoreError) -> bool {
    use sqlx::migrate::MigrateError;
    let database_error = match error {
        StoreError::Database(error) => Some(error.as_ref()),
        StoreError::Migrate(error) => match error.as_ref() {
            MigrateError::ExecuteMigration(..) => return true,
            MigrateError::Execute(error) => Some(error),
            _ => None,
        },
        _ => None,
    };
    let code = database_error.and_then(|error| error.as_database_error()).and_then(|error| error.code());
    matches!(code.as_deref(), Some("5" | "6" | "261" | "517"))
}

/// Takes the write lock and looks up the batch's streams (their last revisions) and event ids
/// (those already in the log). A write first: it takes SQLite's write lock before anything
/// is read, so no other process can commit between our reads and our insert (the same role
/// as PostgreSQL's row lock on the head).
pub(super) async fn lock_head_and_look_up(
    connection: &mut SqliteConnection,
    streams: &BTreeSet<&str>,
    event_ids: &[Uuid],
) -> Result<(Head, HashMap<String, u64>, HashMap<Uuid, Existing>), StoreError> {
    let head_row =
        sqlx::query("UPDATE log_head SET position = position WHERE id = 1 RETURNING position, hash")
            .fetch_one(&mut *connection)
            .await?;
    let head = head_row.read_head()?;
    let stream_revisions = last_revisions(&mut *connection, streams).await?;
    let existing = existing_events(&mut *connection, event_ids).await?;
    Ok((head, stream_revisions, existing))
}

/// The fast path: writes a batch planned from the writer's memory, if the head is still the
/// one it was planned on and no revision or event id it takes is taken. `false`: nothing
/// was written, and the slow path must decide.
pub(super) async fn write_planned(pool: &SqlitePool, planned: &Planned) -> Result<bool, StoreError> {
    let mut transaction = pool.begin().await?;
    let written = match write_rows(&mut transaction, planned).await {
        Err(StoreError::Database(error)) if is_unique_violation(&error) => false,
        other => other?,
    };
    if written {
        transaction.commit().await?;
    }
    Ok(written)
}

/// Moves the head from `planned.base` to `planned.head` and inserts the rows, in the caller's
/// transaction. `false` when the head was not at `planned.base`.
pub(super) async fn write_rows(
    connection: &mut SqliteConnection,
    planned: &Planned,
) -> Result<bool, StoreError> {
    if planned.rows.is_empty() {
        return Ok(true);
    }
    let moved =
        sqlx::query("UPDATE log_head SET position = ?, hash = ? WHERE id = 1 AND position = ? AND hash = ?")
            .bind(to_i64(planned.head.position))
            .bind(planned.head.hash.as_slice())
            .bind(to_i64(planned.base.position))
            .bind(planned.base.hash.as_slice())
            .execute(&mut *connection)
            .await?
            .rows_affected();
    if moved == 0 {
        return Ok(false);
    }
    insert_rows(connection, &planned.rows).await?;
    Ok(true)
}

/// Each stream's last revision in one statement; the correlated MAX over the (stream,
/// revision) index is a single probe per stream, where MAX(..) with IN and GROUP BY would
/// read every revision of those streams. Streams without events are absent.
async fn last_revisions(
    connection: &mut SqliteConnection,
    streams: &BTreeSet<&str>,
) -> Result<HashMap<String, u64>, StoreError> {
    let mut stream_revisions = HashMap::new();
    if streams.is_empty() {
        return Ok(stream_revisions);
    }
    let mut revisions_query: QueryBuilder<Sqlite> = QueryBuilder::new("WITH touched(stream) AS (");
    revisions_query.push_values(streams, |mut values, stream| {
        values.push_bind(*stream);
    });
    revisions_query.push(
        ") SELECT touched.stream AS stream, \
         (SELECT MAX(revision) FROM events WHERE events.stream = touched.stream) AS revision FROM touched",
    );
    for row in revisions_query.build().fetch_all(&mut *connection).await? {
        let revision: Option<i64> = row.try_get("revision")?;
        if let Some(revision) = revision {
            stream_revisions.insert(row.try_get("stream")?, to_u64(revision, 0, "revision")?);
        }
    }
    Ok(stream_revisions)
}

/// The events of `event_ids` already in the log, and where.
async fn existing_events(
    connection: &mut SqliteConnection,
    event_ids: &[Uuid],
) -> Result<HashMap<Uuid, Existing>, StoreError> {
    let mut existing = HashMap::new();
    for chunk in event_ids.chunks(ROWS_PER_INSERT_MAX) {
        let mut ids_query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT event_id, stream, position, revision, recorded_at FROM events WHERE event_id IN (",
        );
        let mut separated = ids_query.separated(", ");
        for event_id in chunk {
            separated.push_bind(event_id.hyphenated().to_string());
        }
        ids_query.push(")");
        for row in ids_query.build().fetch_all(&mut *connection).await? {
            let position: i64 = row.try_get("position")?;
            let event_id: String = row.try_get("event_id")?;
            let event_id =
                Uuid::parse_str(&event_id).map_err(|error| corrupt(position, error.to_string()))?;
            let found = Existing {
                stream: row.try_get("stream")?,
                position: to_u64(position, position, "position")?,
                revision: to_u64(row.try_get("revision")?, position, "revision")?,
                recorded_at: row.try_get("recorded_at")?,
            };
            existing.insert(event_id, found);
        }
    }
    Ok(existing)
}

/// Inserts whole rows as they are, each with its own `recorded_at`, in bound multi-row INSERTs.
pub(super) async fn insert_rows(
    connection: &mut SqliteConnection,
    rows: &[RecordedEvent],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT_MAX) {
        let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (position, stream, revision, event_id, event_type, event_version, \
             data, metadata, recorded_at, hash) ",
        );
        insert.push_values(chunk, |mut values, row| {
            values
                .push_bind(to_i64(row.position))
                .push_bind(&row.stream)
                .push_bind(to_i64(row.revision))
                .push_bind(row.event_id.hyphenated().to_string())
                .push_bind(&row.event_type)
                .push_bind(i64::from(row.event_version))
                .push_bind(&row.data)
                .push_bind(&row.metadata)
                .push_bind(row.recorded_at)
                .push_bind(row.hash.as_slice());
        });
        insert.build().execute(&mut *connection).await?;
    }
    Ok(())
}

impl SqlxRow for SqliteRow {
    /// Borrows what is copied anyway (the id's text, the hash) rather than allocating it.
    fn read_event(&self) -> Result<RecordedEvent, StoreError> {
        let position: i64 = self.try_get(0)?;
        let event_id: &str = self.try_get(3)?;
        let event_version: i64 = self.try_get(5)?;
        let hash: &[u8] = self.try_get(9)?;
        Ok(RecordedEvent {
            position: to_u64(position, position, "position")?,
            stream: self.try_get(1)?,
            revision: to_u64(self.try_get(2)?, position, "revision")?,
            event_id: Uuid::parse_str(event_id)
                .map_err(|error| corrupt(position, format!("event_id: {error}")))?,
            event_type: self.try_get(4)?,
            event_version: u32::try_from(event_version)
                .map_err(|_| corrupt(position, format!("event_version {event_version}")))?,
            data: self.try_get(6)?,
            metadata: self.try_get(7)?,
            recorded_at: self.try_get(8)?,
            hash: to_hash(hash, position)?,
        })
    }

    fn read_head(&self) -> Result<Head, StoreError> {
        let position: i64 = self.try_get("position")?;
        let hash: Vec<u8> = self.try_get("hash")?;
        Ok(Head { position: to_u64(position, position, "head position")?, hash: to_hash(&hash, position)? })
    }
}
