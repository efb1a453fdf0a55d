//! `/open311/v2`: the Open311 GeoReport v2 face of shequ's service requests, so that an
//! existing Open311 client files and follows requests unchanged. The spec is
//! `open311-georeport-v2.md` in the shared reference; `docs/open311.md` says how shequ reads
//! it. In short:
//!
//! - Every resource is `name.xml` or `name.json`; another suffix is a 404 in the spec's error
//!   format. XML is the spec's own format; JSON follows its Spark convention.
//! - `services.{fmt}` and `services/{code}.{fmt}` describe the published catalogue
//!   (`plan:5.1-C`) and need no key, as the spec says: the catalogue is public by nature.
//! - `requests`, `requests/{id}` and `tokens/{id}` need a key: `api_key` is a shequ bearer
//!   token (also accepted as `Authorization: Bearer`). A missing or invalid key is 403, as the
//!   spec says (not the 401 of `/api/v1`). What a key sees follows `policies/authz` exactly as
//!   in `/api/v1`: a resident files at their own community and sees only their own requests.
//! - `jurisdiction_id` is the district's id. It is optional; given with a key it must be the
//!   key's district, given to a public endpoint it must be a registered district, else 404.
//! - A request is filed synchronously (`type` `realtime`); its token is its id.
//! - Errors: `[{code, description}]` / `<errors><error>…`, the body's code equal to the HTTP
//!   status: 400 for bad input (naming the field), 403 for the key or the place, 404 for what
//!   does not exist, 413 for an oversized body, 500 only for an internal failure.
//!
//! Where shequ departs from the spec (keys on the request endpoints, a required description,
//! 500 for internal failures, an optional client-chosen `service_request_id` for retries), and
//! why, is listed at the end of `docs/open311.md`.

mod wire;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use shequ_domain::catalogue::Matter;
use shequ_domain::request::{Channel, RequestStatus};
use shequ_service::projection::RequestView;
use shequ_service::{FileRequest, RequestFilter, Role, ServiceError};
use shequ_store::StoreError;
use uuid::Uuid;

use crate::auth::Claims;
use crate::AppState;
pub use wire::{Document, Format, Node, Problem};

/// The most requests one `GET requests` answers, as the spec's default limit.
pub const REQUESTS_MAX: usize = 1_000;
/// The longest span of a `GET requests` date range, and its default, in days.
pub const WINDOW_DAYS: i64 = 90;
/// Requests read from the service per page while filtering a `GET requests`.
const PAGE_REQUESTS: usize = 1_000;
/// The attribute that carries how the request reached the station.
const CHANNEL: &str = "channel";
/// The informational attribute that states the matter's service level.
const SERVICE_LEVEL: &str = "service_level";
/// Where a filed `address_id` is kept among the request's attributes.
const ADDRESS_ID: &str = "address_id";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{file}", get(get_top).post(post_top).fallback(method_not_allowed))
        .route("/services/{file}", get(get_service_definition).fallback(method_not_allowed))
        .route("/requests/{file}", get(get_request).fallback(method_not_allowed))
        .route("/tokens/{file}", get(get_token).fallback(method_not_allowed))
        .fallback(not_found)
}

// ----- Routing by file name -------------------------------------------------------------------

fn respond(format: Format, result: Result<Document, Problem>) -> Response {
    match result {
        Ok(document) => document.render(format, StatusCode::OK),
        Err(problem) => problem.render(format),
    }
}

fn no_such_resource(what: &str) -> Problem {
    Problem::not_found(format!(
        "{what} not found: the resources are services, services/{{service_code}}, requests, \
         requests/{{service_request_id}} and tokens/{{token}}, each as .xml or .json"
    ))
}

async fn not_found(uri: Uri) -> Response {
    no_such_resource(uri.path()).render(Format::guess(uri.path()))
}

async fn method_not_allowed(uri: Uri) -> Response {
    let problem = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take this method: only requests.{{fmt}} takes POST, all take GET", uri.path()),
    );
    problem.render(Format::guess(uri.path()))
}

