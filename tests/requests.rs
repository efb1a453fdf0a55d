//! Service requests at the one-stop station, and the projections they show up in, on both
//! backends: routing by catalogue and live mandates, the lifecycle, who may do what, and a
//! replay of the whole log giving the live projection's state exactly.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use shequ::demo::{self, demo_id, DemoOutcome, DemoPlaces};
use shequ_domain::request::{Channel, FileRequest, RequestStatus, RequestStep, Route};
use shequ_policy::Policies;
use shequ_service::projection::{AsOf, Projection, RequestView};
use shequ_service::replay::JsonStyle;
use shequ_service::{
    replay, Actor, Clock, CommandScope, ManualClock, RequestFilter, Role, Service, ServiceError, SystemClock,
};
use shequ_store::EventLog;
use uuid::Uuid;

use crate::helpers::{tests, Db, TestFn};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        requests_are_routed_by_catalogue_and_live_mandates,
        a_request_follows_its_mandate_to_the_community_it_was_reassigned_to,
        a_request_past_its_expected_date_is_overdue_until_resolved,
        a_request_runs_its_course_and_residents_see_only_their_own,
        replaying_the_whole_log_gives_the_live_state,
        a_replay_stream_by_stream_is_the_fold_in_position_order,
        a_replay_refuses_an_entity_stream_not_named_as_the_domain_names_it,
        a_replay_as_of_a_position_or_time_stops_there,
        shequ_replay_writes_the_live_state_as_json,
        redecide_reruns_routing_decisions_too,
        a_request_filed_by_another_process_is_not_filed_twice,
        lists_answer_while_commands_commit,
    ]
}

pub async fn demo_service(db: &Db) -> (Service, DemoPlaces) {
    let log = EventLog::open(&db.url).await.unwrap();
    let policies = Policies::embedded().unwrap();
    let places = match demo::load(&log, &policies).await.unwrap() {
        DemoOutcome::Loaded { places, .. } => places,
        DemoOutcome::AlreadyLoaded { .. } => panic!("a fresh database has no demo"),
    };
    let service = Service::new(log, policies, Arc::new(SystemClock)).await.unwrap();
    (service, places)
}

fn filing(matter_code: &str, station: Uuid, channel: Channel) -> FileRequest {
    FileRequest {
        matter_code: matter_code.into(),
        station,
        channel,
        resident: None,
        description: format!("Please help with {matter_code}"),
        address: Some("多福巷 12号".into()),
        lat: Some(39.915),
        long: Some(116.404),
        attributes: BTreeMap::new(),
    }
}

/// A resident of `station`, known as `subject`, files `matter_code` there through `channel`
/// under a new request id.
async fn file_at(
    service: &Service,
    station: Uuid,
    subject: &str,
    matter_code: &str,
    channel: Channel,
) -> Result<RequestView, ServiceError> {
    let scope = CommandScope::new(resident_of(station));
    service.file_request(&scope, subject, Uuid::now_v7(), filing(matter_code, station, channel)).await
}

fn resident_of(community: Uuid) -> Actor {
    Actor { role: Role::Resident, organisation: community }
}

