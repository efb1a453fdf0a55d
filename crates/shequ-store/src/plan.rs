//! Planning one group commit: the pure part of the writer, shared by both backends.
//!
//! The backend locks the log head, looks up what the batch touches (the streams' last
//! revisions and any event ids already in the log), and hands them here; this decides each
//! append's fate, assigns positions and revisions, and chains the hashes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::canonical::chain_hash;
use crate::error::StoreError;
use crate::record::{Appended, AppendedEvent, ExpectedRevision, NewEvent, RecordedEvent};

/// One append as the writer receives it.
#[derive(Debug, Clone)]
pub(crate) struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedRevision,
    /// The event the append builds on: it must be the stream's last event, at the expected
    /// revision (see [`crate::EventLog::enqueue`]).
    pub after: Option<Uuid>,
    pub events: Vec<NewEvent>,
    /// Commits only together with the request before it (and those joined to that): if one
    /// of them is refused, none is written (see [`crate::EventLog::append_all`]).
    pub joined: bool,
}

/// The last position and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub position: u64,
    pub hash: [u8; 32],
}

/// An event id already in the log, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Existing {
    pub stream: String,
    pub position: u64,
    pub revision: u64,
    pub recorded_at: DateTime<Utc>,
}

pub(crate) struct Planned {
    pub rows: Vec<RecordedEvent>,
    pub outcomes: Vec<Result<Appended, StoreError>>,
    /// The head the batch was planned on.
    pub base: Head,
    /// The head after the batch.
    pub head: Head,
}

pub(crate) fn plan_batch(
    head: Head,
    mut stream_revisions: HashMap<String, u64>,
    mut existing: HashMap<Uuid, Existing>,
    requests: &[AppendRequest],
    recorded_at: DateTime<Utc>,
) -> Planned {
    let base = head;
    let mut head = head;
    let mut rows = Vec::with_capacity(requests.iter().map(|request| request.events.len()).sum());
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut start = 0;
    while start < requests.len() {
        // A request and the ones joined to it: all of them, or none.
        let end = start + 1 + requests[start + 1..].iter().take_while(|request| request.joined).count();
        let (rows_before, head_before) = (rows.len(), head);
        let mut revisions_before = Vec::new();
        let mut refusal = None;
        for request in &requests[start..end] {
            revisions_before.push((request.stream.as_str(), stream_revisions.get(&request.stream).copied()));
            let outcome = match retried(request, &existing) {
                Some(result) => result,
                None => check_expected(request, stream_revisions.get(&request.stream).copied())
                    .and_then(|first_revision| check_builds_on(request, &existing).map(|()| first_revision))
                    .map(|first_revision| {
                        let appended =
                            plan_events(request, first_revision, recorded_at, &mut head, &mut rows);
                        for (event, row) in appended.iter().zip(&rows[rows.len() - appended.len()..]) {
                            existing.insert(
                                event.event_id,
                                Existing {
                                    stream: row.stream.clone(),
                                    position: event.position,
                                    revision: event.revision,
                                    recorded_at,
                                },
                            );
                        }
                        let last = appended.last().expect("appends are checked to carry events").revision;
                        stream_revisions.insert(request.stream.clone(), last);
                        Appended { stream: request.stream.clone(), events: appended, recorded_at }
                    }),
            };
            if let Err(error) = &outcome {
                refusal.get_or_insert_with(|| error.clone());
            }
            outcomes.push(outcome);
        }
        if let Some(refusal) = refusal {
            // One part refused: the parts planned before it are taken back.
            for row in rows.drain(rows_before..) {
                existing.remove(&row.event_id);
            }
            for (stream, revision) in revisions_before.into_iter().rev() {
                match revision {
                    Some(revision) => stream_revisions.insert(stream.to_owned(), revision),
                    None => stream_revisions.remove(stream),
                };
            }
            head = head_before;
            for outcome in &mut outcomes[start..end] {
                if outcome.is_ok() {
                    *outcome = Err(refusal.clone());
                }
            }
        }
        start = end;
    }
    Planned { rows, outcomes, base, head }
}