/// `services.{fmt}` and `requests.{fmt}`.
async fn get_top(
    State(state): State<AppState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((name, format)) = Format::split(&file) else {
        return no_such_resource(&file).render(Format::guess(&file));
    };
    let params = Params::from_query(query.as_deref());
    let result = match name {
        "services" => services(&state, &params).await,
        "requests" => list_requests(&state, &params, &headers).await,
        _ => Err(no_such_resource(&file)),
    };
    respond(format, result)
}

/// `POST requests.{fmt}`.
async fn post_top(
    State(state): State<AppState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some((name, format)) = Format::split(&file) else {
        return no_such_resource(&file).render(Format::guess(&file));
    };
    let result = match name {
        "requests" => match Params::from_form(&headers, body) {
            Ok(form) => {
                create_request(&state, &form.with(Params::from_query(query.as_deref())), &headers).await
            }
            Err(problem) => Err(problem),
        },
        "services" => Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{file} does not take POST: only requests.{{fmt}} does"),
        )),
        _ => Err(no_such_resource(&file)),
    };
    respond(format, result)
}

async fn get_service_definition(
    State(state): State<AppState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((code, format)) = Format::split(&file) else {
        return no_such_resource(&format!("services/{file}")).render(Format::guess(&file));
    };
    respond(format, service_definition(&state, code, &Params::from_query(query.as_deref())).await)
}

async fn get_request(
    State(state): State<AppState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((id, format)) = Format::split(&file) else {
        return no_such_resource(&format!("requests/{file}")).render(Format::guess(&file));
    };
    respond(format, one_request(&state, id, &Params::from_query(query.as_deref()), &headers).await)
}

async fn get_token(
    State(state): State<AppState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((token, format)) = Format::split(&file) else {
        return no_such_resource(&format!("tokens/{file}")).render(Format::guess(&file));
    };
    respond(format, request_from_token(&state, token, &Params::from_query(query.as_deref()), &headers).await)
}

// ----- Parameters ---------------------------------------------------------------------------

/// Form or query parameters, in the order sent. An empty value counts as not sent (the spec's
/// "Optional Arguments").
#[derive(Debug, Default)]
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(bytes: &[u8]) -> Self {
        Self { pairs: form_urlencoded::parse(bytes).into_owned().collect() }
    }

    fn from_query(query: Option<&str>) -> Self {
        Self::parse(query.unwrap_or_default().as_bytes())
    }

    /// A POST body: `application/x-www-form-urlencoded`, as the spec says.
    fn from_form(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Self, Problem> {
        let body = body.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", crate::BODY_BYTES_MAX),
            ),
            _ => Problem::bad_request(format!("the body could not be read: {}", rejection.body_text())),
        })?;
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        let is_form = content_type.is_none_or(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        });
        if !body.is_empty() && !is_form {
            return Err(Problem::bad_request(
                "Content-Type: a request is posted as application/x-www-form-urlencoded",
            ));
        }
        Ok(Self::parse(&body))
    }

    /// These parameters, then `other`'s.
    fn with(mut self, other: Params) -> Self {
        self.pairs.extend(other.pairs);
        self
    }

    /// The one value of `name`, trimmed; sent twice with different values is a 400.
    fn get<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, Problem> {
        let mut found: Option<&str> = None;
        for value in self.values(name) {
            match found {
                None => found = Some(value),
                Some(first) if first == value => {}
                Some(_) => {
                    return Err(Problem::bad_request(format!("{name}: sent twice with different values")))
                }
            }
        }
        Ok(found)
    }

    /// Every non-empty value of `name`, trimmed.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// A comma-delimited list, which may also be declared several times.
    fn list<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        self.values(name)
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect()
    }
}

/// The caller, from `api_key` or `Authorization: Bearer`; 403 without a valid one.
fn authenticate(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
    operation: &str,
) -> Result<Claims, Problem> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(crate::auth::bearer_token);
    let Some(key) = params.get("api_key")?.or(header) else {
        return Err(Problem::forbidden(format!(
            "api_key was not provided -- can't proceed with {operation}"
        )));
    };
    state.keys.verify(key).map_err(|error| {
        Problem::forbidden(format!("Invalid api_key received -- can't proceed with {operation}: {error}"))
    })
}

