//! The command path on the demo world, on both backends: access rules, funds, contests,
//! timers and authorisation, as the API and the command line use them.

use std::sync::Arc;

use clap::Parser;
use shequ::demo::{self, demo_id, DemoOutcome};
use shequ::{Cli, Outcome};
use shequ_domain::ledger::Account;
use shequ_domain::mandate::{ContestGround, MandateError, MandateStatus, Proposal, ReviewOutcome};
use shequ_domain::Fen;
use shequ_policy::Policies;
use shequ_service::{
    Actor, Allocation, CommandScope, MandateOutcome, ManualClock, Role, Service, ServiceError,
};
use shequ_store::EventLog;
use uuid::Uuid;

use crate::helpers::{execute_directly, tamper, tests, Db, TestFn};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        the_demo_exercises_every_rule_once_and_balances_the_books,
        refusals_are_recorded_with_the_decision_that_made_them,
        funds_must_be_available_to_the_delegating_unit,
        a_contest_escalates_once_even_across_restarts,
        every_command_is_authorised_by_role_and_place,
        redecide_reruns_every_decision_and_names_a_rewritten_one,
        cures_withdrawals_and_spending_move_money_once_and_only_when_allowed,
        a_kept_ledger_state_sees_what_another_process_appended,
        a_districts_ledger_commands_are_pipelined_and_stand_only_on_committed_events,
        nothing_to_do_is_never_answered_on_a_stale_kept_state,
        a_mandate_stands_admitted_only_with_its_funds_reserved,
        proposals_racing_for_one_budget_are_reserved_or_withdrawn_whole,
        a_review_sent_again_under_its_key_answers_as_the_first_time,
        an_acceptance_refused_for_want_of_funds_writes_nothing,
        a_task_recorded_outside_the_process_comes_from_above_never_from_a_peer,
        a_mandates_funds_follow_every_reassignment_even_one_that_stopped_halfway,
        a_keyed_cure_sent_again_posts_what_its_first_attempt_could_not,
        a_keyed_accept_sent_again_with_its_revision_finishes_what_it_started,
    ]
}

async fn demo_world(db: &Db) -> (EventLog, Policies, demo::DemoPlaces) {
    let log = EventLog::open(&db.url).await.unwrap();
    let policies = Policies::embedded().unwrap();
    let places = match demo::load(&log, &policies).await.unwrap() {
        DemoOutcome::Loaded { places, .. } => places,
        DemoOutcome::AlreadyLoaded { .. } => panic!("a fresh database has no demo"),
    };
    (log, policies, places)
}

/// `community` contests `mandate` on one ground; the contest must be recorded.
async fn contest(
    service: &Service,
    community: Actor,
    mandate: Uuid,
    ground: ContestGround,
    statement: &str,
) -> MandateOutcome {
    service.contest(&CommandScope::new(community), mandate, vec![ground], statement).await.unwrap()
}

fn fen(amount: i64) -> Fen {
    Fen::parse(amount).unwrap()
}

/// What a street may still spend, by its district's ledger as `service` keeps it.
async fn street_balance(service: &Service, district: Uuid, street: Uuid) -> i64 {
    service.ledger(district).await.unwrap().balance(Account::Organisation { organisation: street })
}

/// A street office's proposal of EMP-001 (unemployment registration assistance) with every
/// power and working condition the matter requires.
fn employment(street: Uuid, community: Uuid, volume: u32, funds: i64) -> Proposal {
    Proposal {
        matter_code: "EMP-001".into(),
        delegating_unit: street,
        community,
        scope: "Unemployment registration assistance".into(),
        volume,
        deadline: shequ_domain::Date::parse("2026-12-31").expect("a date"),
        funds_offered_fen: fen(funds),
        powers_granted: vec!["collect-resident-data".into()],
        working_conditions: vec!["service-counter".into(), "information-terminal".into()],
    }
}

async fn the_demo_exercises_every_rule_once_and_balances_the_books(db: Db) {
    let run = || async {
        let cli = Cli::try_parse_from(["shequ", "--db", &db.url, "demo"]).unwrap();
        let mut out = Vec::new();
        assert_eq!(shequ::run(cli, &mut out).await.unwrap(), Outcome::Success);
        String::from_utf8(out).unwrap()
    };
    let summary = run().await;
    for cited in [
        "R1 plan:3.4.2-R1",
        "R2 plan:3.4.2-R2",
        "R3-funds plan:3.4.2-R3",
        "R4-power plan:3.4.2-R4",
        "catalogue plan:3.4.2-A",
        "funds 60000 fen < cost standard 160000 fen (8000 fen × 20 cases)",
        "power `refer-to-provider` not granted",
        "balances sum to 0 fen (debits = credits); 0 accounts below zero",
        "Chain: ok",
    ] {
        assert!(summary.contains(cited), "the demo summary should cite `{cited}`:\n{summary}");
    }
    assert_eq!(run().await, "The demo data set is already loaded in this store; nothing was changed.\n");

    let log = EventLog::open(&db.url).await.unwrap();
    let service =
        Service::new(log, Policies::embedded().unwrap(), Arc::new(shequ_service::SystemClock)).await.unwrap();
    let places = demo::places();
    let status = |name: &str| {
        let service = service.clone();
        let id = demo_id(name);
        async move { service.mandate(id).await.unwrap() }
    };
    assert_eq!(status("mandate/EMP-001").await.status, MandateStatus::Active);
    assert_eq!(status("mandate/FLP-001").await.status, MandateStatus::Active, "cured, then accepted");
    assert_eq!(status("mandate/MED-001").await.status, MandateStatus::Withdrawn, "contest upheld");
    let screening = status("mandate/PMD-002").await;
    assert!(screening.contest.unwrap().escalated);
    let rentals = status("mandate/SAF-001").await;
    assert_eq!(rentals.proposal.community, places.communities[9].0);

    let ledger = service.ledger(places.district).await.unwrap();
    let rentals_id = demo_id("mandate/SAF-001");
    assert_eq!(
        ledger.balance(Account::Mandate { mandate: rentals_id, community: places.communities[9].0 }),
        60_000
    );
    assert_eq!(
        ledger.balance(Account::Mandate { mandate: rentals_id, community: places.communities[8].0 }),
        0
    );
    assert!(
        ledger.mandate_funds(demo_id("mandate/MED-001")).is_empty(),
        "an upheld contest returns the funds"
    );
    assert_eq!(
        ledger.balance(Account::Organisation { organisation: places.departments[0].0 }),
        1_000_000 - 60_000
    );
    assert_eq!(ledger.balance(Account::Expenditure), 27_000);
    assert_eq!(ledger.balances.values().sum::<i64>(), 0);
}

