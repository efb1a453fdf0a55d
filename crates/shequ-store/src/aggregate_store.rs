use std::marker::PhantomData;

use async_trait::async_trait;
use chrono::Utc;
use esrs::store::{EventStore, EventStoreLockGuard, StoreEvent};
use esrs::{Aggregate, AggregateState};
use shequ_domain::DomainEvent;
use uuid::Uuid;

use crate::error::StoreError;
use crate::log::{EventLog, QueuedAppend};
use crate::metadata::{CommandContext, RecordedRef};
use crate::record::{Appended, ExpectedRevision, NewEvent, StreamAppend};

/// esrs's `EventStore` for aggregate `A` on shequ's log, for one command.
///
/// Made per command by [`EventLog::aggregate_store`]: it is a clone of the log handle plus
/// the command's [`CommandContext`], so actor, correlation and causation reach `persist`
/// without global state. The aggregate's stream is `A::NAME-{aggregate id}`.
pub struct AggregateStore<A> {
    log: EventLog,
    context: CommandContext,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> std::fmt::Debug for AggregateStore<A> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AggregateStore").field("context", &self.context).finish_non_exhaustive()
    }
}

impl EventLog {
    /// A per-command handle implementing esrs's `EventStore` for aggregate `A`; every event
    /// it writes carries `context` in its metadata.
    pub fn aggregate_store<A>(&self, context: CommandContext) -> AggregateStore<A> {
        AggregateStore::new(self.clone(), context)
    }
}

impl<A> AggregateStore<A> {
    fn new(log: EventLog, context: CommandContext) -> Self {
        Self { log, context, aggregate: PhantomData }
    }

    /// The command context every event persisted through this handle carries.
    pub fn context(&self) -> &CommandContext {
        &self.context
    }
}

impl<A: Aggregate> AggregateStore<A> {
    /// The stream of one aggregate instance, e.g. `organisation-0190…`.
    pub fn stream(aggregate_id: Uuid) -> String {
        format!("{}-{}", A::NAME, aggregate_id.hyphenated())
    }
}

impl<A> AggregateStore<A>
where
    A: Aggregate,
    A::Event: DomainEvent,
{
    /// The aggregate's events from `from_revision` on, as esrs store events: what a state
    /// cached at that revision has not applied yet.
    pub async fn events_from(
        &self,
        aggregate_id: Uuid,
        from_revision: u64,
    ) -> Result<Vec<StoreEvent<A::Event>>, StoreError> {
        let recorded = self.log.read_stream_from(&Self::stream(aggregate_id), from_revision).await?;
        recorded
            .into_iter()
            .map(|event| {
                let payload =
                    A::Event::from_data(&event.event_type, event.event_version, &event.data).map_err(
                        |error| StoreError::Decode { position: event.position, reason: error.to_string() },
                    )?;
                Ok(StoreEvent {
                    id: event.event_id,
                    aggregate_id,
                    payload,
                    occurred_on: event.recorded_at,
                    sequence_number: sequence_number(event.revision),
                    version: Some(version(event.event_version)),
                })
            })
            .collect()
    }
}

