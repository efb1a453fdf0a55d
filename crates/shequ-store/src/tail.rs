//! The newest events this process's writer committed, kept in memory, so that a reader in the
//! same process (the live projection) can follow its own writes without asking the database.
//!
//! The tail is a run of consecutive positions ending at the last position this writer
//! committed. When a batch does not continue it (another process wrote in between), the run
//! starts again at that batch: the tail never holds a gap, so whatever it answers is exactly
//! what the log holds at those positions. What it does not hold is read from the database.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::record::RecordedEvent;

/// Events kept at most; older ones are read from the database.
pub(crate) const TAIL_EVENTS_MAX: usize = 4_096;

#[derive(Debug, Default)]
pub(crate) struct Tail {
    events: Mutex<VecDeque<RecordedEvent>>,
}

impl Tail {
    /// Keeps `rows`, just committed on top of position `base`.
    pub fn extend(&self, base: u64, rows: Vec<RecordedEvent>) {
        let Some(first) = rows.first() else { return };
        debug_assert_eq!(first.position, base + 1, "a batch's rows follow its base");
        let mut events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if events.back().is_some_and(|last| last.position != base) {
            events.clear();
        }
        events.extend(rows);
        let excess = events.len().saturating_sub(TAIL_EVENTS_MAX);
        events.drain(..excess);
    }

    /// The events from `from_position` through the last one kept, if the tail still holds
    /// `from_position` (or everything before it: then the answer is empty).
    pub fn since(&self, from_position: u64) -> Option<Vec<RecordedEvent>> {
        let events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = events.front()?.position;
        let last = events.back()?.position;
        if from_position < first {
            return None;
        }
        if from_position > last {
            return Some(Vec::new());
        }
        let skip = usize::try_from(from_position - first).ok()?;
        Some(events.iter().skip(skip).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn event(position: u64) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: "request-1".into(),
            revision: position,
            event_id: Uuid::new_v4(),
            event_type: "RequestReceived".into(),
            event_version: 1,
            data: "{}".into(),
            metadata: "{}".into(),
            recorded_at: Utc::now(),
            hash: [0; 32],
        }
    }

    fn positions(events: Option<Vec<RecordedEvent>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|event| event.position).collect())
    }

    #[test]
    fn answers_only_what_it_holds_without_a_gap() {
        let tail = Tail::default();
        assert_eq!(positions(tail.since(1)), None, "an empty tail knows nothing");
        tail.extend(10, vec![event(11), event(12)]);
        tail.extend(12, vec![event(13)]);
        assert_eq!(positions(tail.since(12)), Some(vec![12, 13]));
        assert_eq!(positions(tail.since(11)), Some(vec![11, 12, 13]));
        assert_eq!(positions(tail.since(14)), Some(vec![]));
        assert_eq!(positions(tail.since(10)), None, "position 10 was never kept");
        // Another process wrote 14 and 15: the run starts again at this batch.
        tail.extend(15, vec![event(16)]);
        assert_eq!(positions(tail.since(16)), Some(vec![16]));
        assert_eq!(positions(tail.since(14)), None);
        assert_eq!(positions(tail.since(13)), None);
    }

    #[test]
    fn keeps_at_most_its_limit() {
        let tail = Tail::default();
        let rows: Vec<RecordedEvent> = (1..=TAIL_EVENTS_MAX as u64 + 10).map(event).collect();
        tail.extend(0, rows);
        assert_eq!(positions(tail.since(10)), None);
        let kept = tail.since(11).expect("the newest are kept");
        assert_eq!(kept.len(), TAIL_EVENTS_MAX);
        assert_eq!(kept.last().map(|event| event.position), Some(TAIL_EVENTS_MAX as u64 + 10));
    }
}
