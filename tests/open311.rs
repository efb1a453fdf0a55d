//! `/open311/v2`, the Open311 GeoReport v2 face, driven as an Open311 client would: a real
//! server on a real socket, form-encoded posts, JSON and XML answers (the XML parsed with
//! quick-xml), on the demo world, on both backends.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use shequ::demo::{self, DemoOutcome, DemoPlaces};
use shequ_domain::request::RequestStep;
use shequ_http::auth::TokenKeys;
use shequ_http::AppState;
use shequ_policy::Policies;
use shequ_service::{Actor, CommandScope, Role, Service, SystemClock};
use shequ_store::EventLog;
use uuid::Uuid;

use crate::helpers::{tests, Db, TestFn};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    tests![
        services_list_the_catalogue_in_json_and_xml,
        a_service_definition_names_its_attributes,
        a_resident_files_and_follows_a_request,
        a_community_worker_files_on_a_residents_behalf,
        errors_follow_the_spec_in_both_formats,
        a_resident_cannot_see_another_residents_request,
    ]
}

const JSON: &str = "application/json; charset=utf-8";
const XML: &str = "text/xml; charset=utf-8";
/// The fields of a request in `GET requests`, in the spec's order.
const REQUEST_FIELDS: [&str; 17] = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
];

/// shequ serving the demo world on 127.0.0.1, and an HTTP client for it.
struct Server {
    base: String,
    state: AppState,
    places: DemoPlaces,
    client: Client<HttpConnector, Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        assert_eq!(self.content_type, JSON, "{}", self.body);
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("{error}: {}", self.body))
    }

    fn xml(&self) -> Element {
        assert_eq!(self.content_type, XML, "{}", self.body);
        parse_xml(&self.body)
    }

    /// The ids of the requests a JSON list answered with (200), in order.
    fn request_ids(&self) -> Vec<String> {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        let list = self.json();
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["service_request_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The spec's error body, JSON: `[{code, description}]`, the code the HTTP status.
    fn json_error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let body = self.json();
        let errors = body.as_array().unwrap_or_else(|| panic!("an array of errors: {body}"));
        assert!(!errors.is_empty());
        for error in errors {
            assert_eq!(error.as_object().unwrap().len(), 2, "{error}");
            assert_eq!(error["code"], status.as_u16(), "{error}");
        }
        errors.iter().map(|error| error["description"].as_str().unwrap()).collect::<Vec<_>>().join("; ")
    }

    /// The spec's error body, XML: `<errors><error><code/><description/></error></errors>`.
    fn xml_error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let errors = self.xml();
        assert_eq!(errors.name, "errors");
        let error = errors.only("error");
        assert_eq!(error.names(), ["code", "description"]);
        assert_eq!(error.child("code").text, status.as_u16().to_string());
        error.child("description").text.clone()
    }
}