/// Checks `jurisdiction_id` when it is given: the caller's district, or for an endpoint
/// without a key, any registered district.
async fn check_jurisdiction(
    state: &AppState,
    params: &Params,
    caller: Option<&Claims>,
) -> Result<(), Problem> {
    let Some(given) = params.get("jurisdiction_id")? else { return Ok(()) };
    let id = Uuid::parse_str(given).ok();
    let projection = state.service.read_model().read().await.map_err(service_problem)?;
    let known = match (id, caller) {
        (Some(id), Some(claims)) => projection.district_of(claims.org) == Some(id),
        (Some(id), None) => projection
            .organisation(id)
            .is_some_and(|view| view.kind == shequ_domain::organisation::OrganisationKind::District),
        (None, _) => false,
    };
    match known {
        true => Ok(()),
        false => Err(Problem::not_found(match caller {
            Some(_) => {
                format!("jurisdiction_id {given} not found: the api_key's jurisdiction is its district's id")
            }
            None => format!("jurisdiction_id {given} not found: a jurisdiction is a district's id"),
        })),
    }
}

/// Maps the command path's errors onto the spec's codes.
fn service_problem(error: ServiceError) -> Problem {
    match error {
        ServiceError::Forbidden(reason) => Problem::forbidden(format!("forbidden: {reason}")),
        ServiceError::NotFound(what) => Problem::not_found(format!("{what} not found")),
        ServiceError::Invalid(message) | ServiceError::KeyReused(message) => Problem::bad_request(message),
        ServiceError::Refused(violations) => Problem {
            status: StatusCode::BAD_REQUEST,
            descriptions: violations
                .iter()
                .map(|violation| {
                    format!(
                        "refused ({}, {}): {}: {}",
                        violation.rule, violation.clause, violation.message, violation.detail
                    )
                })
                .collect(),
        },
        ServiceError::Store(StoreError::Conflict { .. } | StoreError::Unfounded { .. }) => {
            Problem::bad_request("the request changed meanwhile; send it again")
        }
        ServiceError::Store(StoreError::InvalidAppend(message) | StoreError::InvalidRequest(message)) => {
            Problem::bad_request(message)
        }
        error @ (ServiceError::Organisation(_)
        | ServiceError::Request(_)
        | ServiceError::Catalogue(_)
        | ServiceError::Mandate(_)
        | ServiceError::Ledger(_)) => Problem::bad_request(error.to_string()),
        error @ (ServiceError::Policy(_) | ServiceError::Projection(_) | ServiceError::Store(_)) => {
            // Logged once here, shown to nobody: it may carry internals.
            tracing::error!(%error, "internal error behind /open311/v2");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; it has been logged")
        }
    }
}

// ----- Services -----------------------------------------------------------------------------

async fn services(state: &AppState, params: &Params) -> Result<Document, Problem> {
    check_jurisdiction(state, params, None).await?;
    let (_, matters) = state.service.catalogue().await.map_err(service_problem)?;
    Ok(Document::list("services", "service", matters.values().map(service_node).collect()))
}

fn service_node(matter: &Matter) -> Node {
    let group = serde_json::to_value(matter.category)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    Node::Record(vec![
        ("service_code", Node::text(matter.code.clone())),
        ("service_name", Node::text(matter.name.clone())),
        ("description", Node::text(matter.name_en.clone())),
        // Every service has the `channel` attribute.
        ("metadata", Node::Bool(true)),
        ("type", Node::text("realtime")),
        ("keywords", Node::text(keywords(matter))),
        ("group", Node::text(group)),
    ])
}

