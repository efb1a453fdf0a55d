//! Mandates: tasks a street office or a district department delegates to a community, under
//! the access rules (`plan:3.4.2-A`, R1–R4) and with funds following the task (`plan:5.2-F`).
//!
//! Lifecycle: proposed → admitted or refused (by the access policy) → accepted or contested
//! (by the community) → active (once its funds are posted) → completed, withdrawn or
//! reassigned. A contest suspends the community's duty until it is cured, upheld or dismissed;
//! unanswered, it escalates to the district once.
//!
//! The aggregate decides nothing about the rules themselves: the policy decision is made
//! before the command and travels in it, so the recorded decision is exactly what decided.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::date::Date;
use crate::event::DomainEvent;
use crate::money::Fen;
use crate::recorded::RecordedInput;

/// The most cases (or months) one mandate may cover.
pub const VOLUME_MAX: u32 = 1_000_000;
/// The most powers or working conditions one proposal may list.
pub const LIST_ITEMS_MAX: usize = 64;
/// The longest free text (scope, grounds, reasons), in characters.
pub const TEXT_CHARS_MAX: usize = 2_000;

/// What a delegating unit proposes, or what a community records of a task that reached it
/// outside the access process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Proposal {
    pub matter_code: String,
    pub delegating_unit: Uuid,
    pub community: Uuid,
    pub scope: String,
    /// Cases, or months for a matter costed per month.
    pub volume: u32,
    /// The last day of the task, `YYYY-MM-DD`.
    #[schema(value_type = String)]
    pub deadline: Date,
    pub funds_offered_fen: Fen,
    pub powers_granted: Vec<String>,
    pub working_conditions: Vec<String>,
}

/// One broken rule, as the access policy reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Violation {
    pub rule: String,
    /// The plan clause, e.g. `plan:3.4.2-R4`.
    pub clause: String,
    pub message: String,
    pub detail: String,
}

/// A recorded policy decision: which bundle and catalogue decided, and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    pub decision_id: Uuid,
    /// The SHA-256 content digest of the policy bundle, hex.
    pub bundle_digest: String,
    pub catalogue_version: u64,
    /// The policy input exactly as evaluated, so the decision can be re-run.
    // Shared, not copied, by the command, its events and their states: it is the largest part
    // of them. The schema is the JSON value's.
    #[schema(value_type = serde_json::Value)]
    pub input: RecordedInput,
    pub violations: Vec<Violation>,
}