async fn requests_are_routed_by_catalogue_and_live_mandates(db: Db) {
    let (service, places) = demo_service(&db).await;
    let community = |index: usize| places.communities[index].0;
    let file = |code: &'static str, station: Uuid| {
        let service = service.clone();
        async move { file_at(&service, station, "r1", code, Channel::Counter).await }
    };
    // EMP-001 is mandated to community 0, active and funded: the community handles it.
    let handled = file("EMP-001", community(0)).await.unwrap();
    assert_eq!((handled.route, handled.holder), (Route::Community, community(0)));
    assert_eq!(handled.mandate, Some(demo_id("mandate/EMP-001")));
    assert_eq!(handled.routing_clause, "plan:3.4.2-R4");
    // Community 1 holds no mandate for it: the station acts as agent, for the department.
    let agent = file("EMP-001", community(1)).await.unwrap();
    assert_eq!(
        (agent.route, agent.handler, agent.holder),
        (Route::Agent, places.departments[1].0, community(1))
    );
    assert_eq!(agent.routing_clause, "plan:3.2.2-ST");
    // A street's matter goes to the station's own street.
    let street_matter = file("SSV-006", community(5)).await.unwrap();
    assert_eq!(street_matter.handler, places.communities[5].1);
    // PMD-002 at community 2 is contested: back to the street office that delegated it.
    let suspended = file("PMD-002", community(2)).await.unwrap();
    assert_eq!((suspended.route, suspended.holder), (Route::DelegatingUnit, places.communities[2].1));
    // Self-governance stays home.
    assert_eq!(file("SSV-012", community(3)).await.unwrap().route, Route::Community);
    // Not in the catalogue: refused, naming the clause, and nothing is recorded.
    let head = service.log().head().await.unwrap().position;
    match file("XXX-999", community(0)).await {
        Err(ServiceError::Refused(violations)) => assert_eq!(violations[0].clause, "plan:5.1-C"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(service.log().head().await.unwrap().position, head);
    // The expected date follows the matter's SLA (EMP-001: 5 days); call assistance is priority.
    let today = chrono::Utc::now().date_naive();
    assert_eq!(handled.expected_date.as_str(), (today + chrono::Duration::days(5)).to_string());
    let priority = file_at(&service, community(0), "r2", "EMP-001", Channel::CallAssistance).await.unwrap();
    assert!(priority.priority && !handled.priority);
}

/// Routing reads the station's own live mandates: a reassigned mandate handles requests at
/// the community it went to and no longer at the one it left, whether the projection folded
/// the reassignment when the service started (the demo's) or live, and a mandate that is over
/// handles none.
async fn a_request_follows_its_mandate_to_the_community_it_was_reassigned_to(db: Db) {
    let (service, places) = demo_service(&db).await;
    let rentals = demo_id("mandate/SAF-001");
    let [eight, nine, ten] = [8, 9, 10].map(|index| places.communities[index].0);
    let route = |station: Uuid| {
        let service = service.clone();
        async move {
            let filed = file_at(&service, station, "r1", "SAF-001", Channel::Counter).await.unwrap();
            (filed.route, filed.holder, filed.mandate)
        }
    };
    // The demo moved SAF-001 from community 8 to community 9.
    assert_eq!(route(nine).await, (Route::Community, nine, Some(rentals)));
    assert_eq!(route(eight).await.2, None);
    let street = Actor { role: Role::StreetOffice, organisation: places.streets.last().unwrap().0 };
    service.reassign(&CommandScope::new(street), rentals, ten).await.unwrap();
    assert_eq!(route(ten).await, (Route::Community, ten, Some(rentals)));
    assert_eq!(route(nine).await.2, None);
    // Once it is over, it handles nothing.
    service.withdraw(&CommandScope::new(street), rentals, "the rentals office reopened").await.unwrap();
    assert_eq!(route(ten).await.2, None);
}

/// A request is overdue once the day after its expected date (the matter's SLA from filing)
/// has come and it is not resolved; resolving it stops the clock.
async fn a_request_past_its_expected_date_is_overdue_until_resolved(db: Db) {
    let log = EventLog::open(&db.url).await.unwrap();
    let policies = Policies::embedded().unwrap();
    demo::load(&log, &policies).await.unwrap();
    let places = demo::places();
    let clock = ManualClock::new(chrono::Utc::now());
    let service = Service::new(log, policies, Arc::new(clock.clone())).await.unwrap();
    let station = places.communities[0].0;
    let (resident, worker) = (resident_of(station), Actor { role: Role::Community, organisation: station });
    let id = Uuid::now_v7();
    // EMP-001's SLA is 5 days; community 0 holds its mandate and handles it.
    let filed = service
        .file_request(&CommandScope::new(resident), "r1", id, filing("EMP-001", station, Channel::Counter))
        .await
        .unwrap();
    assert_eq!(
        filed.expected_date.as_str(),
        (clock.now().date_naive() + chrono::Duration::days(5)).to_string()
    );
    let overdue = || {
        let service = service.clone();
        async move {
            let filter = RequestFilter { overdue: Some(true), ..RequestFilter::default() };
            let page = service.list_requests(worker, "w", &filter, None, 100).await.unwrap();
            page.iter().map(|view| view.request).collect::<Vec<_>>()
        }
    };
    clock.advance(chrono::Duration::days(5));
    assert_eq!(overdue().await, Vec::<Uuid>::new(), "due today is not overdue");
    clock.advance(chrono::Duration::days(1));
    assert_eq!(overdue().await, [id]);
    let today = clock.now().date_naive().to_string();
    assert!(service.read_request(resident, "r1", id).await.unwrap().is_overdue(&today));
    let as_worker = CommandScope::new(worker);
    let accept = RequestStep::Accept { note: "on it".into() };
    service.act_on_request(&as_worker, "w", id, accept).await.unwrap();
    assert_eq!(overdue().await, [id], "accepted is still open");
    let resolve = RequestStep::Resolve { note: "registered".into() };
    service.act_on_request(&as_worker, "w", id, resolve).await.unwrap();
    assert_eq!(overdue().await, Vec::<Uuid>::new());
}

async fn a_request_runs_its_course_and_residents_see_only_their_own(db: Db) {
    let (service, places) = demo_service(&db).await;
    let station = places.communities[1].0;
    let department = Actor { role: Role::Department, organisation: places.departments[1].0 };
    let worker = Actor { role: Role::Community, organisation: station };
    let resident = resident_of(station);
    let id = Uuid::now_v7();
    let filed = service
        .file_request(&CommandScope::new(resident), "r1", id, filing("EMP-001", station, Channel::Web))
        .await
        .unwrap();
    assert_eq!(filed.status, RequestStatus::Routed);
    // A retry with the same id returns the first result; another request under it is refused.
    assert_eq!(
        service
            .file_request(&CommandScope::new(resident), "r1", id, filing("EMP-001", station, Channel::Web))
            .await
            .unwrap(),
        filed
    );
    let mut other = filing("EMP-001", station, Channel::Web);
    other.description = "something else".into();
    assert!(matches!(
        service.file_request(&CommandScope::new(resident), "r1", id, other).await,
        Err(ServiceError::Invalid(_))
    ));

    let act = |actor: Actor, subject: &'static str, action: RequestStep| {
        let service = service.clone();
        async move { service.act_on_request(&CommandScope::new(actor), subject, id, action).await }
    };
    let note = || "ok".to_owned();
    // The department may not accept before the station forwards it; the resident may not work it.
    assert!(matches!(
        act(department, "d", RequestStep::Accept { note: note() }).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        act(resident, "r1", RequestStep::Forward { note: note() }).await,
        Err(ServiceError::Forbidden(_))
    ));
    act(worker, "w", RequestStep::Forward { note: "sent to the bureau".into() }).await.unwrap();
    act(department, "d", RequestStep::Accept { note: note() }).await.unwrap();
    act(department, "d", RequestStep::Start { note: note() }).await.unwrap();
    act(department, "d", RequestStep::Resolve { note: "registered".into() }).await.unwrap();
    assert!(matches!(
        act(resident_of(station), "r2", RequestStep::Close { note: note() }).await,
        Err(ServiceError::Forbidden(_))
    ));
    act(resident, "r1", RequestStep::Close { note: note() }).await.unwrap();
    let rated = act(resident, "r1", RequestStep::Rate { rating: 4, comment: "fine".into() }).await.unwrap();
    assert_eq!((rated.status, rated.rating), (RequestStatus::Closed, Some(4)));
    let statuses: Vec<RequestStatus> = rated.history.iter().map(|entry| entry.status).collect();
    use RequestStatus as S;
    assert_eq!(
        statuses,
        [S::Received, S::Routed, S::Forwarded, S::Accepted, S::InProgress, S::Resolved, S::Closed]
    );
    assert!(rated.history[2].actor.starts_with("community:"));
    assert_eq!(rated.history[5].note, "registered");

    // Residents see their own requests only; the district's inspector sees them all.
    let mine = file_at(&service, station, "r9", "SSV-012", Channel::Phone).await.unwrap();
    let list = |actor: Actor, subject: &'static str| {
        let service = service.clone();
        async move { service.list_requests(actor, subject, &RequestFilter::default(), None, 100).await.unwrap() }
    };
    let ids = |views: Vec<shequ_service::projection::RequestView>| {
        views.into_iter().map(|view| view.request).collect::<Vec<_>>()
    };
    assert_eq!(ids(list(resident, "r9").await), [mine.request]);
    assert!(matches!(service.read_request(resident, "r9", id).await, Err(ServiceError::Forbidden(_))));
    let inspector = Actor { role: Role::Inspector, organisation: places.district };
    assert_eq!(ids(list(inspector, "i").await), [id, mine.request]);
    let open = RequestFilter { status: Some(RequestStatus::Routed), ..RequestFilter::default() };
    assert_eq!(ids(service.list_requests(inspector, "i", &open, None, 100).await.unwrap()), [mine.request]);
    // Pages continue after the last id seen.
    assert_eq!(
        ids(service.list_requests(inspector, "i", &RequestFilter::default(), Some(id), 100).await.unwrap()),
        [mine.request]
    );
    // Another street's office sees none of them.
    let other_street = Actor { role: Role::StreetOffice, organisation: places.streets[2].0 };
    assert!(list(other_street, "s").await.is_empty());
}