async fn refusals_are_recorded_with_the_decision_that_made_them(db: Db) {
    let (log, policies, _) = demo_world(&db).await;
    let stream = format!("mandate-{}", demo_id("mandate/refused/SSV-006"));
    let events = log.read_stream(&stream).await.unwrap();
    let types: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(types, ["MandateProposed", "MandateRefused"]);
    let data: serde_json::Value = serde_json::from_str(&events[1].data).unwrap();
    let decision = &data["decision"];
    assert_eq!(decision["bundle_digest"], policies.bundle().digest());
    assert_eq!(decision["violations"][0]["clause"], "plan:3.4.2-R1");
    assert_eq!(decision["input"]["matter"]["code"], "SSV-006");
    // The recorded input, re-decided on the recorded bundle, gives the recorded violations.
    let again = policies.decide_access(&decision["input"]).unwrap();
    assert_eq!(serde_json::to_value(again).unwrap(), decision["violations"]);
    let metadata: serde_json::Value = serde_json::from_str(&events[1].metadata).unwrap();
    assert_eq!(metadata["decisionId"], decision["decision_id"]);
    assert!(metadata["actor"].as_str().unwrap().starts_with("street_office:"));
    // The bundle's text is in the log, once, whoever started.
    Service::new(log.clone(), policies.clone(), Arc::new(shequ_service::SystemClock)).await.unwrap();
    let bundle = log.read_stream(&Service::bundle_stream(policies.bundle().digest())).await.unwrap();
    assert_eq!(bundle.len(), 1);
    assert!(bundle[0].data.contains("package shequ.access"));
}

async fn funds_must_be_available_to_the_delegating_unit(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log, policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let street = places.streets[0].0;
    let actor = Actor { role: Role::StreetOffice, organisation: street };
    let proposal = employment(street, places.communities[1].0, 1_000, 3_000_000);
    let outcome = service.propose(&CommandScope::new(actor), Uuid::now_v7(), proposal).await.unwrap();
    assert_eq!(outcome.status, MandateStatus::Refused);
    let violation = &outcome.violations[0];
    assert_eq!((violation.rule.as_str(), violation.clause.as_str()), ("funds-available", "plan:5.2-F"));
    assert!(violation.detail.ends_with("fen < 3000000 fen offered"), "{}", violation.detail);
}

async fn a_contest_escalates_once_even_across_restarts(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let clock = ManualClock::new(chrono::Utc::now());
    let service = Service::new(log.clone(), policies.clone(), Arc::new(clock.clone())).await.unwrap();
    let community = Actor { role: Role::Community, organisation: places.communities[4].0 };
    let mandate = demo_id("mandate/SSV-007");
    let contested =
        contest(&service, community, mandate, ContestGround::FundsNotPosted, "Nothing arrived").await;
    assert_eq!(contested.status, MandateStatus::Contested);
    clock.advance(chrono::Duration::days(14));
    assert_eq!(service.escalate_due().await.unwrap(), Vec::<Uuid>::new(), "not yet due");
    clock.advance(chrono::Duration::days(2));
    assert_eq!(service.escalate_due().await.unwrap(), vec![mandate]);
    assert_eq!(service.escalate_due().await.unwrap(), Vec::<Uuid>::new());
    // A restarted server rebuilds its timers from the log and does not fire again.
    let restarted = Service::new(log.clone(), policies, Arc::new(clock.clone())).await.unwrap();
    assert_eq!(restarted.escalate_due().await.unwrap(), Vec::<Uuid>::new());
    let escalations = log
        .read_stream(&format!("mandate-{mandate}"))
        .await
        .unwrap()
        .iter()
        .filter(|event| event.event_type == "ContestEscalated")
        .count();
    assert_eq!(escalations, 1);
}

