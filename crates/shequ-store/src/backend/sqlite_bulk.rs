//! Bulk reads of a SQLite log (pages in position order, ranges of a category) on rusqlite,
//! beside sqlx, which does everything else on SQLite (docs/adr/0013-…).
//!
//! sqlx's SQLite driver steps each statement on its own worker thread and hands every row,
//! with a copy of each of its values, across a channel to the async task that reads it. When
//! the reader keeps up, the channel is empty after every row, so each row costs a wake-up of
//! the reader and of its thread: on a replay or a verify that was more than half of the
//! samples. Here a page is read on a blocking thread with rusqlite, each row decoded where
//! SQLite holds it, and the page handed over once. Same SQL, same database file, same rows.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use super::values::{corrupt, to_hash, to_i64, to_u64};
use crate::canonical::Fields;
use crate::error::StoreError;
use crate::page::{CheckedPage, PageCheck};
use crate::record::RecordedEvent;

/// Connections kept open between reads: up to three pages are read at once.
const IDLE_MAX: usize = 4;
/// How long a read waits for a lock held by another connection (a WAL checkpoint, say).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Read-only connections to one SQLite file, opened as needed and kept for the next read.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// `None` once closed: reads are refused, as sqlx's closed pool refuses them.
    idle: Mutex<Option<Vec<Connection>>>,
}

impl Readers {
    pub fn new(path: &Path) -> Self {
        Self { inner: Arc::new(Inner { path: path.to_owned(), idle: Mutex::new(Some(Vec::new())) }) }
    }

    /// Closes the idle connections and refuses reads from now on. A read under way finishes
    /// and closes its connection. (Idle read connections would keep SQLite from removing
    /// the write-ahead log when the last writing connection closes.)
    pub fn close(&self) {
        let idle = self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner).take();
        // Closed outside the lock.
        drop(idle);
    }

    /// Runs `read` on a blocking thread with a connection of its own.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        let reading = tokio::task::spawn_blocking(move || {
            let idle = match inner.idle.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                None => return Err(StoreError::Closed),
                Some(idle) => idle.pop(),
            };
            let connection = match idle {
                Some(connection) => connection,
                None => open(&inner.path)?,
            };
            let result = read(&connection);
            // A connection whose read failed is closed rather than kept: nothing of a failed
            // statement is carried into the next read.
            if result.is_ok() {
                let mut idle = inner.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(idle) = idle.as_mut().filter(|idle| idle.len() < IDLE_MAX) {
                    idle.push(connection);
                }
            }
            result
        });
        match reading.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(StoreError::ReaderStopped),
        }
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

/// A page of the log: events with `position >=` the first value, in position order, at most
/// the second; read whole by [`read_page`], checked by [`check_page`].
const PAGE_SQL: &str = select_event!("WHERE position >= ? ORDER BY position LIMIT ?");

/// Events with `position >= from_position`, in position order, at most `limit`.
pub(super) async fn read_page(
    readers: &Readers,
    from_position: u64,
    limit: u32,
) -> Result<Vec<RecordedEvent>, StoreError> {
    readers
        .read(move |connection| {
            let mut statement = connection.prepare_cached(PAGE_SQL)?;
            let rows = statement.query((to_i64(from_position), i64::from(limit)))?;
            collect(rows, limit)
        })
        .await
}

/// The events after `after` up to and including `until`, in (stream, revision) order, with
/// `position <= up_to`: at most `limit`.
pub(super) async fn read_category_range(
    readers: &Readers,
    after: (&str, i64),
    until: (&str, i64),
    up_to: u64,
    limit: u32,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let (after, until) = ((after.0.to_owned(), after.1), (until.0.to_owned(), until.1));
    readers
        .read(move |connection| {
            // The positions come from the (stream, revision) index alone (it holds the rowid);
            // the rows are then read in position order, which is table order, and sorted here:
            // less system time than reading rows in index order (BENCHMARKS.md, issue 5).
            let mut statement = connection.prepare_cached(select_event!(
                "WHERE position IN (SELECT position FROM events \
                 WHERE (stream, revision) > (?, ?) AND (stream, revision) <= (?, ?) AND position <= ? \
                 ORDER BY stream, revision LIMIT ?)"
            ))?;
            let rows =
                statement.query((&after.0, after.1, &until.0, until.1, to_i64(up_to), i64::from(limit)))?;
            let mut events = collect(rows, limit)?;
            events.sort_unstable_by(|x, y| (&x.stream, x.revision).cmp(&(&y.stream, y.revision)));
            Ok(events)
        })
        .await
}

