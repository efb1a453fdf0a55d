//! What belongs to one command: who sends it, the key it was sent under, the revision the
//! client decided on, and who hears of its events. One value, passed to the command; never
//! fields set on a shared [`Service`].

use shequ_domain::mandate::Mandate;
use shequ_store::{AggregateStore, CommandContext, EventMetadata, RecordedEvent, Recorder};
use uuid::Uuid;

use super::mandates::{outcome, MandateOutcome};
use super::runner::{revision_check, Known};
use super::turns::CommandTurn;
use super::Service;
use crate::actor::Actor;
use crate::error::{Result, ServiceError};

/// One command of a person's: its actor and what the client said of it.
#[derive(Debug)]
pub struct CommandScope {
    actor: Actor,
    key: Option<CommandKey>,
    expected_revision: Option<u64>,
    recorder: Option<Recorder>,
}

/// The key a client named its command by (HTTP's `Idempotency-Key`).
#[derive(Debug)]
struct CommandKey {
    id: Uuid,
    /// What the command asks, summed up (see [`CommandScope::keyed`]).
    digest: Option<String>,
    /// This attempt's turn at the command: the next attempt waits until the scope is dropped.
    _turn: CommandTurn,
}

/// Who runs a command. Only a person is authorised by `policies/authz`; the other two say
/// in their name why there is no one to authorise.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Caller<'a> {
    /// A person, with their command's scope.
    Person(&'a CommandScope),
    /// The operator setting a district up from the command line (`shequ setup`, `shequ demo`).
    Operator,
    /// The service itself: the contest timers, the policy bundle's record.
    System,
}

impl CommandScope {
    /// A command by `actor`, unkeyed, on the state as it stands, heard by no one.
    pub fn new(actor: Actor) -> Self {
        Self { actor, key: None, expected_revision: None, recorder: None }
    }

    /// The same command, named `key` by the client (HTTP's `Idempotency-Key`), asking what
    /// `digest` sums up (the action and its body, as the client sent them): its events carry
    /// the key as their correlation and causation id, and a command on a mandate or request
    /// whose stream already holds events caused by the key is not run again: it answers with
    /// those events and the state as it stands. A key sent again asking something else is
    /// refused instead of answered as a retry.
    ///
    /// Waits while another scope named by the same key is alive in this process (an attempt
    /// sent again while the first still runs), so that the second finds the first's events
    /// rather than acting on what it has half done.
    pub async fn keyed(self, service: &Service, key: Uuid, digest: Option<String>) -> Self {
        let turn = service.turns.take(key).await;
        Self { key: Some(CommandKey { id: key, digest, _turn: turn }), ..self }
    }

    /// The same command, holding only if its mandate or request is still at `revision` (its
    /// last event's; HTTP's `Expected-Revision`): the client decided on that state. Checked
    /// under the aggregate's lock against the stream itself, when the command's first event
    /// on it is decided; a stream that moved on answers a conflict and nothing of the command
    /// is written to it. A command already done under its key answers as the first time,
    /// whatever the revision now.
    pub fn expecting(self, revision: Option<u64>) -> Self {
        Self { expected_revision: revision, ..self }
    }

    /// The same command, recording every event it appends, and the recorder to read them
    /// from: how a command's caller learns what it produced.
    pub fn recording(self) -> (Self, Recorder) {
        let recorder = Recorder::new();
        (Self { recorder: Some(recorder.clone()), ..self }, recorder)
    }

    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// The metadata every event of this command carries.
    pub(crate) fn context(&self) -> CommandContext {
        let actor = self.actor.to_string();
        let context = match &self.key {
            Some(key) => CommandContext::for_command(actor, key.id).with_command_digest(key.digest.clone()),
            None => CommandContext::new(actor),
        };
        context.with_recorder(self.recorder.clone())
    }

    /// What this command knows of the stream it targets: [`Known::At`] the revision the
    /// client stated, if it stated one.
    pub(crate) fn known_target(&self) -> Known {
        self.expected_revision.map_or(Known::Stored, Known::At)
    }

    /// The revision the client stated, if it stated one.
    pub(crate) fn expected_revision(&self) -> Option<u64> {
        self.expected_revision
    }

    /// The client's stated revision against the mandate's `revision` as the command loaded it,
    /// without the lock: for a step that writes nothing to the mandate (finishing a refund or
    /// a move), the answer [`Known::At`] gives under the lock; before a command's other
    /// refusals, the same answer first. It is never the only check of a command that then
    /// writes to the mandate.
    pub(crate) fn check_revision(&self, mandate: Uuid, revision: u64) -> Result<()> {
        let Some(expected) = self.expected_revision else { return Ok(()) };
        revision_check(&AggregateStore::<Mandate>::stream(mandate), expected, Some(revision))
    }
}

impl Caller<'_> {
    /// The metadata every event of the command carries; a command of no person's is the
    /// system's.
    pub(crate) fn context(self) -> CommandContext {
        match self {
            Caller::Person(scope) => scope.context(),
            Caller::Operator | Caller::System => CommandContext::new("system"),
        }
    }
}

impl Service {
    /// Whether the command of `scope` already ran on `stream`: events there carry its key.
    /// They are told to the recorder, as the command's own. A key that caused events of
    /// another kind of command than `expected` (the types the command's first event may have)
    /// is refused.
    pub(crate) async fn already_done(
        &self,
        scope: &CommandScope,
        stream: &str,
        expected: &[&str],
    ) -> Result<bool> {
        let Some(key) = &scope.key else { return Ok(false) };
        let command_id = key.id;
        let metadata = |event: &RecordedEvent| serde_json::from_str::<EventMetadata>(&event.metadata).ok();
        let caused: Vec<_> = self
            .log
            .read_stream(stream)
            .await?
            .into_iter()
            .filter(|event| metadata(event).is_some_and(|metadata| metadata.causation_id == command_id))
            .collect();
        let Some(first) = caused.first() else { return Ok(false) };
        let reused = |what: String| {
            Err(ServiceError::KeyReused(format!(
                "Idempotency-Key {command_id} was first used {what}: a new command needs a new key"
            )))
        };
        if !expected.contains(&first.event_type.as_str()) {
            return reused(format!("for another command ({} on {stream})", first.event_type));
        }
        // Events recorded before digests were kept carry none: the kind of command decides.
        let first_digest = metadata(first).and_then(|metadata| metadata.command_digest);
        if let (Some(first_digest), Some(digest)) = (first_digest, &key.digest) {
            if first_digest != *digest {
                return reused(format!("with another body (for {} on {stream})", first.event_type));
            }
        }
        if let Some(recorder) = &scope.recorder {
            caused.iter().for_each(|event| recorder.record(event.into()));
        }
        Ok(true)
    }

    /// [`Self::already_done`] on mandate `mandate`'s stream.
    pub(crate) async fn already_done_on_mandate(
        &self,
        scope: &CommandScope,
        mandate: Uuid,
        expected: &[&str],
    ) -> Result<bool> {
        self.already_done(scope, &AggregateStore::<Mandate>::stream(mandate), expected).await
    }

    /// For a command on a mandate that ran before under the scope's key: the mandate as it
    /// stands (see [`Self::already_done`]).
    pub(crate) async fn answered_before(
        &self,
        scope: &CommandScope,
        mandate: Uuid,
        expected: &[&str],
    ) -> Result<Option<MandateOutcome>> {
        match self.already_done_on_mandate(scope, mandate, expected).await? {
            true => Ok(Some(outcome(mandate, &self.load::<Mandate>(mandate).await?, None))),
            false => Ok(None),
        }
    }
}