fn keywords(matter: &Matter) -> String {
    std::iter::once(matter.name_en.as_str())
        .chain(matter.priority_groups.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One attribute of a service definition.
struct AttributeDefinition {
    code: &'static str,
    variable: bool,
    datatype: &'static str,
    required: bool,
    datatype_description: Option<String>,
    description: String,
    values: Vec<(&'static str, &'static str)>,
}

/// The channels a request reaches the station by: `(key, name)`.
const CHANNELS: [(&str, &str); 5] = [
    ("counter", "At the service counter of the community service station"),
    ("phone", "By telephone to the station"),
    ("web", "Online (web or app)"),
    ("hotline", "Through the government hotline"),
    ("call_assistance", "The call-assistance line for elderly and disabled residents (priority)"),
];

fn channel(key: &str) -> Option<Channel> {
    match key {
        "counter" => Some(Channel::Counter),
        "phone" => Some(Channel::Phone),
        "web" => Some(Channel::Web),
        "hotline" => Some(Channel::Hotline),
        "call_assistance" => Some(Channel::CallAssistance),
        _ => None,
    }
}

/// The attributes every matter's definition has, in order.
fn attributes(matter: &Matter) -> Vec<AttributeDefinition> {
    let days = match matter.sla_days {
        1 => "1 day".to_owned(),
        days => format!("{days} days"),
    };
    vec![
        AttributeDefinition {
            code: CHANNEL,
            variable: true,
            datatype: "singlevaluelist",
            required: true,
            datatype_description: Some("One of the listed keys".into()),
            description: "How did the request reach the community service station? Requests on the \
                          call-assistance line for elderly and disabled residents are handled first \
                          (plan:4.3-E4)."
                .into(),
            values: CHANNELS.to_vec(),
        },
        AttributeDefinition {
            code: SERVICE_LEVEL,
            variable: false,
            datatype: "text",
            required: false,
            datatype_description: None,
            description: format!(
                "To be handled within {days} of filing. Legal basis: {}.",
                matter.legal_basis.trim_end_matches('.')
            ),
            values: Vec::new(),
        },
    ]
}

async fn service_definition(state: &AppState, code: &str, params: &Params) -> Result<Document, Problem> {
    check_jurisdiction(state, params, None).await?;
    let matter = matter(state, code).await?;
    let attributes = attributes(&matter)
        .into_iter()
        .zip(1..)
        .map(|(attribute, order)| {
            let values = attribute
                .values
                .iter()
                .map(|(key, name)| Node::Record(vec![("key", Node::text(*key)), ("name", Node::text(*name))]))
                .collect();
            Node::Record(vec![
                ("variable", Node::Bool(attribute.variable)),
                ("code", Node::text(attribute.code)),
                ("datatype", Node::text(attribute.datatype)),
                ("required", Node::Bool(attribute.required)),
                ("datatype_description", Node::optional_text(attribute.datatype_description)),
                ("order", Node::Int(order)),
                ("description", Node::text(attribute.description)),
                ("values", Node::List { item: "value", items: values }),
            ])
        })
        .collect();
    Ok(Document {
        root: "service_definition",
        body: Node::Record(vec![
            ("service_code", Node::text(matter.code.clone())),
            ("attributes", Node::List { item: "attribute", items: attributes }),
        ]),
    })
}

/// The live catalogue's matter `code`, or 404.
async fn matter(state: &AppState, code: &str) -> Result<Matter, Problem> {
    let (_, mut matters) = state.service.catalogue().await.map_err(service_problem)?;
    matters.remove(code).ok_or_else(|| {
        Problem::not_found(format!(
            "service_code {code} not found: it is not in the community public service catalogue (plan:5.1-C)"
        ))
    })
}

// ----- Filing -------------------------------------------------------------------------------

async fn create_request(state: &AppState, params: &Params, headers: &HeaderMap) -> Result<Document, Problem> {
    let claims = authenticate(state, params, headers, "create_request")?;
    check_jurisdiction(state, params, Some(&claims)).await?;
    if !matches!(claims.role, Role::Resident | Role::Community) {
        return Err(Problem::forbidden(format!(
            "forbidden: a {} key cannot file a request; residents and community workers file at a \
             community service station",
            claims.role.as_str()
        )));
    }
    let Some(code) = params.get("service_code")? else {
        return Err(Problem::bad_request("service_code was not provided"));
    };
    let matter = matter(state, code).await?;
    let mut problems = Vec::new();
    let mut filed_attributes = BTreeMap::new();
    let channel = match sent_attributes(params) {
        Ok(sent) => {
            let (channel, mut attribute_problems) = check_attributes(&matter, &sent);
            problems.append(&mut attribute_problems);
            channel
        }
        Err(problem) => {
            problems.extend(problem.descriptions);
            None
        }
    };
    let (lat, long, located) = match location(params) {
        Ok((lat, long)) => (lat, long, lat.is_some()),
        // Malformed, so sent: the location is wrong, not missing.
        Err(problem) => {
            problems.extend(problem.descriptions);
            (None, None, true)
        }
    };
    let address = params.get("address_string")?.map(str::to_owned);
    let address_id = params.get("address_id")?;
    if !located && address.is_none() && address_id.is_none() {
        problems.push("location: one of lat & long, address_string or address_id is required".into());
    }
    if let Some(address_id) = address_id {
        filed_attributes.insert(ADDRESS_ID.to_owned(), address_id.to_owned());
    }
    let description = params.get("description")?.unwrap_or_default().to_owned();
    if description.is_empty() {
        problems.push("description: say what the request is about; the station needs it to act".into());
    }
    let resident = match claims.role {
        Role::Resident => None,
        _ => {
            let name = [params.get("first_name")?, params.get("last_name")?]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            if name.is_empty() {
                problems.push(
                    "first_name, last_name: whom the request is for is required when a community worker \
                     files it"
                        .into(),
                );
            }
            Some(name)
        }
    };
    let request = match params.get("service_request_id")? {
        None => Uuid::now_v7(),
        Some(id) => Uuid::parse_str(id).unwrap_or_else(|_| {
            problems.push(format!("service_request_id: {id} is not a UUID"));
            Uuid::nil()
        }),
    };
    let channel = match (channel, problems.is_empty()) {
        (Some(channel), true) => channel,
        (None, true) => return Err(Problem::bad_request(format!("attribute[{CHANNEL}] is required"))),
        (_, false) => return Err(Problem { status: StatusCode::BAD_REQUEST, descriptions: problems }),
    };
    let filing = FileRequest {
        matter_code: matter.code.clone(),
        station: claims.org,
        channel,
        resident,
        description,
        address,
        lat,
        long,
        attributes: filed_attributes,
    };
    let view = state
        .service
        .file_request(&shequ_service::CommandScope::new(claims.actor()), &claims.sub, request, filing)
        .await
        .map_err(service_problem)?;
    let account = match claims.role {
        Role::Resident => Node::text(view.resident.clone()),
        _ => Node::Null,
    };
    Ok(Document::list(
        "service_requests",
        "request",
        vec![Node::Record(vec![
            ("service_request_id", Node::text(view.request.to_string())),
            ("service_notice", Node::text(service_notice(&view))),
            ("account_id", account),
        ])],
    ))
}

/// `attribute[code]=value` and `attribute[code][]=value` pairs, by code; empty values dropped.
fn sent_attributes(params: &Params) -> Result<BTreeMap<&str, Vec<&str>>, Problem> {
    let mut sent: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, value) in &params.pairs {
        let Some(rest) = key.strip_prefix("attribute[") else { continue };
        let code = match rest.split_once(']') {
            Some((code, "" | "[]")) if !code.is_empty() => code,
            _ => {
                return Err(Problem::bad_request(format!(
                    "{key}: attributes are sent as attribute[code]=value or attribute[code][]=value"
                )))
            }
        };
        let values = sent.entry(code).or_default();
        if !value.trim().is_empty() {
            values.push(value.trim());
        }
    }
    Ok(sent)
}

/// Checks the sent attributes against the matter's definition; the channel, if valid.
fn check_attributes(matter: &Matter, sent: &BTreeMap<&str, Vec<&str>>) -> (Option<Channel>, Vec<String>) {
    let definition = attributes(matter);
    let mut problems = Vec::new();
    for code in sent.keys() {
        if !definition.iter().any(|attribute| attribute.code == *code) {
            problems.push(format!(
                "attribute[{code}]: service {} has no such attribute (see services/{}.xml)",
                matter.code, matter.code
            ));
        }
    }
    let mut chosen = None;
    for attribute in definition.iter().filter(|attribute| attribute.variable) {
        let values = sent.get(attribute.code).map(Vec::as_slice).unwrap_or_default();
        let keys = || attribute.values.iter().map(|(key, _)| *key).collect::<Vec<_>>().join(", ");
        match values {
            [] if attribute.required => {
                problems.push(format!("attribute[{}] is required: one of {}", attribute.code, keys()))
            }
            [] => {}
            [value] => match (attribute.code, channel(value)) {
                (CHANNEL, Some(channel)) => chosen = Some(channel),
                _ => {
                    problems.push(format!("attribute[{}]: {value} is not one of {}", attribute.code, keys()))
                }
            },
            _ => problems.push(format!("attribute[{}]: takes a single value", attribute.code)),
        }
    }
    (chosen, problems)
}

/// `lat` and `long`, both or neither, as WGS84 degrees.
fn location(params: &Params) -> Result<(Option<f64>, Option<f64>), Problem> {
    let degrees = |name: &str, limit: f64| -> Result<Option<f64>, Problem> {
        let Some(text) = params.get(name)? else { return Ok(None) };
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() && value.abs() <= limit => Ok(Some(value)),
            _ => Err(Problem::bad_request(format!("{name}: {text} is not a WGS84 degree within ±{limit}"))),
        }
    };
    match (degrees("lat", 90.0)?, degrees("long", 180.0)?) {
        (Some(lat), Some(long)) => Ok((Some(lat), Some(long))),
        (None, None) => Ok((None, None)),
        _ => Err(Problem::bad_request("lat, long: both are sent, or neither")),
    }
}

