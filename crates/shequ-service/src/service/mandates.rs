//! The mandate commands: a street office or department delegates a task to a community under
//! the access rules (plan:3.4.2), the community accepts or contests it, the delegating unit
//! cures or withdraws it, the district reviews contests. The money that moves with a mandate
//! is `funds.rs`'s.

use chrono::SecondsFormat;
use esrs::manager::AggregateManager;
use esrs::store::EventStore;
use esrs::{Aggregate, AggregateState};
use shequ_domain::ledger::{Account, Ledger, LedgerCommand};
use shequ_domain::mandate::{
    ContestGround, Cure, Decision, Mandate, MandateCommand, MandateError, MandateRecord, MandateState,
    MandateStatus, Proposal, ReviewOutcome, Violation,
};
use shequ_domain::organisation::OrganisationKind;
use shequ_domain::Fen;
use shequ_store::{AggregateStore, CommandContext, ExpectedRevision, StoreError};
use uuid::Uuid;

use super::authz::Target;
use super::funds::derived;
use super::runner::{last_revision, revision_check, Answer, Joined, Known};
use super::scope::{Caller, CommandScope};
use super::Service;
use crate::actor::Actor;
use crate::error::{Result, ServiceError};

/// What became of a mandate after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateOutcome {
    pub mandate: Uuid,
    pub status: MandateStatus,
    /// The violations of the decision this command made, if it made one.
    pub violations: Vec<Violation>,
    pub decision_id: Option<Uuid>,
}

impl Service {
    /// A street office or department proposes a mandate. The access policy decides; a refusal
    /// is recorded too, and comes back with its violations. Admitted funds are reserved.
    pub async fn propose(
        &self,
        scope: &CommandScope,
        mandate: Uuid,
        proposal: Proposal,
    ) -> Result<MandateOutcome> {
        let (district, street) = self.community_place(proposal.community).await?;
        let delegating_unit = proposal.delegating_unit;
        let target = Target {
            district: Some(district),
            street: Some(street),
            community: Some(proposal.community),
            delegating_unit: Some(delegating_unit),
            ..Target::default()
        };
        self.authorize(&scope.actor(), "mandate.propose", target).await?;
        let available =
            self.balance(district, Account::Organisation { organisation: delegating_unit }).await?;
        let decision = self.decide(&proposal, Some(available)).await?;
        let decision_id = decision.decision_id;
        let admitted = decision.admits();
        let funds = proposal.funds_offered_fen;
        let context = scope.context().with_decision(decision_id);
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
            let mandate_stream = AggregateStore::<Mandate>::stream(mandate);
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
    ) -> Result<MandateState> {
        let empty = MandateState::default();
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
    ) -> Result<MandateState> {
        let empty = MandateState::default();
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
        scope: &CommandScope,
        mandate: Uuid,
        proposal: Proposal,
        statement: &str,
    ) -> Result<MandateOutcome> {
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
        self.authorize(&scope.actor(), "mandate.record_outside_process", target).await?;
        self.community_place(proposal.community).await?;
        // Tasks come down from the street office or a district department (or the district
        // itself), never across from another community.
        let unit = self.organisation(proposal.delegating_unit).await?;
        if unit.kind == OrganisationKind::Community {
            return Err(MandateError::InvalidProposal(format!(
                "delegating_unit: {} is a community; a task reaches a community from its street office or a district department",
                unit.name
            ))
            .into());
        }
        let decision = self.decide(&proposal, None).await?;
        let decision_id = decision.decision_id;
        let command = MandateCommand::RecordOutsideProcess {
            proposal,
            decision,
            contest_id: Uuid::now_v7(),
            statement: statement.to_owned(),
            contest_deadline: self.contest_deadline(),
        };
        let state =
            self.execute::<Mandate>(scope.context().with_decision(decision_id), mandate, command).await?;
        Ok(outcome(mandate, &state, Some(decision_id)))
    }

    /// The community accepts: its funds are posted to its mandate account and the mandate
    /// becomes active. It is never active unfunded.
    pub async fn accept(&self, scope: &CommandScope, mandate: Uuid) -> Result<MandateOutcome> {
        let (record, district, revision) =
            self.authorize_on_mandate(&scope.actor(), mandate, "mandate.accept").await?;
        let done = self.already_done_on_mandate(scope, mandate, &["MandateAccepted"]).await?;
        if done && record.status != MandateStatus::Accepted {
            return Ok(outcome(mandate, &self.load::<Mandate>(mandate).await?, None));
        }
        let context = scope.context();
        // An earlier attempt that stopped after accepting goes on from there; under its own key
        // whatever revision it was sent with, which its first attempt moved on.
        // Resuming without the key, the activation is the command's first event on the
        // mandate (the posting is the ledger's): it is the one checked against the revision.
        let activate_at = match record.status {
            MandateStatus::Accepted if done => Known::Stored,
            MandateStatus::Accepted => {
                // Checked before the money is posted, and again under the lock.
                scope.check_revision(mandate, revision)?;
                scope.known_target()
            }
            _ => {
                // Refused, and nothing written, unless what is held for the mandate covers
                // what was offered: an acceptance always becomes active.
                let held = self.ledger(district).await?.funds_held(mandate);
                let funds_held_fen =
                    Fen::parse(held).map_err(|error| ServiceError::Invalid(error.to_string()))?;
                let accept = MandateCommand::Accept { funds_held_fen };
                self.execute_known::<Mandate>(context.clone(), mandate, accept, scope.known_target()).await?;
                Known::Stored
            }
        };
        let state = self.post_and_activate(context, mandate, district, activate_at).await?;
        Ok(outcome(mandate, &state, None))
    }

