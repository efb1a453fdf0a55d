//! `/api/v1` beyond mandates: lists with filters and cursors, service requests, the
//! inspectors' views, and every role against every endpoint.

use axum::http::StatusCode;
use serde_json::{json, Value};
use shequ::demo::{self, demo_id};
use shequ_domain::organisation::OrganisationKind;
use shequ_service::Role;
use uuid::Uuid;

use crate::helpers::{tests, Db, TestFn};
use crate::http::{event_types, Client, StationDesk};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        lists_page_with_cursors_filters_and_a_limit,
        a_service_request_over_http,
        inspectors_read_the_past_and_the_timeline,
        every_role_against_every_endpoint,
        the_district_registers_its_organisations,
        namesakes_are_refused_and_write_nothing,
        streets_and_communities_read_the_money_of_their_own_place,
    ]
}

async fn lists_page_with_cursors_filters_and_a_limit(db: Db) {
    let (client, places, inspector) = Client::with_demo_inspector(&db).await;
    let first = client.get_ok("/api/v1/mandates?limit=3", &inspector).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let mut seen: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["mandate"].as_str().unwrap().to_owned())
        .collect();
    let mut next = Some(cursor);
    while let Some(cursor) = next {
        let (_, page) = client
            .call("GET", &format!("/api/v1/mandates?limit=3&cursor={cursor}"), Some(&inspector), None)
            .await;
        seen.extend(
            page["items"].as_array().unwrap().iter().map(|item| item["mandate"].as_str().unwrap().to_owned()),
        );
        next = page["next_cursor"].as_str().map(str::to_owned);
    }
    let (_, all) = client.call("GET", "/api/v1/mandates?limit=500", Some(&inspector), None).await;
    let all: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["mandate"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, all, "paging by cursor visits every mandate once, in order");
    assert!(all.len() > 6);

    // Filters, and the place of the reader.
    let (_, active) = client.call("GET", "/api/v1/mandates?status=active", Some(&inspector), None).await;
    assert!(active["items"].as_array().unwrap().iter().all(|item| item["status"] == "active"));
    let community = client.token(Role::Community, places.communities[0].0);
    let (_, own) = client.call("GET", "/api/v1/mandates", Some(&community), None).await;
    assert!(!own["items"].as_array().unwrap().is_empty());
    assert!(own["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|item| item["community"] == json!(places.communities[0].0)));
    let (_, contests) = client.call("GET", "/api/v1/contests", Some(&inspector), None).await;
    assert!(contests["items"].as_array().unwrap().iter().all(|item| item["contest"].is_object()));
    assert_eq!(contests["items"][0]["contest"]["mandate"], json!(demo_id("mandate/PMD-002")));

    // The page limit, and bad parameters named.
    let (status, body) = client.call("GET", "/api/v1/mandates?limit=501", Some(&inspector), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().starts_with("limit:"), "{body}");
    let (status, body) = client.call("GET", "/api/v1/mandates?status=sleeping", Some(&inspector), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("status"), "{body}");

    // A malformed id in the path is a 400 in the JSON error body, naming the parameter.
    let (status, body) = client.call("GET", "/api/v1/mandates/not-a-uuid", Some(&inspector), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad_request", "{body}");
    assert!(body["message"].as_str().unwrap().contains("not-a-uuid"), "{body}");

    // Organisations: the district sees its 18, a community only itself.
    let (_, organisations) =
        client.call("GET", "/api/v1/organisations?limit=100", Some(&inspector), None).await;
    assert_eq!(organisations["items"].as_array().unwrap().len(), 18);
    let (_, own) = client.call("GET", "/api/v1/organisations", Some(&community), None).await;
    assert_eq!(
        own["items"],
        json!([{"id": places.communities[0].0, "kind": "community", "name": places.communities[0].2, "parent_id": places.communities[0].1, "code": null}])
    );
    let (_, departments) =
        client.call("GET", "/api/v1/organisations?kind=department", Some(&inspector), None).await;
    assert!(departments["items"][0]["code"].as_str().is_some());
}

async fn a_service_request_over_http(db: Db) {
    let StationDesk { client, places, resident, worker, department } = StationDesk::open(&db).await;
    let request_id = Uuid::now_v7();
    let body = json!({
        "request_id": request_id, "matter_code": "EMP-001", "channel": "call_assistance",
        "description": "I lost my job and need to register", "address": "韶九胡同 3号",
    })
    .to_string();
    let (status, filed) = client.call("POST", "/api/v1/requests", Some(&resident), Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    assert_eq!((filed["route"].as_str(), filed["status"].as_str()), (Some("agent"), Some("routed")));
    assert_eq!(filed["priority"], true);
    assert_eq!(filed["overdue"], false);
    // The command answers with the events it appended, where they landed.
    let events = filed["events"].as_array().unwrap();
    let types = event_types(&filed);
    assert_eq!(types, ["RequestFiled", "RequestRouted"]);
    assert_eq!(events[0]["stream"], format!("request-{request_id}"));
    assert_eq!(events[1]["position"].as_u64().unwrap(), events[0]["position"].as_u64().unwrap() + 1);
    let (_, stored) = client
        .call(
            "GET",
            &format!(
                "/api/v1/audit/proof/inclusion?position={}&tree_size={}",
                events[1]["position"], events[1]["position"]
            ),
            Some(&client.token(Role::Inspector, places.district)),
            None,
        )
        .await;
    assert_eq!(stored["position"], events[1]["position"], "the position is the log's");
    let (status, again) = client.call("POST", "/api/v1/requests", Some(&resident), Some(body)).await;
    assert_eq!(
        (status, &again["request"]),
        (StatusCode::CREATED, &filed["request"]),
        "a retry answers as the first time"
    );
    assert_eq!(again["events"], json!([]), "and appends nothing");

    let path = format!("/api/v1/requests/{request_id}");
    let step = |token: String, action: &'static str, body: Value| {
        let client = &client;
        let path = format!("{path}/{action}");
        async move { client.call("POST", &path, Some(&token), Some(body.to_string())).await }
    };
    let (status, _) = step(department.clone(), "accept", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the station forwards before the department holds it");
    assert_eq!(step(worker.clone(), "forward", json!({"note": "to the bureau"})).await.0, StatusCode::OK);
    assert_eq!(step(department.clone(), "accept", json!({"note": "taken"})).await.0, StatusCode::OK);
    let (status, resolved) = step(department.clone(), "resolve", json!({"note": "registered"})).await;
    assert_eq!((status, resolved["status"].as_str()), (StatusCode::OK, Some("resolved")));
    let (status, body) = step(resident.clone(), "rate", json!({"rating": 5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "rated only once closed: {body}");
    // Closing under an Idempotency-Key: the retry returns the first result and appends nothing.
    let key = Uuid::now_v7().to_string();
    let close = || {
        let (client, path, resident, key) = (&client, format!("{path}/close"), resident.clone(), key.clone());
        async move {
            let headers = [("idempotency-key", key.as_str())];
            client.call_with("POST", &path, Some(&resident), Some("{}".into()), &headers).await
        }
    };
    let (status, closed) = close().await;
    assert_eq!((status, closed["status"].as_str()), (StatusCode::OK, Some("closed")), "{closed}");
    assert_eq!(closed["events"].as_array().unwrap().len(), 1);
    let (status, again) = close().await;
    assert_eq!((status, &again), (StatusCode::OK, &closed), "a retry answers as the first time");
    // The same body in other words is the same command; another body under the key is not.
    let headers = [("idempotency-key", key.as_str())];
    let close_path = format!("{path}/close");
    for (body, expected) in [
        (r#"{ "note" : "" }"#, StatusCode::OK),
        (r#"{"note": "closed at the counter"}"#, StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) =
            client.call_with("POST", &close_path, Some(&resident), Some(body.into()), &headers).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    let (_, refused) = client
        .call_with("POST", &close_path, Some(&resident), Some(r#"{"note": "x"}"#.into()), &headers)
        .await;
    assert!(refused["message"].as_str().unwrap().contains("with another body"), "{refused}");
    let (status, body) = step(resident.clone(), "rate", json!({"rating": 9})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, rated) = step(resident.clone(), "rate", json!({"rating": 5, "comment": "quick"})).await;
    assert_eq!((status, rated["rating"].as_u64()), (StatusCode::OK, Some(5)));
    assert_eq!(rated["history"].as_array().unwrap().len(), 6);
    assert_eq!(step(resident.clone(), "fly", json!({})).await.0, StatusCode::NOT_FOUND);
    // A body left out stands for an empty one: `rate` then names what it needs.
    let (status, body) = client.call("POST", &format!("{path}/rate"), Some(&resident), None).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::BAD_REQUEST, Some("rating: required, 1–5")));

    // Bad input is named; a matter outside the catalogue is refused with its clause.
    let bad = json!({"request_id": Uuid::now_v7(), "matter_code": "EMP-001", "channel": "pigeon", "description": "x"});
    let (status, body) =
        client.call("POST", "/api/v1/requests", Some(&resident), Some(bad.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("channel"), "{body}");
    let far = json!({"request_id": Uuid::now_v7(), "matter_code": "EMP-001", "channel": "web", "description": "x", "lat": 120.0, "long": 1.0});
    let (status, body) =
        client.call("POST", "/api/v1/requests", Some(&resident), Some(far.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("lat"), "{body}");
    let unknown =
        json!({"request_id": Uuid::now_v7(), "matter_code": "ZZZ-404", "channel": "web", "description": "x"});
    let (status, body) =
        client.call("POST", "/api/v1/requests", Some(&resident), Some(unknown.to_string())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["violations"][0]["clause"], "plan:5.1-C");

    // Lists: the worker filters by status; the resident sees their own only.
    let (_, closed) = client.call("GET", "/api/v1/requests?status=closed", Some(&worker), None).await;
    assert_eq!(closed["items"].as_array().unwrap().len(), 1);
    let other = client.token(Role::Resident, places.communities[0].0);
    let (_, none) = client.call("GET", "/api/v1/requests", Some(&other), None).await;
    assert_eq!(none["items"], json!([]));
    assert_eq!(client.call("GET", &path, Some(&other), None).await.0, StatusCode::FORBIDDEN);
    let (status, body) =
        client.call("GET", "/api/v1/requests?filed_from=yesterday", Some(&worker), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("filed_from"), "{body}");
}

async fn inspectors_read_the_past_and_the_timeline(db: Db) {
    let (client, places, inspector) = Client::with_demo_inspector(&db).await;
    let now = client.get_ok("/api/v1/audit/state", &inspector).await;
    assert_eq!(now["district"], json!(places.district));
    assert_eq!(now["organisations"].as_array().unwrap().len(), 18);
    let position = now["as_of"]["position"].as_u64().unwrap();
    let (_, early) = client.call("GET", "/api/v1/audit/state?as_of=20", Some(&inspector), None).await;
    assert_eq!(early["as_of"]["position"], 20);
    assert!(early["mandates"].as_array().unwrap().is_empty(), "no mandate 20 events in");
    let (status, body) = client.call("GET", "/api/v1/audit/state?as_of=soon", Some(&inspector), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().starts_with("as_of:"), "{body}");

    // Balances as of a time before any money moved are all zero; as of now they sum to zero.
    let first_time = early["as_of"]["recorded_at"].as_str().unwrap();
    let (_, before) = client
        .call(
            "GET",
            &format!("/api/v1/audit/balances?as_of={}", first_time.replace('+', "%2B")),
            Some(&inspector),
            None,
        )
        .await;
    assert!(before["balances"].as_array().unwrap().is_empty(), "{before}");
    let (_, latest) = client.call("GET", "/api/v1/audit/balances", Some(&inspector), None).await;
    assert_eq!(latest["position"], position);
    let sum: i64 =
        latest["balances"].as_array().unwrap().iter().map(|row| row["balance_fen"].as_i64().unwrap()).sum();
    assert_eq!(sum, 0);

    // The timeline of a cured mandate: every event with its actor, decisions with clauses, money.
    let path = format!("/api/v1/audit/mandates/{}/timeline", demo_id("mandate/FLP-001"));
    let timeline = client.get_ok(&path, &inspector).await;
    let types = event_types(&timeline);
    assert_eq!(&types[..3], ["MandateRecordedOutsideProcess", "MandateRefused", "MandateContested"]);
    assert!(types.contains(&"MandateCured") && types.contains(&"MandateActivated"));
    let refused = &timeline["events"][1];
    assert!(refused["actor"].as_str().unwrap().starts_with("community:"));
    assert!(refused["data"]["decision"]["violations"][0]["clause"].as_str().unwrap().starts_with("plan:"));
    assert!(!timeline["transfers"].as_array().unwrap().is_empty(), "the cure's funds moved");
    let resident = client.token(Role::Resident, places.communities[5].0);
    assert_eq!(client.call("GET", &path, Some(&resident), None).await.0, StatusCode::FORBIDDEN);
    // Transfers page in log order.
    let (_, transfers) = client.call("GET", "/api/v1/ledger/transfers?limit=2", Some(&inspector), None).await;
    let cursor = transfers["next_cursor"].as_str().unwrap();
    let (_, next) = client
        .call("GET", &format!("/api/v1/ledger/transfers?limit=2&cursor={cursor}"), Some(&inspector), None)
        .await;
    assert!(next["items"][0]["position"].as_u64().unwrap() > cursor.parse::<u64>().unwrap());
}

/// Stands for a fresh id in a request body, so that no call is a retry of another.
const FRESH: &str = "00000000-0000-0000-0000-00000000f4e5";
/// Stands for the id of the mandate or request a row acts on, made for each caller.
const TARGET: &str = "{target}";

/// What a row acts on. Each caller gets its own, made in that state just before, so that
/// an allowed caller's answer is its command's own, not the aftermath of the caller before.
#[derive(Debug, Clone, Copy)]
enum On {
    Nothing,
    /// A mandate the first street office proposed to its first community, admitted.
    Admitted,
    /// The same, accepted: funded and active.
    Active,
    /// The same, contested by the community.
    Contested,
    /// A request the resident filed that the community handles itself, routed to it.
    Routed,
    /// A request the station acts on as agent (代办代理), to be forwarded.
    Agent,
    /// A routed request the community accepted; then started; resolved; closed.
    Accepted,
    Started,
    Resolved,
    Closed,
}

/// Which roles may reach each endpoint, and what each of them is answered; everyone else
/// gets 403, and nobody without a token gets anything but 401. An allowed role from another
/// place (another street, another community, another resident) gets 403 on what is not its. The demo's actors: the
/// district, the civil-affairs department, the first street office, its first community, the
/// district's inspector, and a resident of that community.
async fn every_role_against_every_endpoint(db: Db) {
    use Role::{
        Community as C, Department as Dp, District as D, Inspector as I, Resident as R, StreetOffice as S,
    };
    let client = Client::with_demo(&db).await;
    let places = demo::places();
    let community = places.communities[0].0;
    let org = |role: Role| match role {
        D | I => places.district,
        Dp => places.departments[0].0,
        S => places.streets[0].0,
        C | R => community,
    };
    let token = |role: Role| client.token(role, org(role));
    let employment = demo_id("mandate/EMP-001");
    let propose = json!({"mandate_id": FRESH, "matter_code": "EMP-001", "community": community,
                         "scope": "Unemployment registration assistance", "volume": 1,
                         "deadline": "2026-12-31", "funds_offered_fen": 3000,
                         "powers_granted": ["collect-resident-data"],
                         "working_conditions": ["service-counter", "information-terminal"]});
    let outside = json!({"mandate_id": FRESH, "delegating_unit": places.streets[0].0, "matter_code": "SSV-006",
                         "scope": "s", "volume": 1, "deadline": "2026-12-31", "statement": "by phone"});
    let file = |matter: &str| json!({"request_id": FRESH, "matter_code": matter, "channel": "counter", "description": "x"});
    let mut on_behalf = file("SSV-012");
    on_behalf["resident"] = json!("王秀英");
    let fresh = |body: &Value| body.to_string().replace(FRESH, &Uuid::now_v7().to_string());
    let contest = json!({"grounds": ["unfunded"], "statement": "s"});

    // Makes what a row acts on, as its owners would; returns its id.
    let make = |on: On| {
        let (client, token, propose, contest) = (&client, &token, &propose, &contest);
        async move {
            let step = |path: String, role: Role, body: Option<String>| async move {
                let (status, answer) = client.call("POST", &path, Some(&token(role)), body).await;
                assert!(status.is_success(), "making {on:?}: POST {path}: {status} {answer}");
                answer
            };
            let mandate = |then: Option<(&'static str, Option<String>)>| async move {
                let admitted = step("/api/v1/mandates".into(), S, Some(fresh(propose))).await;
                assert_eq!(admitted["status"], "admitted", "{admitted}");
                let id = admitted["mandate"].as_str().unwrap().to_owned();
                if let Some((action, body)) = then {
                    step(format!("/api/v1/mandates/{id}/{action}"), C, body).await;
                }
                id
            };
            let request = |matter: &'static str, steps: &'static [&'static str]| async move {
                let filed = step("/api/v1/requests".into(), R, Some(fresh(&file(matter)))).await;
                let id = filed["request"].as_str().unwrap().to_owned();
                // With no body at all: an action that needs nothing takes none.
                for action in steps {
                    let role = if *action == "close" { R } else { C };
                    step(format!("/api/v1/requests/{id}/{action}"), role, None).await;
                }
                id
            };
            match on {
                On::Nothing => String::new(),
                On::Admitted => mandate(None).await,
                On::Active => mandate(Some(("accept", None))).await,
                On::Contested => mandate(Some(("contest", Some(contest.to_string())))).await,
                On::Routed => request("SSV-012", &[]).await,
                On::Agent => request("EMP-002", &[]).await,
                On::Accepted => request("SSV-012", &["accept"]).await,
                On::Started => request("SSV-012", &["accept", "start"]).await,
                On::Resolved => request("SSV-012", &["accept", "resolve"]).await,
                On::Closed => request("SSV-012", &["accept", "resolve", "close"]).await,
            }
        }
    };

    let all = [D, Dp, S, C, I, R];
    let readers_of_district = [D, Dp, I];
    let readers_of_mandate = [D, Dp, S, C, I];
    let (ok, created) = (StatusCode::OK, StatusCode::CREATED);
    type Row = (&'static str, String, Option<Value>, On, Vec<Role>, StatusCode);
    let row = |method, path: String, body: Option<Value>, on, allowed: &[Role], answer| -> Row {
        (method, path, body, on, allowed.to_vec(), answer)
    };
    let mandate_action = |action: &str| format!("/api/v1/mandates/{TARGET}/{action}");
    let request_action = |action: &str| format!("/api/v1/requests/{TARGET}/{action}");
    let register =
        json!({"id": FRESH, "kind": "community", "name": "新社区", "parent_id": places.streets[0].0});
    let rows: Vec<Row> = vec![
        row("GET", "/api/v1/catalogue".into(), None, On::Nothing, &all, ok),
        row("GET", "/api/v1/organisations".into(), None, On::Nothing, &all, ok),
        row("POST", "/api/v1/organisations".into(), Some(register), On::Nothing, &[D], created),
        row(
            "GET",
            format!("/api/v1/organisations/{}", places.district),
            None,
            On::Nothing,
            &readers_of_district,
            ok,
        ),
        row("GET", "/api/v1/mandates".into(), None, On::Nothing, &all, ok),
        row("GET", "/api/v1/contests".into(), None, On::Nothing, &all, ok),
        // Every allowed role proposes in its own name; the district's and the department's
        // proposals are decided like the street's.
        row("POST", "/api/v1/mandates".into(), Some(propose.clone()), On::Nothing, &[D, Dp, S], created),
        row("POST", "/api/v1/mandates/outside-process".into(), Some(outside), On::Nothing, &[C], created),
        row("GET", format!("/api/v1/mandates/{employment}"), None, On::Nothing, &readers_of_mandate, ok),
        row("GET", format!("/api/v1/mandates/{TARGET}"), None, On::Admitted, &readers_of_mandate, ok),
        row("POST", mandate_action("accept"), None, On::Admitted, &[C], ok),
        row(
            "POST",
            mandate_action("spending"),
            Some(json!({"transfer_id": FRESH, "amount_fen": 1, "memo": "m"})),
            On::Active,
            &[C],
            created,
        ),
        row("POST", mandate_action("contest"), Some(contest.clone()), On::Admitted, &[C], ok),
        row("POST", mandate_action("cure"), Some(json!({"powers_added": ["p"]})), On::Contested, &[D, S], ok),
        row(
            "POST",
            mandate_action("review"),
            Some(json!({"outcome": "dismiss", "reason": "r"})),
            On::Contested,
            &[D],
            ok,
        ),
        row("POST", mandate_action("withdraw"), Some(json!({"reason": "r"})), On::Admitted, &[D, S], ok),
        row("POST", mandate_action("complete"), None, On::Active, &[C], ok),
        row(
            "POST",
            mandate_action("reassign"),
            Some(json!({"community": places.communities[1].0})),
            On::Active,
            &[D, S],
            ok,
        ),
        row(
            "POST",
            "/api/v1/ledger/allocations".into(),
            Some(json!({"transfer_id": FRESH, "to": community, "amount_fen": 1, "memo": "m"})),
            On::Nothing,
            &[D],
            created,
        ),
        row(
            "POST",
            "/api/v1/ledger/allocations".into(),
            Some(
                json!({"transfer_id": FRESH, "from": places.streets[0].0, "to": community, "amount_fen": 1, "memo": "m"}),
            ),
            On::Nothing,
            &[S],
            created,
        ),
        // Street offices and communities read the accounts of their own place (see
        // `streets_and_communities_read_the_money_of_their_own_place`).
        row("GET", "/api/v1/ledger/balances".into(), None, On::Nothing, &readers_of_mandate, ok),
        row("GET", "/api/v1/ledger/transfers".into(), None, On::Nothing, &readers_of_mandate, ok),
        // A community worker files on a resident's behalf, naming them.
        row("POST", "/api/v1/requests".into(), Some(on_behalf), On::Nothing, &[C, R], created),
        row("GET", "/api/v1/requests".into(), None, On::Nothing, &all, ok),
        row("GET", format!("/api/v1/requests/{TARGET}"), None, On::Routed, &all, ok),
        row("POST", request_action("forward"), Some(json!({})), On::Agent, &[C], ok),
        row("POST", request_action("accept"), Some(json!({})), On::Routed, &[C], ok),
        row("POST", request_action("start"), Some(json!({})), On::Accepted, &[C], ok),
        row("POST", request_action("resolve"), Some(json!({})), On::Started, &[C], ok),
        row("POST", request_action("reject"), Some(json!({"reason": "not ours"})), On::Routed, &[C], ok),
        row("POST", request_action("close"), Some(json!({})), On::Resolved, &[C, R], ok),
        row("POST", request_action("rate"), Some(json!({"rating": 3})), On::Closed, &[R], ok),
        row("GET", "/api/v1/audit/state".into(), None, On::Nothing, &readers_of_district, ok),
        row("GET", "/api/v1/audit/balances".into(), None, On::Nothing, &readers_of_district, ok),
        row(
            "GET",
            format!("/api/v1/audit/mandates/{employment}/timeline"),
            None,
            On::Nothing,
            &readers_of_mandate,
            ok,
        ),
        row(
            "GET",
            "/api/v1/audit/proof/inclusion?position=1&tree_size=1".into(),
            None,
            On::Nothing,
            &readers_of_district,
            ok,
        ),
        row(
            "GET",
            "/api/v1/audit/proof/consistency?first=1&second=2".into(),
            None,
            On::Nothing,
            &readers_of_district,
            ok,
        ),
    ];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let issue = |role: Role, organisation: Uuid, subject: &str| {
        client.state.keys.issue(role, organisation, subject, now, 3600)
    };
    // A second district, with a department, a street and a community of its own.
    let service = &client.state.service;
    let (elsewhere, its_department, its_street, its_community) =
        (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for (id, kind, name, parent) in [
        (elsewhere, OrganisationKind::District, "西城区", None),
        (its_department, OrganisationKind::Department, "西城区民政局", Some(elsewhere)),
        (its_street, OrganisationKind::Street, "德胜街道", Some(elsewhere)),
        (its_community, OrganisationKind::Community, "六铺炕社区", Some(its_street)),
    ] {
        let organisation = shequ_service::NewOrganisation { id, kind, name, parent, code: None };
        service.register_organisation_as_operator(organisation).await.unwrap();
    }
    let outsiders = [
        ("another street's office", S, issue(S, places.streets[1].0, "test")),
        ("another community", C, issue(C, places.communities[1].0, "test")),
        ("a resident of another community", R, issue(R, places.communities[1].0, "test")),
        ("another resident of the same community", R, issue(R, community, "someone else")),
        ("another district", D, issue(D, elsewhere, "test")),
        ("another district's department", Dp, issue(Dp, its_department, "test")),
        ("another district's inspector", I, issue(I, elsewhere, "test")),
        ("another district's street office", S, issue(S, its_street, "test")),
        ("another district's community", C, issue(C, its_community, "test")),
        ("a resident of another district", R, issue(R, its_community, "test")),
    ];
    let mut failures = Vec::new();
    let (mut checks, mut outsider_checks) = (0, 0);
    for (method, path, body, on, allowed, answer) in &rows {
        for role in all {
            let target = make(*on).await;
            let path = path.replace(TARGET, &target);
            let body = body.as_ref().map(fresh);
            let head = client.state.log.head().await.unwrap().position;
            let (status, got) = client.call(method, &path, Some(&token(role)), body).await;
            let expected = match allowed.contains(&role) {
                true => *answer,
                false => StatusCode::FORBIDDEN,
            };
            checks += 1;
            if status != expected {
                failures.push(format!("{} {method} {path}: {status}, not {expected}: {got}", role.as_str()));
            }
            // A refusal writes nothing.
            if status == StatusCode::FORBIDDEN && client.state.log.head().await.unwrap().position != head {
                failures.push(format!("{} {method} {path}: refused, yet the log grew", role.as_str()));
            }
        }
        // And nobody without a token.
        let anonymous_path = path.replace(TARGET, &make(*on).await);
        let (status, _) = client.call(method, &anonymous_path, None, body.as_ref().map(fresh)).await;
        checks += 1;
        if status != StatusCode::UNAUTHORIZED {
            failures.push(format!("anonymous {method} {anonymous_path}: {status}"));
        }
        // The right role in the wrong place, on what lies at the first street's first
        // community: refused, and nothing written.
        if matches!(on, On::Nothing) {
            continue;
        }
        for (who, role, outsider) in &outsiders {
            if !allowed.contains(role) {
                continue;
            }
            let path = path.replace(TARGET, &make(*on).await);
            let head = client.state.log.head().await.unwrap().position;
            let (status, got) = client.call(method, &path, Some(outsider), body.as_ref().map(fresh)).await;
            checks += 1;
            outsider_checks += 1;
            if status != StatusCode::FORBIDDEN || client.state.log.head().await.unwrap().position != head {
                failures.push(format!("{who} {method} {path}: {status}, not 403 and nothing written: {got}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checks} checks failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(checks, rows.len() * 7 + outsider_checks);
    assert!(outsider_checks >= 50, "{outsider_checks}");

    // What names the first district's places outright is refused to the second's too, and its
    // own books hold nothing of the first's.
    let other_district = issue(D, elsewhere, "test");
    let other_office = issue(S, its_street, "test");
    let head = client.state.log.head().await.unwrap().position;
    for (who, token, method, path, body) in [
        ("another district", &other_district, "GET", format!("/api/v1/mandates/{employment}"), None),
        (
            "another district",
            &other_district,
            "GET",
            format!("/api/v1/organisations/{}", places.district),
            None,
        ),
        (
            "another district",
            &other_district,
            "GET",
            format!("/api/v1/audit/mandates/{employment}/timeline"),
            None,
        ),
        (
            "another district's street office",
            &other_office,
            "POST",
            "/api/v1/mandates".into(),
            Some(fresh(&propose)),
        ),
    ] {
        let (status, got) = client.call(method, &path, Some(token), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who} {method} {path}: {got}");
    }
    assert_eq!(client.state.log.head().await.unwrap().position, head, "the refusals wrote nothing");
    let books = client.get_ok("/api/v1/ledger/balances", &other_district).await;
    assert_eq!((books["district"].clone(), books["balances"].clone()), (json!(elsewhere), json!([])));
    let (_, transfers) = client.call("GET", "/api/v1/ledger/transfers", Some(&other_district), None).await;
    assert_eq!(transfers["items"], json!([]), "{transfers}");
}

async fn the_district_registers_its_organisations(db: Db) {
    let client = Client::with_demo(&db).await;
    let places = demo::places();
    let district = client.token(Role::District, places.district);
    let street = Uuid::now_v7();
    let body = json!({"id": street, "kind": "street", "name": "北新桥街道", "parent_id": places.district});
    let (status, registered) =
        client.call("POST", "/api/v1/organisations", Some(&district), Some(body.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!(
        (registered["kind"].as_str(), registered["name"].as_str()),
        (Some("street"), Some("北新桥街道"))
    );
    let events = registered["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{registered}");
    assert_eq!(
        (events[0]["stream"].as_str(), events[0]["event_type"].as_str()),
        (Some(format!("organisation-{street}").as_str()), Some("OrganisationRegistered"))
    );
    assert!(events[0]["position"].as_u64().unwrap() > 0);
    let (status, mut again) =
        client.call("POST", "/api/v1/organisations", Some(&district), Some(body.to_string())).await;
    assert_eq!((status, again["events"].take()), (StatusCode::CREATED, json!([])), "a retry appends nothing");
    let mut first = registered.clone();
    first["events"].take();
    assert_eq!(again, first, "and answers with the same organisation");
    let other = json!({"id": street, "kind": "street", "name": "另一个", "parent_id": places.district});
    let (status, body) =
        client.call("POST", "/api/v1/organisations", Some(&district), Some(other.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("id:"), "{body}");

    // A community under the new street; its worker then sees it, and can file for residents.
    let community = Uuid::now_v7();
    let body = json!({"id": community, "kind": "community", "name": "香饵社区", "parent_id": street});
    assert_eq!(
        client.call("POST", "/api/v1/organisations", Some(&district), Some(body.to_string())).await.0,
        StatusCode::CREATED
    );
    let worker = client.token(Role::Community, community);
    let (status, own) =
        client.call("GET", &format!("/api/v1/organisations/{community}"), Some(&worker), None).await;
    assert_eq!((status, own["parent_id"].clone()), (StatusCode::OK, json!(street)));
    // A community cannot hang under the district; a department's code must be well formed.
    let wrong = json!({"id": Uuid::now_v7(), "kind": "community", "name": "x", "parent_id": places.district});
    let (status, body) =
        client.call("POST", "/api/v1/organisations", Some(&district), Some(wrong.to_string())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let coded = json!({"id": Uuid::now_v7(), "kind": "department", "name": "司法局", "parent_id": places.district, "code": "Justice!"});
    let (status, body) =
        client.call("POST", "/api/v1/organisations", Some(&district), Some(coded.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("code"), "{body}");
    // A department registered with its code receives the requests for its matters.
    let justice = Uuid::now_v7();
    let coded = json!({"id": justice, "kind": "department", "name": "东城区司法局", "parent_id": places.district, "code": "justice"});
    assert_eq!(
        client.call("POST", "/api/v1/organisations", Some(&district), Some(coded.to_string())).await.0,
        StatusCode::CREATED
    );
    let resident = client.token(Role::Resident, places.communities[0].0);
    let request = json!({"request_id": Uuid::now_v7(), "matter_code": "LSV-001", "channel": "web", "description": "legal services"});
    let (status, filed) =
        client.call("POST", "/api/v1/requests", Some(&resident), Some(request.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    assert_eq!(filed["handler"], json!(justice), "{filed}");
}

/// Every transfer a reader may list, paging `limit` at a time through `query`.
async fn all_transfers(client: &Client, token: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor.as_ref().map(|cursor| format!("&cursor={cursor}")).unwrap_or_default();
        let path = format!("/api/v1/ledger/transfers?limit={limit}{query}{after}");
        let page = client.get_ok(&path, token).await;
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= limit);
        items.extend(page_items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => {
                let moved_on = cursor
                    .as_ref()
                    .is_none_or(|before| next.parse::<u64>().unwrap() > before.parse().unwrap());
                assert!(moved_on, "{path}: the cursor moves on: {page}");
                cursor = Some(next.to_owned());
            }
            None => return items,
        }
    }
}

/// The accounts a transfer moves money between, as `GET /ledger/balances` names them.
fn transfer_accounts(transfer: &Value) -> [String; 2] {
    let name = |account: &Value| match account["kind"].as_str().unwrap() {
        "organisation" => format!("organisation:{}", account["organisation"].as_str().unwrap()),
        "reserved" => format!("reserved:{}", account["mandate"].as_str().unwrap()),
        "mandate" => {
            format!(
                "mandate:{}@{}",
                account["mandate"].as_str().unwrap(),
                account["community"].as_str().unwrap()
            )
        }
        other => other.to_owned(),
    };
    [name(&transfer["debit"]), name(&transfer["credit"])]
}

/// The accounts `GET /ledger/balances` shows `token`, and the transfers they count.
async fn balances_of(client: &Client, token: &str) -> (Vec<String>, usize) {
    let view = client.get_ok("/api/v1/ledger/balances", token).await;
    let accounts = view["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["account"].as_str().unwrap().to_owned())
        .collect();
    (accounts, view["transfers"].as_u64().unwrap() as usize)
}

/// Checks that the office of `street`, or the worker of `community` when given, reads exactly
/// the accounts that lie in its place, and exactly the transfers into or out of them, by
/// comparing with what the district reads. Returns the accounts it read.
async fn reads_exactly_its_place(client: &Client, street: Uuid, community: Option<Uuid>) -> Vec<String> {
    let places = demo::places();
    let district = client.token(Role::District, places.district);
    let (everything, all_count) = balances_of(client, &district).await;
    let all = all_transfers(client, &district, "", 500).await;
    assert_eq!(all.len(), all_count, "the district reads every transfer");
    let (_, mandates) = client.call("GET", "/api/v1/mandates?limit=500", Some(&district), None).await;
    let carried_at = |mandate: &str| -> Uuid {
        let item = mandates["items"].as_array().unwrap().iter().find(|item| item["mandate"] == mandate);
        item.unwrap_or_else(|| panic!("mandate {mandate} is listed"))["community"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let street_of =
        |id: Uuid| places.communities.iter().find(|(community, ..)| *community == id).map(|(_, s, _)| *s);
    let at = |place: Uuid| match community {
        Some(community) => place == community,
        None => place == street || street_of(place) == Some(street),
    };
    // Budgets where their owner sits; posted funds where they were posted; reserved funds
    // where the mandate is carried now.
    let lies_in = |account: &str| match account.split_once(':') {
        Some(("organisation", id)) => at(id.parse().unwrap()),
        Some(("reserved", mandate)) => at(carried_at(mandate)),
        Some(("mandate", held)) => at(held.rsplit_once('@').unwrap().1.parse().unwrap()),
        _ => false,
    };
    let (who, token) = match community {
        Some(community) => (format!("community {community}"), client.token(Role::Community, community)),
        None => (format!("street office {street}"), client.token(Role::StreetOffice, street)),
    };
    let (accounts, count) = balances_of(client, &token).await;
    let expected: Vec<String> = everything.iter().filter(|account| lies_in(account)).cloned().collect();
    assert_eq!(accounts, expected, "{who} reads exactly the accounts of its place");
    assert!(!accounts.is_empty() && accounts.len() < everything.len(), "{who}: {accounts:?}");
    let listed = all_transfers(client, &token, "", 500).await;
    let expected: Vec<&Value> = all
        .iter()
        .filter(|transfer| transfer_accounts(transfer).iter().any(|account| accounts.contains(account)))
        .collect();
    assert_eq!(listed.iter().collect::<Vec<_>>(), expected, "{who}'s transfers");
    assert_eq!(listed.len(), count, "{who}'s balances count the transfers it reads");
    assert_eq!(all_transfers(client, &token, "", 1).await, listed, "{who} pages one at a time");
    accounts
}

async fn streets_and_communities_read_the_money_of_their_own_place(db: Db) {
    let client = Client::with_demo(&db).await;
    let places = demo::places();
    let district = client.token(Role::District, places.district);
    let (everything, _) = balances_of(&client, &district).await;
    let all = all_transfers(&client, &district, "", 500).await;
    let street_of = |id: Uuid| places.communities.iter().find(|(community, ..)| *community == id).unwrap().1;

    // The community of the demo's first funded mandate account, and its street.
    let funded = everything.iter().find(|account| account.starts_with("mandate:")).expect("a posted mandate");
    let community: Uuid = funded.rsplit_once('@').unwrap().1.parse().unwrap();
    let street = street_of(community);
    let street_accounts = reads_exactly_its_place(&client, street, None).await;
    let community_accounts = reads_exactly_its_place(&client, street, Some(community)).await;
    assert!(street_accounts.contains(funded) && community_accounts.contains(funded));
    assert!(street_accounts.contains(&format!("organisation:{street}")), "{street_accounts:?}");
    let other_street = places.streets.iter().map(|(id, _)| *id).find(|id| *id != street).unwrap();
    assert!(!street_accounts.contains(&format!("organisation:{other_street}")));
    assert!(!community_accounts.contains(&format!("organisation:{street}")));

    // Filters: by mandate, by kind, by organisation; each kept transfer matches.
    let mandate = funded.trim_start_matches("mandate:").split_once('@').unwrap().0.to_owned();
    let for_mandate = all_transfers(&client, &district, &format!("&mandate={mandate}"), 2).await;
    assert!(for_mandate.len() >= 2, "reserved, then posted: {for_mandate:?}");
    assert!(for_mandate.iter().all(|transfer| transfer["mandate"] == mandate.as_str()));
    assert_eq!(
        for_mandate.len(),
        all.iter().filter(|transfer| transfer["mandate"] == mandate.as_str()).count()
    );
    let allocations = all_transfers(&client, &district, "&kind=allocation", 500).await;
    assert!(!allocations.is_empty() && allocations.iter().all(|transfer| transfer["kind"] == "allocation"));
    let street_money = all_transfers(&client, &district, &format!("&organisation={street}"), 500).await;
    assert!(!street_money.is_empty());
    assert!(street_money
        .iter()
        .all(|transfer| transfer_accounts(transfer).contains(&format!("organisation:{street}"))));
    // A community's own filter keeps its postings; one naming another place finds nothing of it.
    let worker = client.token(Role::Community, community);
    let posted = all_transfers(&client, &worker, "&kind=posting", 500).await;
    assert!(posted.iter().any(|transfer| transfer["mandate"] == mandate.as_str()), "{posted:?}");
    assert!(posted.iter().all(|transfer| transfer["kind"] == "posting"
        && transfer_accounts(transfer).iter().any(|account| community_accounts.contains(account))));
    let mine = all_transfers(&client, &worker, &format!("&organisation={community}"), 500).await;
    assert!(
        mine.iter().any(|transfer| transfer["mandate"] == mandate.as_str()),
        "its mandate accounts: {mine:?}"
    );
    assert!(all_transfers(&client, &worker, &format!("&organisation={other_street}"), 500).await.is_empty());
    // A page looks through at most 10 ledger events per transfer it may hold: the community's
    // pages of one are often empty, yet carry on to the end.
    let (mut cursor, mut empty_pages, mut found) = (0u64, 0, 0);
    loop {
        let path = format!("/api/v1/ledger/transfers?limit=1&cursor={cursor}");
        let (_, page) = client.call("GET", &path, Some(&worker), None).await;
        let items = page["items"].as_array().unwrap();
        found += items.len();
        empty_pages += usize::from(items.is_empty() && page["next_cursor"].is_string());
        match page["next_cursor"].as_str() {
            Some(next) => {
                let next: u64 = next.parse().unwrap();
                assert!(next > cursor, "a page moves on: {page}");
                cursor = next;
            }
            None => break,
        }
    }
    assert!(empty_pages > 0, "the ledger holds stretches of more than 10 events the community does not see");
    assert_eq!(found, all_transfers(&client, &worker, "", 500).await.len());
    let (status, body) =
        client.call("GET", "/api/v1/ledger/transfers?kind=gift", Some(&district), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("kind"), "{body}");

    // A department moves a funded task of its own to a community of another street: the funds
    // posted at the first community stay in its street's books, the funds moved go to the new one.
    let departments: Vec<Uuid> = places.departments.iter().map(|(id, ..)| *id).collect();
    let (_, mandates) =
        client.call("GET", "/api/v1/mandates?limit=500&status=active", Some(&district), None).await;
    let task = mandates["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| {
            item["funds_posted_fen"].as_i64().unwrap() > 0
                && departments.contains(&item["delegating_unit"].as_str().unwrap().parse().unwrap())
        })
        .expect("a department's funded, active task");
    let (id, from): (&str, Uuid) =
        (task["mandate"].as_str().unwrap(), task["community"].as_str().unwrap().parse().unwrap());
    let unit: Uuid = task["delegating_unit"].as_str().unwrap().parse().unwrap();
    let to = places.communities.iter().find(|(_, street, _)| *street != street_of(from)).unwrap().0;
    let (status, moved) = client
        .call(
            "POST",
            &format!("/api/v1/mandates/{id}/reassign"),
            Some(&client.token(Role::Department, unit)),
            Some(json!({"community": to}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let old_books = reads_exactly_its_place(&client, street_of(from), None).await;
    let new_books = reads_exactly_its_place(&client, street_of(to), None).await;
    reads_exactly_its_place(&client, street_of(to), Some(to)).await;
    let (at_old, at_new) = (format!("mandate:{id}@{from}"), format!("mandate:{id}@{to}"));
    assert!(old_books.contains(&at_old) && !old_books.contains(&at_new), "{old_books:?}");
    assert!(new_books.contains(&at_new) && !new_books.contains(&at_old), "{new_books:?}");

    // A resident reads no ledger, and past balances stay the audit's.
    let resident = client.token(Role::Resident, community);
    for path in ["/api/v1/ledger/balances", "/api/v1/ledger/transfers"] {
        assert_eq!(client.call("GET", path, Some(&resident), None).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    let office = client.token(Role::StreetOffice, street);
    assert_eq!(
        client.call("GET", "/api/v1/audit/balances", Some(&office), None).await.0,
        StatusCode::FORBIDDEN
    );
}

/// A second department of one code in the district, or a second community of one name under
/// one street, is refused (422, naming the name or code) and appends nothing; the same name
/// under another street is another community.
async fn namesakes_are_refused_and_write_nothing(db: Db) {
    let client = Client::with_demo(&db).await;
    let places = demo::places();
    let district = client.token(Role::District, places.district);
    let (first_street, second_street) = (places.streets[0].0, places.streets[1].0);
    let register = |body: Value| {
        let client = &client;
        let district = &district;
        async move { client.call("POST", "/api/v1/organisations", Some(district), Some(body.to_string())).await }
    };
    let head = client.state.log.head().await.unwrap().position;
    let code = &places.departments[0].2;
    let same_code = json!({"id": Uuid::now_v7(), "kind": "department", "name": "另一个局", "parent_id": places.district, "code": code});
    let same_name =
        json!({"id": Uuid::now_v7(), "kind": "community", "name": "多福巷社区", "parent_id": first_street});
    for (body, named) in [(same_code, code.as_str()), (same_name, "多福巷社区")] {
        let (status, answer) = register(body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(named), "{answer}");
        assert_eq!(client.state.log.head().await.unwrap().position, head, "a refusal appends nothing");
    }
    let elsewhere =
        json!({"id": Uuid::now_v7(), "kind": "community", "name": "多福巷社区", "parent_id": second_street});
    let (status, answer) = register(elsewhere).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}