fn service_notice(view: &RequestView) -> String {
    format!("{} ({}). Expected by {}.", view.routing_reason, view.routing_clause, view.expected_date)
}

// ----- Reading ------------------------------------------------------------------------------

async fn one_request(
    state: &AppState,
    id: &str,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Document, Problem> {
    let claims = authenticate(state, params, headers, "get_service_request")?;
    check_jurisdiction(state, params, Some(&claims)).await?;
    let id =
        Uuid::parse_str(id).map_err(|_| Problem::not_found(format!("service_request_id {id} not found")))?;
    let view =
        state.service.read_request(claims.actor(), &claims.sub, id).await.map_err(|error| match error {
            ServiceError::NotFound(_) => Problem::not_found(format!("service_request_id {id} not found")),
            other => service_problem(other),
        })?;
    requests_document(state, vec![view]).await
}

async fn request_from_token(
    state: &AppState,
    token: &str,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Document, Problem> {
    let claims = authenticate(state, params, headers, "get_service_request_id")?;
    check_jurisdiction(state, params, Some(&claims)).await?;
    let id = Uuid::parse_str(token).map_err(|_| Problem::not_found(format!("token {token} not found")))?;
    let view =
        state.service.read_request(claims.actor(), &claims.sub, id).await.map_err(|error| match error {
            ServiceError::NotFound(_) => Problem::not_found(format!("token {token} not found")),
            other => service_problem(other),
        })?;
    Ok(Document::list(
        "service_requests",
        "request",
        vec![Node::Record(vec![
            ("service_request_id", Node::text(view.request.to_string())),
            ("token", Node::text(view.request.to_string())),
        ])],
    ))
}

async fn list_requests(state: &AppState, params: &Params, headers: &HeaderMap) -> Result<Document, Problem> {
    let claims = authenticate(state, params, headers, "get_service_requests")?;
    check_jurisdiction(state, params, Some(&claims)).await?;
    let (actor, subject) = (claims.actor(), claims.sub.as_str());
    // `service_request_id` overrides every other argument.
    let ids = params.list("service_request_id");
    if !ids.is_empty() {
        if ids.len() > REQUESTS_MAX {
            return Err(Problem::bad_request(format!("service_request_id: at most {REQUESTS_MAX} ids")));
        }
        let mut views = Vec::new();
        for id in ids {
            let id = Uuid::parse_str(id)
                .map_err(|_| Problem::bad_request(format!("service_request_id: {id} is not a request id")))?;
            match state.service.read_request(actor, subject, id).await {
                Ok(view) => views.push(view),
                // Like any other filter, the list holds only what the key may see.
                Err(ServiceError::NotFound(_) | ServiceError::Forbidden(_)) => {}
                Err(error) => return Err(service_problem(error)),
            }
        }
        return requests_document(state, views).await;
    }
    let codes = params.list("service_code");
    let statuses = params
        .list("status")
        .into_iter()
        .map(|status| match status {
            "open" => Ok(false),
            "closed" => Ok(true),
            other => Err(Problem::bad_request(format!("status: {other} is neither open nor closed"))),
        })
        .collect::<Result<Vec<bool>, Problem>>()?;
    let (from, until) = window(params)?;
    let filter = RequestFilter {
        matter_code: match codes.as_slice() {
            [code] => Some((*code).to_owned()),
            _ => None,
        },
        filed_from: Some(from.to_rfc3339_opts(SecondsFormat::Micros, true)),
        // `end_date` is the latest time included.
        filed_before: until
            .map(|until| (until + Duration::microseconds(1)).to_rfc3339_opts(SecondsFormat::Micros, true)),
        ..RequestFilter::default()
    };
    let wanted = |view: &RequestView| {
        (codes.is_empty() || codes.contains(&view.matter_code.as_str()))
            && (statuses.is_empty() || statuses.contains(&is_closed(view.status)))
    };
    let mut views = Vec::new();
    let mut after = None;
    'pages: loop {
        let page = state
            .service
            .list_requests(actor, subject, &filter, after, PAGE_REQUESTS)
            .await
            .map_err(service_problem)?;
        let last_page = page.len() < PAGE_REQUESTS;
        after = page.last().map(|view| view.request);
        for view in page {
            if wanted(&view) {
                views.push(view);
                if views.len() == REQUESTS_MAX {
                    break 'pages;
                }
            }
        }
        if last_page {
            break;
        }
    }
    requests_document(state, views).await
}

/// `start_date`..=`end_date`, at most `WINDOW_DAYS` long; by default the last `WINDOW_DAYS`.
fn window(params: &Params) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), Problem> {
    let span = Duration::days(WINDOW_DAYS);
    match (datetime(params, "start_date")?, datetime(params, "end_date")?) {
        (None, None) => Ok((Utc::now() - span, None)),
        (Some(from), None) => Ok((from, Some(from + span))),
        (None, Some(until)) => Ok((until - span, Some(until))),
        (Some(from), Some(until)) if until < from => {
            Err(Problem::bad_request("end_date: earlier than start_date"))
        }
        (Some(from), Some(until)) if until - from > span => Err(Problem::bad_request(format!(
            "start_date, end_date: the range may not span more than {WINDOW_DAYS} days"
        ))),
        (Some(from), Some(until)) => Ok((from, Some(until))),
    }
}