/// [`read_page`] as `verify` checks it: each row is hashed where SQLite holds it, and only
/// what the walk needs of it is kept.
pub(super) async fn check_page(
    readers: &Readers,
    from_position: u64,
    limit: u32,
    check: PageCheck,
) -> Result<CheckedPage, StoreError> {
    readers
        .read(move |connection| {
            let mut statement = connection.prepare_cached(PAGE_SQL)?;
            let mut rows = statement.query((to_i64(from_position), i64::from(limit)))?;
            let mut page = CheckedPage::new(usize::try_from(limit).unwrap_or(usize::MAX).min(8_192), check);
            while let Some(row) = rows.next()? {
                let (fields, _, hash) = read_fields(row)?;
                page.push(fields, &hash);
            }
            Ok(page)
        })
        .await
}

fn collect(mut rows: rusqlite::Rows<'_>, limit: u32) -> Result<Vec<RecordedEvent>, StoreError> {
    // The page is usually full: reserve it, but not a caller's whole `limit` if it is huge.
    let mut events = Vec::with_capacity(usize::try_from(limit).unwrap_or(usize::MAX).min(8_192));
    while let Some(row) = rows.next()? {
        events.push(read_event(row)?);
    }
    Ok(events)
}

/// An event from a `select_event!` row, by column index, read where SQLite holds it: only
/// the strings the event owns are copied.
fn read_event(row: &rusqlite::Row<'_>) -> Result<RecordedEvent, StoreError> {
    let (fields, recorded_at, hash) = read_fields(row)?;
    Ok(fields.to_event(recorded_at, hash))
}

/// The fields of a `select_event!` row, by column index, borrowed from SQLite; a value no
/// append could have written is [`StoreError::Corrupt`] at the row's position.
fn read_fields<'row>(
    row: &'row rusqlite::Row<'_>,
) -> Result<(Fields<'row>, DateTime<Utc>, [u8; 32]), StoreError> {
    let position: i64 = row.get(0)?;
    let text = |index: usize| -> Result<&'row str, StoreError> {
        row.get_ref(index)?.as_str().map_err(|error| corrupt(position, format!("column {index}: {error}")))
    };
    let integer = |index: usize| -> Result<i64, StoreError> {
        row.get_ref(index)?.as_i64().map_err(|error| corrupt(position, format!("column {index}: {error}")))
    };
    let event_id = text(3)?;
    let event_version = integer(5)?;
    let recorded_at = text(8)?;
    let hash = row.get_ref(9)?.as_blob().map_err(|error| corrupt(position, format!("hash: {error}")))?;
    let fields = Fields {
        position: to_u64(position, position, "position")?,
        stream: text(1)?,
        revision: to_u64(integer(2)?, position, "revision")?,
        event_id: Uuid::parse_str(event_id)
            .map_err(|error| corrupt(position, format!("event_id: {error}")))?,
        event_type: text(4)?,
        event_version: u32::try_from(event_version)
            .map_err(|_| corrupt(position, format!("event_version {event_version}")))?,
        data: text(6)?,
        metadata: text(7)?,
    };
    // sqlx writes a `DateTime<Utc>` as RFC 3339 text, which is all the log holds.
    let recorded_at = DateTime::parse_from_rfc3339(recorded_at)
        .map_err(|error| corrupt(position, format!("recorded_at `{recorded_at}`: {error}")))?
        .with_timezone(&Utc);
    Ok((fields, recorded_at, to_hash(hash, position)?))
}