/// The rows of one append from revision `first_revision` on, chained on `head`, which moves to
/// the last of them.
fn plan_events(
    request: &AppendRequest,
    first_revision: u64,
    recorded_at: DateTime<Utc>,
    head: &mut Head,
    rows: &mut Vec<RecordedEvent>,
) -> Vec<AppendedEvent> {
    let mut appended = Vec::with_capacity(request.events.len());
    for (offset, event) in request.events.iter().enumerate() {
        let mut row = RecordedEvent {
            position: head.position + 1,
            stream: request.stream.clone(),
            revision: first_revision + offset as u64,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            event_version: event.event_version,
            data: event.data.clone(),
            metadata: event.metadata.clone(),
            recorded_at,
            hash: [0; 32],
        };
        row.hash = chain_hash(&head.hash, &row);
        *head = Head { position: row.position, hash: row.hash };
        appended.push(AppendedEvent {
            event_id: row.event_id,
            position: row.position,
            revision: row.revision,
        });
        rows.push(row);
    }
    appended
}

/// The writer's memory of its own last commit: the head it left and the last revision of
/// the streams it wrote since. While the database's head is still that head, no other
/// process has written, so a batch can be planned from this alone and written in one
/// statement (the fast path); otherwise the writer locks and looks up (the slow path).
///
/// Every revision remembered here is exact or, after another process wrote, lower than the
/// truth, never higher; the fast path's insert then hits the `(stream, revision)` unique key,
/// and the batch is redone on the slow path. So the cache can make a batch slower, never wrong.
#[derive(Debug, Default)]
pub(crate) struct WriterCache {
    head: Option<Head>,
    streams: HashMap<String, LastEvent>,
}

/// The last event this writer committed to a stream.
#[derive(Debug, Clone, Copy)]
struct LastEvent {
    revision: u64,
    event_id: Uuid,
    position: u64,
    recorded_at: DateTime<Utc>,
}

/// Streams remembered at most; past this the memory starts again from empty.
const CACHED_STREAMS_MAX: usize = 100_000;

impl WriterCache {
    /// Plans `requests` from memory alone, or says the slow path must decide.
    pub fn plan(&self, requests: &[AppendRequest], recorded_at: DateTime<Utc>) -> Option<Planned> {
        let head = self.head?;
        let mut stream_revisions = HashMap::new();
        // The events appends build on, where they are the last this writer committed; one
        // committed earlier in the batch is found as the batch is planned.
        let mut existing = HashMap::new();
        for request in requests {
            match self.streams.get(&request.stream) {
                Some(last) => {
                    stream_revisions.insert(request.stream.clone(), last.revision);
                    if request.after == Some(last.event_id) {
                        let found = Existing {
                            stream: request.stream.clone(),
                            position: last.position,
                            revision: last.revision,
                            recorded_at: last.recorded_at,
                        };
                        existing.insert(last.event_id, found);
                    }
                }
                // A stream we have not seen is taken to be new only when the append says so; if
                // it exists after all, its revision 0 is taken and the insert fails.
                None if request.expected == ExpectedRevision::NoStream => {}
                None => return None,
            }
        }
        let planned = plan_batch(head, stream_revisions, existing, requests, recorded_at);
        // A refusal may be a retry whose ids are already in the log, or an append building on
        // an event this writer does not remember: only the slow path, which looks the ids up,
        // can tell.
        match planned.outcomes.iter().all(Result::is_ok) {
            true => Some(planned),
            false => None,
        }
    }

    /// The head this process committed last, if it has committed.
    pub fn head(&self) -> Option<Head> {
        self.head
    }

    /// Remembers a committed batch. `others_wrote`: the slow path found the head moved by
    /// another process, so what we remembered of other streams may be behind.
    pub fn remember(&mut self, planned: &Planned, others_wrote: bool) {
        if others_wrote || self.streams.len() > CACHED_STREAMS_MAX {
            self.streams.clear();
        }
        self.head = Some(planned.head);
        for appended in planned.outcomes.iter().flatten() {
            if let Some(last) = appended.events.last() {
                let event = LastEvent {
                    revision: last.revision,
                    event_id: last.event_id,
                    position: last.position,
                    recorded_at: appended.recorded_at,
                };
                let remembered = self.streams.entry(appended.stream.clone()).or_insert(event);
                // A retried append answers with its original, older events.
                if event.revision >= remembered.revision {
                    *remembered = event;
                }
            }
        }
    }
}