impl Decision {
    pub fn admits(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Why a community contests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContestGround {
    Unfunded,
    NotInCatalogue,
    AboveLevel,
    GovernmentDuty,
    MissingPower,
    FundsNotPosted,
    CaseloadOutgrewFunding,
    ClassificationDisputed,
    OutsideAccessProcess,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewOutcome {
    /// The contest stands: the mandate is withdrawn and its funds go back.
    Uphold,
    /// The contest fails: the mandate resumes where it was.
    Dismiss,
}

/// What a cure adds to the mandate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cure {
    pub funds_added_fen: Fen,
    pub powers_added: Vec<String>,
    pub working_conditions_added: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MandateCommand {
    /// A delegating unit proposes; `decision` is the access policy's verdict on it.
    Propose {
        proposal: Proposal,
        decision: Decision,
    },
    /// A community records a task that reached it outside the access process (a directive, a
    /// phone call) and contests it; `decision` is the policy's verdict as if it were proposed.
    RecordOutsideProcess {
        proposal: Proposal,
        decision: Decision,
        contest_id: Uuid,
        statement: String,
        contest_deadline: String,
    },
    /// The community accepts, with `funds_held_fen` held for the mandate (reserved, and posted
    /// to any community): refused unless they cover the funds offered, so that no acceptance
    /// stands that cannot become active (plan:5.2-F).
    Accept {
        funds_held_fen: Fen,
    },
    /// The funds were posted to the community's mandate account: the mandate becomes active.
    Activate {
        funds_posted_fen: Fen,
    },
    Contest {
        contest_id: Uuid,
        grounds: Vec<ContestGround>,
        statement: String,
        contest_deadline: String,
    },
    /// The delegating unit adds funds or powers; `decision` re-decides the cured proposal.
    Cure {
        cure: Cure,
        decision: Decision,
    },
    Review {
        outcome: ReviewOutcome,
        reviewer: Uuid,
        reason: String,
    },
    /// The contest deadline passed unanswered (`now` ≥ deadline, both RFC 3339 dates).
    Escalate {
        now: String,
    },
    Complete,
    Withdraw {
        reason: String,
    },
    Reassign {
        community: Uuid,
        decision: Decision,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr)]
#[serde(tag = "eventType", content = "data")]
pub enum MandateEvent {
    MandateProposed {
        proposal: Proposal,
    },
    MandateRecordedOutsideProcess {
        proposal: Proposal,
        statement: String,
    },
    MandateAdmitted {
        decision: Decision,
    },
    MandateRefused {
        decision: Decision,
    },
    MandateAccepted,
    MandateActivated {
        funds_posted_fen: Fen,
    },
    MandateContested {
        contest_id: Uuid,
        grounds: Vec<ContestGround>,
        statement: String,
        deadline: String,
        violations: Vec<Violation>,
    },
    MandateCured {
        cure: Cure,
        decision: Decision,
    },
    ContestUpheld {
        contest_id: Uuid,
        reviewer: Uuid,
        reason: String,
    },
    ContestDismissed {
        contest_id: Uuid,
        reviewer: Uuid,
        reason: String,
    },
    ContestEscalated {
        contest_id: Uuid,
    },
    MandateCompleted,
    MandateWithdrawn {
        reason: String,
    },
    MandateReassigned {
        from_community: Uuid,
        to_community: Uuid,
        decision: Decision,
    },
}

impl DomainEvent for MandateEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MandateStatus {
    /// Only between the two events of a `Propose` command.
    Proposed,
    Refused,
    Admitted,
    Accepted,
    Active,
    Contested,
    Completed,
    Withdrawn,
}

impl MandateStatus {
    pub fn is_final(self) -> bool {
        matches!(self, MandateStatus::Refused | MandateStatus::Completed | MandateStatus::Withdrawn)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MandateError {
    #[error("the mandate already exists")]
    AlreadyExists,
    #[error("there is no such mandate")]
    NotFound,
    #[error("a mandate that is {status:?} cannot be {action}")]
    WrongStatus { status: MandateStatus, action: &'static str },
    /// Bad input, naming its field.
    #[error("{0}")]
    InvalidProposal(String),
    #[error("the mandate cannot be active while unfunded: {posted} posted, {offered} offered (plan:5.2-F)")]
    Unfunded { posted: Fen, offered: Fen },
    #[error("the contest is not past its deadline {deadline}")]
    NotYetDue { deadline: String },
    #[error("the contest has already escalated")]
    AlreadyEscalated,
    #[error("a contest needs at least one ground")]
    NoGrounds,
    #[error("a cure must add funds, powers or working conditions")]
    EmptyCure,
    #[error("the mandate already belongs to that community")]
    SameCommunity,
    #[error("the reassignment is refused by the access policy: {0} violations")]
    ReassignmentRefused(usize),
}

/// An open contest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenContest {
    pub contest_id: Uuid,
    pub grounds: Vec<ContestGround>,
    pub deadline: String,
    pub escalated: bool,
    /// The status the mandate goes back to when the contest is dismissed or cured.
    pub resumes: MandateStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateRecord {
    pub proposal: Proposal,
    pub status: MandateStatus,
    pub decision: Decision,
    pub funds_posted_fen: Fen,
    pub contest: Option<OpenContest>,
    pub recorded_outside_process: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MandateState {
    pub mandate: Option<MandateRecord>,
}

impl MandateState {
    /// Powers the community may use on this mandate now: granted powers live while the
    /// mandate is accepted or active and no contest suspends it (`plan:3.4.2-R4`).
    pub fn live_powers(&self) -> &[String] {
        match &self.mandate {
            Some(record) if matches!(record.status, MandateStatus::Accepted | MandateStatus::Active) => {
                &record.proposal.powers_granted
            }
            _ => &[],
        }
    }
}

crate::aggregate!(Mandate, "mandate", MandateState, MandateCommand, MandateEvent, MandateError);

/// Decides a command on the state: the events it records, or why it is refused.
fn decide(state: &MandateState, command: MandateCommand) -> Result<Vec<MandateEvent>, MandateError> {
    use MandateCommand as C;
    use MandateEvent as E;
    use MandateStatus as S;
    let record = state.mandate.as_ref();
    let status = record.map(|record| record.status);
    let wrong = |action| match status {
        Some(status) => MandateError::WrongStatus { status, action },
        None => MandateError::NotFound,
    };
    match command {
        C::Propose { proposal, decision } => {
            if record.is_some() {
                return Err(MandateError::AlreadyExists);
            }
            validate_proposal(&proposal)?;
            let verdict = match decision.admits() {
                true => E::MandateAdmitted { decision },
                false => E::MandateRefused { decision },
            };
            Ok(vec![E::MandateProposed { proposal }, verdict])
        }
        C::RecordOutsideProcess { proposal, decision, contest_id, statement, contest_deadline } => {
            if record.is_some() {
                return Err(MandateError::AlreadyExists);
            }
            record_outside_process(proposal, decision, contest_id, &statement, contest_deadline)
        }
        C::Accept { funds_held_fen } => match record {
            Some(record) if record.status == S::Admitted => accept(record, funds_held_fen),
            _ => Err(wrong("accepted")),
        },
        C::Activate { funds_posted_fen } => {
            let record = record.ok_or(MandateError::NotFound)?;
            if record.status != S::Accepted {
                return Err(wrong("activated"));
            }
            let offered = record.proposal.funds_offered_fen;
            if funds_posted_fen < offered {
                return Err(MandateError::Unfunded { posted: funds_posted_fen, offered });
            }
            Ok(vec![E::MandateActivated { funds_posted_fen }])
        }
        C::Contest { contest_id, grounds, statement, contest_deadline } => {
            if !matches!(status, Some(S::Admitted | S::Accepted | S::Active)) {
                return Err(wrong("contested"));
            }
            if grounds.is_empty() {
                return Err(MandateError::NoGrounds);
            }
            let statement = parse_text("statement", &statement)?;
            let violations = record.map(|record| record.decision.violations.clone()).unwrap_or_default();
            Ok(vec![E::MandateContested {
                contest_id,
                grounds,
                statement,
                deadline: contest_deadline,
                violations,
            }])
        }
        C::Cure { cure, decision } => {
            if status != Some(S::Contested) {
                return Err(wrong("cured"));
            }
            let offered = record.map_or(Fen::ZERO, |record| record.proposal.funds_offered_fen);
            Ok(vec![E::MandateCured { cure: checked_cure(offered, cure)?, decision }])
        }
        C::Review { outcome, reviewer, reason } => {
            let contest =
                record.and_then(|record| record.contest.as_ref()).ok_or_else(|| wrong("reviewed"))?;
            review(contest, outcome, reviewer, &reason)
        }
        C::Escalate { now } => {
            let contest =
                record.and_then(|record| record.contest.as_ref()).ok_or_else(|| wrong("escalated"))?;
            escalate(contest, &now)
        }
        C::Complete => match status {
            Some(S::Active) => Ok(vec![E::MandateCompleted]),
            _ => Err(wrong("completed")),
        },
        C::Withdraw { reason } => {
            if !matches!(status, Some(S::Admitted | S::Accepted | S::Active | S::Contested)) {
                return Err(wrong("withdrawn"));
            }
            Ok(vec![E::MandateWithdrawn { reason: parse_text("reason", &reason)? }])
        }
        C::Reassign { community, decision } => {
            let record = record.ok_or(MandateError::NotFound)?;
            if !matches!(record.status, S::Admitted | S::Accepted | S::Active) {
                return Err(wrong("reassigned"));
            }
            reassign(record, community, decision)
        }
    }
}

impl MandateRecord {
    /// A mandate just proposed (or recorded as having reached a community outside the access
    /// process), before the policy's decision.
    fn proposed(proposal: Proposal, recorded_outside_process: bool) -> Self {
        MandateRecord {
            proposal,
            status: MandateStatus::Proposed,
            decision: empty_decision(),
            funds_posted_fen: Fen::ZERO,
            contest: None,
            recorded_outside_process,
        }
    }
}

/// The state an event leaves.
fn evolve(state: MandateState, event: MandateEvent) -> MandateState {
    use MandateEvent as E;
    use MandateStatus as S;
    let mut record = state.mandate;
    match event {
        E::MandateProposed { proposal } => {
            record = Some(MandateRecord::proposed(proposal, false));
        }
        E::MandateRecordedOutsideProcess { proposal, .. } => {
            record = Some(MandateRecord::proposed(proposal, true));
        }
        E::MandateAdmitted { decision } => {
            let record = record.as_mut().expect("admitted after proposed");
            record.status = S::Admitted;
            record.decision = decision;
        }
        E::MandateRefused { decision } => {
            let record = record.as_mut().expect("refused after proposed");
            record.status = S::Refused;
            record.decision = decision;
        }
        E::MandateAccepted => record.as_mut().expect("accepted after admitted").status = S::Accepted,
        E::MandateActivated { funds_posted_fen } => {
            let record = record.as_mut().expect("activated after accepted");
            record.status = S::Active;
            record.funds_posted_fen = funds_posted_fen;
        }
        E::MandateContested { contest_id, grounds, deadline, .. } => {
            let record = record.as_mut().expect("contested after admitted");
            let resumes = record.status;
            record.status = S::Contested;
            record.contest = Some(OpenContest { contest_id, grounds, deadline, escalated: false, resumes });
        }
        E::MandateCured { cure, decision } => {
            let record = record.as_mut().expect("cured while contested");
            record.proposal.funds_offered_fen = record
                .proposal
                .funds_offered_fen
                .checked_add(cure.funds_added_fen)
                .expect("cured funds stay within FEN_MAX");
            record.proposal.powers_granted.extend(cure.powers_added);
            record.proposal.working_conditions.extend(cure.working_conditions_added);
            // A cure that satisfies the policy closes the contest; one that does not is
            // recorded, and the contest stays open.
            if decision.admits() {
                let contest = record.contest.take().expect("a contested mandate has a contest");
                record.status = match contest.resumes {
                    // A task refused as recorded is admitted once cured.
                    S::Refused => S::Admitted,
                    // New funds must be posted before the work resumes: never active unfunded.
                    S::Active if cure.funds_added_fen > Fen::ZERO => S::Accepted,
                    resumes => resumes,
                };
            }
            record.decision = decision;
        }
        E::ContestUpheld { .. } => {
            record.as_mut().expect("upheld while contested").contest = None;
        }
        E::ContestDismissed { .. } => {
            let record = record.as_mut().expect("dismissed while contested");
            let contest = record.contest.take().expect("a contested mandate has a contest");
            record.status = contest.resumes;
        }
        E::ContestEscalated { .. } => {
            let record = record.as_mut().expect("escalated while contested");
            record.contest.as_mut().expect("a contested mandate has a contest").escalated = true;
        }
        E::MandateCompleted => record.as_mut().expect("completed while active").status = S::Completed,
        E::MandateWithdrawn { .. } => {
            let record = record.as_mut().expect("withdrawn after admitted");
            record.status = S::Withdrawn;
            record.contest = None;
        }
        E::MandateReassigned { to_community, decision, .. } => {
            let record = record.as_mut().expect("reassigned after admitted");
            record.proposal.community = to_community;
            record.decision = decision;
        }
    }
    MandateState { mandate: record }
}

fn empty_decision() -> Decision {
    Decision {
        decision_id: Uuid::nil(),
        bundle_digest: String::new(),
        catalogue_version: 0,
        input: RecordedInput::default(),
        violations: vec![],
    }
}

/// The contest grounds that a policy's violations amount to.
fn grounds_from(violations: &[Violation]) -> Vec<ContestGround> {
    let mut grounds = Vec::new();
    for violation in violations {
        let ground = match violation.rule.as_str() {
            "catalogue" => ContestGround::NotInCatalogue,
            "R1" => ContestGround::AboveLevel,
            "R2" => ContestGround::GovernmentDuty,
            "R4-power" => ContestGround::MissingPower,
            _ => ContestGround::Unfunded,
        };
        if !grounds.contains(&ground) {
            grounds.push(ground);
        }
    }
    grounds
}

/// A task that reached a community outside the access process, recorded and contested at once.
fn record_outside_process(
    proposal: Proposal,
    decision: Decision,
    contest_id: Uuid,
    statement: &str,
    contest_deadline: String,
) -> Result<Vec<MandateEvent>, MandateError> {
    validate_proposal(&proposal)?;
    let statement = parse_text("statement", statement)?;
    let mut grounds = vec![ContestGround::OutsideAccessProcess];
    grounds.extend(grounds_from(&decision.violations));
    let violations = decision.violations.clone();
    // Recorded as the policy sees it: a task that breaks the rules stands refused while
    // contested, and only a cure that satisfies the policy admits it.
    let verdict = match decision.admits() {
        true => MandateEvent::MandateAdmitted { decision },
        false => MandateEvent::MandateRefused { decision },
    };
    Ok(vec![
        MandateEvent::MandateRecordedOutsideProcess { proposal, statement: statement.clone() },
        verdict,
        MandateEvent::MandateContested {
            contest_id,
            grounds,
            statement,
            deadline: contest_deadline,
            violations,
        },
    ])
}

/// A reviewer's answer to a contest: upheld (the mandate is withdrawn) or dismissed.
fn review(
    contest: &OpenContest,
    outcome: ReviewOutcome,
    reviewer: Uuid,
    reason: &str,
) -> Result<Vec<MandateEvent>, MandateError> {
    let reason = parse_text("reason", reason)?;
    let contest_id = contest.contest_id;
    Ok(match outcome {
        ReviewOutcome::Uphold => vec![
            MandateEvent::ContestUpheld { contest_id, reviewer, reason: reason.clone() },
            MandateEvent::MandateWithdrawn { reason: format!("contest upheld: {reason}") },
        ],
        ReviewOutcome::Dismiss => vec![MandateEvent::ContestDismissed { contest_id, reviewer, reason }],
    })
}

/// A contest past its deadline (`now`, RFC 3339) escalated to the district, once.
fn escalate(contest: &OpenContest, now: &str) -> Result<Vec<MandateEvent>, MandateError> {
    if contest.escalated {
        return Err(MandateError::AlreadyEscalated);
    }
    // RFC 3339 dates and times in UTC compare correctly as text.
    if now < contest.deadline.as_str() {
        return Err(MandateError::NotYetDue { deadline: contest.deadline.clone() });
    }
    Ok(vec![MandateEvent::ContestEscalated { contest_id: contest.contest_id }])
}

/// An admitted mandate accepted, if what is held for it covers what was offered.
fn accept(record: &MandateRecord, funds_held_fen: Fen) -> Result<Vec<MandateEvent>, MandateError> {
    let offered = record.proposal.funds_offered_fen;
    if funds_held_fen < offered {
        return Err(MandateError::Unfunded { posted: funds_held_fen, offered });
    }
    Ok(vec![MandateEvent::MandateAccepted])
}

/// A cure that adds something, to a total of funds offered that stays in range.
fn checked_cure(offered: Fen, cure: Cure) -> Result<Cure, MandateError> {
    if cure.funds_added_fen == Fen::ZERO
        && cure.powers_added.is_empty()
        && cure.working_conditions_added.is_empty()
    {
        return Err(MandateError::EmptyCure);
    }
    if offered.checked_add(cure.funds_added_fen).is_none() {
        return Err(MandateError::InvalidProposal("funds_added_fen: the cured total is out of range".into()));
    }
    Ok(cure)
}

/// A live mandate moved to another community, on a decision that admits it there.
fn reassign(
    record: &MandateRecord,
    community: Uuid,
    decision: Decision,
) -> Result<Vec<MandateEvent>, MandateError> {
    if community == record.proposal.community {
        return Err(MandateError::SameCommunity);
    }
    if !decision.admits() {
        return Err(MandateError::ReassignmentRefused(decision.violations.len()));
    }
    let from_community = record.proposal.community;
    Ok(vec![MandateEvent::MandateReassigned { from_community, to_community: community, decision }])
}

fn validate_proposal(proposal: &Proposal) -> Result<(), MandateError> {
    let invalid = |message: String| Err(MandateError::InvalidProposal(message));
    if proposal.matter_code.trim().is_empty() {
        return invalid("matter_code is empty".into());
    }
    if !(1..=VOLUME_MAX).contains(&proposal.volume) {
        return invalid(format!("volume {} is not 1–{VOLUME_MAX}", proposal.volume));
    }
    if proposal.scope.chars().count() > TEXT_CHARS_MAX {
        return invalid(format!("scope is longer than {TEXT_CHARS_MAX} characters"));
    }
    if proposal.powers_granted.len() > LIST_ITEMS_MAX || proposal.working_conditions.len() > LIST_ITEMS_MAX {
        return invalid(format!("powers_granted and working_conditions hold at most {LIST_ITEMS_MAX} each"));
    }
    if proposal.delegating_unit == proposal.community {
        return invalid(
            "delegating_unit and community are the same unit: a unit cannot delegate to itself".into(),
        );
    }
    Ok(())
}

/// `field`'s text, trimmed: required, and at most `TEXT_CHARS_MAX` characters.
fn parse_text(field: &str, text: &str) -> Result<String, MandateError> {
    let text = text.trim();
    match text.chars().count() {
        0 => Err(MandateError::InvalidProposal(format!("{field} is required"))),
        count if count > TEXT_CHARS_MAX => {
            Err(MandateError::InvalidProposal(format!("{field} is longer than {TEXT_CHARS_MAX} characters")))
        }
        _ => Ok(text.to_owned()),
    }
}

#[cfg(test)]
mod tests;
