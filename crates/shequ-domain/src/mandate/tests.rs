use esrs::Aggregate;

use super::*;

/// Given these events, when this command, then these events or this refusal.
fn check(given: Vec<MandateEvent>, when: MandateCommand, then: Result<Vec<MandateEvent>, MandateError>) {
    assert_eq!(Mandate::handle_command(&state(given), when), then);
}

fn state(events: Vec<MandateEvent>) -> MandateState {
    events.into_iter().fold(MandateState::default(), Mandate::apply_event)
}

fn fen(amount: i64) -> Fen {
    Fen::parse(amount).unwrap()
}

const STREET: Uuid = Uuid::from_u128(10);
const COMMUNITY: Uuid = Uuid::from_u128(20);
const OTHER_COMMUNITY: Uuid = Uuid::from_u128(21);
const CONTEST: Uuid = Uuid::from_u128(30);
const REVIEWER: Uuid = Uuid::from_u128(40);

fn proposal() -> Proposal {
    Proposal {
        matter_code: "SOC-002".into(),
        delegating_unit: STREET,
        community: COMMUNITY,
        scope: "Home visits for minimum-living-allowance households".into(),
        volume: 10,
        deadline: crate::Date::parse("2026-12-31").unwrap(),
        funds_offered_fen: fen(30_000),
        powers_granted: vec!["conduct-home-visit".into()],
        working_conditions: vec!["service-counter".into()],
    }
}

fn decision(violations: Vec<Violation>) -> Decision {
    Decision {
        decision_id: Uuid::from_u128(50),
        bundle_digest: "ab".repeat(32),
        catalogue_version: 3,
        input: serde_json::json!({"matter_code": "SOC-002"}).into(),
        violations,
    }
}

fn unfunded() -> Violation {
    Violation {
        rule: "R3-funds".into(),
        clause: "plan:3.4.2-R3".into(),
        message: "funds do not cover the cost standard".into(),
        detail: "funds 12000 fen < cost standard 30000 fen".into(),
    }
}

fn admitted() -> Vec<MandateEvent> {
    vec![
        MandateEvent::MandateProposed { proposal: proposal() },
        MandateEvent::MandateAdmitted { decision: decision(vec![]) },
    ]
}

fn active() -> Vec<MandateEvent> {
    let mut events = admitted();
    events.push(MandateEvent::MandateAccepted);
    events.push(MandateEvent::MandateActivated { funds_posted_fen: fen(30_000) });
    events
}

fn contested(mut given: Vec<MandateEvent>) -> Vec<MandateEvent> {
    given.push(MandateEvent::MandateContested {
        contest_id: CONTEST,
        grounds: vec![ContestGround::Unfunded],
        statement: "No money came with it".into(),
        deadline: "2026-12-15T00:00:00Z".into(),
        violations: vec![],
    });
    given
}

#[test]
fn a_proposal_is_admitted_or_refused_by_its_decision() {
    check(
        vec![],
        MandateCommand::Propose { proposal: proposal(), decision: decision(vec![]) },
        Ok(admitted()),
    );
    check(
        vec![],
        MandateCommand::Propose { proposal: proposal(), decision: decision(vec![unfunded()]) },
        Ok(vec![
            MandateEvent::MandateProposed { proposal: proposal() },
            MandateEvent::MandateRefused { decision: decision(vec![unfunded()]) },
        ]),
    );
    let refused = state(vec![
        MandateEvent::MandateProposed { proposal: proposal() },
        MandateEvent::MandateRefused { decision: decision(vec![unfunded()]) },
    ]);
    assert_eq!(refused.mandate.unwrap().status, MandateStatus::Refused);
}

#[test]
fn bad_proposals_are_refused_before_any_event() {
    let mut zero = proposal();
    zero.volume = 0;
    let refused = Mandate::handle_command(
        &MandateState::default(),
        MandateCommand::Propose { proposal: zero, decision: decision(vec![]) },
    );
    assert!(matches!(refused, Err(MandateError::InvalidProposal(message)) if message.contains("volume 0")));
    // A deadline that is no date never reaches a proposal: it is refused where it is parsed.
    assert!(matches!(crate::Date::parse("31/12/2026"), Err(crate::DateError(text)) if text == "31/12/2026"));
    check(
        admitted(),
        MandateCommand::Propose { proposal: proposal(), decision: decision(vec![]) },
        Err(MandateError::AlreadyExists),
    );
}

