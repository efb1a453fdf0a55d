use esrs::Aggregate;

use super::*;

const STATION: Uuid = Uuid::from_u128(1);
const STREET: Uuid = Uuid::from_u128(2);
const OTHER: Uuid = Uuid::from_u128(3);

fn filing() -> Filing {
    Filing {
        matter_code: "EMP-001".into(),
        station: STATION,
        channel: Channel::CallAssistance,
        resident: "resident-7".into(),
        description: "Help registering as unemployed".into(),
        address: Some("多福巷 12号".into()),
        lat: Some(39.91),
        long: Some(116.40),
        attributes: BTreeMap::new(),
        expected_date: crate::Date::parse("2026-12-04").unwrap(),
    }
}

fn routing(route: Route, handler: Uuid) -> Routing {
    Routing {
        route,
        handler,
        mandate: None,
        reason: "routed".into(),
        clause: "plan:3.2.2-ST".into(),
        decision_id: Uuid::from_u128(9),
        bundle_digest: "00".into(),
        catalogue_version: 1,
        input: serde_json::json!({}).into(),
    }
}

fn run(route: Route, handler: Uuid, commands: Vec<RequestCommand>) -> Result<RequestState, RequestError> {
    let mut state = RequestState::default();
    let file =
        RequestCommand::File { filing: Box::new(filing()), routing: Box::new(routing(route, handler)) };
    for command in std::iter::once(file).chain(commands) {
        for event in Request::handle_command(&state, command)? {
            state = Request::apply_event(state, event);
        }
    }
    Ok(state)
}

fn note() -> String {
    "ok".into()
}

#[test]
fn a_community_request_runs_from_filing_to_rating() {
    let state = run(
        Route::Community,
        STATION,
        vec![
            take(STATION, RequestStep::Accept { note: note() }),
            take(STATION, RequestStep::Start { note: note() }),
            take(STATION, RequestStep::Resolve { note: note() }),
            take(STATION, RequestStep::Close { note: note() }),
            take(STATION, RequestStep::Rate { rating: 5, comment: "quick".into() }),
        ],
    )
    .unwrap();
    let record = state.request.unwrap();
    assert_eq!(record.status, RequestStatus::Closed);
    assert_eq!(record.rating, Some(5));
    assert!(record.filing.is_priority(), "call assistance is priority (plan:4.3-E4)");
}

#[test]
fn an_agent_request_is_forwarded_before_its_owner_accepts_it() {
    let accepted_early = run(Route::Agent, STREET, vec![take(STREET, RequestStep::Accept { note: note() })]);
    assert_eq!(
        accepted_early,
        Err(RequestError::WrongStatus { status: RequestStatus::Routed, action: "accepted" })
    );
    let state = run(
        Route::Agent,
        STREET,
        vec![
            take(STATION, RequestStep::Forward { note: note() }),
            take(STREET, RequestStep::Accept { note: note() }),
        ],
    )
    .unwrap();
    let record = state.request.unwrap();
    assert_eq!((record.status, record.holder), (RequestStatus::Accepted, STREET));
}

#[test]
fn only_the_holder_works_a_request() {
    let outcome = run(Route::Community, STATION, vec![take(OTHER, RequestStep::Accept { note: note() })]);
    assert_eq!(outcome, Err(RequestError::NotTheHolder { holder: STATION }));
    let forwarded =
        run(Route::Community, STATION, vec![take(STATION, RequestStep::Forward { note: note() })]);
    assert_eq!(forwarded, Err(RequestError::NotAnAgentRequest));
}

#[test]
fn ratings_come_once_after_closure_and_within_one_to_five() {
    let done = vec![
        take(STATION, RequestStep::Accept { note: note() }),
        take(STATION, RequestStep::Resolve { note: note() }),
    ];
    let early = run(
        Route::Community,
        STATION,
        [done.clone(), vec![take(STATION, RequestStep::Rate { rating: 4, comment: note() })]].concat(),
    );
    assert!(matches!(early, Err(RequestError::WrongStatus { action: "rated", .. })));
    let closed = [done, vec![take(STATION, RequestStep::Close { note: note() })]].concat();
    for rating in [0, 6] {
        let outcome = run(
            Route::Community,
            STATION,
            [closed.clone(), vec![take(STATION, RequestStep::Rate { rating, comment: note() })]].concat(),
        );
        assert_eq!(outcome, Err(RequestError::RatingOutOfRange));
    }
    let twice = [
        closed,
        vec![
            take(STATION, RequestStep::Rate { rating: 3, comment: note() }),
            take(STATION, RequestStep::Rate { rating: 4, comment: note() }),
        ],
    ]
    .concat();
    assert_eq!(run(Route::Community, STATION, twice), Err(RequestError::AlreadyRated));
}

#[test]
fn a_rejection_needs_a_reason_and_ends_the_request() {
    let blank =
        run(Route::Community, STATION, vec![take(STATION, RequestStep::Reject { reason: "  ".into() })]);
    assert!(matches!(blank, Err(RequestError::Invalid(_))));
    let state = run(
        Route::Community,
        STATION,
        vec![take(STATION, RequestStep::Reject { reason: "not eligible".into() })],
    )
    .unwrap();
    assert!(state.request.unwrap().status.is_final());
}

#[test]
fn filings_are_checked_field_by_field() {
    let mut bad = filing();
    bad.lat = Some(91.0);
    let outcome = Request::handle_command(
        &RequestState::default(),
        RequestCommand::File { filing: Box::new(bad), routing: Box::new(routing(Route::Community, STATION)) },
    );
    assert!(matches!(outcome, Err(RequestError::Invalid(reason)) if reason.starts_with("lat")));
    let mut blank = filing();
    blank.description = " ".into();
    let outcome = Request::handle_command(
        &RequestState::default(),
        RequestCommand::File {
            filing: Box::new(blank),
            routing: Box::new(routing(Route::Community, STATION)),
        },
    );
    assert!(matches!(outcome, Err(RequestError::Invalid(reason)) if reason.starts_with("description")));
}

#[test]
fn events_round_trip_through_the_log_form() {
    let events = Request::handle_command(
        &RequestState::default(),
        RequestCommand::File { filing: Box::new(filing()), routing: Box::new(routing(Route::Agent, STREET)) },
    )
    .unwrap();
    for event in events {
        let data = event.to_data().unwrap();
        assert_eq!(RequestEvent::from_data(event.event_type(), 1, &data).unwrap(), event);
    }
}

/// A step taken by `by` (for a step that names no one, the station, whom it is not checked
/// against).
fn take(by: Uuid, step: RequestStep) -> RequestCommand {
    RequestCommand::Take { by, step }
}
