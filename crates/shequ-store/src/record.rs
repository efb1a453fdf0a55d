use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What an append expects of its stream, checked inside the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// Whatever the stream holds, append. Only for streams with a single writer by design.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this revision.
    Exact(u64),
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => formatter.write_str("any revision"),
            ExpectedRevision::NoStream => formatter.write_str("no stream"),
            ExpectedRevision::Exact(revision) => write!(formatter, "revision {revision}"),
        }
    }
}

/// An event to append. `data` and `metadata` are JSON text and are stored byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: u32,
    pub data: String,
    pub metadata: String,
}

/// One stream's part of an append that spans streams (see [`crate::EventLog::append_all`]):
/// the parts commit together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedRevision,
    /// The event this part builds on, as in [`crate::EventLog::enqueue`].
    pub after: Option<Uuid>,
    pub events: Vec<NewEvent>,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: u64,
    pub stream: String,
    pub revision: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: u32,
    pub data: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    pub hash: [u8; 32],
}

/// Where one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedEvent {
    pub event_id: Uuid,
    pub position: u64,
    pub revision: u64,
}

/// The result of an append; a retried append returns the original one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub stream: String,
    pub events: Vec<AppendedEvent>,
    pub recorded_at: DateTime<Utc>,
}

impl Appended {
    /// The revision the next append to this stream should expect.
    pub fn next_expected_revision(&self) -> Option<ExpectedRevision> {
        self.events.last().map(|event| ExpectedRevision::Exact(event.revision))
    }
}