#[test]
fn never_accepted_while_what_is_held_falls_short_of_the_offer() {
    check(
        admitted(),
        MandateCommand::Accept { funds_held_fen: fen(29_999) },
        Err(MandateError::Unfunded { posted: fen(29_999), offered: fen(30_000) }),
    );
    check(
        admitted(),
        MandateCommand::Accept { funds_held_fen: fen(30_000) },
        Ok(vec![MandateEvent::MandateAccepted]),
    );
}

#[test]
fn never_active_while_unfunded() {
    let mut accepted = admitted();
    accepted.push(MandateEvent::MandateAccepted);
    check(
        accepted.clone(),
        MandateCommand::Activate { funds_posted_fen: fen(29_999) },
        Err(MandateError::Unfunded { posted: fen(29_999), offered: fen(30_000) }),
    );
    check(
        accepted,
        MandateCommand::Activate { funds_posted_fen: fen(30_000) },
        Ok(vec![MandateEvent::MandateActivated { funds_posted_fen: fen(30_000) }]),
    );
    check(
        admitted(),
        MandateCommand::Activate { funds_posted_fen: fen(30_000) },
        Err(MandateError::WrongStatus { status: MandateStatus::Admitted, action: "activated" }),
    );
}

#[test]
fn powers_live_only_while_accepted_or_active() {
    assert!(state(admitted()).live_powers().is_empty());
    assert_eq!(state(active()).live_powers(), ["conduct-home-visit".to_owned()]);
    assert!(state(contested(active())).live_powers().is_empty(), "a contest suspends the work");
    let mut completed = active();
    completed.push(MandateEvent::MandateCompleted);
    assert!(state(completed).live_powers().is_empty());
}

#[test]
fn a_cure_that_satisfies_the_policy_resumes_the_mandate() {
    let cure = Cure { funds_added_fen: fen(18_000), ..Cure::default() };
    let given = contested(admitted());
    check(
        given.clone(),
        MandateCommand::Cure { cure: cure.clone(), decision: decision(vec![]) },
        Ok(vec![MandateEvent::MandateCured { cure: cure.clone(), decision: decision(vec![]) }]),
    );
    let mut cured = given.clone();
    cured.push(MandateEvent::MandateCured { cure: cure.clone(), decision: decision(vec![]) });
    let record = state(cured).mandate.unwrap();
    assert_eq!(record.status, MandateStatus::Admitted);
    assert_eq!(record.proposal.funds_offered_fen, fen(48_000));
    assert_eq!(record.contest, None);

    // On a mandate that was active, new funds must be posted first: it resumes accepted.
    let mut on_active = contested(active());
    on_active.push(MandateEvent::MandateCured { cure: cure.clone(), decision: decision(vec![]) });
    assert_eq!(state(on_active).mandate.unwrap().status, MandateStatus::Accepted);

    // Not enough: recorded, and the contest stays open.
    let mut still = given.clone();
    still.push(MandateEvent::MandateCured { cure: cure.clone(), decision: decision(vec![unfunded()]) });
    assert_eq!(state(still).mandate.unwrap().status, MandateStatus::Contested);
    check(
        given,
        MandateCommand::Cure { cure: Cure::default(), decision: decision(vec![]) },
        Err(MandateError::EmptyCure),
    );
}

#[test]
fn review_upholds_by_withdrawing_or_dismisses_by_resuming() {
    let given = contested(active());
    check(
        given.clone(),
        MandateCommand::Review {
            outcome: ReviewOutcome::Uphold,
            reviewer: REVIEWER,
            reason: "Unfunded".into(),
        },
        Ok(vec![
            MandateEvent::ContestUpheld {
                contest_id: CONTEST,
                reviewer: REVIEWER,
                reason: "Unfunded".into(),
            },
            MandateEvent::MandateWithdrawn { reason: "contest upheld: Unfunded".into() },
        ]),
    );
    let mut dismissed = given;
    dismissed.push(MandateEvent::ContestDismissed {
        contest_id: CONTEST,
        reviewer: REVIEWER,
        reason: "Funded".into(),
    });
    assert_eq!(state(dismissed).mandate.unwrap().status, MandateStatus::Active);
}

