use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where one event a command produced landed: what a client is told back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordedRef {
    pub stream: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub position: u64,
    pub revision: u64,
}

/// Where a stored event is, for a command's answer.
impl From<&crate::RecordedEvent> for RecordedRef {
    fn from(event: &crate::RecordedEvent) -> Self {
        Self {
            stream: event.stream.clone(),
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            position: event.position,
            revision: event.revision,
        }
    }
}

/// Collects the events a command appends, across every aggregate it touches. Clones share
/// one list.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<RecordedRef>>>);

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, event: RecordedRef) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(event);
    }

    /// Everything recorded so far, in append order; the recorder is left empty.
    pub fn take(&self) -> Vec<RecordedRef> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Two recorders are equal when they are the same list.
impl PartialEq for Recorder {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Recorder {}

/// Who issued a command, and what it belongs to. Carried by an [`crate::AggregateStore`]
/// handle into the metadata of every event the command produces, with no global state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    /// `role:organisation` or `system`, e.g. `street_office:0190…`.
    pub actor: String,
    /// The business conversation this command belongs to.
    pub correlation_id: Uuid,
    /// The message (command or event) that caused this command.
    pub causation_id: Uuid,
    /// The policy decision behind the command, where one decided.
    pub decision_id: Option<Uuid>,
    /// For a command the client named ([`Self::for_command`]): a digest of what it asked
    /// (the action and its body), so that the same id sent again with something else is
    /// told apart from a retry.
    pub command_digest: Option<String>,
    /// Where to tell what was appended, when the caller wants to know.
    pub recorder: Option<Recorder>,
}

impl CommandContext {
    /// A context for a command that starts a new conversation: it correlates with itself.
    pub fn new(actor: impl Into<String>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            actor: actor.into(),
            correlation_id: command_id,
            causation_id: command_id,
            decision_id: None,
            command_digest: None,
            recorder: None,
        }
    }

    /// A context for a command the client named (its `Idempotency-Key`): the id is the
    /// command's correlation and causation id, so its events can be found by it.
    pub fn for_command(actor: impl Into<String>, command_id: Uuid) -> Self {
        Self { correlation_id: command_id, causation_id: command_id, ..Self::new(actor) }
    }

    pub fn with_recorder(mut self, recorder: Option<Recorder>) -> Self {
        self.recorder = recorder;
        self
    }

    pub fn with_command_digest(mut self, digest: Option<String>) -> Self {
        self.command_digest = digest;
        self
    }

    pub fn with_decision(mut self, decision_id: Uuid) -> Self {
        self.decision_id = Some(decision_id);
        self
    }

    pub fn metadata(&self, occurred_at: DateTime<Utc>) -> EventMetadata {
        EventMetadata {
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            actor: self.actor.clone(),
            occurred_at: occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            decision_id: self.decision_id,
            command_digest: self.command_digest.clone(),
        }
    }
}

/// An event's metadata, in KurrentDB/EventStoreDB's well-known names where it has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventMetadata {
    #[serde(rename = "$correlationId")]
    pub correlation_id: Uuid,
    #[serde(rename = "$causationId")]
    pub causation_id: Uuid,
    pub actor: String,
    /// RFC 3339, UTC.
    #[serde(rename = "occurredAt")]
    pub occurred_at: String,
    #[serde(rename = "decisionId", default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<Uuid>,
    /// For a command the client named by an `Idempotency-Key` (its `$causationId`): the
    /// SHA-256 of what it asked, hex, to tell a retry from the key reused for something else.
    #[serde(rename = "commandDigest", default, skip_serializing_if = "Option::is_none")]
    pub command_digest: Option<String>,
}

impl EventMetadata {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("metadata has only strings and ids")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_kurrentdb_names() {
        let context = CommandContext::new("street_office:1").with_decision(Uuid::from_u128(7));
        let json: serde_json::Value = serde_json::from_str(&context.metadata(Utc::now()).to_json()).unwrap();
        assert_eq!(json["$correlationId"], json["$causationId"]);
        assert_eq!(json["actor"], "street_office:1");
        assert!(json["occurredAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(json["decisionId"], Uuid::from_u128(7).to_string());
    }
}