async fn replaying_the_whole_log_gives_the_live_state(db: Db) {
    let (service, places) = demo_service(&db).await;
    let station = places.communities[0].0;
    file_at(&service, station, "r1", "EMP-001", Channel::Hotline).await.unwrap();
    // Enough requests for the written state to take several chunks.
    for index in 0..60 {
        let channel = [Channel::Counter, Channel::CallAssistance][index % 2];
        let station = places.communities[1 + index % 3].0;
        file_at(&service, station, "r2", "EMP-001", channel).await.unwrap();
    }
    let document = service.read_model().read().await.unwrap().document();
    let live = serde_json::to_value(&document).unwrap();
    let replayed = replay::replay(service.log(), AsOf::Head, |_| {}).await.unwrap();
    assert_eq!(serde_json::to_value(replayed.document()).unwrap(), live);
    // Written one mandate and one request at a time, byte for byte the same document.
    let written = written_state(service.log(), AsOf::Head, None, JsonStyle::Pretty).await;
    assert!(written.len() > replay::CHUNK_BYTES, "{} bytes", written.len());
    assert_eq!(written, serde_json::to_string_pretty(&document).unwrap());
    let cut = replay::cut(service.log(), AsOf::Head).await.unwrap();
    assert_eq!(cut.position, replayed.position());
    // An output that fails stops the replay, and its error is the one reported.
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let kept = replay::kept(service.log(), cut).await.unwrap();
    let failed =
        replay::write_state_into(service.log(), kept, None, JsonStyle::Pretty, |_| {}, &mut Full).await;
    assert!(
        matches!(&failed, Err(replay::WriteStateError::Output(error)) if error.to_string() == "disk full"),
        "{failed:?}"
    );
    assert_eq!(live["organisations"].as_array().unwrap().len(), 1 + 2 + 3 + 12);
    assert_eq!(live["requests"].as_array().unwrap().len(), 61);
    assert!(!live["open_contests"].as_array().unwrap().is_empty());
    let balances: i64 =
        live["balances"].as_array().unwrap().iter().map(|row| row["balance_fen"].as_i64().unwrap()).sum();
    assert_eq!(balances, 0, "the books balance in the projection too");
}

