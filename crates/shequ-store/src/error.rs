use std::sync::Arc;

use uuid::Uuid;

use crate::record::ExpectedRevision;

/// Operational errors of the event log. Business refusals live in the domain crate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The stream moved on since the writer read it; reload and retry.
    #[error("stream `{stream}` is at {}, but the append expected {expected}", describe_revision(*.actual))]
    Conflict { stream: String, expected: ExpectedRevision, actual: Option<u64> },
    /// The append builds on an event that is not its stream's last committed event: an
    /// earlier append it followed failed, or another writer came between. Reload and retry.
    #[error(
        "the append to stream `{stream}` builds on event {after}, which is not the stream's last \
         committed event (an append before it failed, or another writer came between)"
    )]
    Unfounded { stream: String, after: Uuid },
    /// An event id that is already in the log, for a different event or stream.
    #[error("event id {event_id} is already in the log for a different append")]
    EventIdReused { event_id: Uuid },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the event log is append-only: events are never deleted")]
    AppendOnly,
    #[error("unsupported database URL scheme `{0}`: use sqlite://PATH or postgres://HOST/DB")]
    UnsupportedUrl(String),
    /// The log is durable by design, and its bulk reads open the file themselves (ADR 0013).
    #[error("an in-memory SQLite database cannot hold the log: give a file, sqlite://PATH")]
    InMemory,
    #[error("database error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    /// A bulk read of a SQLite log (rusqlite, beside sqlx) failed.
    #[error("database error: {0}")]
    SqliteRead(#[source] Arc<rusqlite::Error>),
    /// The log was closed ([`crate::EventLog::close`]).
    #[error("the event log is closed")]
    Closed,
    /// A bulk read could not run: the runtime is shutting down.
    #[error("the database reader stopped: the runtime is shutting down")]
    ReaderStopped,
    #[error("migration failed: {0}")]
    Migrate(#[source] Arc<sqlx::migrate::MigrateError>),
    #[error("the log is corrupt at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("cannot decode the event at position {position}: {reason}")]
    Decode { position: u64, reason: String },
    #[error("the event log writer has stopped")]
    WriterStopped,
    /// An import goes only into a store whose log is empty.
    #[error(
        "the store is not empty (its log head is at position {head}): import only into a new, empty store"
    )]
    NotEmpty { head: u64 },
    /// An imported event is not one this log could have written: nothing at or after it was
    /// imported.
    #[error("import refused at position {position}: {reason}")]
    ImportRefused { position: u64, reason: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(Arc::new(error))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::SqliteRead(Arc::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(Arc::new(error))
    }
}

fn describe_revision(revision: Option<u64>) -> String {
    match revision {
        None => "no stream".to_owned(),
        Some(revision) => format!("revision {revision}"),
    }
}
