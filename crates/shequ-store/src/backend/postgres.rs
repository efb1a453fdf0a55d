use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, Row};
use uuid::Uuid;

use super::values::{corrupt, is_unique_violation, to_hash, to_i64, to_u64, SqlxRow};
use crate::canonical::Fields;
use crate::error::StoreError;
use crate::page::{CheckedPage, PageCheck};
use crate::plan::{Existing, Head, Planned};
use crate::record::RecordedEvent;

const CONNECTIONS_MAX: u32 = 16;
const ACQUIRE_TIMEOUT_MS: u64 = 10_000;

pub(super) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    // synchronous_commit=on whatever the server's default: an append is acknowledged only
    // after its commit is durable.
    // READ COMMITTED whatever the server's default: the head lock relies on each statement
    // seeing what committed before it (a stricter level would fail batches with 40001). The
    // space is escaped because PostgreSQL splits startup options on spaces.
    let options = PgConnectOptions::from_str(url)?
        .options([("synchronous_commit", "on"), ("default_transaction_isolation", r"read\ committed")]);
    let pool = PgPoolOptions::new()
        .max_connections(CONNECTIONS_MAX)
        .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Locks the head and looks up the batch's streams (their last revisions) and event ids (those
/// already in the log), in one round trip. The row lock on the head serialises batches from
/// every process sharing this database, so positions are gap-free and in commit order, and the
/// chain has one head.
pub(super) async fn lock_head_and_look_up(
    connection: &mut PgConnection,
    streams: &BTreeSet<&str>,
    event_ids: &[Uuid],
) -> Result<(Head, HashMap<String, u64>, HashMap<Uuid, Existing>), StoreError> {
    let streams: Vec<&str> = streams.iter().copied().collect();
    let rows = sqlx::query("SELECT * FROM shequ_lock_head_and_look_up($1, $2)")
        .bind(&streams)
        .bind(event_ids)
        .fetch_all(&mut *connection)
        .await?;
    let mut head = None;
    let mut stream_revisions = HashMap::new();
    let mut existing = HashMap::new();
    for row in rows {
        let kind: &str = row.try_get("found_kind")?;
        match kind {
            "head" => {
                let position: i64 = row.try_get("found_position")?;
                let hash: Vec<u8> = row.try_get("found_hash")?;
                let position = to_u64(position, position, "head position")?;
                head = Some(Head { position, hash: to_hash(&hash, 0)? });
            }
            "stream" => {
                let revision: i64 = row.try_get("found_revision")?;
                stream_revisions.insert(row.try_get("found_stream")?, to_u64(revision, 0, "revision")?);
            }
            _ => {
                let position: i64 = row.try_get("found_position")?;
                let found = Existing {
                    stream: row.try_get("found_stream")?,
                    position: to_u64(position, position, "position")?,
                    revision: to_u64(row.try_get("found_revision")?, position, "revision")?,
                    recorded_at: row.try_get("found_recorded_at")?,
                };
                existing.insert(row.try_get::<Uuid, _>("found_event_id")?, found);
            }
        }
    }
    let head = head.ok_or_else(|| corrupt(0, "the log head row is missing".to_owned()))?;
    Ok((head, stream_revisions, existing))
}

/// Inserts exported rows as they are, each with its own `recorded_at`, in one statement.
pub(super) async fn insert_rows(
    connection: &mut PgConnection,
    rows: &[RecordedEvent],
) -> Result<(), StoreError> {
    let columns = Columns::of(rows);
    let recorded_at: Vec<DateTime<Utc>> = rows.iter().map(|row| row.recorded_at).collect();
    let insert = sqlx::query(
        "INSERT INTO events (position, stream, revision, event_id, event_type, event_version, \
                             data, metadata, recorded_at, hash) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], \
                              $7::text[], $8::text[], $9::timestamptz[], $10::bytea[])",
    );
    columns.bind(insert).bind(&recorded_at).bind(&columns.hashes).execute(&mut *connection).await?;
    Ok(())
}

/// The fast path: writes a batch planned from the writer's memory, if the head is still the
/// one it was planned on and no revision or event id it takes is taken. One statement, in its
/// own transaction: one round trip. `false`: nothing was written, and the slow path must
/// decide.
pub(super) async fn write_planned(pool: &PgPool, planned: &Planned) -> Result<bool, StoreError> {
    let mut connection = pool.acquire().await?;
    match write_rows(&mut connection, planned).await {
        Err(StoreError::Database(error)) if is_unique_violation(&error) => Ok(false),
        other => other,
    }
}

/// Inserts the rows and moves the head from `planned.base` to `planned.head`, in one
/// statement. `false` when the head was not at `planned.base` (another process wrote).
pub(super) async fn write_rows(connection: &mut PgConnection, planned: &Planned) -> Result<bool, StoreError> {
    if planned.rows.is_empty() {
        return Ok(true);
    }
    let columns = Columns::of(&planned.rows);
    let recorded_at = planned.rows[0].recorded_at;
    // `base` locks the head only if it is still where the batch was planned; if another
    // process moved it meanwhile, `base` is empty and nothing is inserted or updated.
    let write = sqlx::query(
        "WITH base AS ( \
             SELECT id FROM log_head WHERE id = 1 AND position = $11 AND hash = $12 FOR UPDATE), \
         inserted AS ( \
             INSERT INTO events (position, stream, revision, event_id, event_type, event_version, \
                                 data, metadata, recorded_at, hash) \
             SELECT position, stream, revision, event_id, event_type, event_version, data, metadata, $9, hash \
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], \
                         $7::text[], $8::text[], $10::bytea[]) \
                  AS batch(position, stream, revision, event_id, event_type, event_version, data, metadata, hash) \
             WHERE EXISTS (SELECT 1 FROM base) \
             RETURNING 1) \
         UPDATE log_head SET position = $13, hash = $14 WHERE id IN (SELECT id FROM base)",
    );
    let moved = columns
        .bind(write)
        .bind(recorded_at)
        .bind(&columns.hashes)
        .bind(to_i64(planned.base.position))
        .bind(planned.base.hash.as_slice())
        .bind(to_i64(planned.head.position))
        .bind(planned.head.hash.as_slice())
        .execute(&mut *connection)
        .await?
        .rows_affected();
    Ok(moved == 1)
}