async fn every_command_is_authorised_by_role_and_place(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log.clone(), policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let head = log.head().await.unwrap().position;
    let other_street = Actor { role: Role::StreetOffice, organisation: places.streets[1].0 };
    let proposal = Proposal {
        matter_code: "EMP-001".into(),
        delegating_unit: other_street.organisation,
        community: places.communities[0].0,
        scope: "x".into(),
        volume: 1,
        deadline: shequ_domain::Date::parse("2026-12-31").expect("a date"),
        funds_offered_fen: fen(3_000),
        powers_granted: vec![],
        working_conditions: vec![],
    };
    let denied = service.propose(&CommandScope::new(other_street), Uuid::now_v7(), proposal.clone()).await;
    assert!(
        matches!(&denied, Err(ServiceError::Forbidden(reason)) if reason == "street_office may not mandate.propose here"),
        "{denied:?}"
    );
    let inspector = Actor { role: Role::Inspector, organisation: places.district };
    let mut as_inspector = proposal.clone();
    as_inspector.delegating_unit = places.district;
    assert!(matches!(
        service.propose(&CommandScope::new(inspector), Uuid::now_v7(), as_inspector).await,
        Err(ServiceError::Forbidden(_))
    ));
    let stranger = Actor { role: Role::Community, organisation: places.communities[1].0 };
    assert!(matches!(
        service.accept(&CommandScope::new(stranger), demo_id("mandate/SSV-007")).await,
        Err(ServiceError::Forbidden(_))
    ));
    let stranger_review = Actor { role: Role::StreetOffice, organisation: places.streets[0].0 };
    let review = service
        .review(
            &CommandScope::new(stranger_review),
            demo_id("mandate/PMD-002"),
            shequ_domain::mandate::ReviewOutcome::Dismiss,
            "no",
        )
        .await;
    assert!(matches!(review, Err(ServiceError::Forbidden(_))), "{review:?}");
    assert_eq!(log.head().await.unwrap().position, head, "denied commands write nothing");
}

async fn redecide_reruns_every_decision_and_names_a_rewritten_one(db: Db) {
    demo_world(&db).await;
    let redecide = || async {
        let cli = Cli::try_parse_from(["shequ", "--db", &db.url, "audit", "redecide"]).unwrap();
        let mut out = Vec::new();
        let outcome = shequ::run(cli, &mut out).await.unwrap();
        (outcome, String::from_utf8(out).unwrap())
    };
    assert_eq!(redecide().await, (Outcome::Success, "13 decisions, 13 identical, 0 differ\n".to_owned()));

    // Someone rewrites a refusal's recorded rule in the database.
    let stream = format!("mandate-{}", demo_id("mandate/refused/SSV-006"));
    let rewrite = format!(
        "UPDATE events SET data = replace(data, '\"rule\":\"R1\"', '\"rule\":\"R9\"') \
         WHERE stream = '{stream}' AND event_type = 'MandateRefused';"
    );
    tamper(&db, &rewrite).await;
    let (outcome, out) = redecide().await;
    assert_eq!(outcome, Outcome::Failure);
    assert!(out.starts_with("13 decisions, 12 identical, 1 differ\n"), "{out}");
    assert!(
        out.contains(&format!(
            "(MandateRefused in {stream}): recorded 1 violation(s) [R9], re-decided 1 [R1]"
        )),
        "{out}"
    );
}

/// The demo's SSV-007, active and funded: the civil-affairs department delegated it to
/// community 4.
struct ActiveMandate {
    service: Service,
    places: demo::DemoPlaces,
    department: Actor,
    community: Actor,
    mandate: Uuid,
    /// The department's own account, which pays for it.
    unit: Account,
}