/// A W3C datetime with its timezone, e.g. `2010-01-01T00:00:00Z` or `…+08:00`.
fn datetime(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, Problem> {
    let Some(text) = params.get(name)? else { return Ok(None) };
    // An unencoded `+08:00` arrives as ` 08:00`: a space is never valid there, so read it as `+`.
    DateTime::parse_from_rfc3339(&text.replace(' ', "+")).map(|time| Some(time.with_timezone(&Utc))).map_err(
        |_| {
            Problem::bad_request(format!(
                "{name}: {text} is not a W3C datetime with a timezone, e.g. 2010-01-01T00:00:00Z"
            ))
        },
    )
}

fn is_closed(status: RequestStatus) -> bool {
    match status {
        RequestStatus::Received
        | RequestStatus::Routed
        | RequestStatus::Accepted
        | RequestStatus::Forwarded
        | RequestStatus::InProgress => false,
        RequestStatus::Resolved | RequestStatus::Closed | RequestStatus::Rejected => true,
    }
}

async fn requests_document(state: &AppState, views: Vec<RequestView>) -> Result<Document, Problem> {
    let (_, matters) = state.service.catalogue().await.map_err(service_problem)?;
    let agencies: BTreeMap<Uuid, String> = {
        let projection = state.service.read_model().read().await.map_err(service_problem)?;
        views
            .iter()
            .filter_map(|view| projection.organisation(view.holder).map(|holder| (view.holder, holder.name)))
            .collect()
    };
    let items = views
        .iter()
        .map(|view| {
            Node::Record(vec![
                ("service_request_id", Node::text(view.request.to_string())),
                ("status", Node::text(if is_closed(view.status) { "closed" } else { "open" })),
                ("status_notes", Node::text(status_notes(view))),
                ("service_name", Node::optional_text(matters.get(&view.matter_code).map(|m| m.name.clone()))),
                ("service_code", Node::text(view.matter_code.clone())),
                ("description", Node::text(view.description.clone())),
                ("agency_responsible", Node::optional_text(agencies.get(&view.holder).cloned())),
                ("service_notice", Node::text(service_notice(view))),
                ("requested_datetime", Node::optional_text(w3c(&view.filed_at))),
                ("updated_datetime", Node::optional_text(w3c(&view.updated_at))),
                ("expected_datetime", Node::optional_text(end_of_day(&view.expected_date))),
                ("address", Node::optional_text(view.address.clone())),
                ("address_id", Node::optional_text(view.attributes.get(ADDRESS_ID).cloned())),
                ("zipcode", Node::Null),
                ("lat", Node::optional_float(view.lat)),
                ("long", Node::optional_float(view.long)),
                ("media_url", Node::Null),
            ])
        })
        .collect();
    Ok(Document::list("service_requests", "request", items))
}

/// The whole status history, oldest first, one line per step: `time status: note`.
fn status_notes(view: &RequestView) -> String {
    view.history
        .iter()
        .map(|entry| {
            let at = w3c(&entry.at).unwrap_or_else(|| entry.at.clone());
            match entry.note.is_empty() {
                true => format!("{at} {}", entry.status.as_str()),
                false => format!("{at} {}: {}", entry.status.as_str(), entry.note),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An RFC 3339 time as the spec's examples write it: whole seconds, `Z`.
fn w3c(time: &str) -> Option<String> {
    let time = DateTime::parse_from_rfc3339(time).ok()?;
    Some(time.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The end of an SLA day (`YYYY-MM-DD`, UTC): a request is overdue from the next day.
fn end_of_day(date: &str) -> Option<String> {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(23, 59, 59)?.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_treat_empty_as_absent_and_refuse_conflicts() {
        let params = Params::parse(b"a=&b=1&b=1&c=1&c=2&s=open,closed&s=open&attribute[channel]=web");
        assert_eq!(params.get("a").unwrap(), None);
        assert_eq!(params.get("b").unwrap(), Some("1"));
        assert_eq!(params.get("c").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(params.list("s"), ["open", "closed", "open"]);
        assert_eq!(sent_attributes(&params).unwrap().get("channel"), Some(&vec!["web"]));
        assert!(sent_attributes(&Params::parse(b"attribute[x=1")).is_err());
    }

    #[test]
    fn dates_are_w3c_with_a_timezone() {
        let params =
            Params::parse(b"start_date=2026-01-01T00:00:00+08:00&end_date=2026-01-02&x=2026-01-01T00:00:00Z");
        let start = datetime(&params, "start_date").unwrap().unwrap();
        assert_eq!(start.to_rfc3339(), "2025-12-31T16:00:00+00:00");
        assert!(datetime(&params, "end_date").unwrap_err().descriptions[0].starts_with("end_date:"));
        assert!(datetime(&params, "x").unwrap().is_some());
        let wide = Params::parse(b"start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z");
        assert!(window(&wide).is_err());
        assert_eq!(end_of_day("2026-03-04").as_deref(), Some("2026-03-04T23:59:59Z"));
        assert_eq!(w3c("2026-03-04T01:02:03.456789Z").as_deref(), Some("2026-03-04T01:02:03Z"));
    }
}