impl Server {
    async fn start(db: &Db) -> Self {
        let log = EventLog::open(&db.url).await.unwrap();
        let policies = Policies::embedded().unwrap();
        let places = match demo::load(&log, &policies).await.unwrap() {
            DemoOutcome::Loaded { places, .. } => places,
            DemoOutcome::AlreadyLoaded { .. } => panic!("a fresh database has no demo"),
        };
        let service = Service::new(log.clone(), policies, Arc::new(SystemClock)).await.unwrap();
        let state = AppState::new(shequ_http::AppParts {
            log,
            service,
            keys: TokenKeys::from_secret(&[7; 32]).unwrap(),
            metrics: shequ_http::metrics::Metrics::new(),
            checkpoint_public_key: "ab".repeat(32).into(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/open311/v2", listener.local_addr().unwrap());
        let app = shequ_http::app(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { base, state, places, client, task }
    }

    fn key(&self, role: Role, organisation: Uuid, subject: &str) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        self.state.keys.issue(role, organisation, subject, now, 3600)
    }

    fn resident(&self, community: usize, subject: &str) -> String {
        self.key(Role::Resident, self.places.communities[community].0, subject)
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let response = self.client.request(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(bytes.to_vec()).expect("UTF-8 everywhere");
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        Reply { status, content_type, body }
    }

    /// GET `path` with `query` pairs (encoded here, as a client does).
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        let query = encode(query);
        let uri = match query.is_empty() {
            true => format!("{}/{path}", self.base),
            false => format!("{}/{path}?{query}", self.base),
        };
        self.send(Request::get(uri).body(Full::default()).unwrap()).await
    }

    /// POST `path` with a form-encoded body, as the spec says.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        let request = Request::post(format!("{}/{path}", self.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8")
            .body(Full::new(Bytes::from(encode(form))))
            .unwrap();
        self.send(request).await
    }

    /// Files a request for `key`'s resident and returns its id.
    async fn file(&self, key: &str, code: &str, description: &str) -> String {
        let reply = self
            .post(
                "requests.json",
                &[
                    ("api_key", key),
                    ("service_code", code),
                    ("address_string", "多福巷 12号"),
                    ("description", description),
                    ("attribute[channel]", "counter"),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.json()[0]["service_request_id"].as_str().unwrap().to_owned()
    }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// An XML element as a client sees it: its name, its text, its child elements.
#[derive(Debug, Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn names(&self) -> Vec<&str> {
        self.children.iter().map(|child| child.name.as_str()).collect()
    }

    fn all(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|child| child.name == name).collect()
    }

    fn child(&self, name: &str) -> &Element {
        match self.all(name).as_slice() {
            [child] => child,
            other => panic!("expected one <{name}> in <{}>, found {}", self.name, other.len()),
        }
    }

    /// The one child, which must be named `name`.
    fn only(&self, name: &str) -> &Element {
        assert_eq!(self.names(), [name], "in <{}>", self.name);
        &self.children[0]
    }
}

/// Parses an XML document with quick-xml, checking its declaration says UTF-8.
fn parse_xml(text: &str) -> Element {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack = vec![Element::default()];
    let mut declared = false;
    loop {
        match reader.read_event().unwrap_or_else(|error| panic!("{error}: {text}")) {
            Event::Decl(declaration) => {
                let encoding = declaration.encoding().expect("an encoding").unwrap();
                assert!(encoding.eq_ignore_ascii_case(b"utf-8"), "{text}");
                declared = true;
            }
            Event::Start(start) => {
                let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
                stack.push(Element { name, ..Element::default() });
            }
            Event::Empty(start) => {
                let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
                stack.last_mut().unwrap().children.push(Element { name, ..Element::default() });
            }
            Event::Text(content) => {
                stack.last_mut().unwrap().text.push_str(&content.xml10_content().unwrap())
            }
            Event::GeneralRef(reference) => {
                let entity = format!("&{};", reference.decode().unwrap());
                stack.last_mut().unwrap().text.push_str(&quick_xml::escape::unescape(&entity).unwrap());
            }
            Event::End(_) => {
                let mut done = stack.pop().unwrap();
                done.text = done.text.trim().to_owned();
                stack.last_mut().unwrap().children.push(done);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(declared, "the root is preceded by the XML declaration: {text}");
    let mut document = stack.pop().unwrap();
    assert_eq!(document.children.len(), 1, "one root element: {text}");
    document.children.pop().unwrap()
}

async fn services_list_the_catalogue_in_json_and_xml(db: Db) {
    let server = Server::start(&db).await;
    // No key: the published catalogue is public, as the spec has it.
    let reply = server.get("services.json", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let services = reply.json();
    let services = services.as_array().unwrap();
    assert_eq!(services.len(), 68);
    let first = &services[0];
    let fields: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected =
        ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"];
    expected.sort_unstable();
    assert_eq!(fields, expected);
    assert_eq!(first["service_code"], "CSE-001");
    assert_eq!(first["metadata"], true);
    assert_eq!(first["type"], "realtime");
    let emp = services.iter().find(|service| service["service_code"] == "EMP-001").unwrap();
    assert_eq!(emp["service_name"], "失业登记协助");
    assert_eq!(emp["description"], "Unemployment registration assistance");
    assert_eq!(emp["group"], "employment");

    let district = server.places.district.to_string();
    let reply = server.get("services.xml", &[("jurisdiction_id", &district)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let root = reply.xml();
    assert_eq!(root.name, "services");
    assert_eq!(root.all("service").len(), 68);
    assert_eq!(root.names().iter().filter(|name| **name != "service").count(), 0);
    let emp = root.all("service").into_iter().find(|service| service.child("service_code").text == "EMP-001");
    let emp = emp.unwrap();
    assert_eq!(
        emp.names(),
        ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]
    );
    assert_eq!(emp.child("service_name").text, "失业登记协助");
    assert_eq!(emp.child("metadata").text, "true");

    // An unknown jurisdiction is a 404 in the spec's format; an empty one is no argument.
    let reply = server.get("services.json", &[("jurisdiction_id", "sfgov.org")]).await;
    assert!(reply.json_error(StatusCode::NOT_FOUND).contains("jurisdiction_id"));
    assert_eq!(server.get("services.json", &[("jurisdiction_id", "")]).await.status, StatusCode::OK);
}

async fn a_service_definition_names_its_attributes(db: Db) {
    let server = Server::start(&db).await;
    let reply = server.get("services/SSV-011.json", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let definition = reply.json();
    assert_eq!(definition["service_code"], "SSV-011");
    let attributes = definition["attributes"].as_array().unwrap();
    assert_eq!(attributes.len(), 2);
    let channel = &attributes[0];
    assert_eq!(
        (&channel["code"], &channel["variable"], &channel["required"], &channel["order"]),
        (&Value::from("channel"), &Value::from(true), &Value::from(true), &Value::from(1))
    );
    assert_eq!(channel["datatype"], "singlevaluelist");
    let keys: Vec<&str> =
        channel["values"].as_array().unwrap().iter().map(|value| value["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["counter", "phone", "web", "hotline", "call_assistance"]);
    assert!(channel["description"].as_str().unwrap().contains("plan:4.3-E4"));
    let level = &attributes[1];
    assert_eq!((&level["variable"], &level["order"]), (&Value::from(false), &Value::from(2)));
    assert!(level["description"].as_str().unwrap().contains("within 1 day"), "{level}");
    assert!(level["datatype_description"].is_null());

    let root = server.get("services/SSV-011.xml", &[]).await.xml();
    assert_eq!(root.name, "service_definition");
    assert_eq!(root.names(), ["service_code", "attributes"]);
    let attributes = root.child("attributes");
    assert_eq!(attributes.names(), ["attribute", "attribute"]);
    let channel = &attributes.children[0];
    assert_eq!(
        channel.names(),
        [
            "variable",
            "code",
            "datatype",
            "required",
            "datatype_description",
            "order",
            "description",
            "values"
        ]
    );
    let values = channel.child("values").all("value");
    assert_eq!(values.len(), 5);
    assert_eq!(values[4].names(), ["key", "name"]);
    assert_eq!(values[4].child("key").text, "call_assistance");

    let reply = server.get("services/XXX-999.json", &[]).await;
    assert!(reply.json_error(StatusCode::NOT_FOUND).contains("service_code XXX-999 not found"));
    let reply = server.get("services/XXX-999.xml", &[]).await;
    assert!(reply.xml_error(StatusCode::NOT_FOUND).contains("XXX-999"));
}

async fn a_resident_files_and_follows_a_request(db: Db) {
    let server = Server::start(&db).await;
    let station = server.places.communities[0].0;
    let key = server.resident(0, "resident-li");
    let before = chrono::Utc::now() - chrono::Duration::seconds(2);
    let reply = server
        .post(
            "requests.json",
            &[
                ("api_key", &key),
                ("service_code", "EMP-001"),
                ("lat", "39.915"),
                ("long", "116.404"),
                ("address_string", "多福巷 12号 & 院"),
                ("email", "li@example.invalid"),
                ("device_id", "tt222111"),
                ("description", "Registering as unemployed <since May>"),
                ("attribute[channel]", "web"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let created = reply.json();
    let created = created.as_array().unwrap();
    assert_eq!(created.len(), 1);
    let fields: Vec<&str> = created[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["account_id", "service_notice", "service_request_id"]);
    assert_eq!(created[0]["account_id"], "resident-li");
    assert!(created[0]["service_notice"].as_str().unwrap().contains("plan:3.4.2-R4"), "{}", created[0]);
    let id = created[0]["service_request_id"].as_str().unwrap().to_owned();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    // The request, by id, in JSON and XML.
    let auth = [("api_key", key.as_str())];
    let reply = server.get(&format!("requests/{id}.json"), &auth).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    let request = &body.as_array().unwrap()[0];
    let mut expected = REQUEST_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(request.as_object().unwrap().keys().map(String::as_str).collect::<Vec<_>>(), expected);
    assert_eq!(request["service_request_id"], id.as_str());
    assert_eq!(request["status"], "open");
    assert_eq!(request["service_code"], "EMP-001");
    assert_eq!(request["service_name"], "失业登记协助");
    assert_eq!(request["description"], "Registering as unemployed <since May>");
    assert_eq!(request["agency_responsible"], server.places.communities[0].2.as_str());
    assert_eq!(request["address"], "多福巷 12号 & 院");
    assert_eq!((request["lat"].as_f64(), request["long"].as_f64()), (Some(39.915), Some(116.404)));
    assert!(
        request["zipcode"].is_null() && request["media_url"].is_null() && request["address_id"].is_null()
    );
    let requested = request["requested_datetime"].as_str().unwrap();
    assert!(requested.ends_with('Z') && requested.len() == 20, "{requested}");
    let requested = chrono::DateTime::parse_from_rfc3339(requested).unwrap();
    assert!(requested >= before && requested <= chrono::Utc::now());
    let expected_by = (chrono::Utc::now().date_naive() + chrono::Duration::days(5)).to_string();
    assert_eq!(request["expected_datetime"], format!("{expected_by}T23:59:59Z"));
    let notes = request["status_notes"].as_str().unwrap();
    assert!(notes.contains(" received") && notes.contains(" routed: the community holds"), "{notes}");

    let root = server.get(&format!("requests/{id}.xml"), &auth).await.xml();
    assert_eq!(root.name, "service_requests");
    let request = root.only("request");
    assert_eq!(request.names(), REQUEST_FIELDS);
    assert_eq!(request.child("service_request_id").text, id);
    assert_eq!(request.child("status").text, "open");
    assert_eq!(request.child("description").text, "Registering as unemployed <since May>");
    assert_eq!(request.child("address").text, "多福巷 12号 & 院");
    assert_eq!(request.child("lat").text, "39.915");
    assert_eq!(request.child("zipcode").text, "");

    // The token is the request's id.
    let reply = server.get(&format!("tokens/{id}.json"), &auth).await;
    assert_eq!(reply.status, StatusCode::OK);
    let tokens = reply.json();
    assert_eq!(tokens[0]["service_request_id"], id.as_str());
    assert_eq!(tokens[0]["token"], id.as_str());
    let root = server.get(&format!("tokens/{id}.xml"), &auth).await.xml();
    assert_eq!(root.name, "service_requests");
    assert_eq!(root.only("request").names(), ["service_request_id", "token"]);
    let unknown = server.get(&format!("tokens/{}.json", Uuid::now_v7()), &auth).await;
    assert!(unknown.json_error(StatusCode::NOT_FOUND).contains("token"));

    // The list, narrowed by code, status and dates; a bearer header serves as the key too.
    let other = server.file(&key, "SSV-012", "Help my neighbour").await;
    let list = |query: Vec<(&'static str, String)>| {
        let server = &server;
        let key = key.clone();
        async move {
            let mut pairs: Vec<(&str, &str)> =
                query.iter().map(|(name, value)| (*name, value.as_str())).collect();
            pairs.push(("api_key", &key));
            server.get("requests.json", &pairs).await.request_ids()
        }
    };
    assert_eq!(list(vec![]).await, [id.clone(), other.clone()]);
    assert_eq!(list(vec![("service_code", "EMP-001".into())]).await, [id.as_str()]);
    assert_eq!(list(vec![("service_code", "SSV-012,EMP-001".into())]).await, [id.clone(), other.clone()]);
    assert_eq!(list(vec![("status", "open".into())]).await, [id.clone(), other.clone()]);
    assert!(list(vec![("status", "closed".into())]).await.is_empty());
    let at = |offset: i64| (chrono::Utc::now() + chrono::Duration::minutes(offset)).to_rfc3339();
    assert_eq!(list(vec![("start_date", at(-60)), ("end_date", at(60))]).await.len(), 2);
    assert!(list(vec![("start_date", at(-600)), ("end_date", at(-60))]).await.is_empty());
    assert!(list(vec![("start_date", at(60))]).await.is_empty());
    assert_eq!(
        list(vec![("service_request_id", format!("{other}, {id}"))]).await,
        [other.clone(), id.clone()]
    );
    let bearer = Request::get(format!("{}/requests.xml?status=open", server.base))
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Full::default())
        .unwrap();
    let root = server.send(bearer).await.xml();
    assert_eq!(root.name, "service_requests");
    assert_eq!(root.all("request").len(), 2);

    // The richer statuses map to open and closed; the history is in status_notes.
    let worker = Actor { role: Role::Community, organisation: station };
    let service = &server.state.service;
    let id_uuid = Uuid::parse_str(&id).unwrap();
    let step = |action: RequestStep| async move {
        service.act_on_request(&CommandScope::new(worker), "worker-wang", id_uuid, action).await.unwrap()
    };
    step(RequestStep::Accept { note: "taken".into() }).await;
    step(RequestStep::Start { note: "visiting".into() }).await;
    assert_eq!(list(vec![("status", "open".into())]).await, [id.clone(), other.clone()]);
    step(RequestStep::Resolve { note: "registered".into() }).await;
    assert_eq!(list(vec![("status", "closed".into())]).await, [id.as_str()]);
    assert_eq!(list(vec![("status", "open".into())]).await, [other.as_str()]);
    assert_eq!(list(vec![("status", "open,closed".into())]).await.len(), 2);
    let body = server.get(&format!("requests/{id}.json"), &auth).await.json();
    assert_eq!(body[0]["status"], "closed");
    let notes: Vec<&str> = body[0]["status_notes"].as_str().unwrap().lines().collect();
    assert_eq!(notes.len(), 5, "{notes:?}");
    assert!(
        notes[2].ends_with(" accepted: taken") && notes[4].ends_with(" resolved: registered"),
        "{notes:?}"
    );
    assert!(body[0]["updated_datetime"].as_str().unwrap() >= body[0]["requested_datetime"].as_str().unwrap());

    // XML out of a post, too; and a retry with the client's own id returns the first request.
    let mine = Uuid::now_v7().to_string();
    let form = [
        ("api_key", key.as_str()),
        ("service_code", "SSV-012"),
        ("address_id", "DFX-12"),
        ("description", "Help with shopping"),
        ("attribute[channel]", "phone"),
        ("service_request_id", mine.as_str()),
    ];
    let root = server.post("requests.xml", &form).await.xml();
    assert_eq!(root.name, "service_requests");
    let created = root.only("request");
    assert_eq!(created.names(), ["service_request_id", "service_notice", "account_id"]);
    assert_eq!(created.child("service_request_id").text, mine);
    let again = server.post("requests.json", &form).await;
    assert_eq!(again.json()[0]["service_request_id"], mine.as_str());
    let body = server.get(&format!("requests/{mine}.json"), &auth).await.json();
    assert_eq!((&body[0]["address_id"], &body[0]["address"]), (&Value::from("DFX-12"), &Value::Null));
    let mut changed = form;
    changed[3] = ("description", "Something else");
    let reply = server.post("requests.json", &changed).await;
    assert!(reply.json_error(StatusCode::BAD_REQUEST).contains("is taken"));
}

async fn a_community_worker_files_on_a_residents_behalf(db: Db) {
    let server = Server::start(&db).await;
    let worker = server.key(Role::Community, server.places.communities[1].0, "worker-zhao");
    let form = |names: bool| {
        let mut form = vec![
            ("api_key", worker.as_str()),
            ("service_code", "SSV-011"),
            ("address_string", "韶九社区 3号楼"),
            ("description", "Fell at home, cannot get up"),
            ("attribute[channel]", "call_assistance"),
        ];
        if names {
            form.extend([("first_name", "秀英"), ("last_name", "王")]);
        }
        form
    };
    let reply = server.post("requests.json", &form(false)).await;
    assert!(reply.json_error(StatusCode::BAD_REQUEST).contains("first_name, last_name"));
    let reply = server.post("requests.json", &form(true)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let created = reply.json();
    assert!(created[0]["account_id"].is_null());
    let id = Uuid::parse_str(created[0]["service_request_id"].as_str().unwrap()).unwrap();
    let view = server.state.service.read_model().read().await.unwrap().request(id).unwrap();
    assert_eq!(view.resident, "秀英 王");
    assert!(view.priority, "call assistance comes first (plan:4.3-E4)");
    // The station's worker sees it; SSV-011 is the civil affairs bureau's, the station its agent.
    let body = server.get(&format!("requests/{id}.json"), &[("api_key", &worker)]).await.json();
    assert_eq!(body[0]["status"], "open");
    assert!(body[0]["service_notice"].as_str().unwrap().contains("plan:3.2.2-ST"), "{body}");
}

/// A valid filing of `code`, with `key` as its api_key when given.
fn filing<'a>(key: Option<&'a str>, code: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("service_code", code),
        ("lat", "39.915"),
        ("long", "116.404"),
        ("description", "Registering as unemployed"),
        ("attribute[channel]", "web"),
    ];
    if let Some(key) = key {
        form.insert(0, ("api_key", key));
    }
    form
}

/// `form` without the parameter `name`.
fn without<'a>(form: &[(&'a str, &'a str)], name: &str) -> Vec<(&'a str, &'a str)> {
    form.iter().copied().filter(|(key, _)| *key != name).collect()
}

async fn errors_follow_the_spec_in_both_formats(db: Db) {
    let server = Server::start(&db).await;
    let key = server.resident(0, "resident-li");
    let key = key.as_str();
    let valid = filing(Some(key), "EMP-001");

    // 403 for a missing or invalid key, in JSON and in XML.
    let reply = server.post("requests.json", &filing(None, "EMP-001")).await;
    assert!(reply.json_error(StatusCode::FORBIDDEN).contains("api_key was not provided"));
    let reply = server.post("requests.xml", &filing(None, "EMP-001")).await;
    assert!(reply.xml_error(StatusCode::FORBIDDEN).contains("create_request"));
    let reply = server.post("requests.json", &filing(Some("forged"), "EMP-001")).await;
    assert!(reply.json_error(StatusCode::FORBIDDEN).starts_with("Invalid api_key received"));
    let reply = server.get("requests.json", &[]).await;
    assert!(reply.json_error(StatusCode::FORBIDDEN).contains("get_service_requests"));
    server.get(&format!("tokens/{}.xml", Uuid::now_v7()), &[]).await.xml_error(StatusCode::FORBIDDEN);
    // A key whose role does not file at a station.
    let street = server.key(Role::StreetOffice, server.places.streets[0].0, "clerk");
    let reply = server.post("requests.json", &filing(Some(&street), "EMP-001")).await;
    assert!(reply.json_error(StatusCode::FORBIDDEN).contains("street_office"));

    // 404 for what does not exist: a service code, a request, a jurisdiction, a format, a path.
    let reply = server.post("requests.json", &filing(Some(key), "XXX-999")).await;
    let description = reply.json_error(StatusCode::NOT_FOUND);
    assert!(
        description.contains("service_code XXX-999") && description.contains("plan:5.1-C"),
        "{description}"
    );
    let reply = server.get(&format!("requests/{}.json", Uuid::now_v7()), &[("api_key", key)]).await;
    reply.json_error(StatusCode::NOT_FOUND);
    let reply = server.get("requests/not-an-id.xml", &[("api_key", key)]).await;
    reply.xml_error(StatusCode::NOT_FOUND);
    let elsewhere = Uuid::now_v7().to_string();
    let reply = server.get("requests.json", &[("api_key", key), ("jurisdiction_id", &elsewhere)]).await;
    assert!(reply.json_error(StatusCode::NOT_FOUND).contains("jurisdiction_id"));
    let district = server.places.district.to_string();
    let reply = server.get("requests.json", &[("api_key", key), ("jurisdiction_id", &district)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.get("services.html", &[]).await.xml_error(StatusCode::NOT_FOUND);
    server.get("services", &[]).await.xml_error(StatusCode::NOT_FOUND);
    server.get("services/EMP-001.csv", &[]).await.xml_error(StatusCode::NOT_FOUND);
    server.get("requests.yaml", &[("api_key", key)]).await.xml_error(StatusCode::NOT_FOUND);
    server.get("discovery.json", &[]).await.json_error(StatusCode::NOT_FOUND);
    server.get("no/such/thing.json", &[]).await.json_error(StatusCode::NOT_FOUND);
    let delete = Request::builder()
        .method(Method::DELETE)
        .uri(format!("{}/services.xml", server.base))
        .body(Full::default())
        .unwrap();
    server.send(delete).await.xml_error(StatusCode::METHOD_NOT_ALLOWED);
    server.post("services.json", &[]).await.json_error(StatusCode::METHOD_NOT_ALLOWED);

    // 400 naming the field: a missing code, location, channel; bad attributes; a bad body.
    let reply = server.post("requests.json", &without(&valid, "service_code")).await;
    assert!(reply.json_error(StatusCode::BAD_REQUEST).contains("service_code was not provided"));
    let reply = server.post("requests.xml", &without(&without(&valid, "lat"), "long")).await;
    assert!(reply.xml_error(StatusCode::BAD_REQUEST).starts_with("location:"));
    let reply = server.post("requests.json", &without(&valid, "long")).await;
    assert!(reply.json_error(StatusCode::BAD_REQUEST).starts_with("lat, long"));
    for lat in ["91", "NaN", "north"] {
        let mut far = valid.clone();
        far[2] = ("lat", lat);
        assert!(server
            .post("requests.json", &far)
            .await
            .json_error(StatusCode::BAD_REQUEST)
            .starts_with("lat:"));
    }
    let reply = server.post("requests.json", &without(&valid, "attribute[channel]")).await;
    assert!(reply.json_error(StatusCode::BAD_REQUEST).contains("attribute[channel] is required"));
    let reply = server.post("requests.json", &without(&valid, "description")).await;
    assert!(reply.json_error(StatusCode::BAD_REQUEST).starts_with("description:"));
    let mut odd = valid.clone();
    odd.push(("attribute[colour]", "red"));
    odd[5] = ("attribute[channel]", "pigeon");
    let description = server.post("requests.json", &odd).await.json_error(StatusCode::BAD_REQUEST);
    assert!(description.contains("attribute[colour]") && description.contains("pigeon"), "{description}");
    let mut bad_id = valid.clone();
    bad_id.push(("service_request_id", "42"));
    let description = server.post("requests.json", &bad_id).await.json_error(StatusCode::BAD_REQUEST);
    assert!(description.starts_with("service_request_id:"), "{description}");
    let json_body = Request::post(format!("{}/requests.json", server.base))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(format!(r#"{{"api_key":"{key}","service_code":"EMP-001"}}"#))))
        .unwrap();
    assert!(server.send(json_body).await.json_error(StatusCode::BAD_REQUEST).starts_with("Content-Type"));
    let huge = "x".repeat(shequ_http::BODY_BYTES_MAX + 1);
    let mut oversized = valid.clone();
    oversized[4] = ("description", &huge);
    server.post("requests.json", &oversized).await.json_error(StatusCode::PAYLOAD_TOO_LARGE);

    // 400 for bad query arguments, naming them.
    for (pairs, start) in [
        (vec![("start_date", "yesterday")], "start_date:"),
        (vec![("end_date", "2026-01-01")], "end_date:"),
        (
            vec![("start_date", "2026-01-01T00:00:00Z"), ("end_date", "2026-06-01T00:00:00+08:00")],
            "start_date, end_date",
        ),
        (vec![("start_date", "2026-02-01T00:00:00Z"), ("end_date", "2026-01-01T00:00:00Z")], "end_date:"),
        (vec![("status", "pending")], "status:"),
        (vec![("service_request_id", "1,2")], "service_request_id:"),
    ] {
        let mut pairs = pairs;
        pairs.push(("api_key", key));
        let description = server.get("requests.json", &pairs).await.json_error(StatusCode::BAD_REQUEST);
        assert!(description.starts_with(start), "{pairs:?}: {description}");
    }
}

async fn a_resident_cannot_see_another_residents_request(db: Db) {
    let server = Server::start(&db).await;
    let li = server.resident(0, "resident-li");
    let zhang = server.resident(0, "resident-zhang");
    let lis = server.file(&li, "EMP-001", "Registering as unemployed").await;
    let zhangs = server.file(&zhang, "SSV-012", "Help my neighbour").await;

    let reply = server.get(&format!("requests/{lis}.json"), &[("api_key", &zhang)]).await;
    assert!(reply.json_error(StatusCode::FORBIDDEN).contains("resident may not read.request"));
    let reply = server.get(&format!("requests/{lis}.xml"), &[("api_key", &zhang)]).await;
    reply.xml_error(StatusCode::FORBIDDEN);
    server.get(&format!("tokens/{lis}.json"), &[("api_key", &zhang)]).await.json_error(StatusCode::FORBIDDEN);
    assert_eq!(server.get("requests.json", &[("api_key", &zhang)]).await.request_ids(), [zhangs.as_str()]);
    let both = format!("{lis},{zhangs}");
    let asked = [("api_key", zhang.as_str()), ("service_request_id", both.as_str())];
    assert_eq!(server.get("requests.json", &asked).await.request_ids(), [zhangs.as_str()]);
    assert_eq!(server.get("requests.json", &[("api_key", &li)]).await.request_ids(), [lis.as_str()]);
    // A resident of another community neither; the station's worker and the inspector see both.
    let elsewhere = server.resident(5, "resident-li");
    assert!(server.get("requests.json", &[("api_key", &elsewhere)]).await.request_ids().is_empty());
    let worker = server.key(Role::Community, server.places.communities[0].0, "worker");
    assert_eq!(
        server.get("requests.json", &[("api_key", &worker)]).await.request_ids(),
        [lis.clone(), zhangs.clone()]
    );
    let inspector = server.key(Role::Inspector, server.places.district, "inspector");
    assert_eq!(server.get("requests.json", &[("api_key", &inspector)]).await.request_ids(), [lis, zhangs]);
}