async fn active_mandate(db: &Db) -> ActiveMandate {
    let (log, policies, places) = demo_world(db).await;
    let service = Service::new(log, policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let department = Actor { role: Role::Department, organisation: places.departments[0].0 };
    let community = Actor { role: Role::Community, organisation: places.communities[4].0 };
    let unit = Account::Organisation { organisation: department.organisation };
    ActiveMandate { service, places, department, community, mandate: demo_id("mandate/SSV-007"), unit }
}

async fn cures_withdrawals_and_spending_move_money_once_and_only_when_allowed(db: Db) {
    let ActiveMandate { service, places, department, community, mandate, unit } = active_mandate(&db).await;
    let books = || async { service.ledger(places.district).await.unwrap() };
    let cure = shequ_domain::mandate::Cure { funds_added_fen: fen(10_000), ..Default::default() };

    // An active, uncontested mandate cannot be cured, and no money moves trying.
    let before = books().await.balance(unit);
    for _ in 0..2 {
        let refused = service.cure(&CommandScope::new(department), mandate, cure.clone()).await;
        assert!(matches!(refused, Err(ServiceError::Mandate(_))), "{refused:?}");
    }
    assert_eq!(books().await.balance(unit), before);

    // Contested while active: no spending, no work owed.
    contest(&service, community, mandate, ContestGround::CaseloadOutgrewFunding, "More cases").await;
    let spend =
        service.spend(&CommandScope::new(community), mandate, Uuid::now_v7(), fen(1_000), "visit").await;
    assert!(matches!(spend, Err(ServiceError::Forbidden(_))), "{spend:?}");
    // Cured with new funds: posted before it is active again, never active unfunded.
    let cured = service.cure(&CommandScope::new(department), mandate, cure).await.unwrap();
    assert_eq!(cured.status, MandateStatus::Active);
    let record = service.mandate(mandate).await.unwrap();
    assert_eq!(record.proposal.funds_offered_fen, fen(70_000));
    assert_eq!(record.funds_posted_fen, fen(70_000));
    assert_eq!(books().await.balance(unit), before - 10_000);

    // Withdrawn twice: the second asks again and changes nothing; the money comes back once.
    service.withdraw(&CommandScope::new(department), mandate, "No longer needed").await.unwrap();
    let after_first = books().await;
    service.withdraw(&CommandScope::new(department), mandate, "No longer needed").await.unwrap();
    assert_eq!(books().await, after_first);
    assert_eq!(after_first.balance(unit), before + 60_000);
    assert!(after_first.mandate_funds(mandate).is_empty());
}

/// Two services on one store stand for two processes: each keeps the district's ledger state
/// between commands, and neither may act on a stale one.
async fn a_kept_ledger_state_sees_what_another_process_appended(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let clock = Arc::new(shequ_service::SystemClock);
    let first = Service::new(log.clone(), policies.clone(), clock.clone()).await.unwrap();
    let second = Service::new(EventLog::open(&db.url).await.unwrap(), policies, clock).await.unwrap();
    let street = places.streets[0].0;
    let office = Actor { role: Role::StreetOffice, organisation: street };
    let pay = |service: &Service, amount: i64, to: usize| {
        let service = service.clone();
        let to = places.communities[to].0;
        async move {
            let allocation = Allocation {
                transfer_id: Uuid::now_v7(),
                from: Some(street),
                to,
                amount_fen: fen(amount),
                memo: "m",
            };
            service.allocate(&CommandScope::new(office), allocation).await
        }
    };
    // The first process keeps the ledger's state after its command.
    pay(&first, 1, 0).await.unwrap();
    let left = street_balance(&first, places.district, street).await;
    // The second process spends all but 10 fen of the street's budget.
    pay(&second, left - 10, 1).await.unwrap();
    // The first may pay 10 fen more, not 11: its kept state learned of the second's transfer.
    let refused = pay(&first, 11, 2).await;
    assert!(matches!(refused, Err(ServiceError::Ledger(_))), "{refused:?}");
    pay(&first, 10, 2).await.unwrap();
    assert_eq!(street_balance(&second, places.district, street).await, 0);
    // The other way round: the first keeps the ledger at 0 for the street, the second tops
    // it up; the first's payment is refused by its memory, and must not be refused for it.
    let district = Actor { role: Role::District, organisation: places.district };
    let top_up = Allocation {
        transfer_id: Uuid::now_v7(),
        from: None,
        to: street,
        amount_fen: fen(500),
        memo: "top-up",
    };
    second.allocate(&CommandScope::new(district), top_up).await.unwrap();
    pay(&first, 400, 0).await.unwrap();
    assert_eq!(street_balance(&first, places.district, street).await, 100);
    assert_eq!(street_balance(&second, places.district, street).await, 100);
    let books = second.ledger(places.district).await.unwrap();
    assert_eq!(books.balances.values().sum::<i64>(), 0);
    assert!(books
        .balances
        .values()
        .zip(books.balances.keys())
        .all(|(balance, account)| !account.is_holding() || *balance >= 0));
}

async fn a_districts_ledger_commands_are_pipelined_and_stand_only_on_committed_events(db: Db) {
    use std::collections::BTreeSet;
    let (log, policies, places) = demo_world(&db).await;
    let clock = Arc::new(shequ_service::SystemClock);
    let first = Service::new(log.clone(), policies.clone(), clock.clone()).await.unwrap();
    let other_log = EventLog::open(&db.url).await.unwrap();
    let second = Service::new(other_log, policies.clone(), clock.clone()).await.unwrap();
    let street = places.streets[0].0;
    let office = Actor { role: Role::StreetOffice, organisation: street };
    let communities: Vec<Uuid> = places.communities.iter().map(|community| community.0).collect();
    let pay = |service: &Service, transfer: Uuid, amount: i64, to: usize| {
        let service = service.clone();
        let to = communities[to % 2];
        async move {
            let allocation = Allocation {
                transfer_id: transfer,
                from: Some(street),
                to,
                amount_fen: fen(amount),
                memo: "m",
            };
            service.allocate(&CommandScope::new(office), allocation).await
        }
    };
    let ledger_stream = format!("ledger-{}", places.district);

    // One process, 48 payments at once: their appends are queued one on the other, so they
    // are committed in fewer batches (one time of record each) than there are payments.
    let transfers: Vec<Uuid> = (0..48).map(|_| Uuid::now_v7()).collect();
    let tasks: Vec<_> = transfers
        .iter()
        .enumerate()
        .map(|(index, transfer)| tokio::spawn(pay(&first, *transfer, 1, index)))
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let events = log.read_stream(&ledger_stream).await.unwrap();
    let batches: BTreeSet<_> = events
        .iter()
        .filter(|event| transfers.iter().any(|transfer| event.data.contains(&transfer.to_string())))
        .map(|event| event.recorded_at)
        .collect();
    let paid = events.iter().filter(|event| transfers.iter().any(|t| event.data.contains(&t.to_string())));
    assert_eq!(paid.count(), 48, "every payment recorded once");
    assert!(batches.len() < 48, "48 payments in {} commits: not pipelined", batches.len());

    // Two processes pay from one street with 40 fen left, 32 payments each, at once. The
    // first's queued appends meet the second's writes: they are refused (a conflict, or
    // built on one that was) and run again on the log's state. Whatever happens, no payment
    // is refused while funds are left, and each process's kept state ends as the log's. (That
    // the writer refuses an append built on one that failed, whatever the timing, is the
    // store's test `an_append_queued_on_another_commits_only_on_top_of_it`.)
    let left =
        first.ledger(places.district).await.unwrap().balance(Account::Organisation { organisation: street });
    pay(&first, Uuid::now_v7(), left - 40, 0).await.unwrap();
    // Both keep the ledger's state, so both queue their payments without reading the log.
    second.ledger(places.district).await.unwrap();
    let (mut paid, mut refused, mut conflicts) = (0, 0, 0);
    for round in 0..8 {
        let tasks: Vec<_> = (0..8)
            .map(|index| {
                let service = if index < 4 { &first } else { &second };
                tokio::spawn(pay(service, Uuid::now_v7(), 1, round + index))
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => paid += 1,
                Err(ServiceError::Ledger(_)) => refused += 1,
                Err(ServiceError::Store(
                    shequ_store::StoreError::Conflict { .. } | shequ_store::StoreError::Unfounded { .. },
                )) => conflicts += 1,
                Err(other) => panic!("a payment is made, refused or in conflict, not {other:?}"),
            }
        }
    }
    assert_eq!(paid + refused + conflicts, 64);
    assert!(paid > 0 && paid <= 40, "{paid} payments from 40 fen");
    let fresh = Service::new(EventLog::open(&db.url).await.unwrap(), policies, clock).await.unwrap();
    let books = fresh.ledger(places.district).await.unwrap();
    let street_left = books.balance(Account::Organisation { organisation: street });
    assert_eq!(street_left, 40 - paid, "paid {paid}, refused {refused}, conflicts {conflicts}");
    if refused > 0 {
        assert_eq!(street_left, 0, "refused {refused} payments with funds left");
    }
    // Both processes' kept states are the log's.
    assert_eq!(first.ledger(places.district).await.unwrap(), books);
    assert_eq!(second.ledger(places.district).await.unwrap(), books);
    assert_eq!(books.balances.values().sum::<i64>(), 0);
}

/// A command that finds nothing to do on its process's kept state (funds to move: none) must
/// not answer so before the log has had its word: another process may have put them there.
async fn nothing_to_do_is_never_answered_on_a_stale_kept_state(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let clock = Arc::new(shequ_service::SystemClock);
    let first = Service::new(log.clone(), policies.clone(), clock.clone()).await.unwrap();
    let second =
        Service::new(EventLog::open(&db.url).await.unwrap(), policies.clone(), clock.clone()).await.unwrap();
    // The demo reassigned SAF-001 to 菊儿社区 (community 9), its funds with it.
    let rentals = demo_id("mandate/SAF-001");
    let street = Actor { role: Role::StreetOffice, organisation: places.streets.last().unwrap().0 };
    let [eight, nine, ten] = [8, 9, 10].map(|index| places.communities[index].0);
    let held = |ledger: &shequ_domain::ledger::LedgerState, community: Uuid| {
        ledger.balance(Account::Mandate { mandate: rentals, community })
    };
    let funds = held(&first.ledger(places.district).await.unwrap(), nine);
    assert!(funds > 0);
    // The first process keeps the ledger; the second moves the task (and funds) to community 10.
    second.reassign(&CommandScope::new(street), rentals, ten).await.unwrap();
    // The first moves it on to community 8: its kept ledger still shows the funds at 9 and
    // none at 10, but the log has them at 10, and they must follow the task.
    first.reassign(&CommandScope::new(street), rentals, eight).await.unwrap();
    let fresh = Service::new(EventLog::open(&db.url).await.unwrap(), policies, clock).await.unwrap();
    let books = fresh.ledger(places.district).await.unwrap();
    assert_eq!([held(&books, eight), held(&books, nine), held(&books, ten)], [funds, 0, 0]);
    assert_eq!(first.ledger(places.district).await.unwrap(), books);
}

/// SQL that makes the database refuse the ledger's rows (those that also match `also`, an SQL
/// condition on `NEW`, if given), as a full disk would refuse a page, and SQL that lets them
/// in again.
fn ledger_refusal(db: &Db, also: &str) -> (String, String) {
    match db.backend {
        crate::helpers::BackendUnderTest::Sqlite => (
            format!(
                "CREATE TRIGGER refuse_ledger BEFORE INSERT ON events \
                 WHEN NEW.stream LIKE 'ledger-%' {also} \
                 BEGIN SELECT RAISE(ABORT, 'the test refuses ledger rows'); END;"
            ),
            "DROP TRIGGER refuse_ledger;".into(),
        ),
        crate::helpers::BackendUnderTest::Postgres => (
            format!(
                "CREATE FUNCTION refuse_ledger() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'the test refuses ledger rows'; END $$; \
                 CREATE TRIGGER refuse_ledger BEFORE INSERT ON events FOR EACH ROW \
                 WHEN (NEW.stream LIKE 'ledger-%' {also}) EXECUTE FUNCTION refuse_ledger();"
            ),
            "DROP TRIGGER refuse_ledger ON events; DROP FUNCTION refuse_ledger();".into(),
        ),
    }
}

/// A cure that resumes an active mandate with new funds posts them before it is active again.
/// When the posting failed after the cure was recorded, the same cure sent again under its
/// `Idempotency-Key` posts them and activates it, reserving nothing twice.
async fn a_keyed_cure_sent_again_posts_what_its_first_attempt_could_not(db: Db) {
    let ActiveMandate { service, places, department, community, mandate, unit } = active_mandate(&db).await;
    let before = service.ledger(places.district).await.unwrap().balance(unit);
    contest(&service, community, mandate, ContestGround::CaseloadOutgrewFunding, "More cases").await;
    let cure = shequ_domain::mandate::Cure { funds_added_fen: fen(10_000), ..Default::default() };
    // Decided on a revision the mandate has left (before the contest): a conflict, and no
    // money moves.
    let (_, contested_at) = service.read_mandate(department, mandate).await.unwrap();
    let head = service.log().head().await.unwrap().position;
    let stale = service
        .cure(&CommandScope::new(department).expecting(Some(contested_at - 1)), mandate, cure.clone())
        .await;
    assert!(matches!(stale, Err(ServiceError::Store(shequ_store::StoreError::Conflict { .. }))), "{stale:?}");
    assert_eq!(service.log().head().await.unwrap().position, head);
    let keyed = CommandScope::new(department)
        .keyed(&service, Uuid::now_v7(), None)
        .await
        .expecting(Some(contested_at));

    let (refuse, allow) = ledger_refusal(&db, "AND NEW.data LIKE '%\"posting\"%'");
    execute_directly(&db, &refuse).await.unwrap();
    let stopped = service.cure(&keyed, mandate, cure.clone()).await;
    execute_directly(&db, &allow).await.unwrap();
    assert!(matches!(stopped, Err(ServiceError::Store(shequ_store::StoreError::Database(_)))), "{stopped:?}");
    let record = service.mandate(mandate).await.unwrap();
    assert_eq!((record.status, record.funds_posted_fen), (MandateStatus::Accepted, fen(60_000)));

    let finished = service.cure(&keyed, mandate, cure).await.unwrap();
    assert_eq!(finished.status, MandateStatus::Active);
    let record = service.mandate(mandate).await.unwrap();
    assert_eq!(record.funds_posted_fen, fen(70_000));
    assert_eq!(service.ledger(places.district).await.unwrap().balance(unit), before - 10_000);
}

/// An acceptance that stopped after `MandateAccepted`, before its funds were posted, sent
/// again under its key and with the revision its client read: the key is looked up first, so
/// the revision its own first attempt moved on is not a conflict, and the funds are posted.
async fn a_keyed_accept_sent_again_with_its_revision_finishes_what_it_started(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log, policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let street = Actor { role: Role::StreetOffice, organisation: places.streets[0].0 };
    let community = Actor { role: Role::Community, organisation: places.communities[0].0 };
    let mandate = Uuid::now_v7();
    let proposal = employment(street.organisation, community.organisation, 1, 3_000);
    service.propose(&CommandScope::new(street), mandate, proposal).await.unwrap();
    let (_, revision) = service.read_mandate(community, mandate).await.unwrap();
    let keyed =
        CommandScope::new(community).keyed(&service, Uuid::now_v7(), None).await.expecting(Some(revision));

    let (refuse, allow) = ledger_refusal(&db, "AND NEW.data LIKE '%\"posting\"%'");
    execute_directly(&db, &refuse).await.unwrap();
    let stopped = service.accept(&keyed, mandate).await;
    execute_directly(&db, &allow).await.unwrap();
    assert!(matches!(stopped, Err(ServiceError::Store(shequ_store::StoreError::Database(_)))), "{stopped:?}");
    let (record, moved_on) = service.read_mandate(community, mandate).await.unwrap();
    assert_eq!((record.status, moved_on), (MandateStatus::Accepted, revision + 1));

    let finished = service.accept(&keyed, mandate).await.unwrap();
    assert_eq!(finished.status, MandateStatus::Active);
    assert_eq!(service.mandate(mandate).await.unwrap().funds_posted_fen, fen(3_000));
    // Another client's command on the revision it read before all this is told to read again.
    let stale = service.complete(&CommandScope::new(community).expecting(Some(revision)), mandate).await;
    assert!(matches!(stale, Err(ServiceError::Store(shequ_store::StoreError::Conflict { .. }))), "{stale:?}");
}

/// The funds posted for a mandate follow it each time it is reassigned, back and forth; and a
/// reassignment that stopped after moving the mandate, before its funds (the database refused
/// the ledger's rows), is finished by sending it again.
async fn a_mandates_funds_follow_every_reassignment_even_one_that_stopped_halfway(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log.clone(), policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    // The demo reassigned SAF-001 to 菊儿社区 (community 9), its funds with it.
    let rentals = demo_id("mandate/SAF-001");
    let street = Actor { role: Role::StreetOffice, organisation: places.streets.last().unwrap().0 };
    let [eight, nine, ten] = [8, 9, 10].map(|index| places.communities[index].0);
    let held = |community: Uuid| {
        let service = &service;
        async move {
            let ledger = service.ledger(places.district).await.unwrap();
            ledger.balance(Account::Mandate { mandate: rentals, community })
        }
    };
    let funds = held(nine).await;
    assert!(funds > 0);
    for (to, from) in [(ten, nine), (nine, ten), (ten, nine)] {
        service.reassign(&CommandScope::new(street), rentals, to).await.unwrap();
        assert_eq!((held(to).await, held(from).await), (funds, 0), "moved to {to}");
    }

    let (refuse, allow) = ledger_refusal(&db, "");
    execute_directly(&db, &refuse).await.unwrap();
    let stopped = service.reassign(&CommandScope::new(street), rentals, eight).await;
    assert!(matches!(stopped, Err(ServiceError::Store(shequ_store::StoreError::Database(_)))), "{stopped:?}");
    execute_directly(&db, &allow).await.unwrap();
    assert_eq!(service.mandate(rentals).await.unwrap().proposal.community, eight, "the mandate moved");
    assert_eq!((held(eight).await, held(ten).await), (0, funds), "its funds did not");

    // Sent again, it finishes; sent once more, there is nothing left to do and it says so.
    let finished = service.reassign(&CommandScope::new(street), rentals, eight).await.unwrap();
    assert_eq!(finished.status, MandateStatus::Active);
    assert_eq!((held(eight).await, held(ten).await), (funds, 0));
    let again = service.reassign(&CommandScope::new(street), rentals, eight).await;
    assert!(
        matches!(again, Err(ServiceError::Mandate(shequ_domain::mandate::MandateError::SameCommunity))),
        "{again:?}"
    );
}

/// A funded proposal's mandate events and the reservation of its funds are one append to two
/// streams: when the reservation cannot be written, neither is the mandate (it would stand
/// admitted with nothing reserved, as it would if the process stopped between two appends),
/// and the same proposal, sent again, stands with its funds.
async fn a_mandate_stands_admitted_only_with_its_funds_reserved(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log.clone(), policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let street = places.streets[0].0;
    let actor = Actor { role: Role::StreetOffice, organisation: street };
    let proposal = employment(street, places.communities[0].0, 1, 3_000);
    let available = street_balance(&service, places.district, street).await;
    let head = log.head().await.unwrap().position;

    // The database refuses the ledger's rows, as a full disk would refuse a page.
    let (refuse, allow) = ledger_refusal(&db, "");
    execute_directly(&db, &refuse).await.unwrap();
    let mandate = Uuid::now_v7();
    let failed = service.propose(&CommandScope::new(actor), mandate, proposal.clone()).await;
    assert!(matches!(failed, Err(ServiceError::Store(shequ_store::StoreError::Database(_)))), "{failed:?}");
    assert!(
        log.read_stream(&format!("mandate-{mandate}")).await.unwrap().is_empty(),
        "a mandate without its funds"
    );
    assert_eq!(log.head().await.unwrap().position, head, "nothing of the proposal was written");

    execute_directly(&db, &allow).await.unwrap();
    let outcome = service.propose(&CommandScope::new(actor), mandate, proposal).await.unwrap();
    assert_eq!(outcome.status, MandateStatus::Admitted);
    let events = log.read_all(head + 1, 10).await.unwrap();
    let written: Vec<(&str, &str)> = events
        .iter()
        .map(|event| (event.stream.split('-').next().unwrap(), event.event_type.as_str()))
        .collect();
    assert_eq!(
        written,
        [("mandate", "MandateProposed"), ("mandate", "MandateAdmitted"), ("ledger", "TransferRecorded")]
    );
    assert!(events.iter().all(|event| event.recorded_at == events[0].recorded_at), "one commit");
    assert_eq!(street_balance(&service, places.district, street).await, available - 3_000);
    let books = service.ledger(places.district).await.unwrap();
    assert_eq!(books.balance(Account::Reserved { mandate }), 3_000);
    assert_eq!(log.verify(|_| {}).await.unwrap().failure, None);
}

/// Proposals decided at once on one street's budget, each offering 60 % of it: at most one can
/// be funded. A proposal whose reservation the ledger refuses (the budget moved after its
/// decision) is proposed, admitted and withdrawn in one append: no mandate is ever seen
/// admitted without its funds.
async fn proposals_racing_for_one_budget_are_reserved_or_withdrawn_whole(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log.clone(), policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let mut withdrawn = 0;
    for (street, _) in &places.streets {
        let street = *street;
        let community = places.communities.iter().find(|(_, parent, _)| *parent == street).unwrap().0;
        let office = Actor { role: Role::StreetOffice, organisation: street };
        let available = street_balance(&service, places.district, street).await;
        // EMP-001 costs 3,000 fen a case: 60 % of the budget, in whole cases.
        let volume = u32::try_from(available * 6 / 10 / 3_000).unwrap();
        let offer = i64::from(volume) * 3_000;
        assert!(offer * 2 > available && offer > 0, "{offer} of {available}");
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (service, mandate) = (service.clone(), Uuid::now_v7());
                let proposal = employment(street, community, volume, offer);
                tokio::spawn(async move {
                    (mandate, service.propose(&CommandScope::new(office), mandate, proposal).await.unwrap())
                })
            })
            .collect();
        let mut funded = 0;
        for task in tasks {
            let (mandate, outcome) = task.await.unwrap();
            let events = log.read_stream(&format!("mandate-{mandate}")).await.unwrap();
            let types: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
            match outcome.status {
                MandateStatus::Admitted => funded += 1,
                MandateStatus::Refused => assert_eq!(types, ["MandateProposed", "MandateRefused"]),
                MandateStatus::Withdrawn => {
                    withdrawn += 1;
                    assert_eq!(types, ["MandateProposed", "MandateAdmitted", "MandateWithdrawn"]);
                    assert!(
                        events.iter().all(|event| event.recorded_at == events[0].recorded_at),
                        "one append"
                    );
                    assert!(events[2].data.contains("funds could not be reserved"), "{}", events[2].data);
                }
                other => panic!("a proposal is admitted, refused or withdrawn, not {other:?}"),
            }
        }
        assert_eq!(funded, 1, "one proposal's funds fit the budget");
        assert_eq!(street_balance(&service, places.district, street).await, available - offer);
    }
    // Deciding takes no lock, so proposals decided before the first reservation committed
    // admit, and their reservations are refused. (Were none ever, this test would check less.)
    assert!(withdrawn > 0, "no proposal was admitted on a budget that moved");
    let books = service.ledger(places.district).await.unwrap();
    assert_eq!(books.balances.values().sum::<i64>(), 0);
    assert_eq!(log.verify(|_| {}).await.unwrap().failure, None);
}