/// A replay reads the log stream by stream; the live projection folds it in position order.
/// As of every point of the log, both give the same state, and `write_state` the same bytes.
async fn a_replay_stream_by_stream_is_the_fold_in_position_order(db: Db) {
    let (service, places) = demo_service(&db).await;
    for (index, community) in places.communities.iter().take(3).enumerate() {
        file_at(&service, community.0, &format!("r{index}"), "EMP-001", Channel::Web).await.unwrap();
    }
    let events: Vec<_> = service.log().stream_all(1, 1_000).try_collect().await.unwrap();
    let mut in_order = Projection::default();
    let step = (events.len() / 25).max(1);
    for (index, event) in events.iter().enumerate() {
        in_order.apply(event).unwrap();
        if index % step != 0 && index + 1 != events.len() {
            continue;
        }
        let as_of = AsOf::Position(event.position);
        let expected = in_order.document();
        let replayed = replay::replay(service.log(), as_of, |_| {}).await.unwrap();
        assert_eq!(replayed.document(), expected, "as of position {}", event.position);
        let written = written_state(service.log(), as_of, None, JsonStyle::Pretty).await;
        assert_eq!(written, serde_json::to_string_pretty(&expected).unwrap(), "as of {}", event.position);
        // One district's, compact, as the inspectors' HTTP view sends it: its id, then the
        // fields of the district's document.
        let state = serde_json::to_string(&in_order.document_for_district(places.district)).unwrap();
        let expected = format!("{{\"district\":\"{}\",{}", places.district, &state[1..]);
        let written = written_state(service.log(), as_of, Some(places.district), JsonStyle::Compact).await;
        assert_eq!(written, expected, "district, as of {}", event.position);
    }
    assert!(in_order.requests().count() == 3 && in_order.mandates().count() > 0);
}

