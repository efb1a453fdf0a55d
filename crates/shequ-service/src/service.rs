use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError};

use chrono::SecondsFormat;
use esrs::manager::AggregateManager;
use esrs::store::{EventStore, StoreEvent};
use esrs::{Aggregate, AggregateState};
use shequ_domain::catalogue::{Catalogue, CatalogueCommand, Matter, CATALOGUE_ID};
use shequ_domain::ledger::{Account, Ledger, LedgerCommand, LedgerError, LedgerState};
use shequ_domain::mandate::{
    ContestGround, Cure, Decision, Mandate, MandateCommand, MandateError, MandateEvent, MandateRecord,
    MandateStatus, Proposal, ReviewOutcome, Violation,
};
use shequ_domain::organisation::{
    Organisation, OrganisationCommand, OrganisationKind, ParentRef, Registered,
};
use shequ_domain::{DomainEvent, Fen};
use shequ_policy::Policies;
use shequ_store::{CommandContext, EventLog, ExpectedRevision, NewEvent, QueuedAppend, Recorder, StoreError};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::actor::Actor;
use crate::clock::Clock;
use crate::error::ServiceError;
use crate::projection::Projection;
use crate::read_model::ReadModel;

mod reads;
mod requests;
mod turns;

pub use reads::{
    LedgerView, MandateFilter, StateAsOf, Timeline, TimelineEntry, TransferEntry, TransferFilter,
};
pub use requests::{FileRequest, RequestAction, RequestFilter};

/// Days a contest may stay unanswered before it escalates to the district by itself.
pub const CONTEST_DAYS_DEFAULT: i64 = 15;
/// How often a command is tried when another process keeps writing the same stream.
const CONFLICT_ATTEMPTS: u32 = 3;
/// A stream at least this long has its state kept between commands (see [`StateCache`]).
const CACHED_STREAM_EVENTS_MIN: i32 = 16;
/// The most aggregate states kept between commands.
const CACHED_STATES_MAX: usize = 1_024;

/// The command path. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    log: EventLog,
    policies: Policies,
    clock: Arc<dyn Clock>,
    contest_days: i64,
    timers: Arc<Mutex<ContestTimers>>,
    read_model: ReadModel,
    states: Arc<StateCache>,
    /// Told of every event this handle's commands append (see [`Service::recording`]).
    recorder: Option<Recorder>,
    /// The client's id for this handle's command, if it named one (see
    /// [`Service::with_command_id`]).
    command_id: Option<Uuid>,
    /// Attempts at commands named by the same id take turns, in this process.
    turns: Arc<turns::CommandTurns>,
    /// This handle's turn at its named command: the next attempt waits until it is dropped.
    _turn: Option<Arc<turns::CommandTurn>>,
    /// A digest of what the named command asks (see [`Service::with_command_digest`]).
    command_digest: Option<String>,
    /// The revision the client saw its command's mandate or request at, if it stated one (see
    /// [`Service::expecting`]).
    expected_revision: Option<u64>,
}

/// The data of a `PolicyBundleRecorded` event (stream `policy-{digest}`): the policy bundle's
/// every file, so that any decision citing the digest can be re-run from the log alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PolicyBundleRecorded {
    /// The SHA-256 content digest of the bundle, hex (`docs/audit-format.md`).
    pub digest: String,
    /// Each file's text by its path in the bundle.
    pub files: BTreeMap<String, String>,
}

/// What became of a mandate after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateOutcome {
    pub mandate: Uuid,
    pub status: MandateStatus,
    /// The violations of the decision this command made, if it made one.
    pub violations: Vec<Violation>,
    pub decision_id: Option<Uuid>,
}

/// Where an action lands in the hierarchy, for `policies/authz`. A member that does not apply
/// is absent from the policy's input, not null: Rego's `not` holds only for undefined (or
/// false) values.
#[derive(Debug, Default, serde::Serialize)]
struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    district: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    street: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    community: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delegating_unit: Option<Uuid>,
    /// The account a budget allocation leaves.
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<Uuid>,
    /// The organisation holding a service request.
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<Uuid>,
    /// The resident a service request is for (their token subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    resident: Option<String>,
}

/// `policies/authz/authz.rego`'s input, written straight to its JSON text: the key of the
/// answers remembered, parsed only when the policy has not answered it yet.
#[derive(serde::Serialize)]
struct AuthzInput<'a> {
    actor: AuthzActor<'a>,
    action: &'a str,
    target: &'a Target,
}

/// The actor as the policy sees it; its members are null, not absent, when unknown.
#[derive(serde::Serialize)]
struct AuthzActor<'a> {
    role: &'a str,
    organisation: Uuid,
    kind: Option<OrganisationKind>,
    district: Option<Uuid>,
    subject: Option<&'a str>,
}

impl Service {
    /// Makes the command path over `log`, and records the policy bundle in the log if this
    /// bundle (by digest) is not there yet, so every decision can be re-run on its text.
    pub async fn new(log: EventLog, policies: Policies, clock: Arc<dyn Clock>) -> Result<Self, ServiceError> {
        let service = Self {
            policies,
            clock,
            contest_days: CONTEST_DAYS_DEFAULT,
            timers: Arc::new(Mutex::new(ContestTimers::default())),
            read_model: ReadModel::new(log.clone()),
            recorder: None,
            command_id: None,
            turns: Arc::default(),
            _turn: None,
            command_digest: None,
            expected_revision: None,
            states: Arc::default(),
            log,
        };
        service.record_bundle().await?;
        Ok(service)
    }