/// An upheld review sent again under its `Idempotency-Key` answers with the events it
/// appended to the mandate, appends nothing, and refunds once; the key on another kind of
/// command is refused.
async fn a_review_sent_again_under_its_key_answers_as_the_first_time(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log.clone(), policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let community = Actor { role: Role::Community, organisation: places.communities[4].0 };
    let district = Actor { role: Role::District, organisation: places.district };
    let mandate = demo_id("mandate/SSV-007");
    contest(&service, community, mandate, ContestGround::FundsNotPosted, "Nothing arrived").await;
    let key = Uuid::now_v7();
    let review = || async {
        let (keyed, recorder) = CommandScope::new(district).keyed(&service, key, None).await.recording();
        let outcome = service.review(&keyed, mandate, ReviewOutcome::Uphold, "upheld").await.unwrap();
        (outcome.status, recorder.take())
    };
    let (status, first) = review().await;
    assert_eq!(status, MandateStatus::Withdrawn);
    let on_mandate: Vec<_> =
        first.iter().filter(|event| event.stream.starts_with("mandate-")).cloned().collect();
    assert_eq!(on_mandate[0].event_type, "ContestUpheld", "{first:?}");
    let head = log.head().await.unwrap().position;
    let (status, again) = review().await;
    assert_eq!((status, again), (MandateStatus::Withdrawn, on_mandate));
    assert_eq!(log.head().await.unwrap().position, head, "nothing appended, nothing refunded twice");
    let keyed = CommandScope::new(community).keyed(&service, key, None).await;
    let contested = service.contest(&keyed, mandate, vec![ContestGround::FundsNotPosted], "again").await;
    assert!(
        matches!(&contested, Err(ServiceError::KeyReused(message)) if message.starts_with("Idempotency-Key")),
        "{contested:?}"
    );
}

