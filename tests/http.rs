//! The HTTP application over a real socket: health, readiness, and `/api/v1` with bearer
//! tokens, on the demo world.

use std::sync::Arc;

use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use shequ::demo::{self, demo_id};
use shequ_http::auth::TokenKeys;
use shequ_http::{app, AppState};
use shequ_policy::Policies;
use shequ_service::{Role, Service, SystemClock};
use shequ_store::EventLog;
use uuid::Uuid;

use crate::helpers::{tests, Db, TestFn};

/// The largest response body a test reads, in bytes.
const BODY_BYTES_MAX: usize = 1024 * 1024;
const NOW: u64 = 1_800_000_000;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        health_and_readiness,
        the_api_authenticates_authorises_and_answers_with_the_right_status,
        a_mandate_and_its_money_over_http,
        a_command_on_a_revision_that_moved_on_is_a_conflict,
        a_command_sent_again_while_it_runs_runs_once,
        merkle_proofs_verify_as_rfc_9162_says,
    ]
}

/// shequ served on a real socket on 127.0.0.1, and an HTTP/1.1 client talking to it.
pub struct Client {
    pub state: AppState,
    base: String,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<axum::body::Bytes>,
    >,
    server: tokio::task::JoinHandle<()>,
}

/// A client on the demo and the tokens that take a request through community 1's station:
/// its resident's, its worker's and department 1's (where the station forwards EMP-001).
pub struct StationDesk {
    pub client: Client,
    pub places: demo::DemoPlaces,
    pub resident: String,
    pub worker: String,
    pub department: String,
}

impl StationDesk {
    pub async fn open(db: &Db) -> Self {
        let client = Client::with_demo(db).await;
        let places = demo::places();
        let station = places.communities[1].0;
        let resident = client.token(Role::Resident, station);
        let worker = client.token(Role::Community, station);
        let department = client.token(Role::Department, places.departments[1].0);
        Self { client, places, resident, worker, department }
    }
}

/// The types of the events a command answered with, in order.
pub fn event_types(answer: &Value) -> Vec<&str> {
    answer["events"].as_array().unwrap().iter().map(|event| event["event_type"].as_str().unwrap()).collect()
}

impl Drop for Client {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Client {
    /// A client of a server on a fresh store loaded with the demo data set.
    pub async fn with_demo(db: &Db) -> Self {
        let client = Self::new(db).await;
        demo::load(&client.state.log, &Policies::embedded().unwrap()).await.unwrap();
        client
    }