/// `request-{ID}` and `request-{id}` would be one request to a UUID parser but two streams to
/// the log; the projection reads only the spelling the domain writes, and says so.
async fn a_replay_refuses_an_entity_stream_not_named_as_the_domain_names_it(db: Db) {
    let (service, _) = demo_service(&db).await;
    let shouting = format!("request-{}", Uuid::now_v7().to_string().to_uppercase());
    let event = shequ_store::NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "RequestFiled".into(),
        event_version: 1,
        data: "{}".into(),
        metadata: "{}".into(),
    };
    service.log().append(&shouting, shequ_store::ExpectedRevision::NoStream, vec![event]).await.unwrap();
    for outcome in [
        replay::replay(service.log(), AsOf::Head, |_| {}).await.map(drop),
        service.read_model().catch_up().await.map(drop),
    ] {
        match outcome {
            Err(ServiceError::Projection(message)) => {
                assert!(message.contains(&shouting) && message.contains("lower-case"), "{message}")
            }
            other => panic!("expected a projection error, got {other:?}"),
        }
    }
    let cut = replay::cut(service.log(), AsOf::Head).await.unwrap();
    let (chunks, _receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let kept = replay::kept(service.log(), cut).await.unwrap();
    let written = replay::write_state(service.log(), kept, None, JsonStyle::Pretty, |_| {}, chunks).await;
    assert!(
        matches!(written, Err(replay::WriteStateError::Replay(ServiceError::Projection(_)))),
        "{written:?}"
    );
}

/// What `replay::write_state` writes as of `as_of`, collected.
async fn written_state(log: &EventLog, as_of: AsOf, district: Option<Uuid>, style: JsonStyle) -> String {
    let cut = replay::cut(log, as_of).await.unwrap();
    let kept = replay::kept(log, cut).await.unwrap();
    let mut written = Vec::new();
    replay::write_state_into(log, kept, district, style, |_| {}, &mut written).await.unwrap();
    String::from_utf8(written).unwrap()
}