/// A retried append (all its event ids already in the log, in this stream, in order) gets the
/// original result back. An append that reuses some ids but not as a retry is refused.
fn retried(
    request: &AppendRequest,
    existing: &HashMap<Uuid, Existing>,
) -> Option<Result<Appended, StoreError>> {
    let found: Vec<Option<&Existing>> =
        request.events.iter().map(|event| existing.get(&event.event_id)).collect();
    if found.iter().all(Option::is_none) {
        return None;
    }
    let is_retry = match found[0] {
        None => false,
        Some(first) => found.iter().enumerate().all(|(offset, found)| {
            matches!(found, Some(found) if found.stream == request.stream
                && found.revision == first.revision + offset as u64)
        }),
    };
    if !is_retry {
        let reused = request.events.iter().find(|event| existing.contains_key(&event.event_id));
        let event_id = reused.expect("at least one id was found").event_id;
        return Some(Err(StoreError::EventIdReused { event_id }));
    }
    let events: Vec<AppendedEvent> = request
        .events
        .iter()
        .zip(&found)
        .map(|(event, found)| {
            let found = found.expect("a retry has every id");
            AppendedEvent { event_id: event.event_id, position: found.position, revision: found.revision }
        })
        .collect();
    let recorded_at = found[0].expect("a retry has every id").recorded_at;
    Some(Ok(Appended { stream: request.stream.clone(), events, recorded_at }))
}

/// Checks that the event an append builds on, if it names one, is its stream's last: in the
/// stream at the expected revision. `existing` holds the ids looked up for the batch and
/// every event planned before this append.
fn check_builds_on(request: &AppendRequest, existing: &HashMap<Uuid, Existing>) -> Result<(), StoreError> {
    let Some(after) = request.after else {
        return Ok(());
    };
    let found = existing.get(&after);
    let is_last = match (found, request.expected) {
        (Some(found), ExpectedRevision::Exact(expected)) => {
            found.stream == request.stream && found.revision == expected
        }
        _ => false,
    };
    match is_last {
        true => Ok(()),
        false => Err(StoreError::Unfounded { stream: request.stream.clone(), after }),
    }
}

/// Checks the expected revision and returns the revision of the first new event.
fn check_expected(request: &AppendRequest, actual: Option<u64>) -> Result<u64, StoreError> {
    let next = actual.map_or(0, |revision| revision + 1);
    let matches = match request.expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => actual.is_none(),
        ExpectedRevision::Exact(expected) => actual == Some(expected),
    };
    match matches {
        true => Ok(next),
        false => {
            Err(StoreError::Conflict { stream: request.stream.clone(), expected: request.expected, actual })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "A".into(),
            event_version: 1,
            data: "{}".into(),
            metadata: "{}".into(),
        }
    }

    fn request(stream: &str, expected: ExpectedRevision, after: Option<Uuid>, joined: bool) -> AppendRequest {
        AppendRequest { stream: stream.into(), expected, after, events: vec![event()], joined }
    }

    /// A refused joined append leaves nothing behind for the appends after it in the same
    /// batch: its stream is still new, its events were never there, its positions are free.
    #[test]
    fn a_refused_joined_append_is_taken_back_within_its_batch() {
        let head = Head { position: 10, hash: [7; 32] };
        let ledger_before = HashMap::from([("ledger-1".to_owned(), 4)]);
        let mandate_first = request("mandate-1", ExpectedRevision::NoStream, None, false);
        let taken_back = mandate_first.events[0].event_id;
        let again = request("mandate-1", ExpectedRevision::NoStream, None, false);
        let on_taken_back = request("mandate-1", ExpectedRevision::Exact(0), Some(taken_back), false);
        let requests = [
            mandate_first,
            // Stale: the ledger is at revision 4.
            request("ledger-1", ExpectedRevision::Exact(3), None, true),
            again.clone(),
            on_taken_back,
            request("ledger-1", ExpectedRevision::Exact(4), None, false),
        ];
        let planned = plan_batch(head, ledger_before, HashMap::new(), &requests, Utc::now());
        let outcomes: Vec<Result<Vec<(u64, u64)>, String>> = planned
            .outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(appended) => {
                    Ok(appended.events.iter().map(|event| (event.position, event.revision)).collect())
                }
                Err(error) => Err(error.to_string()),
            })
            .collect();
        let stale = "stream `ledger-1` is at revision 4, but the append expected revision 3".to_owned();
        assert_eq!(outcomes[0], Err(stale.clone()), "the part that was fine is refused with its companion");
        assert_eq!(outcomes[1], Err(stale));
        assert_eq!(outcomes[2], Ok(vec![(11, 0)]), "the mandate's stream is new again");
        assert!(
            outcomes[3].as_ref().is_err_and(|error| error.contains("not the stream's last")),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[4], Ok(vec![(12, 5)]));
        assert_eq!(planned.rows.len(), 2);
        assert_eq!(planned.rows[0].event_id, again.events[0].event_id);
        assert_eq!(planned.head.position, 12);
        assert_eq!(planned.head.hash, planned.rows[1].hash);
        assert_eq!(
            planned.rows[0].hash,
            chain_hash(&head.hash, &planned.rows[0]),
            "chained on the batch's base"
        );
    }
}