/// A task recorded outside the access process with funds offered that nobody reserved, its
/// contest dismissed: the community's acceptance is refused (it could never become active),
/// and the refusal writes nothing: no `MandateAccepted`, no posting, the mandate as it was.
async fn an_acceptance_refused_for_want_of_funds_writes_nothing(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log.clone(), policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let street = places.streets[0].0;
    let community = Actor { role: Role::Community, organisation: places.communities[0].0 };
    let district = Actor { role: Role::District, organisation: places.district };
    let mandate = Uuid::now_v7();
    let proposal = employment(street, community.organisation, 10, 200_000);
    let recorded = service
        .record_outside_process(
            &CommandScope::new(community),
            mandate,
            proposal,
            "Phoned in with a promise of funds",
        )
        .await
        .unwrap();
    assert!(recorded.violations.is_empty(), "{recorded:?}");
    service
        .review(&CommandScope::new(district), mandate, ReviewOutcome::Dismiss, "funded as agreed")
        .await
        .unwrap();
    let before = service.mandate(mandate).await.unwrap();
    assert_eq!(before.status, MandateStatus::Admitted);
    let head = log.head().await.unwrap().position;
    let books = service.ledger(places.district).await.unwrap().balances;

    let refused = service.accept(&CommandScope::new(community), mandate).await;
    assert!(
        matches!(refused, Err(ServiceError::Mandate(MandateError::Unfunded { posted, offered }))
            if posted == Fen::ZERO && offered == fen(200_000)),
        "{refused:?}"
    );
    assert_eq!(log.head().await.unwrap().position, head, "a refusal appends nothing");
    assert_eq!(service.mandate(mandate).await.unwrap(), before);
    assert_eq!(service.ledger(places.district).await.unwrap().balances, books);
}

