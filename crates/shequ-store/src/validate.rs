//! What the log accepts: the input limits and checks shared by appends (`log`) and imports
//! (`import`), below both so that neither reaches into the other for them.

use std::collections::HashSet;

use uuid::Uuid;

use crate::error::StoreError;
use crate::record::{ExpectedRevision, NewEvent, StreamAppend};
use crate::{APPEND_EVENTS_MAX, EVENT_TEXT_BYTES_MAX};

/// The longest stream name, in bytes.
const STREAM_BYTES_MAX: usize = 256;
/// The longest event type name, in bytes.
const EVENT_TYPE_BYTES_MAX: usize = 128;

/// An append to one stream: a valid stream, 1 to [`APPEND_EVENTS_MAX`] valid events with
/// distinct ids, and, if it builds on an event, an exact expected revision.
pub(crate) fn validate_append(
    stream: &str,
    expected: ExpectedRevision,
    after: Option<Uuid>,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    let invalid = |message: String| Err(StoreError::InvalidAppend(message));
    validate_stream(stream).map_err(StoreError::InvalidAppend)?;
    if events.is_empty() || events.len() > APPEND_EVENTS_MAX {
        return invalid(format!("an append carries 1–{APPEND_EVENTS_MAX} events, not {}", events.len()));
    }
    let mut seen = HashSet::with_capacity(events.len());
    for event in events {
        if !seen.insert(event.event_id) {
            return invalid(format!("event id {} appears twice in one append", event.event_id));
        }
        validate_event(&event.event_type, event.event_version, &event.data, &event.metadata)
            .map_err(StoreError::InvalidAppend)?;
    }
    validate_after(expected, after)
}

/// An append to several streams: at least one part, each valid on its own
/// ([`validate_append`]), no stream twice, no event id twice, and at most
/// [`APPEND_EVENTS_MAX`] events in all.
pub(crate) fn validate_parts(appends: &[StreamAppend]) -> Result<(), StoreError> {
    let invalid = |message: String| Err(StoreError::InvalidAppend(message));
    if appends.is_empty() {
        return invalid("an append to several streams needs at least one part".into());
    }
    let mut streams = HashSet::with_capacity(appends.len());
    let mut event_ids = HashSet::new();
    let mut events = 0;
    for append in appends {
        validate_append(&append.stream, append.expected, append.after, &append.events)?;
        if !streams.insert(append.stream.as_str()) {
            return invalid(format!("stream `{}` appears in two parts of one append", append.stream));
        }
        if let Some(event) = append.events.iter().find(|event| !event_ids.insert(event.event_id)) {
            return invalid(format!("event id {} appears twice in one append", event.event_id));
        }
        events += append.events.len();
    }
    match events > APPEND_EVENTS_MAX {
        true => {
            invalid(format!("an append carries 1–{APPEND_EVENTS_MAX} events in all its parts, not {events}"))
        }
        false => Ok(()),
    }
}

/// A stream name the log accepts: `category-id`. Appends and imports share this rule.
pub(crate) fn validate_stream(stream: &str) -> Result<(), String> {
    let valid_stream = match stream.split_once('-') {
        None => false,
        Some((category, id)) => {
            shequ_domain::Category::parse(category).is_ok()
                && !id.is_empty()
                && stream.len() <= STREAM_BYTES_MAX
                && id.bytes().all(|byte| byte.is_ascii_graphic())
        }
    };
    match valid_stream {
        true => Ok(()),
        false => Err(format!("stream `{stream}` must be `category-id` (category: a–z, 0–9, `_`)")),
    }
}

/// An event the log accepts, whatever its stream. Appends and imports share this rule.
pub(crate) fn validate_event(
    event_type: &str,
    event_version: u32,
    data: &str,
    metadata: &str,
) -> Result<(), String> {
    let valid_type = !event_type.is_empty()
        && event_type.len() <= EVENT_TYPE_BYTES_MAX
        && event_type.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.');
    if !valid_type {
        return Err(format!("event type `{event_type}` must be 1–128 of A–Z, a–z, 0–9, `_`, `.`"));
    }
    if event_version == 0 || i32::try_from(event_version).is_err() {
        return Err(format!("event version {event_version} must be 1 or more"));
    }
    for (field, text) in [("data", data), ("metadata", metadata)] {
        if text.len() > EVENT_TEXT_BYTES_MAX {
            return Err(format!(
                "{field} of {event_type} is {} bytes; the limit is {EVENT_TEXT_BYTES_MAX}",
                text.len()
            ));
        }
        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Err(format!("{field} of {event_type} is not JSON: {error}"));
        }
    }
    Ok(())
}

/// An append that builds on an event names the exact revision that event is at.
fn validate_after(expected: ExpectedRevision, after: Option<Uuid>) -> Result<(), StoreError> {
    match after.is_some() && !matches!(expected, ExpectedRevision::Exact(_)) {
        true => Err(StoreError::InvalidAppend(format!(
            "an append that builds on an event expects an exact revision, not {expected}"
        ))),
        false => Ok(()),
    }
}