    pub fn with_contest_days(mut self, days: i64) -> Self {
        self.contest_days = days;
        self
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// A handle on the same service that records every event its commands append, and the
    /// recorder to read them from: how a command's caller learns what it produced.
    pub fn recording(&self) -> (Service, Recorder) {
        let recorder = Recorder::new();
        (Self { recorder: Some(recorder.clone()), ..self.clone() }, recorder)
    }

    /// A handle whose command the client named `command_id` (HTTP's `Idempotency-Key`): its
    /// events carry the id as their correlation and causation id, and a command on a mandate
    /// or request whose stream already holds events caused by the id is not run again: it
    /// answers with those events and the state as it stands.
    ///
    /// Waits while another handle named by the same id is alive in this process (an attempt
    /// sent again while the first still runs), so that the second finds the first's events
    /// rather than acting on what it has half done.
    pub async fn with_command_id(&self, command_id: Option<Uuid>) -> Service {
        let turn = match command_id {
            Some(id) => Some(Arc::new(self.turns.take(id).await)),
            None => None,
        };
        Self { command_id, _turn: turn, ..self.clone() }
    }

    /// A handle whose named command ([`Self::with_command_id`]) asks what `digest` sums up (the
    /// action and its body, as the client sent them): recorded with its events, so that the
    /// same id sent again asking something else is refused instead of answered as a retry.
    pub fn with_command_digest(&self, digest: Option<String>) -> Service {
        Self { command_digest: digest, ..self.clone() }
    }

    /// A handle whose command holds only if its mandate or request is still at `revision` (its
    /// last event's; HTTP's `Expected-Revision`): the client decided on that state. Checked
    /// under the aggregate's lock against the stream itself, when the command's first event
    /// on it is decided; a stream that moved on answers [`StoreError::Conflict`] and nothing
    /// of the command is written to it. A command already done under its key
    /// ([`Self::with_command_id`]) answers as the first time, whatever the revision now.
    pub fn expecting(&self, revision: Option<u64>) -> Service {
        Self { expected_revision: revision, ..self.clone() }
    }

    /// What this handle's command knows of the stream it targets: [`Known::At`] the revision
    /// the client stated, if it stated one.
    fn known_target(&self) -> Known {
        self.expected_revision.map_or(Known::Stored, Known::At)
    }

    /// The client's stated revision against the mandate's `revision` as the command loaded it,
    /// without the lock: for a step that writes nothing to the mandate (finishing a refund or
    /// a move), the answer [`Known::At`] gives under the lock; before a command's other
    /// refusals, the same answer first. It is never the only check of a command that then
    /// writes to the mandate.
    fn check_revision(&self, mandate: Uuid, revision: u64) -> Result<(), ServiceError> {
        let Some(expected) = self.expected_revision else { return Ok(()) };
        revision_check(&shequ_store::AggregateStore::<Mandate>::stream(mandate), expected, Some(revision))
    }

    /// Whether this handle's command already ran on `stream`: events there carry its command
    /// id. They are told to the recorder, as the command's own. A command id that caused
    /// events of another kind of command than `expected` (the types the command's first event
    /// may have) is refused.
    async fn already_done(&self, stream: &str, expected: &[&str]) -> Result<bool, ServiceError> {
        let Some(command_id) = self.command_id else { return Ok(false) };
        let metadata = |event: &shequ_store::RecordedEvent| {
            serde_json::from_str::<shequ_store::EventMetadata>(&event.metadata).ok()
        };
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
        if let (Some(first_digest), Some(digest)) = (first_digest, &self.command_digest) {
            if first_digest != *digest {
                return reused(format!("with another body (for {} on {stream})", first.event_type));
            }
        }
        if let Some(recorder) = &self.recorder {
            caused.iter().for_each(|event| recorder.record(event.into()));
        }
        Ok(true)
    }

    /// [`Self::already_done`] on mandate `mandate`'s stream.
    async fn already_done_on_mandate(&self, mandate: Uuid, expected: &[&str]) -> Result<bool, ServiceError> {
        self.already_done(&shequ_store::AggregateStore::<Mandate>::stream(mandate), expected).await
    }

    /// For a command on a mandate that ran before under this handle's command id: the mandate
    /// as it stands (see [`Self::already_done`]).
    async fn answered_before(
        &self,
        mandate: Uuid,
        expected: &[&str],
    ) -> Result<Option<MandateOutcome>, ServiceError> {
        match self.already_done_on_mandate(mandate, expected).await? {
            true => Ok(Some(outcome(mandate, &self.load::<Mandate>(mandate).await?, None))),
            false => Ok(None),
        }
    }

    /// The live projection, caught up on each read.
    pub fn read_model(&self) -> &ReadModel {
        &self.read_model
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The stream that holds a bundle's text: `policy-{digest}`.
    pub fn bundle_stream(digest: &str) -> String {
        format!("policy-{digest}")
    }

    async fn record_bundle(&self) -> Result<(), ServiceError> {
        let bundle = self.policies.bundle();
        let recorded =
            PolicyBundleRecorded { digest: bundle.digest().to_owned(), files: bundle.files().clone() };
        let data = serde_json::to_string(&recorded).expect("a bundle is plain text");
        let metadata = CommandContext::new("system").metadata(self.clock.now()).to_json();
        // The id is derived from the digest, so every process records one and the same event.
        let event_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, bundle.digest().as_bytes());
        let event = NewEvent {
            event_id,
            event_type: "PolicyBundleRecorded".into(),
            event_version: 1,
            data,
            metadata,
        };
        match self
            .log
            .append(&Self::bundle_stream(bundle.digest()), ExpectedRevision::NoStream, vec![event])
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    // ----- Organisations, catalogue, budgets -------------------------------------------------

    /// Registers an organisation. `actor` is `None` for the operator setting up the district.
    pub async fn register_organisation(
        &self,
        actor: Option<Actor>,
        id: Uuid,
        kind: OrganisationKind,
        name: &str,
        parent: Option<Uuid>,
        code: Option<&str>,
    ) -> Result<(), ServiceError> {
        let parent = match parent {
            None => None,
            Some(parent_id) => {
                Some(ParentRef { id: parent_id, kind: self.organisation(parent_id).await?.kind })
            }
        };
        if let Some(actor) = actor {
            let district = match parent {
                Some(parent) => Some(self.district_of(parent.id).await?),
                None => None,
            };
            self.authorize(&actor, "organisation.register", Target { district, ..Target::default() }).await?;
        }
        let command = OrganisationCommand::Register {
            kind,
            name: name.to_owned(),
            parent,
            code: code.map(str::to_owned),
        };
        self.execute::<Organisation>(self.context(actor), id, command).await?;
        Ok(())
    }

    /// An organisation as the live projection holds it.
    pub async fn organisation(&self, id: Uuid) -> Result<Registered, ServiceError> {
        let view = self.read_model.read().await?.organisation(id);
        view.map(|view| Registered {
            kind: view.kind,
            name: view.name,
            parent_id: view.parent_id,
            code: view.code,
        })
        .ok_or_else(|| ServiceError::NotFound(format!("organisation {id}")))
    }

    /// Publishes the catalogue; returns its version (the catalogue stream's length).
    pub async fn publish_catalogue(
        &self,
        actor: Option<Actor>,
        matters: Vec<Matter>,
    ) -> Result<u64, ServiceError> {
        if let Some(actor) = actor {
            let district = self.district_of(actor.organisation).await?;
            self.authorize(
                &actor,
                "catalogue.publish",
                Target { district: Some(district), ..Target::default() },
            )
            .await?;
        }
        self.execute::<Catalogue>(self.context(actor), CATALOGUE_ID, CatalogueCommand::Publish { matters })
            .await?;
        Ok(self.catalogue().await?.0)
    }

    /// The live catalogue and its version.
    pub async fn catalogue(&self) -> Result<(u64, BTreeMap<String, Matter>), ServiceError> {
        let projection = self.read_model.read().await?;
        Ok((projection.catalogue_version(), projection.catalogue().matters.clone()))
    }

    /// Moves budget to `to`, from the fiscal budget (`from: None`, operator or district only)
    /// or from its parent organisation.
    pub async fn allocate(
        &self,
        actor: Option<Actor>,
        transfer_id: Uuid,
        from: Option<Uuid>,
        to: Uuid,
        amount_fen: Fen,
        memo: &str,
    ) -> Result<(), ServiceError> {
        let recipient = self.organisation(to).await?;
        let district = self.district_of(to).await?;
        if let Some(actor) = actor {
            let street = match recipient.kind {
                OrganisationKind::Community => recipient.parent_id,
                _ => None,
            };
            let target = Target { district: Some(district), street, from, ..Target::default() };
            self.authorize(&actor, "ledger.allocate", target).await?;
        }
        let command = LedgerCommand::Allocate { transfer_id, from, to, amount_fen, memo: memo.to_owned() };
        self.execute_quietly::<Ledger>(self.context(actor), district, command).await?;
        Ok(())
    }

    /// An RFC 6962 inclusion proof, for an actor allowed to read the audit trail.
    pub async fn inclusion_proof(
        &self,
        actor: Actor,
        position: u64,
        tree_size: u64,
    ) -> Result<shequ_store::InclusionProof, ServiceError> {
        self.authorize_audit(&actor).await?;
        Ok(self.log.inclusion_proof(position, tree_size).await?)
    }

    /// An RFC 6962 consistency proof, for an actor allowed to read the audit trail.
    pub async fn consistency_proof(
        &self,
        actor: Actor,
        first: u64,
        second: u64,
    ) -> Result<shequ_store::ConsistencyProof, ServiceError> {
        self.authorize_audit(&actor).await?;
        Ok(self.log.consistency_proof(first, second).await?)
    }

    async fn authorize_audit(&self, actor: &Actor) -> Result<(), ServiceError> {
        let district = self.district_of(actor.organisation).await?;
        self.authorize(actor, "read.audit", Target { district: Some(district), ..Target::default() }).await
    }

    /// One account's balance, from the live projection.
    async fn balance(&self, district: Uuid, account: Account) -> Result<i64, ServiceError> {
        Ok(self.read_model.read().await?.balance(district, account))
    }

    pub async fn ledger(&self, district: Uuid) -> Result<LedgerState, ServiceError> {
        self.load_kept::<Ledger>(district).await
    }

    // ----- Mandates ---------------------------------------------------------------------------

    /// A street office or department proposes a mandate. The access policy decides; a refusal
    /// is recorded too, and comes back with its violations. Admitted funds are reserved.
    pub async fn propose(
        &self,
        actor: Actor,
        mandate: Uuid,
        proposal: Proposal,
    ) -> Result<MandateOutcome, ServiceError> {
        let (district, street) = self.community_place(proposal.community).await?;
        let delegating_unit = proposal.delegating_unit;
        let target = Target {
            district: Some(district),
            street: Some(street),
            community: Some(proposal.community),
            delegating_unit: Some(delegating_unit),
            ..Target::default()
        };
        self.authorize(&actor, "mandate.propose", target).await?;
        let available =
            self.balance(district, Account::Organisation { organisation: delegating_unit }).await?;
        let decision = self.decide(&proposal, Some(available)).await?;
        let decision_id = decision.decision_id;
        let admitted = decision.admits();
        let funds = proposal.funds_offered_fen;
        let context = self.context(Some(actor)).with_decision(decision_id);
        let command = MandateCommand::Propose { proposal, decision };
        // Bound first: a guard in the match would be held across the commit below, and hold
        // up every read behind the projection's next fold.
        let known = self.read_model.read().await?.has_mandate(mandate);
        let reserve = (admitted && funds > Fen::ZERO).then(|| LedgerCommand::Reserve {
            transfer_id: derived(mandate, "reserve"),
            mandate,
            from: delegating_unit,
            amount_fen: funds,
        });
        if let (false, Some(reserve)) = (known, &reserve) {
            let mandate_stream = shequ_store::AggregateStore::<Mandate>::stream(mandate);
            let exists = |error: &ServiceError| matches!(error, ServiceError::Store(StoreError::Conflict { stream, .. }) if *stream == mandate_stream);
            let joined =
                self.propose_with_funds(&context, mandate, district, &command, reserve.clone()).await;
            match joined {
                Ok(state) => return Ok(outcome(mandate, &state, Some(decision_id))),
                // The balance moved between the decision and the reservation: the mandate
                // cannot be funded, so it does not stand. Nothing was written; its proposal
                // and its withdrawal are then one append, so it is never admitted unfunded.
                Err(ServiceError::Ledger(error)) => {
                    tracing::warn!(%mandate, %error, "funds could not be reserved; the mandate is withdrawn");
                    let reason = format!("funds could not be reserved: {error}");
                    match self.propose_withdrawn(&context, mandate, &command, reason).await {
                        Ok(state) => return Ok(outcome(mandate, &state, Some(decision_id))),
                        Err(error) if exists(&error) => {}
                        Err(error) => return Err(error),
                    }
                }
                // The mandate exists after all (another process wrote it, or this is a retry the
                // projection has not seen yet): nothing was written, and the command below
                // answers as the first time.
                Err(error) if exists(&error) => {}
                // Anything else (the ledger in conflict with another process, a database
                // error): nothing was written, and the same proposal may be sent again.
                Err(error) => return Err(error),
            }
        }
        let state = match known {
            true => self.execute::<Mandate>(context.clone(), mandate, command).await?,
            false => self.execute_known::<Mandate>(context.clone(), mandate, command, Known::New).await?,
        };
        // A new mandate with funds to reserve was written above, with them. Here it was known
        // already, and proposing it again answers `AlreadyExists`; were it ever admitted here,
        // its funds are reserved in a second append.
        if let Some(reserve) = reserve {
            if let Err(error) = self.execute_quietly::<Ledger>(context.clone(), district, reserve).await {
                // The balance moved between the decision and the reservation: the mandate
                // cannot be funded, so it does not stand.
                tracing::warn!(%mandate, %error, "funds could not be reserved; withdrawing the mandate");
                let reason = format!("funds could not be reserved: {error}");
                let state =
                    self.execute::<Mandate>(context, mandate, MandateCommand::Withdraw { reason }).await?;
                return Ok(outcome(mandate, &state, Some(decision_id)));
            }
        }
        Ok(outcome(mandate, &state, Some(decision_id)))
    }

    /// A new mandate's first events and the reservation of its funds, in one append to both
    /// streams (see [`Joined`]). The mandate's events are decided here, on the empty state, as
    /// esrs's manager would decide them on a stream that does not exist; its stream's expected
    /// revision (none) guards that, and a conflict on it comes back as the store's error.
    async fn propose_with_funds(
        &self,
        context: &CommandContext,
        mandate: Uuid,
        district: Uuid,
        command: &MandateCommand,
        reserve: LedgerCommand,
    ) -> Result<shequ_domain::mandate::MandateState, ServiceError> {
        let empty = shequ_domain::mandate::MandateState::default();
        let events = Mandate::handle_command(&empty, command.clone())?;
        let joined = Joined::first_events(self.log.aggregate_store(context.clone()), mandate, &events)?;
        self.run::<Ledger>(context.clone(), district, reserve, Known::Stored, Answer::Nothing, Some(&joined))
            .await?;
        Ok(events.into_iter().fold(empty, Mandate::apply_event))
    }

    /// A new mandate proposed, admitted and withdrawn (its funds could not be reserved), in one
    /// append to its stream.
    async fn propose_withdrawn(
        &self,
        context: &CommandContext,
        mandate: Uuid,
        command: &MandateCommand,
        reason: String,
    ) -> Result<shequ_domain::mandate::MandateState, ServiceError> {
        let empty = shequ_domain::mandate::MandateState::default();
        let mut events = Mandate::handle_command(&empty, command.clone())?;
        let proposed = events.iter().cloned().fold(empty.clone(), Mandate::apply_event);
        events.extend(Mandate::handle_command(&proposed, MandateCommand::Withdraw { reason })?);
        let alone = Joined::first_events(self.log.aggregate_store(context.clone()), mandate, &events)?;
        alone.append_alone(&self.log).await?;
        Ok(events.into_iter().fold(empty, Mandate::apply_event))
    }

    /// A community records a task that reached it outside the access process and contests
    /// it: the policy decides it as if it had been proposed, and the delegating unit must
    /// cure or withdraw it.
    pub async fn record_outside_process(
        &self,
        actor: Actor,
        mandate: Uuid,
        proposal: Proposal,
        statement: &str,
    ) -> Result<MandateOutcome, ServiceError> {
        // Authorised before the place is checked: whoever is not this community gets a 403,
        // not a hint about what the id is.
        let place = self.community_place(proposal.community).await.ok();
        let target = Target {
            district: place.map(|(district, _)| district),
            street: place.map(|(_, street)| street),
            community: Some(proposal.community),
            delegating_unit: Some(proposal.delegating_unit),
            ..Target::default()
        };
        self.authorize(&actor, "mandate.record_outside_process", target).await?;
        self.community_place(proposal.community).await?;
        self.organisation(proposal.delegating_unit).await?;
        let decision = self.decide(&proposal, None).await?;
        let decision_id = decision.decision_id;
        let command = MandateCommand::RecordOutsideProcess {
            proposal,
            decision,
            contest_id: Uuid::now_v7(),
            statement: statement.to_owned(),
            contest_deadline: self.contest_deadline(),
        };
        let state = self
            .execute::<Mandate>(self.context(Some(actor)).with_decision(decision_id), mandate, command)
            .await?;
        Ok(outcome(mandate, &state, Some(decision_id)))
    }

    /// The community accepts: its funds are posted to its mandate account and the mandate
    /// becomes active. It is never active unfunded.
    pub async fn accept(&self, actor: Actor, mandate: Uuid) -> Result<MandateOutcome, ServiceError> {
        let (record, district, revision) =
            self.authorize_on_mandate(&actor, mandate, "mandate.accept").await?;
        let done = self.already_done_on_mandate(mandate, &["MandateAccepted"]).await?;
        if done && record.status != MandateStatus::Accepted {
            return Ok(outcome(mandate, &self.load::<Mandate>(mandate).await?, None));
        }
        let context = self.context(Some(actor));
        // An earlier attempt that stopped after accepting goes on from there; under its own key
        // whatever revision it was sent with, which its first attempt moved on.
        // Resuming without the key, the activation is the command's first event on the
        // mandate (the posting is the ledger's): it is the one checked against the revision.
        let activate_at = match record.status {
            MandateStatus::Accepted if done => Known::Stored,
            MandateStatus::Accepted => {
                // Checked before the money is posted, and again under the lock.
                self.check_revision(mandate, revision)?;
                self.known_target()
            }
            _ => {
                self.execute_known::<Mandate>(
                    context.clone(),
                    mandate,
                    MandateCommand::Accept,
                    self.known_target(),
                )
                .await?;
                Known::Stored
            }
        };
        let state = self.post_and_activate(context, mandate, district, activate_at).await?;
        Ok(outcome(mandate, &state, None))
    }

    /// Posts what is reserved for an accepted mandate to its community, and activates it.
    /// The activation is decided knowing the mandate `activate_at` ([`Known::At`] the
    /// client's revision when it is the command's first event on the mandate).
    async fn post_and_activate(
        &self,
        context: CommandContext,
        mandate: Uuid,
        district: Uuid,
        activate_at: Known,
    ) -> Result<shequ_domain::mandate::MandateState, ServiceError> {
        let record = self.mandate(mandate).await?;
        let community = record.proposal.community;
        if self.balance(district, Account::Reserved { mandate }).await? > 0 {
            // The id depends on the total offered, so a retry posts once and a cure's new
            // funds post again.
            let purpose = format!("post/{}", record.proposal.funds_offered_fen.get());
            let post = LedgerCommand::Post { transfer_id: derived(mandate, &purpose), mandate, community };
            self.execute_quietly::<Ledger>(context.clone(), district, post).await?;
        }
        let posted = self.balance(district, Account::Mandate { mandate, community }).await?;
        let posted = Fen::parse(posted).map_err(|error| ServiceError::Invalid(error.to_string()))?;
        let activate = MandateCommand::Activate { funds_posted_fen: posted };
        self.execute_known::<Mandate>(context, mandate, activate, activate_at).await
    }

    /// The community contests; while the contest is open it owes no work on the mandate.
    pub async fn contest(
        &self,
        actor: Actor,
        mandate: Uuid,
        grounds: Vec<ContestGround>,
        statement: &str,
    ) -> Result<MandateOutcome, ServiceError> {
        self.authorize_on_mandate(&actor, mandate, "mandate.contest").await?;
        if let Some(answer) = self.answered_before(mandate, &["MandateContested"]).await? {
            return Ok(answer);
        }
        let command = MandateCommand::Contest {
            contest_id: Uuid::now_v7(),
            grounds,
            statement: statement.to_owned(),
            contest_deadline: self.contest_deadline(),
        };
        let state = self
            .execute_known::<Mandate>(self.context(Some(actor)), mandate, command, self.known_target())
            .await?;
        Ok(outcome(mandate, &state, None))
    }

    /// The delegating unit cures a contested mandate: added funds are reserved, and the
    /// cured proposal is decided again. A cure that satisfies the policy resumes the mandate.
    pub async fn cure(
        &self,
        actor: Actor,
        mandate: Uuid,
        cure: Cure,
    ) -> Result<MandateOutcome, ServiceError> {
        let (record, district, revision) = self.authorize_on_mandate(&actor, mandate, "mandate.cure").await?;
        if self.already_done_on_mandate(mandate, &["MandateCured"]).await? {
            // Sent again under its key. A mandate left accepted (a cure that resumed it with
            // new funds stopped before posting them) is owed its funds and its activation:
            // they are posted now, so it is never left accepted and unfunded.
            let state = match record.status {
                MandateStatus::Accepted => {
                    self.post_and_activate(self.context(Some(actor)), mandate, district, Known::Stored)
                        .await?
                }
                _ => self.load::<Mandate>(mandate).await?,
            };
            return Ok(outcome(mandate, &state, None));
        }
        // A client that decided on another state hears so first.
        self.check_revision(mandate, revision)?;
        // Refuse before any money moves: only a contested mandate can be cured.
        let contest = match (&record.contest, record.status) {
            (Some(contest), MandateStatus::Contested) => contest.clone(),
            (_, status) => return Err(MandateError::WrongStatus { status, action: "cured" }.into()),
        };
        let mut cured = record.proposal.clone();
        cured.funds_offered_fen = cured
            .funds_offered_fen
            .checked_add(cure.funds_added_fen)
            .ok_or_else(|| ServiceError::Invalid("funds_added_fen: the cured total is too large".into()))?;
        cured.powers_granted.extend(cure.powers_added.iter().cloned());
        cured.working_conditions.extend(cure.working_conditions_added.iter().cloned());
        // What the unit can pay the cured total from: its balance and whatever it already put
        // into this mandate (reserved or posted).
        let ledger = self.ledger(district).await?;
        let unit = Account::Organisation { organisation: record.proposal.delegating_unit };
        let already: i64 = ledger.mandate_funds(mandate).iter().map(|(_, balance)| balance).sum();
        let decision = self.decide(&cured, Some(ledger.balance(unit) + already)).await?;
        let decision_id = decision.decision_id;
        let context = self.context(Some(actor)).with_decision(decision_id);
        let funds_added = cure.funds_added_fen;
        let command = MandateCommand::Cure { cure, decision };
        let mut state = match funds_added > Fen::ZERO {
            true => {
                // The id depends on the contest and the total before this cure: a cure sent
                // again reserves once, a second cure in the same contest reserves again.
                let purpose = format!("cure/{}", record.proposal.funds_offered_fen.get());
                let reserve = LedgerCommand::Reserve {
                    transfer_id: derived(contest.contest_id, &purpose),
                    mandate,
                    from: record.proposal.delegating_unit,
                    amount_fen: funds_added,
                };
                self.cure_with_funds(&context, mandate, district, command, reserve).await?
            }
            false => {
                self.execute_known::<Mandate>(context.clone(), mandate, command, self.known_target()).await?
            }
        };
        // A mandate that was active resumes only once the new funds are posted.
        let resumed_accepted =
            state.mandate.as_ref().is_some_and(|cured| cured.status == MandateStatus::Accepted);
        if contest.resumes == MandateStatus::Active && resumed_accepted {
            state = self.post_and_activate(context, mandate, district, Known::Stored).await?;
        }
        Ok(outcome(mandate, &state, Some(decision_id)))
    }

    /// A cure's events and the reservation of the funds it adds, in one append to both streams
    /// (see [`Joined`]): the money moves only if the mandate is cured, and the mandate is never
    /// cured on money that was not reserved. The cure is decided on the mandate as the log
    /// holds it, under its lock, and at the revision the client stated, if it stated one; that
    /// revision guards the append, so another process's command in between is a conflict and
    /// nothing is written.
    async fn cure_with_funds(
        &self,
        context: &CommandContext,
        mandate: Uuid,
        district: Uuid,
        command: MandateCommand,
        reserve: LedgerCommand,
    ) -> Result<shequ_domain::mandate::MandateState, ServiceError> {
        let store = self.log.aggregate_store::<Mandate>(context.clone());
        let _guard = store.lock(mandate).await?;
        let state = Self::with_tail(&store, AggregateState::with_id(mandate)).await?;
        let stream = shequ_store::AggregateStore::<Mandate>::stream(mandate);
        let revision = last_revision(*state.sequence_number());
        if let Some(expected) = self.expected_revision {
            revision_check(&stream, expected, revision)?;
        }
        let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        let state = state.into_inner();
        let events = Mandate::handle_command(&state, command)?;
        let joined = Joined::next_events(store, mandate, expected, &events)?;
        self.run::<Ledger>(context.clone(), district, reserve, Known::Stored, Answer::Nothing, Some(&joined))
            .await?;
        Ok(events.into_iter().fold(state, Mandate::apply_event))
    }

    /// A reviewer at district level upholds (the mandate is withdrawn and its funds go back)
    /// or dismisses a contest.
    pub async fn review(
        &self,
        actor: Actor,
        mandate: Uuid,
        review: ReviewOutcome,
        reason: &str,
    ) -> Result<MandateOutcome, ServiceError> {
        let (record, district, revision) =
            self.authorize_on_mandate(&actor, mandate, "contest.review").await?;
        let done = self.already_done_on_mandate(mandate, &["ContestUpheld", "ContestDismissed"]).await?;
        if review == ReviewOutcome::Uphold && record.status == MandateStatus::Withdrawn {
            // An upheld contest whose refund did not finish: finish it.
            if !done {
                self.check_revision(mandate, revision)?;
            }
            self.return_funds(Some(actor), mandate, &record, district).await?;
            return Ok(MandateOutcome {
                mandate,
                status: record.status,
                violations: vec![],
                decision_id: None,
            });
        }
        if done {
            return Ok(outcome(mandate, &self.load::<Mandate>(mandate).await?, None));
        }
        let command = MandateCommand::Review {
            outcome: review,
            reviewer: actor.organisation,
            reason: reason.to_owned(),
        };
        let state = self
            .execute_known::<Mandate>(self.context(Some(actor)), mandate, command, self.known_target())
            .await?;
        if review == ReviewOutcome::Uphold {
            self.return_funds(Some(actor), mandate, &record, district).await?;
        }
        Ok(outcome(mandate, &state, None))
    }

    pub async fn withdraw(
        &self,
        actor: Actor,
        mandate: Uuid,
        reason: &str,
    ) -> Result<MandateOutcome, ServiceError> {
        let (record, district, revision) =
            self.authorize_on_mandate(&actor, mandate, "mandate.withdraw").await?;
        let done = self.already_done_on_mandate(mandate, &["MandateWithdrawn"]).await?;
        // A withdrawal whose refund did not finish is finished by asking again.
        if !done && record.status != MandateStatus::Withdrawn {
            let command = MandateCommand::Withdraw { reason: reason.to_owned() };
            self.execute_known::<Mandate>(self.context(Some(actor)), mandate, command, self.known_target())
                .await?;
        } else if !done {
            self.check_revision(mandate, revision)?;
        }
        self.return_funds(Some(actor), mandate, &record, district).await?;
        let state = self.load::<Mandate>(mandate).await?;
        Ok(outcome(mandate, &state, None))
    }

    pub async fn complete(&self, actor: Actor, mandate: Uuid) -> Result<MandateOutcome, ServiceError> {
        self.authorize_on_mandate(&actor, mandate, "mandate.complete").await?;
        if let Some(answer) = self.answered_before(mandate, &["MandateCompleted"]).await? {
            return Ok(answer);
        }
        let state = self
            .execute_known::<Mandate>(
                self.context(Some(actor)),
                mandate,
                MandateCommand::Complete,
                self.known_target(),
            )
            .await?;
        Ok(outcome(mandate, &state, None))
    }

    /// The delegating unit moves the task to another community of its street: the policy
    /// decides it again, the posted funds move with it, and the powers with the mandate.
    pub async fn reassign(
        &self,
        actor: Actor,
        mandate: Uuid,
        community: Uuid,
    ) -> Result<MandateOutcome, ServiceError> {
        let (record, district, revision) =
            self.authorize_on_mandate(&actor, mandate, "mandate.reassign").await?;
        if self.already_done_on_mandate(mandate, &["MandateReassigned"]).await? {
            // Sent again under its key: answered as the first time, its funds moved if the
            // first attempt stopped before they were.
            self.gather_funds(self.context(Some(actor)), mandate, district, &record).await?;
            return Ok(outcome(mandate, &self.load::<Mandate>(mandate).await?, None));
        }
        self.check_revision(mandate, revision)?;
        // Sent again without its key, to where the mandate already is: a reassignment that
        // stopped before its funds moved is finished. With nothing to finish, there is nowhere
        // to move it, and the domain says so.
        if record.proposal.community == community
            && self.gather_funds(self.context(Some(actor)), mandate, district, &record).await?
        {
            return Ok(outcome(mandate, &self.load::<Mandate>(mandate).await?, None));
        }
        let (new_district, new_street) = self.community_place(community).await?;
        let target = Target {
            district: Some(new_district),
            street: Some(new_street),
            community: Some(community),
            delegating_unit: Some(record.proposal.delegating_unit),
            ..Target::default()
        };
        self.authorize(&actor, "mandate.reassign", target).await?;
        let mut moved = record.proposal.clone();
        moved.community = community;
        let decision = self.decide(&moved, None).await?;
        let decision_id = decision.decision_id;
        let context = self.context(Some(actor)).with_decision(decision_id);
        let violations = decision.violations.clone();
        if !decision.admits() {
            return Ok(MandateOutcome {
                mandate,
                status: record.status,
                violations,
                decision_id: Some(decision_id),
            });
        }
        let command = MandateCommand::Reassign { community, decision };
        let state =
            self.execute_known::<Mandate>(context.clone(), mandate, command, self.known_target()).await?;
        let reassigned = state.mandate.as_ref().expect("a reassigned mandate stands");
        self.gather_funds(context, mandate, district, reassigned).await?;
        Ok(outcome(mandate, &state, Some(decision_id)))
    }

    /// Moves whatever is posted for `mandate` at a community other than its own (`record`) to
    /// its own: after a reassignment, and to finish one that stopped between the mandate's
    /// move and its funds'. Each move's transfer id names both communities and the decision
    /// that placed the mandate where it is (the reassignment's), so a move sent again is
    /// nothing to do and a mandate moved back and forth takes its funds every time. Whether
    /// there was anything to move.
    async fn gather_funds(
        &self,
        context: CommandContext,
        mandate: Uuid,
        district: Uuid,
        record: &MandateRecord,
    ) -> Result<bool, ServiceError> {
        let here = record.proposal.community;
        let placed_by = record.decision.decision_id;
        let elsewhere: Vec<Uuid> = self
            .ledger(district)
            .await?
            .mandate_funds(mandate)
            .iter()
            .filter_map(|(account, _)| match account {
                Account::Mandate { community, .. } if *community != here => Some(*community),
                _ => None,
            })
            .collect();
        for from in &elsewhere {
            let move_funds = LedgerCommand::Move {
                transfer_id: derived(mandate, &format!("move/{from}/{here}/{placed_by}")),
                mandate,
                from_community: *from,
                to_community: here,
            };
            self.execute_quietly::<Ledger>(context.clone(), district, move_funds).await?;
        }
        Ok(!elsewhere.is_empty())
    }

    pub async fn spend(
        &self,
        actor: Actor,
        mandate: Uuid,
        transfer_id: Uuid,
        amount_fen: Fen,
        memo: &str,
    ) -> Result<(), ServiceError> {
        let (record, district, _) = self.authorize_on_mandate(&actor, mandate, "ledger.spend").await?;
        if record.status != MandateStatus::Active {
            return Err(ServiceError::Forbidden(format!(
                "mandate {mandate} is {:?}: no live grant to act on",
                record.status
            )));
        }
        let command = LedgerCommand::Spend {
            transfer_id,
            mandate,
            community: record.proposal.community,
            amount_fen,
            memo: memo.to_owned(),
        };
        self.execute_quietly::<Ledger>(self.context(Some(actor)), district, command).await?;
        Ok(())
    }

    /// A mandate and its revision (its last event's), for an actor allowed to read it where
    /// it lies.
    pub async fn read_mandate(
        &self,
        actor: Actor,
        mandate: Uuid,
    ) -> Result<(MandateRecord, u64), ServiceError> {
        let (record, revision) = self.mandate_at(mandate).await?;
        self.authorize_on_record(&actor, &record, "read.mandate").await?;
        Ok((record, revision))
    }

    pub async fn mandate(&self, mandate: Uuid) -> Result<MandateRecord, ServiceError> {
        Ok(self.mandate_at(mandate).await?.0)
    }

    /// A mandate as its stream holds it, and the revision of the stream's last event.
    async fn mandate_at(&self, mandate: Uuid) -> Result<(MandateRecord, u64), ServiceError> {
        let manager = AggregateManager::new(self.log.aggregate_store::<Mandate>(self.context(None)));
        let state = manager.load(mandate).await?;
        let revision = state.as_ref().and_then(|state| last_revision(*state.sequence_number()));
        let record = state.and_then(|state| state.into_inner().mandate);
        let record = record.ok_or_else(|| ServiceError::NotFound(format!("mandate {mandate}")))?;
        Ok((record, revision.unwrap_or(0)))
    }

    /// Fires every contest timer that is due: each open contest past its deadline escalates
    /// to the district, once. The timers are rebuilt from the log, so they survive restarts.
    pub async fn escalate_due(&self) -> Result<Vec<Uuid>, ServiceError> {
        let now = self.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let due = {
            let mut timers = self.timers.lock().await;
            timers.catch_up(&self.log).await?;
            timers.due(&now)
        };
        let mut escalated = Vec::new();
        for mandate in due {
            let command = MandateCommand::Escalate { now: now.clone() };
            match self.execute::<Mandate>(self.context(None), mandate, command).await {
                Ok(_) => escalated.push(mandate),
                // Another process fired it first, or it was answered meanwhile: at most once.
                Err(ServiceError::Mandate(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(escalated)
    }

    // ----- Helpers ----------------------------------------------------------------------------

    /// Decides `proposal` with the access policy against the live catalogue.
    async fn decide(
        &self,
        proposal: &Proposal,
        available_fen: Option<i64>,
    ) -> Result<Decision, ServiceError> {
        // Copied out, so that the projection's next fold does not wait for the decision.
        let (catalogue_version, matter) = {
            let projection = self.read_model.read().await?;
            (
                projection.catalogue_version(),
                projection.catalogue().matters.get(&proposal.matter_code).cloned(),
            )
        };
        let input =
            shequ_policy::AccessInput { catalogue_version, matter: matter.as_ref(), proposal, available_fen };
        let (input, violations) = self.policies.decide_access_input(&input)?;
        Ok(Decision {
            decision_id: Uuid::now_v7(),
            bundle_digest: self.policies.bundle().digest().to_owned(),
            catalogue_version,
            input,
            violations,
        })
    }

    async fn return_funds(
        &self,
        actor: Option<Actor>,
        mandate: Uuid,
        record: &MandateRecord,
        district: Uuid,
    ) -> Result<(), ServiceError> {
        // Everything still held for the mandate, reserved or posted to any community (a move
        // that did not finish leaves funds with the earlier one), goes back to the unit.
        let ledger = self.ledger(district).await?;
        let mut communities: Vec<Option<Uuid>> = ledger
            .mandate_funds(mandate)
            .iter()
            .filter_map(|(account, _)| match account {
                Account::Mandate { community, .. } => Some(Some(*community)),
                _ => None,
            })
            .collect();
        if communities.is_empty() {
            communities.push(None);
        }
        for community in communities {
            let purpose =
                format!("return/{}", community.map_or_else(String::new, |community| community.to_string()));
            let command = LedgerCommand::ReturnUnspent {
                transfer_id: derived(mandate, &purpose),
                mandate,
                community,
                to: record.proposal.delegating_unit,
            };
            match self.execute_quietly::<Ledger>(self.context(actor), district, command).await {
                Ok(_) | Err(ServiceError::Ledger(LedgerError::NothingToTransfer(_))) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Loads the mandate and authorises `action` on it; returns it, its district and its
    /// revision as loaded.
    async fn authorize_on_mandate(
        &self,
        actor: &Actor,
        mandate: Uuid,
        action: &str,
    ) -> Result<(MandateRecord, Uuid, u64), ServiceError> {
        let (record, revision) = self.mandate_at(mandate).await?;
        let district = self.authorize_on_record(actor, &record, action).await?;
        Ok((record, district, revision))
    }

    /// Authorises `action` on a mandate as loaded; returns its district.
    async fn authorize_on_record(
        &self,
        actor: &Actor,
        record: &MandateRecord,
        action: &str,
    ) -> Result<Uuid, ServiceError> {
        let (district, street) = self.community_place(record.proposal.community).await?;
        let target = Target {
            district: Some(district),
            street: Some(street),
            community: Some(record.proposal.community),
            delegating_unit: Some(record.proposal.delegating_unit),
            ..Target::default()
        };
        self.authorize(actor, action, target).await?;
        Ok(district)
    }

    async fn authorize(&self, actor: &Actor, action: &str, target: Target) -> Result<(), ServiceError> {
        self.authorize_subject(actor, None, action, target).await
    }

    /// [`Self::authorize`] for an actor known by name too: a resident acts on their own
    /// requests only.
    async fn authorize_subject(
        &self,
        actor: &Actor,
        subject: Option<&str>,
        action: &str,
        target: Target,
    ) -> Result<(), ServiceError> {
        let decision = self.authz_decision(actor, subject, action, target).await?;
        match decision.allow {
            true => Ok(()),
            false => {
                tracing::warn!(%actor, action, reason = %decision.reason, "denied");
                Err(ServiceError::Forbidden(decision.reason))
            }
        }
    }

    /// Whether `actor` may; for filtering what a list shows, so a "no" is not a denied attempt.
    /// Takes the projection the list reads, and places the actor in it, so that no read is
    /// made while the list holds it: a second read may have to wait for the projection's next
    /// fold, which waits for the list.
    fn permits(
        &self,
        projection: &Projection,
        actor: &Actor,
        subject: Option<&str>,
        action: &str,
        target: Target,
    ) -> Result<bool, ServiceError> {
        Ok(self.authz_decision_in(projection, actor, subject, action, target)?.allow)
    }

    async fn authz_decision(
        &self,
        actor: &Actor,
        subject: Option<&str>,
        action: &str,
        target: Target,
    ) -> Result<shequ_policy::AuthzDecision, ServiceError> {
        let projection = self.read_model.read().await?;
        self.authz_decision_in(&projection, actor, subject, action, target)
    }

    /// The authorisation policy's answer, with the actor placed in `projection`.
    fn authz_decision_in(
        &self,
        projection: &Projection,
        actor: &Actor,
        subject: Option<&str>,
        action: &str,
        target: Target,
    ) -> Result<shequ_policy::AuthzDecision, ServiceError> {
        let input = AuthzInput {
            actor: AuthzActor {
                role: actor.role.as_str(),
                organisation: actor.organisation,
                kind: projection.organisation(actor.organisation).map(|view| view.kind),
                district: projection.district_of(actor.organisation),
                subject,
            },
            action,
            target: &target,
        };
        let text = serde_json::to_string(&input)
            .map_err(|error| ServiceError::Invalid(format!("the authorisation policy's input: {error}")))?;
        Ok(self.policies.authorize_text(&text)?)
    }

    /// The district and street of a community.
    async fn community_place(&self, community: Uuid) -> Result<(Uuid, Uuid), ServiceError> {
        let registered = self.organisation(community).await?;
        let street = match (registered.kind, registered.parent_id) {
            (OrganisationKind::Community, Some(street)) => street,
            _ => return Err(ServiceError::Invalid(format!("{community} is not a community"))),
        };
        Ok((self.district_of(street).await?, street))
    }

    /// The district an organisation belongs to (itself, for a district).
    async fn district_of(&self, organisation: Uuid) -> Result<Uuid, ServiceError> {
        let projection = self.read_model.read().await?;
        if projection.organisation(organisation).is_none() {
            return Err(ServiceError::NotFound(format!("organisation {organisation}")));
        }
        projection
            .district_of(organisation)
            .ok_or_else(|| ServiceError::Invalid(format!("{organisation} does not hang under a district")))
    }

    fn context(&self, actor: Option<Actor>) -> CommandContext {
        let actor = actor.map_or_else(|| "system".to_owned(), |actor| actor.to_string());
        let context = match self.command_id {
            Some(command_id) => CommandContext::for_command(actor, command_id)
                .with_command_digest(self.command_digest.clone()),
            None => CommandContext::new(actor),
        };
        context.with_recorder(self.recorder.clone())
    }

    fn contest_deadline(&self) -> String {
        (self.clock.now() + chrono::Duration::days(self.contest_days))
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    async fn load<A>(&self, id: Uuid) -> Result<A::State, ServiceError>
    where
        A: Aggregate + Send + Sync,
        A::State: Send + Default,
        A::Event: DomainEvent + Send + Sync,
    {
        let manager = AggregateManager::new(self.log.aggregate_store::<A>(self.context(None)));
        Ok(manager.load(id).await?.map(AggregateState::into_inner).unwrap_or_default())
    }

    /// [`Self::load`] for a long stream (a district's ledger): from its kept state, if any,
    /// and what the log appended after it, under the aggregate's lock; the state read is kept
    /// in turn. A read sees every append that finished before it, by any process.
    async fn load_kept<A>(&self, id: Uuid) -> Result<A::State, ServiceError>
    where
        A: Aggregate + Send + Sync,
        A::State: Send + Default + Clone + 'static,
        A::Event: DomainEvent + Send + Sync,
    {
        let store = self.log.aggregate_store::<A>(self.context(None));
        let stream = shequ_store::AggregateStore::<A>::stream(id);
        let _guard = store.lock(id).await?;
        let (state, pipeline) = self.take_settled(id, &stream).await;
        let state = Self::with_tail(&store, state).await?;
        let sequence = *state.sequence_number();
        let state = state.into_inner();
        if sequence >= CACHED_STREAM_EVENTS_MIN {
            self.states.put(stream, state.clone(), sequence, pipeline);
        }
        Ok(state)
    }

    /// [`Self::take_kept`], with the appends queued on the kept state waited for (the caller
    /// holds the aggregate's lock, so no more are queued meanwhile): a state that only holds
    /// what is durable, or the empty state if what was queued failed.
    async fn take_settled<S: Send + Default + 'static>(
        &self,
        id: Uuid,
        stream: &str,
    ) -> (AggregateState<S>, Pipeline) {
        let (state, kept, pipeline) = self.take_kept(id, stream);
        match pipeline.tip {
            Some(tip) if kept => match tip.append.await {
                Ok(_) => (state, Pipeline { epoch: pipeline.epoch, tip: None }),
                Err(_) => (AggregateState::with_id(id), self.states.new_pipeline()),
            },
            _ => (state, pipeline),
        }
    }

    /// A stream's kept state, taken out (the caller holds the aggregate's lock), or the empty
    /// state; whether anything was kept; and the run of queued appends it belongs to. A kept
    /// state whose last queued append failed holds events that never were: it is dropped.
    fn take_kept<S: Send + Default + 'static>(
        &self,
        id: Uuid,
        stream: &str,
    ) -> (AggregateState<S>, bool, Pipeline) {
        let state = AggregateState::with_id(id);
        let Some((kept, kept_sequence, mut pipeline)) = self.states.take::<S>(stream) else {
            return (state, false, self.states.new_pipeline());
        };
        if let Some(outcome) = pipeline.tip.as_ref().and_then(|tip| tip.append.outcome_now()) {
            match outcome {
                // Durable: the next append's expected revision is check enough.
                Ok(_) => pipeline.tip = None,
                Err(_) => return (state, false, self.states.new_pipeline()),
            }
        }
        let snapshot = StoreEvent {
            id: Uuid::nil(),
            aggregate_id: id,
            payload: kept,
            occurred_on: chrono::Utc::now(),
            sequence_number: kept_sequence,
            version: None,
        };
        (state.apply_store_events(vec![snapshot], |_, kept| kept), true, pipeline)
    }

    /// `state` with what the log appended to its stream after it.
    async fn with_tail<A>(
        store: &shequ_store::AggregateStore<A>,
        state: AggregateState<A::State>,
    ) -> Result<AggregateState<A::State>, ServiceError>
    where
        A: Aggregate + Send + Sync,
        A::State: Send,
        A::Event: DomainEvent + Send + Sync,
    {
        let from_revision = u64::try_from(*state.sequence_number()).unwrap_or(0);
        let events = store.events_from(*state.id(), from_revision).await?;
        Ok(state.apply_store_events(events, A::apply_event))
    }

    /// Runs one command on one aggregate through esrs, under the in-process aggregate lock,
    /// and returns the state it leaves.
    async fn execute<A>(
        &self,
        context: CommandContext,
        id: Uuid,
        command: A::Command,
    ) -> Result<A::State, ServiceError>
    where
        A: Aggregate + Send + Sync,
        A::State: Send + Default + Clone + 'static,
        A::Event: DomainEvent + Send + Sync,
        A::Command: Send + Clone,
        ServiceError: From<A::Error>,
    {
        let state = self.run::<A>(context, id, command, Known::Stored, Answer::State, None).await?;
        Ok(state.expect("asked for the state"))
    }

    /// [`Self::execute`] on a stream the caller knows more of: one that does not exist yet as
    /// far as the live projection knows ([`Known::New`]: nothing is read before deciding), or
    /// the revision the client decided on (`self.known_target()`, [`Known::At`]).
    async fn execute_known<A>(
        &self,
        context: CommandContext,
        id: Uuid,
        command: A::Command,
        known: Known,
    ) -> Result<A::State, ServiceError>
    where
        A: Aggregate + Send + Sync,
        A::State: Send + Default + Clone + 'static,
        A::Event: DomainEvent + Send + Sync,
        A::Command: Send + Clone,
        ServiceError: From<A::Error>,
    {
        let state = self.run::<A>(context, id, command, known, Answer::State, None).await?;
        Ok(state.expect("asked for the state"))
    }

    /// [`Self::execute`] for a caller that does not need the state back: a long stream's state
    /// (a district's ledger) is then kept without a copy.
    async fn execute_quietly<A>(
        &self,
        context: CommandContext,
        id: Uuid,
        command: A::Command,
    ) -> Result<(), ServiceError>
    where
        A: Aggregate + Send + Sync,
        A::State: Send + Default + Clone + 'static,
        A::Event: DomainEvent + Send + Sync,
        A::Command: Send + Clone,
        ServiceError: From<A::Error>,
    {
        self.run::<A>(context, id, command, Known::Stored, Answer::Nothing, None).await?;
        Ok(())
    }

    /// The one command path: state from memory where this process has it, or from the log;
    /// the decision; the durable append; conflicts retried.
    ///
    /// A state from memory (a kept state of a long stream, or the empty state of a stream
    /// presumed new) is not checked against the database first: if another process wrote the
    /// stream meanwhile, the append's expected revision no longer matches, the store answers
    /// a conflict, and the command runs again on the state read from the log. A refusal is
    /// never given on memory alone: the stream's tail is read and the command decided again.
    ///
    /// A long stream's commands are pipelined (ADR 0012): the aggregate's lock is held until
    /// the append is queued, not until it is durable, and the state it leaves is kept at once,
    /// so the next command decides on it while the first commits. Each such append builds on
    /// the last event of the one before, so the writer refuses it if that one failed; the
    /// command then runs again on the log's state. A command returns only once its own
    /// append is durable.
    ///
    /// With `joined`, the command's append carries another stream's part that commits with it
    /// or not at all; the command then takes the pipelined way whatever its stream's length,
    /// and a conflict on the joined stream is returned at once, not retried.
    async fn run<A>(
        &self,
        context: CommandContext,
        id: Uuid,
        command: A::Command,
        known: Known,
        answer: Answer,
        joined: Option<&Joined>,
    ) -> Result<Option<A::State>, ServiceError>
    where
        A: Aggregate + Send + Sync,
        A::State: Send + Default + Clone + 'static,
        A::Event: DomainEvent + Send + Sync,
        A::Command: Send + Clone,
        ServiceError: From<A::Error>,
    {
        // The command's own recorder tells which revisions it appended, and so the revision
        // the state it leaves is at; the caller's recorder, if any, hears of them too.
        let outer = context.recorder.clone();
        let recorder = Recorder::new();
        let store = self.log.aggregate_store::<A>(context.clone().with_recorder(Some(recorder.clone())));
        let stream = shequ_store::AggregateStore::<A>::stream(id);
        let manager = AggregateManager::new(self.log.aggregate_store::<A>(store.context().clone()));
        let mut attempt = 1;
        // Whether the state may come from memory unchecked; false once memory was wrong, or a
        // refusal or "nothing to do" needs the database's word.
        let mut trust_memory = true;
        loop {
            let guard = store.lock(id).await?;
            let (mut state, mut pipeline, from_memory) = match trust_memory {
                // A long stream's state is kept from its last command; with nothing kept,
                // memory knows only a new stream (empty).
                true => {
                    let (state, kept, pipeline) = self.take_kept(id, &stream);
                    (state, pipeline, kept || known == Known::New)
                }
                false => {
                    let (state, pipeline) = self.take_settled(id, &stream).await;
                    (state, pipeline, false)
                }
            };
            if !from_memory {
                state = Self::with_tail(&store, state).await?;
            }
            let sequence_before = *state.sequence_number();
            if let Known::At(expected) = known {
                if let Err(conflict) = revision_check(&stream, expected, last_revision(sequence_before)) {
                    if sequence_before >= CACHED_STREAM_EVENTS_MIN {
                        self.states.put(stream.clone(), state.into_inner(), sequence_before, pipeline);
                    }
                    // Memory may be behind the log: the log's word decides.
                    match from_memory {
                        true => {
                            trust_memory = false;
                            continue;
                        }
                        false => return Err(conflict),
                    }
                }
            }
            // Decided here first (on a short stream esrs decides again below; deciding is
            // pure) so that a refusal keeps the state, which esrs would drop.
            let events = match A::handle_command(state.inner(), command.clone()) {
                Ok(events) if !(from_memory && events.is_empty()) => events,
                // A refusal, or nothing to do (no funds to move, say), on memory: another
                // process may have changed the answer. Decide again on the log's tail.
                decided => {
                    if sequence_before >= CACHED_STREAM_EVENTS_MIN {
                        self.states.put(stream.clone(), state.into_inner(), sequence_before, pipeline);
                    }
                    match decided {
                        Err(refusal) if !from_memory => return Err(refusal.into()),
                        _ => {
                            trust_memory = false;
                            continue;
                        }
                    }
                }
            };
            let sequence_after = sequence_before + i32::try_from(events.len()).unwrap_or(i32::MAX);
            if sequence_after >= CACHED_STREAM_EVENTS_MIN || joined.is_some() {
                let types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
                let after = pipeline.tip.as_ref().map(|tip| tip.last_event);
                let joined_part = joined.map(|joined| joined.append.clone());
                let queued = match events.is_empty() {
                    true => None,
                    false => match store.enqueue(&state, events, after, joined_part).await {
                        Ok(queued) => Some(queued),
                        Err(error) => {
                            // Nothing was queued: the state is as it was.
                            self.states.put(stream.clone(), state.into_inner(), sequence_before, pipeline);
                            return Err(error.into());
                        }
                    },
                };
                let Some((append, joined_append, store_events)) = queued else {
                    // Nothing to do (a retried transfer, say), on the log's state: nothing of it
                    // is only queued (`take_settled`).
                    let answer = matches!(answer, Answer::State).then(|| state.inner().clone());
                    self.states.put(stream.clone(), state.into_inner(), sequence_before, pipeline);
                    drop(guard);
                    if let Some(joined) = joined {
                        joined.append_alone(&self.log).await?;
                    }
                    return Ok(answer);
                };
                let last_event = store_events.last().expect("an append carries events").id;
                let state = state.apply_store_events(store_events, A::apply_event).into_inner();
                let answer = matches!(answer, Answer::State).then(|| state.clone());
                pipeline.tip = Some(Tip { last_event, append: append.clone() });
                let epoch = pipeline.epoch;
                // The next command on this stream may decide now, on the state this one left;
                // if the cache is full and cannot keep it, the next reads the log, which must
                // then hold this append first: the lock is kept until it is durable. A short
                // stream here only for a joined part is not kept: its next command goes through
                // esrs, which does not build on a queued append, so it waits for this one.
                let keep = sequence_after >= CACHED_STREAM_EVENTS_MIN;
                let guard = match keep && self.states.put(stream.clone(), state, sequence_after, pipeline) {
                    true => {
                        drop(guard);
                        None
                    }
                    false => Some(guard),
                };
                let outcome = append.await;
                drop(guard);
                match outcome {
                    Ok(appended) => {
                        if let (Some(joined), Some(joined_append)) = (joined, joined_append) {
                            // Settled with this append: the same fate, already decided.
                            joined.record(&joined_append.await?);
                        }
                        store.record(&types, &appended);
                        if let Some(outer) = &outer {
                            recorder.take().into_iter().for_each(|event| outer.record(event));
                        }
                        return Ok(answer);
                    }
                    Err(error) => {
                        // What this command left in memory, and whatever was queued on it,
                        // never was.
                        self.states.drop_pipeline(&stream, epoch);
                        match error {
                            // The joined stream is not what its part expected (a mandate
                            // proposed twice, say): the caller's to answer, not a retry's.
                            StoreError::Conflict { stream: ref conflicted, .. }
                                if joined.is_some_and(|joined| joined.append.stream == *conflicted) =>
                            {
                                return Err(error.into())
                            }
                            // Refused for the append it followed: not this command's conflict.
                            // Its retry reads the log once that append is settled, so it
                            // follows nothing and can only conflict from then on.
                            StoreError::Unfounded { .. } => {}
                            // A batch that failed fails every append queued in it, this one
                            // perhaps only for the one it followed. Run again on the log's
                            // state: a transfer the log already holds is then nothing to do.
                            StoreError::Database(_) if after.is_some() && attempt < CONFLICT_ATTEMPTS => {
                                attempt += 1
                            }
                            StoreError::Conflict { .. } if attempt < CONFLICT_ATTEMPTS => attempt += 1,
                            error => return Err(error.into()),
                        }
                        trust_memory = false;
                        continue;
                    }
                }
            }
            state.set_lock(guard);
            let result = manager.handle_command(state, command.clone()).await;
            let appended = recorder.take();
            if let Some(outer) = &outer {
                appended.iter().cloned().for_each(|event| outer.record(event));
            }
            match result {
                // A short stream, not kept: the next command reads it from the log.
                Ok(Ok(new_state)) => return Ok(Some(new_state)),
                // Another process wrote the stream meanwhile: load again and decide again.
                Err(StoreError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                    attempt += 1;
                    trust_memory = false;
                }
                // A failure: nothing is kept, the next command reads the stream.
                result => return Ok(Some(result??)),
            }
        }
    }
}

/// Another aggregate's new events that commit with a command's own, all or none: a proposal's
/// mandate events and the reservation of its funds on the district's ledger
/// ([`Service::propose`]), so that no mandate stands admitted without its funds reserved, even
/// if the process stops between the two.
struct Joined {
    /// The new stream's part, as the log takes it.
    append: shequ_store::StreamAppend,
    /// The part's event types, for the command's recorder.
    types: Vec<&'static str>,
    /// The mandate's store for the command: its context's recorder is told of the part's
    /// events once they are durable.
    store: shequ_store::AggregateStore<Mandate>,
}

impl Joined {
    /// A new mandate's first events, as a part to join to another append.
    fn first_events(
        store: shequ_store::AggregateStore<Mandate>,
        mandate: Uuid,
        events: &[MandateEvent],
    ) -> Result<Self, StoreError> {
        Self::next_events(store, mandate, ExpectedRevision::NoStream, events)
    }

    /// A mandate's next events, decided on it at `expected`, as a part to join to another
    /// append.
    fn next_events(
        store: shequ_store::AggregateStore<Mandate>,
        mandate: Uuid,
        expected: ExpectedRevision,
        events: &[MandateEvent],
    ) -> Result<Self, StoreError> {
        let append = store.part(mandate, expected, events)?;
        Ok(Self { append, types: events.iter().map(DomainEvent::event_type).collect(), store })
    }

    /// Appends the part by itself, and tells the recorder.
    async fn append_alone(&self, log: &EventLog) -> Result<(), StoreError> {
        let appended = log.append_all(vec![self.append.clone()]).await?;
        self.record(&appended[0]);
        Ok(())
    }

    fn record(&self, appended: &shequ_store::Appended) {
        self.store.record(&self.types, appended);
    }
}

/// What the caller knows of a stream before a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// It may hold events: read them (or what was appended since a kept state).
    Stored,
    /// The live projection has never seen it: start from the empty state without a read.
    /// Wrong only if another process created it meanwhile; then the append conflicts.
    New,
    /// The client decided on it at this revision (its last event's): the command holds only
    /// if the stream is still there, checked on the state read under the aggregate's lock.
    At(u64),
}

/// The revision of the last event of a stream holding `sequence` events (esrs counts them),
/// none for an empty stream.
fn last_revision(sequence: i32) -> Option<u64> {
    u64::try_from(sequence).ok().and_then(|count| count.checked_sub(1))
}

/// The client's stated revision against the stream's `actual` one: a stream that moved on is
/// a conflict, answered with both revisions.
fn revision_check(stream: &str, expected: u64, actual: Option<u64>) -> Result<(), ServiceError> {
    match actual == Some(expected) {
        true => Ok(()),
        false => Err(StoreError::Conflict {
            stream: stream.to_owned(),
            expected: ExpectedRevision::Exact(expected),
            actual,
        }
        .into()),
    }
}

/// Whether the caller wants the state a command leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    State,
    Nothing,
}

fn outcome(
    mandate: Uuid,
    state: &shequ_domain::mandate::MandateState,
    decision_id: Option<Uuid>,
) -> MandateOutcome {
    let record = state.mandate.as_ref().expect("a command that succeeded leaves a mandate");
    let violations = match decision_id {
        Some(_) => record.decision.violations.clone(),
        None => vec![],
    };
    MandateOutcome { mandate, status: record.status, violations, decision_id }
}

/// States of long streams (a district's ledger, the catalogue) kept between commands, so a
/// command does not replay thousands of events. A state is taken out while a command runs on
/// it (under the aggregate's lock) and put back with the revision it is at once the command
/// succeeded or has queued its append (see [`Service::run`]); what other processes appended
/// since is read before each use.
#[derive(Default)]
struct StateCache {
    states: std::sync::Mutex<HashMap<String, CachedState>>,
    /// The last [`Pipeline::epoch`] given out.
    epochs: std::sync::atomic::AtomicU64,
}

/// A state of some aggregate type, the esrs sequence number (events applied) it is at, and
/// its run of queued appends.
type CachedState = (Box<dyn Any + Send>, i32, Pipeline);

/// A run of appends queued one on the other (ADR 0012). A run starts whenever a state is
/// read from the log or started empty, and each append queued on a state kept from the run
/// continues it; if one fails, every state kept since holds events that never were.
#[derive(Debug, Clone)]
struct Pipeline {
    epoch: u64,
    /// The last append queued in the run, while it may not be durable yet.
    tip: Option<Tip>,
}

#[derive(Debug, Clone)]
struct Tip {
    /// The last event of the append: the next one builds on it.
    last_event: Uuid,
    append: QueuedAppend,
}

impl std::fmt::Debug for StateCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("StateCache").finish_non_exhaustive()
    }
}

impl StateCache {
    fn take<S: 'static>(&self, stream: &str) -> Option<(S, i32, Pipeline)> {
        let (state, sequence, pipeline) =
            self.states.lock().unwrap_or_else(PoisonError::into_inner).remove(stream)?;
        state.downcast::<S>().ok().map(|state| (*state, sequence, pipeline))
    }

    /// Keeps `state`, unless the cache is full of other streams; says whether it was kept.
    fn put<S: Send + 'static>(&self, stream: String, state: S, sequence: i32, pipeline: Pipeline) -> bool {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let room = states.len() < CACHED_STATES_MAX || states.contains_key(&stream);
        if room {
            states.insert(stream, (Box::new(state), sequence, pipeline));
        }
        room
    }

    fn new_pipeline(&self) -> Pipeline {
        let epoch = self.epochs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Pipeline { epoch, tip: None }
    }

    /// Forgets the stream's kept state if it belongs to run `epoch`, one of whose appends
    /// failed. (A state taken out meanwhile is dropped when its own append fails, as it
    /// builds on the failed one; see [`Service::take_kept`].)
    fn drop_pipeline(&self, stream: &str, epoch: u64) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if states.get(stream).is_some_and(|(_, _, pipeline)| pipeline.epoch == epoch) {
            states.remove(stream);
        }
    }
}

/// A transfer id derived from a mandate or decision and a purpose, so that a retried command
/// makes the same transfer and the ledger answers it idempotently.
fn derived(id: Uuid, purpose: &str) -> Uuid {
    Uuid::new_v5(&id, purpose.as_bytes())
}

/// The contest timers: every open contest and its deadline, caught up from the log.
#[derive(Debug, Default)]
struct ContestTimers {
    position: u64,
    open: BTreeMap<Uuid, String>,
}

impl ContestTimers {
    async fn catch_up(&mut self, log: &EventLog) -> Result<(), ServiceError> {
        use futures::TryStreamExt;
        let mut events = std::pin::pin!(log.stream_all(self.position + 1, 1_000));
        while let Some(event) = events.try_next().await? {
            self.position = event.position;
            let Some(mandate) = event.stream.strip_prefix("mandate-").and_then(|id| Uuid::parse_str(id).ok())
            else {
                continue;
            };
            match event.event_type.as_str() {
                "MandateContested" => {
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
                    if let Some(deadline) = data["deadline"].as_str() {
                        self.open.insert(mandate, deadline.to_owned());
                    }
                }
                "MandateCured" => {
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
                    let admits = data["decision"]["violations"].as_array().is_some_and(Vec::is_empty);
                    if admits {
                        self.open.remove(&mandate);
                    }
                }
                "ContestUpheld" | "ContestDismissed" | "ContestEscalated" | "MandateWithdrawn" => {
                    self.open.remove(&mandate);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn due(&self, now: &str) -> Vec<Uuid> {
        self.open
            .iter()
            .filter(|(_, deadline)| deadline.as_str() <= now)
            .map(|(mandate, _)| *mandate)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The authorisation input written from its types is the input the policy was given as a
    /// `serde_json::Value` before: unknown members of the actor null, target members absent.
    #[test]
    fn the_authz_input_is_what_the_policy_was_given() {
        let (organisation, district, resident) = (Uuid::from_u128(1), Uuid::from_u128(2), "r-1".to_owned());
        let target =
            Target { district: Some(district), resident: Some(resident.clone()), ..Target::default() };
        let cases = [
            (Some(OrganisationKind::Community), Some(district), Some("s-1"), &target),
            (None, None, None, &Target::default()),
        ];
        for (kind, actor_district, subject, target) in cases {
            let input = AuthzInput {
                actor: AuthzActor { role: "resident", organisation, kind, district: actor_district, subject },
                action: "request.read",
                target,
            };
            let mut expected_target = serde_json::Map::new();
            if target.district.is_some() {
                expected_target.insert("district".into(), json!(district));
                expected_target.insert("resident".into(), json!(resident));
            }
            let expected = json!({
                "actor": {"role": "resident", "organisation": organisation, "kind": kind,
                          "district": actor_district, "subject": subject},
                "action": "request.read",
                "target": expected_target,
            });
            let written: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
            assert_eq!(written, expected);
        }
    }
}