    /// The community contests; while the contest is open it owes no work on the mandate.
    pub async fn contest(
        &self,
        scope: &CommandScope,
        mandate: Uuid,
        grounds: Vec<ContestGround>,
        statement: &str,
    ) -> Result<MandateOutcome> {
        self.authorize_on_mandate(&scope.actor(), mandate, "mandate.contest").await?;
        if let Some(answer) = self.answered_before(scope, mandate, &["MandateContested"]).await? {
            return Ok(answer);
        }
        let command = MandateCommand::Contest {
            contest_id: Uuid::now_v7(),
            grounds,
            statement: statement.to_owned(),
            contest_deadline: self.contest_deadline(),
        };
        let state =
            self.execute_known::<Mandate>(scope.context(), mandate, command, scope.known_target()).await?;
        Ok(outcome(mandate, &state, None))
    }

    /// The delegating unit cures a contested mandate: added funds are reserved, and the
    /// cured proposal is decided again. A cure that satisfies the policy resumes the mandate.
    pub async fn cure(&self, scope: &CommandScope, mandate: Uuid, cure: Cure) -> Result<MandateOutcome> {
        let (record, district, revision) =
            self.authorize_on_mandate(&scope.actor(), mandate, "mandate.cure").await?;
        if self.already_done_on_mandate(scope, mandate, &["MandateCured"]).await? {
            // Sent again under its key. A mandate left accepted (a cure that resumed it with
            // new funds stopped before posting them) is owed its funds and its activation:
            // they are posted now, so it is never left accepted and unfunded.
            let state = match record.status {
                MandateStatus::Accepted => {
                    self.post_and_activate(scope.context(), mandate, district, Known::Stored).await?
                }
                _ => self.load::<Mandate>(mandate).await?,
            };
            return Ok(outcome(mandate, &state, None));
        }
        // A client that decided on another state hears so first.
        scope.check_revision(mandate, revision)?;
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
        let already = ledger.funds_held(mandate);
        let decision = self.decide(&cured, Some(ledger.balance(unit) + already)).await?;
        let decision_id = decision.decision_id;
        let context = scope.context().with_decision(decision_id);
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
                self.cure_with_funds(scope, &context, mandate, district, command, reserve).await?
            }
            false => {
                self.execute_known::<Mandate>(context.clone(), mandate, command, scope.known_target()).await?
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
        scope: &CommandScope,
        context: &CommandContext,
        mandate: Uuid,
        district: Uuid,
        command: MandateCommand,
        reserve: LedgerCommand,
    ) -> Result<MandateState> {
        let store = self.log.aggregate_store::<Mandate>(context.clone());
        let _guard = store.lock(mandate).await?;
        let state = Self::with_tail(&store, AggregateState::with_id(mandate)).await?;
        let stream = AggregateStore::<Mandate>::stream(mandate);
        let revision = last_revision(*state.sequence_number());
        if let Some(expected) = scope.expected_revision() {
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
        scope: &CommandScope,
        mandate: Uuid,
        review: ReviewOutcome,
        reason: &str,
    ) -> Result<MandateOutcome> {
        let (record, district, revision) =
            self.authorize_on_mandate(&scope.actor(), mandate, "contest.review").await?;
        let done =
            self.already_done_on_mandate(scope, mandate, &["ContestUpheld", "ContestDismissed"]).await?;
        if review == ReviewOutcome::Uphold && record.status == MandateStatus::Withdrawn {
            // An upheld contest whose refund did not finish: finish it.
            if !done {
                scope.check_revision(mandate, revision)?;
            }
            self.return_funds(scope, mandate, &record, district).await?;
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
            reviewer: scope.actor().organisation,
            reason: reason.to_owned(),
        };
        let state =
            self.execute_known::<Mandate>(scope.context(), mandate, command, scope.known_target()).await?;
        if review == ReviewOutcome::Uphold {
            self.return_funds(scope, mandate, &record, district).await?;
        }
        Ok(outcome(mandate, &state, None))
    }

    pub async fn withdraw(
        &self,
        scope: &CommandScope,
        mandate: Uuid,
        reason: &str,
    ) -> Result<MandateOutcome> {
        let (record, district, revision) =
            self.authorize_on_mandate(&scope.actor(), mandate, "mandate.withdraw").await?;
        let done = self.already_done_on_mandate(scope, mandate, &["MandateWithdrawn"]).await?;
        // A withdrawal whose refund did not finish is finished by asking again.
        if !done && record.status != MandateStatus::Withdrawn {
            let command = MandateCommand::Withdraw { reason: reason.to_owned() };
            self.execute_known::<Mandate>(scope.context(), mandate, command, scope.known_target()).await?;
        } else if !done {
            scope.check_revision(mandate, revision)?;
        }
        self.return_funds(scope, mandate, &record, district).await?;
        let state = self.load::<Mandate>(mandate).await?;
        Ok(outcome(mandate, &state, None))
    }

    pub async fn complete(&self, scope: &CommandScope, mandate: Uuid) -> Result<MandateOutcome> {
        self.authorize_on_mandate(&scope.actor(), mandate, "mandate.complete").await?;
        if let Some(answer) = self.answered_before(scope, mandate, &["MandateCompleted"]).await? {
            return Ok(answer);
        }
        let state = self
            .execute_known::<Mandate>(
                scope.context(),
                mandate,
                MandateCommand::Complete,
                scope.known_target(),
            )
            .await?;
        Ok(outcome(mandate, &state, None))
    }

    /// The delegating unit moves the task to another community of its street: the policy
    /// decides it again, the posted funds move with it, and the powers with the mandate.
    pub async fn reassign(
        &self,
        scope: &CommandScope,
        mandate: Uuid,
        community: Uuid,
    ) -> Result<MandateOutcome> {
        let (record, district, revision) =
            self.authorize_on_mandate(&scope.actor(), mandate, "mandate.reassign").await?;
        if self.already_done_on_mandate(scope, mandate, &["MandateReassigned"]).await? {
            // Sent again under its key: answered as the first time, its funds moved if the
            // first attempt stopped before they were.
            self.gather_funds(scope.context(), mandate, district, &record).await?;
            return Ok(outcome(mandate, &self.load::<Mandate>(mandate).await?, None));
        }
        scope.check_revision(mandate, revision)?;
        // Sent again without its key, to where the mandate already is: a reassignment that
        // stopped before its funds moved is finished. With nothing to finish, there is nowhere
        // to move it, and the domain says so.
        if record.proposal.community == community
            && self.gather_funds(scope.context(), mandate, district, &record).await?
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
        self.authorize(&scope.actor(), "mandate.reassign", target).await?;
        let mut moved = record.proposal.clone();
        moved.community = community;
        let decision = self.decide(&moved, None).await?;
        let decision_id = decision.decision_id;
        let context = scope.context().with_decision(decision_id);
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
            self.execute_known::<Mandate>(context.clone(), mandate, command, scope.known_target()).await?;
        let reassigned = state.mandate.as_ref().expect("a reassigned mandate stands");
        self.gather_funds(context, mandate, district, reassigned).await?;
        Ok(outcome(mandate, &state, Some(decision_id)))
    }

    /// A mandate and its revision (its last event's), for an actor allowed to read it where
    /// it lies.
    pub async fn read_mandate(&self, actor: Actor, mandate: Uuid) -> Result<(MandateRecord, u64)> {
        let (record, revision) = self.mandate_at(mandate).await?;
        self.authorize_on_record(&actor, &record, "read.mandate").await?;
        Ok((record, revision))
    }

    pub async fn mandate(&self, mandate: Uuid) -> Result<MandateRecord> {
        Ok(self.mandate_at(mandate).await?.0)
    }

    /// A mandate as its stream holds it, and the revision of the stream's last event.
    pub(crate) async fn mandate_at(&self, mandate: Uuid) -> Result<(MandateRecord, u64)> {
        let manager = AggregateManager::new(self.log.aggregate_store::<Mandate>(Caller::System.context()));
        let state = manager.load(mandate).await?;
        let revision = state.as_ref().and_then(|state| last_revision(*state.sequence_number()));
        let record = state.and_then(|state| state.into_inner().mandate);
        let record = record.ok_or_else(|| ServiceError::NotFound(format!("mandate {mandate}")))?;
        Ok((record, revision.unwrap_or(0)))
    }

    /// Decides `proposal` with the access policy against the live catalogue.
    async fn decide(&self, proposal: &Proposal, available_fen: Option<i64>) -> Result<Decision> {
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

    pub(super) fn contest_deadline(&self) -> String {
        (self.clock.now() + chrono::Duration::days(self.contest_days))
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

pub(crate) fn outcome(mandate: Uuid, state: &MandateState, decision_id: Option<Uuid>) -> MandateOutcome {
    let record = state.mandate.as_ref().expect("a command that succeeded leaves a mandate");
    let violations = match decision_id {
        Some(_) => record.decision.violations.clone(),
        None => vec![],
    };
    MandateOutcome { mandate, status: record.status, violations, decision_id }
}