pub(super) async fn read_category_range(
    pool: &PgPool,
    after: (&str, i64),
    until: (&str, i64),
    up_to: u64,
    limit: u32,
) -> Result<Vec<RecordedEvent>, StoreError> {
    // The LIMIT never cuts the range short (it holds at most `limit` events up to `up_to`), but
    // without it the planner misjudges how many rows a row-value range holds and picks a
    // parallel bitmap scan, a sort and JIT: ten times slower than walking the index.
    let rows = sqlx::query(select_event!(
        "WHERE (stream, revision) > ($1, $2) AND (stream, revision) <= ($3, $4) AND position <= $5 \
         ORDER BY stream, revision LIMIT $6"
    ))
    .bind(after.0)
    .bind(after.1)
    .bind(until.0)
    .bind(until.1)
    .bind(to_i64(up_to))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(SqlxRow::read_event).collect()
}

pub(super) async fn read_page(
    pool: &PgPool,
    from_position: u64,
    limit: u32,
) -> Result<Vec<RecordedEvent>, StoreError> {
    page_rows(pool, from_position, limit).await?.iter().map(SqlxRow::read_event).collect()
}

/// The rows of events with `position >= from_position`, in position order, at most `limit`.
async fn page_rows(pool: &PgPool, from_position: u64, limit: u32) -> Result<Vec<PgRow>, StoreError> {
    Ok(sqlx::query(select_event!("WHERE position >= $1 ORDER BY position LIMIT $2"))
        .bind(to_i64(from_position))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?)
}

/// [`read_page`] as `verify` checks it: each row is hashed from the text sqlx holds for it,
/// and no event is built.
pub(super) async fn check_page(
    pool: &PgPool,
    from_position: u64,
    limit: u32,
    check: PageCheck,
) -> Result<CheckedPage, StoreError> {
    let rows = page_rows(pool, from_position, limit).await?;
    let mut page = CheckedPage::new(rows.len(), check);
    for row in &rows {
        let (fields, hash) = read_fields(row)?;
        page.push(fields, &hash);
    }
    Ok(page)
}

/// Rows as the arrays `UNNEST` takes, one a column, in the order the inserts bind them
/// (`recorded_at` and `hash`, bound after these, differ between appends and imports).
struct Columns<'a> {
    positions: Vec<i64>,
    streams: Vec<&'a str>,
    revisions: Vec<i64>,
    event_ids: Vec<Uuid>,
    event_types: Vec<&'a str>,
    event_versions: Vec<i32>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
    hashes: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    fn of(rows: &'a [RecordedEvent]) -> Self {
        let version =
            |row: &RecordedEvent| i32::try_from(row.event_version).expect("event versions are small numbers");
        Self {
            positions: rows.iter().map(|row| to_i64(row.position)).collect(),
            streams: rows.iter().map(|row| row.stream.as_str()).collect(),
            revisions: rows.iter().map(|row| to_i64(row.revision)).collect(),
            event_ids: rows.iter().map(|row| row.event_id).collect(),
            event_types: rows.iter().map(|row| row.event_type.as_str()).collect(),
            event_versions: rows.iter().map(version).collect(),
            data: rows.iter().map(|row| row.data.as_str()).collect(),
            metadata: rows.iter().map(|row| row.metadata.as_str()).collect(),
            hashes: rows.iter().map(|row| row.hash.as_slice()).collect(),
        }
    }

    /// Binds the columns from `position` to `metadata`, `$1` to `$8`.
    fn bind<'q>(&'q self, query: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&self.positions)
            .bind(&self.streams)
            .bind(&self.revisions)
            .bind(&self.event_ids)
            .bind(&self.event_types)
            .bind(&self.event_versions)
            .bind(&self.data)
            .bind(&self.metadata)
    }
}

impl SqlxRow for PgRow {
    fn read_event(&self) -> Result<RecordedEvent, StoreError> {
        let (fields, hash) = read_fields(self)?;
        Ok(fields.to_event(self.try_get(8)?, hash))
    }

    fn read_head(&self) -> Result<Head, StoreError> {
        let position: i64 = self.try_get("position")?;
        let hash: Vec<u8> = self.try_get("hash")?;
        Ok(Head { position: to_u64(position, position, "head position")?, hash: to_hash(&hash, position)? })
    }
}

/// The canonical fields and the hash of a `select_event!` row, borrowed from the row.
fn read_fields(row: &PgRow) -> Result<(Fields<'_>, [u8; 32]), StoreError> {
    let position: i64 = row.try_get(0)?;
    let event_version: i32 = row.try_get(5)?;
    let hash: &[u8] = row.try_get(9)?;
    let fields = Fields {
        position: to_u64(position, position, "position")?,
        stream: row.try_get(1)?,
        revision: to_u64(row.try_get(2)?, position, "revision")?,
        event_id: row.try_get(3)?,
        event_type: row.try_get(4)?,
        event_version: u32::try_from(event_version)
            .map_err(|_| corrupt(position, format!("event_version {event_version}")))?,
        data: row.try_get(6)?,
        metadata: row.try_get(7)?,
    };
    Ok((fields, to_hash(hash, position)?))
}