impl<A> AggregateStore<A>
where
    A: Aggregate,
    A::Event: DomainEvent,
{
    /// Queues a command's events after `aggregate_state` without waiting for them to be
    /// durable (see [`EventLog::enqueue`]): `after` is the last event the state holds, when
    /// that event may not be committed yet. Returns the queued append and the events as esrs
    /// store events, for the state to apply at once; once the append is durable, tell the
    /// command's recorder with [`Self::record`].
    ///
    /// `joined`, if given, is another stream's part (see [`Self::first_part`]) that commits
    /// with this append, before it, or fails with it; its queued append comes back second.
    #[allow(clippy::type_complexity)]
    pub async fn enqueue(
        &self,
        aggregate_state: &AggregateState<A::State>,
        events: Vec<A::Event>,
        after: Option<Uuid>,
        joined: Option<StreamAppend>,
    ) -> Result<(QueuedAppend, Option<QueuedAppend>, Vec<StoreEvent<A::Event>>), StoreError> {
        let aggregate_id = *aggregate_state.id();
        let new_events = self.new_events(&events)?;
        let first_sequence = *aggregate_state.sequence_number() + 1;
        let store_events = events
            .into_iter()
            .zip(&new_events)
            .zip(first_sequence..)
            .map(|((payload, new_event), sequence_number)| StoreEvent {
                id: new_event.event_id,
                aggregate_id,
                version: Some(version(payload.event_version())),
                payload,
                occurred_on: Utc::now(),
                sequence_number,
            })
            .collect();
        let stream = Self::stream(aggregate_id);
        let expected = expected(aggregate_state);
        let Some(joined) = joined else {
            let queued = self.log.enqueue(&stream, expected, after, new_events).await?;
            return Ok((queued, None, store_events));
        };
        let own = StreamAppend { stream, expected, after, events: new_events };
        let mut queued = self.log.enqueue_all(vec![joined, own]).await?;
        let own = queued.pop().expect("two parts queued");
        let joined = queued.pop().expect("two parts queued");
        Ok((own, Some(joined), store_events))
    }

    /// A new aggregate's first events as one part of an append to several streams
    /// ([`EventLog::append_all`]): they commit only with the other parts, and only if the
    /// stream does not exist yet.
    pub fn first_part(&self, aggregate_id: Uuid, events: &[A::Event]) -> Result<StreamAppend, StoreError> {
        self.part(aggregate_id, ExpectedRevision::NoStream, events)
    }

    /// An aggregate's next events as one part of an append to several streams: they commit
    /// only with the other parts, and only if the stream is still at `expected`.
    pub fn part(
        &self,
        aggregate_id: Uuid,
        expected: ExpectedRevision,
        events: &[A::Event],
    ) -> Result<StreamAppend, StoreError> {
        Ok(StreamAppend {
            stream: Self::stream(aggregate_id),
            expected,
            after: None,
            events: self.new_events(events)?,
        })
    }

    /// Tells the command's recorder, if it has one, of events appended with these types.
    pub fn record(&self, event_types: &[&str], appended: &Appended) {
        let Some(recorder) = &self.context.recorder else {
            return;
        };
        for (event_type, appended_event) in event_types.iter().zip(&appended.events) {
            recorder.record(RecordedRef {
                stream: appended.stream.clone(),
                event_id: appended_event.event_id,
                event_type: (*event_type).to_owned(),
                position: appended_event.position,
                revision: appended_event.revision,
            });
        }
    }

    /// A command's events as the log takes them: fresh ids, the command's metadata.
    fn new_events(&self, events: &[A::Event]) -> Result<Vec<NewEvent>, StoreError> {
        let metadata = self.context.metadata(Utc::now()).to_json();
        events
            .iter()
            .map(|event| {
                let data = event.to_data().map_err(|error| StoreError::InvalidAppend(error.to_string()))?;
                Ok(NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event.event_type().to_owned(),
                    event_version: event.event_version(),
                    data,
                    metadata: metadata.clone(),
                })
            })
            .collect()
    }
}

/// What an append after `aggregate_state` expects: esrs counts events from 1, the log's
/// revisions count from 0.
fn expected<S: Default>(aggregate_state: &AggregateState<S>) -> ExpectedRevision {
    match *aggregate_state.sequence_number() {
        0 => ExpectedRevision::NoStream,
        sequence_number => ExpectedRevision::Exact(revision(sequence_number)),
    }
}

#[async_trait]
impl<A> EventStore for AggregateStore<A>
where
    A: Aggregate + Send + Sync,
    A::State: Send,
    A::Event: DomainEvent + Send + Sync,
{
    type Aggregate = A;
    type Error = StoreError;

    async fn lock(&self, aggregate_id: Uuid) -> Result<EventStoreLockGuard, StoreError> {
        Ok(self.log.locks().lock(aggregate_id).await)
    }

    async fn by_aggregate_id(&self, aggregate_id: Uuid) -> Result<Vec<StoreEvent<A::Event>>, StoreError> {
        self.events_from(aggregate_id, 0).await
    }

    async fn persist(
        &self,
        aggregate_state: &mut AggregateState<A::State>,
        events: Vec<A::Event>,
    ) -> Result<Vec<StoreEvent<A::Event>>, StoreError> {
        // A command that changes nothing records nothing.
        if events.is_empty() {
            return Ok(vec![]);
        }
        let aggregate_id = *aggregate_state.id();
        let new_events = self.new_events(&events)?;
        let stream = Self::stream(aggregate_id);
        let appended = self.log.append(&stream, expected(aggregate_state), new_events).await?;
        let types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
        self.record(&types, &appended);
        let store_events = events
            .into_iter()
            .zip(appended.events)
            .map(|(payload, appended_event)| {
                let next = aggregate_state.next_sequence_number();
                debug_assert_eq!(next, sequence_number(appended_event.revision));
                StoreEvent {
                    id: appended_event.event_id,
                    aggregate_id,
                    version: Some(version(payload.event_version())),
                    payload,
                    occurred_on: appended.recorded_at,
                    sequence_number: next,
                }
            })
            .collect();
        Ok(store_events)
    }

    /// Events reach projections through catch-up subscriptions on the log (which the writer
    /// wakes on every commit), not through esrs's buses, so there is nothing to publish here.
    async fn publish(&self, _store_events: &[StoreEvent<A::Event>]) {}

    /// The log is append-only: an aggregate is never deleted, only ended by an event.
    async fn delete(&self, _aggregate_id: Uuid) -> Result<(), StoreError> {
        Err(StoreError::AppendOnly)
    }
}

fn sequence_number(revision: u64) -> i32 {
    i32::try_from(revision + 1).expect("an aggregate stream stays below 2^31 events")
}

fn revision(sequence_number: i32) -> u64 {
    u64::try_from(sequence_number - 1).expect("esrs sequence numbers start at 1")
}

fn version(event_version: u32) -> i32 {
    i32::try_from(event_version).expect("event versions are small numbers")
}