async fn a_replay_as_of_a_position_or_time_stops_there(db: Db) {
    let (service, places) = demo_service(&db).await;
    let before = service.log().head().await.unwrap();
    let station = places.communities[0].0;
    file_at(&service, station, "r1", "EMP-001", Channel::Counter).await.unwrap();
    let at_position = replay::replay(service.log(), AsOf::Position(before.position), |_| {}).await.unwrap();
    assert_eq!(at_position.position(), before.position);
    assert_eq!(at_position.requests().count(), 0);
    let recorded_at = service.log().read_all(before.position, 1).await.unwrap()[0].recorded_at;
    let at_time = replay::replay(service.log(), AsOf::Time(recorded_at), |_| {}).await.unwrap();
    assert_eq!(at_time.requests().count(), 0);
    assert!(at_time.position() >= before.position);
    assert_eq!(replay::replay(service.log(), AsOf::Head, |_| {}).await.unwrap().requests().count(), 1);
    assert!(AsOf::parse("yesterday").is_err());
    assert_eq!(AsOf::parse("42"), Ok(AsOf::Position(42)));
}

async fn shequ_replay_writes_the_live_state_as_json(db: Db) {
    use clap::Parser;
    let (service, places) = demo_service(&db).await;
    let station = places.communities[0].0;
    let filed = file_at(&service, station, "r1", "EMP-001", Channel::Web).await.unwrap();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("state.json");
    let run = |arguments: Vec<String>| async move {
        let cli = shequ::Cli::try_parse_from(arguments).unwrap();
        let mut out = Vec::new();
        let outcome = shequ::run(cli, &mut out).await.unwrap();
        (outcome, String::from_utf8(out).unwrap())
    };
    let arguments = |extra: &[&str]| {
        ["shequ", "--db", &db.url, "replay"]
            .iter()
            .chain(extra)
            .map(|text| text.to_string())
            .collect::<Vec<_>>()
    };
    let (outcome, report) = run(arguments(&["--out", file.to_str().unwrap()])).await;
    assert_eq!(outcome, shequ::Outcome::Success);
    assert!(report.contains("written to"), "{report}");
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let live = serde_json::to_value(service.read_model().read().await.unwrap().document()).unwrap();
    assert_eq!(written, live, "replaying the whole log gives the live projection");

    // As of the position before the request was filed, there is no request; on stdout.
    let position = filed.history[0].position - 1;
    let (_, printed) = run(arguments(&["--as-of", &position.to_string()])).await;
    let earlier: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(earlier["as_of"]["position"], position);
    assert_eq!(earlier["requests"], serde_json::json!([]));
    assert_eq!(earlier["mandates"], live["mandates"]);
    assert!(shequ::Cli::try_parse_from(arguments(&["--as-of", "last tuesday"])).is_err());
}

async fn redecide_reruns_routing_decisions_too(db: Db) {
    use clap::Parser;
    let (service, places) = demo_service(&db).await;
    let station = places.communities[0].0;
    let agent = service
        .file_request(
            &CommandScope::new(resident_of(station)),
            "r1",
            Uuid::now_v7(),
            filing("EMP-001", places.communities[1].0, Channel::Web),
        )
        .await;
    assert!(matches!(agent, Err(ServiceError::Forbidden(_))), "a resident files at their own station only");
    let mut ids = Vec::new();
    for code in ["EMP-001", "SSV-012", "SSV-006"] {
        let view = file_at(&service, station, "r1", code, Channel::Web).await.unwrap();
        ids.push(view.request);
    }
    let redecide = || async {
        let cli = shequ::Cli::try_parse_from(["shequ", "--db", &db.url, "audit", "redecide"]).unwrap();
        let mut out = Vec::new();
        let outcome = shequ::run(cli, &mut out).await.unwrap();
        (outcome, String::from_utf8(out).unwrap())
    };
    let (outcome, out) = redecide().await;
    assert_eq!(outcome, shequ::Outcome::Success, "{out}");
    assert!(
        out.starts_with("16 decisions, 16 identical, 0 differ"),
        "13 access decisions and 3 routings: {out}"
    );

    // Someone rewrites where a request was routed.
    let stream = format!("request-{}", ids[2]);
    let rewrite = format!(
        "UPDATE events SET data = replace(data, '\"route\":\"agent\"', '\"route\":\"community\"') \
         WHERE stream = '{stream}' AND event_type = 'RequestRouted';"
    );
    crate::helpers::tamper(&db, &rewrite).await;
    let (outcome, out) = redecide().await;
    assert_eq!(outcome, shequ::Outcome::Failure);
    assert!(out.starts_with("16 decisions, 15 identical, 1 differ"), "{out}");
    assert!(out.contains(&format!("(RequestRouted in {stream}): recorded route")), "{out}");
}

