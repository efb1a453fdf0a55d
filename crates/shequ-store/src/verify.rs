use std::collections::HashMap;

use futures::TryStreamExt;

use crate::canonical::{chain_hash, GENESIS_HASH};
use crate::error::StoreError;
use crate::log::{EventLog, LogHead};

/// Events read per page while verifying.
const VERIFY_PAGE_EVENTS: u32 = 5_000;

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked and found intact.
    pub events: u64,
    pub head: LogHead,
    /// The first position that does not hold what the chain says it should.
    pub failure: Option<VerifyFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub position: u64,
    pub reason: String,
}

impl EventLog {
    /// Walks the whole log in position order and recomputes the hash chain. Finds a row that
    /// was altered (its hash no longer matches), deleted (a gap in positions, or a head past
    /// the last row), inserted or renumbered (a position or revision out of sequence, or a
    /// chain that no longer links). Calls `progress` with the count checked after each page.
    pub async fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, StoreError> {
        let mut previous_hash = GENESIS_HASH;
        let mut expected_position = 1;
        let mut stream_revisions: HashMap<String, u64> = HashMap::new();
        let mut checked = 0;
        let fail = |checked, head, position, reason: String| {
            Ok(VerifyReport { events: checked, head, failure: Some(VerifyFailure { position, reason }) })
        };
        // Appends may go on while we walk: walk, read the head, and walk again while the head
        // is ahead of us and there is more to read.
        loop {
            let mut events = std::pin::pin!(self.stream_all(expected_position, VERIFY_PAGE_EVENTS));
            loop {
                let event = match events.try_next().await {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(StoreError::Corrupt { position, reason }) => {
                        return fail(checked, self.head().await?, position, reason);
                    }
                    Err(error) => return Err(error),
                };
                let failure = check_event(&event, expected_position, &previous_hash, &stream_revisions);
                if let Some((position, reason)) = failure {
                    return fail(checked, self.head().await?, position, reason);
                }
                previous_hash = event.hash;
                stream_revisions.insert(event.stream, event.revision);
                expected_position += 1;
                checked += 1;
                if checked % u64::from(VERIFY_PAGE_EVENTS) == 0 {
                    progress(checked);
                }
            }
            let head = self.head().await?;
            let last_position = expected_position - 1;
            if head.position > last_position {
                match self.read_all(expected_position, 1).await?.is_empty() {
                    false => continue,
                    true => {
                        let reason = format!("missing: the log head is at {}", head.position);
                        return fail(checked, head, expected_position, reason);
                    }
                }
            }
            progress(checked);
            if head.position < last_position {
                let reason = "past the log head: not written by a commit".to_owned();
                return fail(checked, head, head.position + 1, reason);
            }
            if head.hash != previous_hash {
                let reason = "the log head's hash does not match the last event".to_owned();
                return fail(checked, head, last_position, reason);
            }
            return Ok(VerifyReport { events: checked, head, failure: None });
        }
    }
}

/// Checks one event against what the chain so far says it must be.
fn check_event(
    event: &crate::RecordedEvent,
    expected_position: u64,
    previous_hash: &[u8; 32],
    stream_revisions: &HashMap<String, u64>,
) -> Option<(u64, String)> {
    if event.position != expected_position {
        let reason = format!("expected position {expected_position}, found {}", event.position);
        return Some((expected_position.min(event.position), reason));
    }
    let expected_revision = stream_revisions.get(&event.stream).map_or(0, |revision| revision + 1);
    if event.revision != expected_revision {
        let reason = format!(
            "stream `{}` expected revision {expected_revision}, found {}",
            event.stream, event.revision
        );
        return Some((event.position, reason));
    }
    if chain_hash(previous_hash, event) != event.hash {
        return Some((event.position, "the stored hash does not match the event".to_owned()));
    }
    None
}