#[test]
fn a_contest_escalates_once_and_only_after_its_deadline() {
    let given = contested(admitted());
    check(
        given.clone(),
        MandateCommand::Escalate { now: "2026-12-14T23:59:59Z".into() },
        Err(MandateError::NotYetDue { deadline: "2026-12-15T00:00:00Z".into() }),
    );
    check(
        given.clone(),
        MandateCommand::Escalate { now: "2026-12-15T00:00:00Z".into() },
        Ok(vec![MandateEvent::ContestEscalated { contest_id: CONTEST }]),
    );
    let mut escalated = given;
    escalated.push(MandateEvent::ContestEscalated { contest_id: CONTEST });
    check(
        escalated,
        MandateCommand::Escalate { now: "2026-12-16T00:00:00Z".into() },
        Err(MandateError::AlreadyEscalated),
    );
}

#[test]
fn a_task_outside_the_process_is_recorded_and_contested_with_the_policy_findings() {
    let events = Mandate::handle_command(
        &MandateState::default(),
        MandateCommand::RecordOutsideProcess {
            proposal: proposal(),
            decision: decision(vec![unfunded()]),
            contest_id: CONTEST,
            statement: "Phoned in by the street office on Monday".into(),
            contest_deadline: "2026-12-15T00:00:00Z".into(),
        },
    )
    .unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        matches!(events[1], MandateEvent::MandateRefused { .. }),
        "the policy's verdict stands: {events:?}"
    );
    let MandateEvent::MandateContested { grounds, violations, .. } = &events[2] else { panic!("{events:?}") };
    assert_eq!(grounds, &[ContestGround::OutsideAccessProcess, ContestGround::Unfunded]);
    assert_eq!(violations, &[unfunded()]);
    let record = state(events).mandate.unwrap();
    assert_eq!(record.status, MandateStatus::Contested);
    assert!(record.recorded_outside_process);
}

#[test]
fn reassignment_moves_the_task_only_with_an_admitting_decision() {
    check(
        active(),
        MandateCommand::Reassign { community: OTHER_COMMUNITY, decision: decision(vec![]) },
        Ok(vec![MandateEvent::MandateReassigned {
            from_community: COMMUNITY,
            to_community: OTHER_COMMUNITY,
            decision: decision(vec![]),
        }]),
    );
    check(
        active(),
        MandateCommand::Reassign { community: COMMUNITY, decision: decision(vec![]) },
        Err(MandateError::SameCommunity),
    );
    check(
        active(),
        MandateCommand::Reassign { community: OTHER_COMMUNITY, decision: decision(vec![unfunded()]) },
        Err(MandateError::ReassignmentRefused(1)),
    );
}

#[test]
fn final_states_accept_no_more_work() {
    let mut completed = active();
    completed.push(MandateEvent::MandateCompleted);
    let status = MandateStatus::Completed;
    check(
        completed.clone(),
        MandateCommand::Complete,
        Err(MandateError::WrongStatus { status, action: "completed" }),
    );
    check(
        completed.clone(),
        MandateCommand::Withdraw { reason: "x".into() },
        Err(MandateError::WrongStatus { status, action: "withdrawn" }),
    );
    let contest = MandateCommand::Contest {
        contest_id: CONTEST,
        grounds: vec![ContestGround::Unfunded],
        statement: "x".into(),
        contest_deadline: "2026-12-15T00:00:00Z".into(),
    };
    check(completed, contest, Err(MandateError::WrongStatus { status, action: "contested" }));
    check(vec![], MandateCommand::Accept { funds_held_fen: Fen::ZERO }, Err(MandateError::NotFound));
}

#[test]
fn events_round_trip_through_their_data() {
    for event in contested(active()) {
        let data = event.to_data().unwrap();
        assert_eq!(MandateEvent::from_data(event.event_type(), 1, &data).unwrap(), event);
    }
}