/// Two services on one store stand for two processes. A new request is filed without reading
/// its (presumed empty) stream first; when another process filed the same id a moment ago,
/// the append must conflict and the answer be the other's request, or a refusal if it differs.
async fn a_request_filed_by_another_process_is_not_filed_twice(db: Db) {
    let (first, places) = demo_service(&db).await;
    let policies = Policies::embedded().unwrap();
    let second =
        Service::new(EventLog::open(&db.url).await.unwrap(), policies, Arc::new(SystemClock)).await.unwrap();
    let station = places.communities[0].0;
    let resident = resident_of(station);
    // The first process has just looked at the log, so the second's filing is news to it.
    let id = Uuid::now_v7();
    file_at(&first, station, "r1", "EMP-001", Channel::Web).await.unwrap();
    let filed = second
        .file_request(&CommandScope::new(resident), "r1", id, filing("EMP-001", station, Channel::Web))
        .await
        .unwrap();
    let again = first
        .file_request(&CommandScope::new(resident), "r1", id, filing("EMP-001", station, Channel::Web))
        .await
        .unwrap();
    assert_eq!(again, filed);
    let mut other = filing("EMP-001", station, Channel::Web);
    other.description = "Something else".into();
    let taken =
        first.file_request(&CommandScope::new(resident), "r1", Uuid::now_v7(), other.clone()).await.unwrap();
    let clash = second
        .file_request(
            &CommandScope::new(resident),
            "r1",
            taken.request,
            filing("EMP-001", station, Channel::Web),
        )
        .await;
    assert!(matches!(clash, Err(ServiceError::Invalid(_))), "{clash:?}");
    // One stream each, of the two events a filing appends.
    for request in [id, taken.request] {
        let events = first.log().read_stream(&format!("request-{request}")).await.unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
    }
}

/// A list checks each row's place with the authorisation policy; the projection it reads must
/// not stay locked meanwhile, or a command's commit (which the next read folds in) waits for
/// the list, and the list for the fold: every read after it would hang.
async fn lists_answer_while_commands_commit(db: Db) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let (service, places) = demo_service(&db).await;
    let station = places.communities[0].0;
    for _ in 0..20 {
        file_at(&service, station, "r1", "SSV-012", Channel::Web).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let filer = {
        let (service, stop) = (service.clone(), stop.clone());
        tokio::spawn(async move {
            let mut filed = 0;
            while !stop.load(Ordering::Relaxed) {
                file_at(&service, station, "r1", "SSV-012", Channel::Web).await.unwrap();
                filed += 1;
            }
            filed
        })
    };
    let inspector = Actor { role: Role::Inspector, organisation: places.district };
    let lists = async {
        for _ in 0..100 {
            let all = RequestFilter::default();
            let requests = service.list_requests(inspector, "i", &all, None, 1_000).await.unwrap();
            assert!(requests.len() >= 20);
            let mandates = service.list_mandates(inspector, &Default::default(), None, 1_000).await.unwrap();
            assert!(!mandates.is_empty());
            let organisations = service.list_organisations(inspector, None, None, None, 1_000).await.unwrap();
            assert!(!organisations.is_empty());
        }
    };
    let answered = tokio::time::timeout(Duration::from_secs(60), lists).await;
    stop.store(true, Ordering::Relaxed);
    assert!(answered.is_ok(), "the lists hung while requests were being filed");
    assert!(filer.await.unwrap() > 0, "no request was filed meanwhile");
}