/// A community records a task that reached it outside the process: from its street office it
/// stands (contested), from a peer community it is refused, naming the field, and nothing is
/// written.
async fn a_task_recorded_outside_the_process_comes_from_above_never_from_a_peer(db: Db) {
    let (log, policies, places) = demo_world(&db).await;
    let service = Service::new(log.clone(), policies, Arc::new(shequ_service::SystemClock)).await.unwrap();
    let community = Actor { role: Role::Community, organisation: places.communities[0].0 };
    let peer = places.communities[1].0;
    let scope = CommandScope::new(community);
    let record = |unit: Uuid, statement: &'static str| {
        let proposal = employment(unit, community.organisation, 10, 30_000);
        service.record_outside_process(&scope, Uuid::now_v7(), proposal, statement)
    };
    let head = log.head().await.unwrap().position;
    let refused = record(peer, "The next community asked us").await;
    assert!(
        matches!(&refused, Err(ServiceError::Mandate(MandateError::InvalidProposal(message))) if message.starts_with("delegating_unit")),
        "{refused:?}"
    );
    assert_eq!(log.head().await.unwrap().position, head, "a refusal appends nothing");
    let recorded = record(places.streets[0].0, "The street phoned").await.unwrap();
    assert_eq!(recorded.status, MandateStatus::Contested);
}