    pub async fn new(db: &Db) -> Self {
        let log = EventLog::open(&db.url).await.unwrap();
        let service =
            Service::new(log.clone(), Policies::embedded().unwrap(), Arc::new(SystemClock)).await.unwrap();
        let keys = TokenKeys::from_secret(&[42; 32]).unwrap();
        let checkpoint_public_key = "ab".repeat(32);
        let state = AppState::new(shequ_http::AppParts {
            log,
            service,
            keys,
            metrics: shequ_http::metrics::Metrics::new(),
            checkpoint_public_key: checkpoint_public_key.into(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self { state, base, http, server }
    }

    /// A client on the demo, its places, and a token of the district's inspector.
    pub async fn with_demo_inspector(db: &Db) -> (Self, demo::DemoPlaces, String) {
        let client = Self::with_demo(db).await;
        let places = demo::places();
        let inspector = client.token(Role::Inspector, places.district);
        (client, places, inspector)
    }

    pub fn token(&self, role: Role, organisation: Uuid) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        self.state.keys.issue(role, organisation, "test", now.max(NOW), 3600)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    /// The body of a GET with `token`, which must answer 200.
    pub async fn get_ok(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.call("GET", path, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// [`Self::call`] with more headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(axum::body::Bytes::from(body))),
            None => request.body(http_body_util::Full::new(axum::body::Bytes::new())),
        };
        let response = self.http.request(request.unwrap()).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get("content-type").and_then(|value| value.to_str().ok());
        let content_type = content_type.map(str::to_owned);
        let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            response.into_body(),
            BODY_BYTES_MAX,
        ))
        .await
        .unwrap()
        .to_bytes();
        // Every answer any test gets is one the OpenAPI document describes.
        crate::schemas::check_answer(method, path, status, content_type.as_deref(), &bytes);
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The body of a GET, as text.
    pub async fn text(&self, path: &str) -> String {
        let request = Request::get(format!("{}{path}", self.base))
            .body(http_body_util::Full::new(axum::body::Bytes::new()))
            .unwrap();
        let response = self.http.request(request).await.unwrap();
        let body = http_body_util::Limited::new(response.into_body(), BODY_BYTES_MAX);
        let bytes = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

async fn health_and_readiness(db: Db) {
    let client = Client::new(&db).await;
    assert_eq!(client.call("GET", "/health", None, None).await, (StatusCode::OK, json!({"status": "ok"})));
    // A server just started has not folded the log into its projection: not ready yet, and
    // the probe starts the catch-up, which goes on without reads to drive it.
    assert!(!client.state.service.read_model().has_caught_up());
    let (status, ready) = client.call("GET", "/ready", None, None).await;
    assert_eq!(
        (status, &ready["status"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("catching_up")),
        "{ready}"
    );
    assert_eq!((&ready["position"], &ready["projection"]), (&json!(1), &json!(0)), "{ready}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !client.state.service.read_model().has_caught_up() {
        assert!(std::time::Instant::now() < deadline, "the catch-up /ready started never ended");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, ready) = client.call("GET", "/ready", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], client.state.log.kind().to_string());
    assert_eq!(ready["position"], 1, "the policy bundle is the first event");
    assert!(ready.get("projection").is_none(), "{ready}");

    // With the database gone, the process is alive but not ready.
    client.state.log.close().await;
    assert_eq!(client.call("GET", "/health", None, None).await.0, StatusCode::OK);
    let (status, ready) = client.call("GET", "/ready", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["status"], "unavailable");
}

async fn the_api_authenticates_authorises_and_answers_with_the_right_status(db: Db) {
    let client = Client::with_demo(&db).await;
    let places = demo::places();
    let street = client.token(Role::StreetOffice, places.streets[0].0);
    let community = client.token(Role::Community, places.communities[0].0);
    let other_community = client.token(Role::Community, places.communities[5].0);

    // 401 without a valid token.
    assert_eq!(client.call("GET", "/api/v1/catalogue", None, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = client.call("GET", "/api/v1/catalogue", Some("forged"), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (status, catalogue) = client.call("GET", "/api/v1/catalogue", Some(&street), None).await;
    assert_eq!(status, StatusCode::OK);
    // The scheme's name is case-insensitive; another scheme is not a bearer token.
    for (authorization, expected) in [
        (format!("bearer {street}"), StatusCode::OK),
        (format!("BEARER {street}"), StatusCode::OK),
        (format!("Basic {street}"), StatusCode::UNAUTHORIZED),
        (format!("Bearer{street}"), StatusCode::UNAUTHORIZED),
    ] {
        let headers = [("authorization", authorization.as_str())];
        let (status, _) = client.call_with("GET", "/api/v1/catalogue", None, None, &headers).await;
        assert_eq!(status, expected, "{authorization}");
    }
    assert_eq!(catalogue["matters"].as_array().unwrap().len(), 68);

    let mandate = Uuid::now_v7();
    let proposal = |mandate: Uuid, code: &str, community: Uuid| {
        json!({
            "mandate_id": mandate, "matter_code": code, "community": community,
            "scope": "Unemployment registration assistance", "volume": 5, "deadline": "2026-12-31",
            "funds_offered_fen": 15000, "powers_granted": ["collect-resident-data"],
            "working_conditions": ["service-counter", "information-terminal"],
        })
        .to_string()
    };
    let body = proposal(mandate, "EMP-001", places.communities[0].0);
    let (status, admitted) = client.call("POST", "/api/v1/mandates", Some(&street), Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{admitted}");
    assert_eq!(admitted["status"], "admitted");
    let types = event_types(&admitted);
    assert_eq!(
        types,
        ["MandateProposed", "MandateAdmitted", "TransferRecorded"],
        "the funds are reserved too"
    );
    // A retried command returns the first result.
    let (status, retried) = client.call("POST", "/api/v1/mandates", Some(&street), Some(body)).await;
    assert_eq!((status, &retried["decision_id"]), (StatusCode::CREATED, &admitted["decision_id"]));

    // 403 outside the street's place.
    let elsewhere = proposal(Uuid::now_v7(), "EMP-001", places.communities[5].0);
    let (status, body) = client.call("POST", "/api/v1/mandates", Some(&street), Some(elsewhere)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::FORBIDDEN, Some("street_office may not mandate.propose here"))
    );

    // 422 for a policy refusal, with every violation and its clause.
    let refused = proposal(Uuid::now_v7(), "SSV-006", places.communities[0].0);
    let (status, body) = client.call("POST", "/api/v1/mandates", Some(&street), Some(refused)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["violations"][0]["clause"], "plan:3.4.2-R1");
    assert!(body["mandate"].is_string(), "the refusal is recorded: {body}");

    // 400 naming the bad field; 413 for an oversized body.
    let missing = json!({"mandate_id": Uuid::now_v7(), "matter_code": "EMP-001"}).to_string();
    let (status, body) = client.call("POST", "/api/v1/mandates", Some(&street), Some(missing)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("missing field `community`"), "{body}");
    let negative = proposal(Uuid::now_v7(), "EMP-001", places.communities[0].0).replace("15000", "-5");
    let (status, body) = client.call("POST", "/api/v1/mandates", Some(&street), Some(negative)).await;
    assert!(
        status == StatusCode::BAD_REQUEST
            && body["message"].as_str().unwrap().starts_with("funds_offered_fen"),
        "{body}"
    );
    // Fields the domain checks are named too, and nothing is recorded.
    let head = client.state.log.head().await.unwrap().position;
    let valid = proposal(Uuid::now_v7(), "EMP-001", places.communities[0].0);
    for (bad, field) in [
        (valid.replace("\"volume\":5", "\"volume\":0"), "volume"),
        (valid.replace("2026-12-31", "soon"), "deadline"),
        (valid.replace("Unemployment registration assistance", &"长".repeat(2_001)), "scope"),
    ] {
        let (status, body) = client.call("POST", "/api/v1/mandates", Some(&street), Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["message"].as_str().unwrap().starts_with(field), "{body}");
    }
    let blank = json!({"reason": "  "}).to_string();
    let path = format!("/api/v1/mandates/{mandate}/withdraw");
    let (status, body) = client.call("POST", &path, Some(&street), Some(blank)).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::BAD_REQUEST, Some("reason is required")));
    assert_eq!(client.state.log.head().await.unwrap().position, head);
    let huge = json!({"scope": "x".repeat(shequ_http::BODY_BYTES_MAX)}).to_string();
    assert_eq!(
        client.call("POST", "/api/v1/mandates", Some(&street), Some(huge)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Reading: the community itself yes, another community no, an unknown mandate 404.
    let path = format!("/api/v1/mandates/{mandate}");
    let (status, view) = client.call("GET", &path, Some(&community), None).await;
    assert_eq!((status, view["status"].as_str()), (StatusCode::OK, Some("admitted")));
    assert_eq!(view["bundle_digest"].as_str().unwrap().len(), 64);
    assert_eq!(client.call("GET", &path, Some(&other_community), None).await.0, StatusCode::FORBIDDEN);
    let unknown = format!("/api/v1/mandates/{}", Uuid::now_v7());
    assert_eq!(client.call("GET", &unknown, Some(&community), None).await.0, StatusCode::NOT_FOUND);

    // The community accepts: funds posted, active. A retry under the same Idempotency-Key
    // returns the first result; accepting again without it is a business refusal.
    let key = Uuid::now_v7().to_string();
    let accept = |key: Option<String>| {
        let (client, path, community) = (&client, format!("{path}/accept"), community.clone());
        async move {
            let headers: Vec<(&str, &str)> =
                key.iter().map(|key| ("idempotency-key", key.as_str())).collect();
            client.call_with("POST", &path, Some(&community), None, &headers).await
        }
    };
    let (status, accepted) = accept(Some(key.clone())).await;
    assert_eq!((status, accepted["status"].as_str()), (StatusCode::OK, Some("active")));
    let events = |answer: &Value, stream: &str| -> Vec<Value> {
        let events = answer["events"].as_array().unwrap().iter();
        events.filter(|event| event["stream"].as_str().unwrap().starts_with(stream)).cloned().collect()
    };
    let types = event_types(&accepted);
    assert_eq!(types, ["MandateAccepted", "TransferRecorded", "MandateActivated"]);
    let head = client.state.log.head().await.unwrap().position;
    for retry in [key.clone(), format!("\"{key}\"")] {
        let (status, again) = accept(Some(retry)).await;
        assert_eq!((status, again["status"].as_str()), (StatusCode::OK, Some("active")), "{again}");
        // The mandate's events as first appended (the funds' transfer is on the ledger's stream).
        assert_eq!(events(&again, ""), events(&accepted, "mandate-"));
    }
    assert_eq!(client.state.log.head().await.unwrap().position, head, "a retry appends nothing");
    let (status, again) = accept(None).await;
    assert_eq!((status, again["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("refused")));
    let (status, again) = accept(Some("not-a-uuid".into())).await;
    assert_eq!(
        (status, again["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Idempotency-Key: must be a UUID"))
    );
    let contest =
        json!({"grounds": ["caseload_outgrew_funding"], "statement": "Twice the cases"}).to_string();
    // A key already used for another command is refused, naming it (422, as the IETF draft has it).
    let headers = [("idempotency-key", key.as_str())];
    let (status, reused) = client
        .call_with("POST", &format!("{path}/contest"), Some(&community), Some(contest.clone()), &headers)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reused}");
    assert!(reused["message"].as_str().unwrap().starts_with("Idempotency-Key"), "{reused}");
    let (status, contested) =
        client.call("POST", &format!("{path}/contest"), Some(&community), Some(contest)).await;
    assert_eq!((status, contested["status"].as_str()), (StatusCode::OK, Some("contested")));
    let rentals = format!("/api/v1/mandates/{}/accept", demo_id("mandate/SAF-001"));
    assert_eq!(client.call("POST", &rentals, Some(&community), None).await.0, StatusCode::FORBIDDEN);
}

async fn a_mandate_and_its_money_over_http(db: Db) {
    let client = Client::with_demo(&db).await;
    let places = demo::places();
    let district = client.token(Role::District, places.district);
    let department = client.token(Role::Department, places.departments[0].0);
    let street = client.token(Role::StreetOffice, places.streets[0].0);
    let last_street = client.token(Role::StreetOffice, places.streets[2].0);
    let rehabilitation_community = client.token(Role::Community, places.communities[4].0);
    let registration_community = client.token(Role::Community, places.communities[5].0);
    let inspector = client.token(Role::Inspector, places.district);
    let post = |path: String, token: String, body: Value| {
        let client = &client;
        async move { client.call("POST", &path, Some(&token), Some(body.to_string())).await }
    };

    // Budgets: from one's own account only.
    let allocation = json!({"transfer_id": Uuid::now_v7(), "from": places.district, "to": places.streets[0].0, "amount_fen": 50000});
    assert_eq!(
        post("/api/v1/ledger/allocations".into(), district.clone(), allocation).await.0,
        StatusCode::CREATED
    );
    let not_own = json!({"transfer_id": Uuid::now_v7(), "from": places.district, "to": places.communities[0].0, "amount_fen": 1});
    assert_eq!(
        post("/api/v1/ledger/allocations".into(), street.clone(), not_own).await.0,
        StatusCode::FORBIDDEN
    );

    // Contested, cured with funds, back to active; spending once per transfer id.
    let rehabilitation = format!("/api/v1/mandates/{}", demo_id("mandate/SSV-007"));
    let contest = json!({"grounds": ["caseload_outgrew_funding"], "statement": "More cases than funded"});
    assert_eq!(
        post(format!("{rehabilitation}/contest"), rehabilitation_community.clone(), contest).await.0,
        StatusCode::OK
    );
    let (status, cured) =
        post(format!("{rehabilitation}/cure"), department.clone(), json!({"funds_added_fen": 12000})).await;
    assert_eq!((status, cured["status"].as_str()), (StatusCode::OK, Some("active")), "{cured}");
    let review = json!({"outcome": "uphold", "reason": "late"});
    assert_eq!(
        post(format!("{rehabilitation}/review"), district.clone(), review).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let spending = json!({"transfer_id": Uuid::now_v7(), "amount_fen": 6000, "memo": "two home visits"});
    for _ in 0..2 {
        let (status, _) =
            post(format!("{rehabilitation}/spending"), rehabilitation_community.clone(), spending.clone())
                .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, withdrawn) =
        post(format!("{rehabilitation}/withdraw"), department.clone(), json!({"reason": "done elsewhere"}))
            .await;
    assert_eq!((status, withdrawn["status"].as_str()), (StatusCode::OK, Some("withdrawn")));

    // A task that came by phone, recorded and contested by the community.
    let phoned = json!({
        "mandate_id": Uuid::now_v7(), "delegating_unit": places.streets[1].0, "matter_code": "FLP-001",
        "scope": "Register floating residents", "volume": 20, "deadline": "2026-12-31",
        "statement": "Phoned in on Monday, no budget",
    });
    let (status, recorded) =
        post("/api/v1/mandates/outside-process".into(), registration_community.clone(), phoned).await;
    assert_eq!((status, recorded["status"].as_str()), (StatusCode::CREATED, Some("contested")), "{recorded}");
    assert!(!recorded["violations"].as_array().unwrap().is_empty());

    // Reassigned within the street; completed by its community.
    let rentals = format!("/api/v1/mandates/{}", demo_id("mandate/SAF-001"));
    let (status, moved) = post(
        format!("{rentals}/reassign"),
        last_street.clone(),
        json!({"community": places.communities[10].0}),
    )
    .await;
    assert_eq!((status, moved["status"].as_str()), (StatusCode::OK, Some("active")), "{moved}");
    let employment = format!("/api/v1/mandates/{}/complete", demo_id("mandate/EMP-001"));
    let first_community = client.token(Role::Community, places.communities[0].0);
    let (status, done) = client.call("POST", &employment, Some(&first_community), None).await;
    assert_eq!((status, done["status"].as_str()), (StatusCode::OK, Some("completed")));

    // The books: inspectors read them all, a community only its own accounts.
    let (status, books) = client.call("GET", "/api/v1/ledger/balances", Some(&inspector), None).await;
    let text = client.text("/metrics").await;
    assert!(
        text.contains("shequ_http_denied_total 1"),
        "the street's attempt on another account was counted:\n{text}"
    );
    assert!(text.contains("shequ_http_requests_total{status=\"201\"}"), "{text}");
    // The writer's counters: every event this test appended went through a counted batch.
    let counter = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    let (batches, events) = (counter("shequ_log_batches_total"), counter("shequ_log_events_appended_total"));
    let appended = client.state.log.head().await.unwrap().position as f64;
    assert!(batches >= 1.0 && events >= batches, "{batches} batches, {events} events");
    assert_eq!(events, appended, "this process appended the whole log: {text}");
    assert_eq!(counter("shequ_log_failed_batches_total"), 0.0);
    assert!(counter("shequ_log_commit_seconds_total") > 0.0);
    // No proof asked yet, so no Merkle subtrees kept (ADR 0019).
    assert_eq!(counter("shequ_merkle_leaves_kept"), 0.0);
    // The books were read just before: the projection has folded the whole log.
    assert_eq!(counter("shequ_projection_position"), appended, "{text}");
    assert_eq!(status, StatusCode::OK);
    let total: i64 =
        books["balances"].as_array().unwrap().iter().map(|row| row["balance_fen"].as_i64().unwrap()).sum();
    assert_eq!(total, 0, "debits equal credits");
    let own = client.get_ok("/api/v1/ledger/balances", &first_community).await;
    let community = places.communities[0].0.to_string();
    let own = own["balances"].as_array().unwrap();
    assert!(!own.is_empty() && own.len() < books["balances"].as_array().unwrap().len(), "{own:?}");
    for row in own {
        let account = row["account"].as_str().unwrap();
        assert!(books["balances"].as_array().unwrap().contains(row), "{account} is in the books");
        // Funds reserved for a task are shown where the task is carried.
        let carried_here = match account.strip_prefix("reserved:") {
            Some(mandate) => {
                let path = format!("/api/v1/mandates?community={community}&limit=500");
                let (_, here) = client.call("GET", &path, Some(&inspector), None).await;
                here["items"].as_array().unwrap().iter().any(|item| item["mandate"] == mandate)
            }
            None => false,
        };
        assert!(
            account == format!("organisation:{community}")
                || account.ends_with(&format!("@{community}"))
                || carried_here,
            "{account} is the community's own"
        );
    }
}

/// `Expected-Revision`: a command decided on a state the record has left is answered 409
/// naming both revisions, writes nothing, and goes through once sent on the revision read
/// again; two clients deciding on the same revision get one success and one conflict.
/// A server on the demo data set where a street office has proposed EMP-001, funded and
/// admissible, to the first community: the client, the street office's and the community's
/// tokens, the mandate and the proposal as sent.
async fn with_a_proposed_mandate(db: &Db) -> (Client, String, String, Uuid, Value) {
    let client = Client::with_demo(db).await;
    let places = demo::places();
    let street = client.token(Role::StreetOffice, places.streets[0].0);
    let community = client.token(Role::Community, places.communities[0].0);
    let mandate = Uuid::now_v7();
    let body = json!({
        "mandate_id": mandate, "matter_code": "EMP-001", "community": places.communities[0].0,
        "scope": "Unemployment registration assistance", "volume": 5, "deadline": "2026-12-31",
        "funds_offered_fen": 15000, "powers_granted": ["collect-resident-data"],
        "working_conditions": ["service-counter", "information-terminal"],
    });
    let (status, admitted) =
        client.call("POST", "/api/v1/mandates", Some(&street), Some(body.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{admitted}");
    (client, street, community, mandate, body)
}

async fn a_command_on_a_revision_that_moved_on_is_a_conflict(db: Db) {
    let places = demo::places();
    let (client, street, community, mandate, body) = with_a_proposed_mandate(&db).await;
    let path = format!("/api/v1/mandates/{mandate}");
    let revision = |view: &Value| view["revision"].as_u64().unwrap();
    let (_, read) = client.call("GET", &path, Some(&community), None).await;
    let seen = revision(&read);
    let call = |action: &'static str, revision: String, body: Option<Value>| {
        let (client, path, community) = (&client, format!("{path}/{action}"), community.clone());
        async move {
            let headers = [("expected-revision", revision.as_str())];
            client
                .call_with("POST", &path, Some(&community), body.map(|body| body.to_string()), &headers)
                .await
        }
    };

    // A revision the mandate is not at: 409 naming both, nothing written.
    let head = client.state.log.head().await.unwrap().position;
    let (status, conflict) = call("accept", (seen + 3).to_string(), None).await;
    assert_eq!((status, conflict["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{conflict}");
    let message = conflict["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("mandate-{mandate}"))
            && message.contains(&format!("revision {seen},"))
            && message.contains(&format!("expected revision {}", seen + 3)),
        "{message}"
    );
    // A command that takes no revision says so rather than ignore it.
    let headers = [("expected-revision", "0")];
    let another = body.to_string().replace(&mandate.to_string(), &Uuid::now_v7().to_string());
    let (status, refused) =
        client.call_with("POST", "/api/v1/mandates", Some(&street), Some(another), &headers).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused["message"].as_str().unwrap().starts_with("Expected-Revision: this command takes none"));
    let (status, malformed) = call("accept", "latest".into(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{malformed}");
    assert!(malformed["message"].as_str().unwrap().starts_with("Expected-Revision:"), "{malformed}");
    assert_eq!(client.state.log.head().await.unwrap().position, head, "nothing was written");

    // On the revision read, it goes through; the answer carries the revision it left.
    let (status, accepted) = call("accept", seen.to_string(), None).await;
    assert_eq!((status, accepted["status"].as_str()), (StatusCode::OK, Some("active")), "{accepted}");
    let (_, read) = client.call("GET", &path, Some(&community), None).await;
    assert_eq!(revision(&read), seen + 2, "accepted and activated");

    // The revision read before the acceptance is stale now.
    let contest = json!({"grounds": ["caseload_outgrew_funding"], "statement": "Twice the cases"});
    let (status, stale) = call("contest", seen.to_string(), Some(contest.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{stale}");

    // Two clients decide on the same revision at once: one goes through, one is told to read
    // again, and the mandate holds one contest.
    let now = revision(&read).to_string();
    let complete = call("complete", now.clone(), None);
    let contested = call("contest", now.clone(), Some(contest.clone()));
    let ((first, _), (second, _)) = tokio::join!(complete, contested);
    let mut statuses = [first, second];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let (_, read) = client.call("GET", &path, Some(&community), None).await;
    assert_eq!(revision(&read), seen + 3, "one of the two was written");

    // A request's action alike.
    let resident = client.token(Role::Resident, places.communities[0].0);
    let request = Uuid::now_v7();
    let attributes = json!({"household": "2", "floor": "3"});
    let file = json!({"request_id": request, "matter_code": "SSV-012", "channel": "counter", "description": "a dispute", "attributes": attributes});
    let (status, filed) =
        client.call("POST", "/api/v1/requests", Some(&resident), Some(file.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let request_path = format!("/api/v1/requests/{request}/accept");
    let at = |revision: u64| revision.to_string();
    let filed_at = filed["revision"].as_u64().unwrap();
    for (revision, expected) in [(filed_at + 1, StatusCode::CONFLICT), (filed_at, StatusCode::OK)] {
        let headers = [("expected-revision", at(revision))];
        let headers: Vec<(&str, &str)> =
            headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let (status, answer) =
            client.call_with("POST", &request_path, Some(&community), Some("{}".into()), &headers).await;
        assert_eq!(status, expected, "{answer}");
    }
    // Its attributes, which the projection keeps apart from the request's state, come back whole.
    let (status, read) =
        client.call("GET", &format!("/api/v1/requests/{request}"), Some(&resident), None).await;
    assert_eq!(
        (status, &read["status"], &read["attributes"]),
        (StatusCode::OK, &json!("accepted"), &attributes)
    );
}

/// A client that times out and sends its keyed command again while the first attempt still
/// runs gets the first attempt's answer: the two attempts take turns, and the second finds
/// the first's events.
async fn a_command_sent_again_while_it_runs_runs_once(db: Db) {
    let (client, _, community, mandate, _) = with_a_proposed_mandate(&db).await;
    let path = format!("/api/v1/mandates/{mandate}");
    let attempts = |action: &'static str, body: Option<Value>| {
        let key = Uuid::now_v7().to_string();
        let (client, path, community) = (&client, format!("{path}/{action}"), community.clone());
        let attempt = move || {
            let (key, path, community, body) = (key.clone(), path.clone(), community.clone(), body.clone());
            async move {
                let headers = [("idempotency-key", key.as_str())];
                client
                    .call_with("POST", &path, Some(&community), body.map(|body| body.to_string()), &headers)
                    .await
            }
        };
        futures::future::join_all((0..6).map(|_| attempt()))
    };

    let head = client.state.log.head().await.unwrap().position;
    let accepted = attempts("accept", None).await;
    for (status, answer) in &accepted {
        assert_eq!((*status, answer["status"].as_str()), (StatusCode::OK, Some("active")), "{answer}");
    }
    assert!(accepted.iter().any(
        |(_, answer)| event_types(answer) == ["MandateAccepted", "TransferRecorded", "MandateActivated"]
    ));
    assert_eq!(
        client.state.log.head().await.unwrap().position,
        head + 3,
        "accepted, posted and activated once"
    );

    let contest = json!({"grounds": ["caseload_outgrew_funding"], "statement": "Twice the cases"});
    let contested = attempts("contest", Some(contest)).await;
    let (_, first) = &contested[0];
    for (status, answer) in &contested {
        assert_eq!((*status, answer["status"].as_str()), (StatusCode::OK, Some("contested")), "{answer}");
        assert_eq!(answer["events"], first["events"], "every attempt answers with the same events");
    }
    assert_eq!(event_types(first), ["MandateContested"]);
    assert_eq!(client.state.log.head().await.unwrap().position, head + 4, "contested once");
}

fn hash(value: &Value) -> [u8; 32] {
    hex::decode(value.as_str().unwrap()).unwrap().try_into().unwrap()
}

async fn merkle_proofs_verify_as_rfc_9162_says(db: Db) {
    use shequ_store::merkle;
    let (client, places, inspector) = Client::with_demo_inspector(&db).await;
    let size = client.state.log.head().await.unwrap().position;

    let path = format!("/api/v1/audit/proof/inclusion?position=10&tree_size={size}");
    let proof = client.get_ok(&path, &inspector).await;
    // The leaf, recomputed here from the stored row and the documented canonical bytes.
    let event = client.state.log.read_all(10, 1).await.unwrap().remove(0);
    let leaf = merkle::leaf_hash(&shequ_store::canonical::canonical_bytes(&event));
    assert_eq!(hash(&proof["leaf_hash"]), leaf);
    assert_eq!(proof["leaf_index"], 9);
    let audit_path: Vec<[u8; 32]> = proof["audit_path"].as_array().unwrap().iter().map(hash).collect();
    let root = hash(&proof["root_hash"]);
    assert!(merkle::verify_inclusion(9, size, &leaf, &audit_path, &root));
    assert!(!merkle::verify_inclusion(10, size, &leaf, &audit_path, &root));

    let path = format!("/api/v1/audit/proof/consistency?first=50&second={size}");
    let (status, consistency) = client.call("GET", &path, Some(&inspector), None).await;
    assert_eq!(status, StatusCode::OK);
    let proof: Vec<[u8; 32]> = consistency["consistency"].as_array().unwrap().iter().map(hash).collect();
    let (first_root, second_root) =
        (hash(&consistency["first_root_hash"]), hash(&consistency["second_root_hash"]));
    assert_eq!(second_root, root, "one tree, one root");
    assert!(merkle::verify_consistency(50, size, &first_root, &second_root, &proof));

    let community = client.token(Role::Community, places.communities[0].0);
    assert_eq!(
        client
            .call(
                "GET",
                &format!("/api/v1/audit/proof/inclusion?position=1&tree_size={size}"),
                Some(&community),
                None
            )
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let beyond = format!("/api/v1/audit/proof/inclusion?position=1&tree_size={}", size + 1);
    assert_eq!(client.call("GET", &beyond, Some(&inspector), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        client
            .call("GET", "/api/v1/audit/proof/inclusion?position=0&tree_size=5", Some(&inspector), None)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) =
        client.call("GET", "/api/v1/audit/proof/inclusion?position=x", Some(&inspector), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
