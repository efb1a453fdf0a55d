//! `/api/v1` lists from the projections (filters, cursor pagination, a page size limit),
//! service requests at the one-stop station, and the inspectors' views of the past.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shequ_domain::ledger::TransferKind;
use shequ_domain::mandate::MandateStatus;
use shequ_domain::organisation::OrganisationKind;
use shequ_domain::request::{Channel, RequestStatus};
use shequ_service::projection::{
    AsOf, BalanceView, MandateView, OrganisationView, RequestView, StateDocument,
};
use shequ_service::replay::{JsonStyle, WriteStateError};
use shequ_service::{
    FileRequest, MandateFilter, RequestAction, RequestFilter, Timeline, TransferEntry, TransferFilter,
};
use shequ_store::RecordedRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiJson, ApiPath, Authenticated, CommandHeaders, NoExpectedRevision, OptionalJson};
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Items per page when the caller does not say.
pub const PAGE_LIMIT_DEFAULT: usize = 50;
/// The most items one page may hold.
pub const PAGE_LIMIT_MAX: usize = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_organisations, register_organisation))
        .routes(routes!(read_organisation))
        .routes(routes!(list_mandates))
        .routes(routes!(list_contests))
        .routes(routes!(file_request, list_requests))
        .routes(routes!(read_request))
        .routes(routes!(act_on_request))
        .routes(routes!(list_transfers))
        .routes(routes!(state_as_of))
        .routes(routes!(mandate_timeline))
        .routes(routes!(balances_as_of))
}

/// One page of a list, and the cursor that continues it (null on the last page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A query string, with a malformed one answered 400 naming the parameter.
pub(super) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(query)| query).map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

fn limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(PAGE_LIMIT_DEFAULT) {
        limit @ 1..=PAGE_LIMIT_MAX => Ok(limit),
        other => Err(ApiError::BadRequest(format!("limit: {other} is not 1–{PAGE_LIMIT_MAX}"))),
    }
}

fn page<T>(items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = match items.len() == limit {
        true => items.last().map(cursor_of),
        false => None,
    };
    Page { items, next_cursor }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct OrganisationQuery {
    /// Only organisations of this kind.
    kind: Option<OrganisationKind>,
    /// Only the children of this organisation.
    parent: Option<Uuid>,
    /// The `next_cursor` of the page before: the last id it held.
    cursor: Option<Uuid>,
    /// Items per page, 1–500 (default 50).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/organisations",
    tag = "organisations",
    params(
        OrganisationQuery
    ),
    responses(
        (
            status = 200,
            description = "Organisations the caller may see, in id order",
            body = Page<OrganisationView>
        ),
        (
            status = 400,
            description = "A malformed filter, cursor or limit (1–500), naming it",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn list_organisations(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<OrganisationQuery>, QueryRejection>,
) -> Result<Json<Page<OrganisationView>>, ApiError> {
    let request = query(raw)?;
    let limit = limit(request.limit)?;
    let items = state
        .service
        .list_organisations(claims.actor(), request.kind, request.parent, request.cursor, limit)
        .await?;
    Ok(Json(page(items, limit, |view| view.id.to_string())))
}

/// A new organisation in the caller's district.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterOrganisationBody {
    /// Chosen by the client: a retried registration with the same id and content returns the
    /// organisation as it is.
    id: Uuid,
    /// `department`, `street` or `community` (a district is set up by the operator).
    kind: OrganisationKind,
    name: String,
    /// The district for a department or street; the street for a community.
    parent_id: Uuid,
    /// A department's code in the catalogue (`owner_department`, e.g. `civil_affairs`), so
    /// requests for its matters reach it.
    code: Option<String>,
}

/// The district registers a department, street or community under itself.
#[utoipa::path(
    post,
    path = "/organisations",
    tag = "organisations",
    request_body = RegisterOrganisationBody,
    responses(
        (status = 201, description = "Registered, with the events appended (none on a retry of the same registration)", body = RegisteredOrganisation),
        (status = 400, description = "Malformed body, or a blank name or a malformed code, naming the field", body = ErrorBody),
        (status = 403, description = "Not the district of the parent (`policies/authz`)", body = ErrorBody),
        (status = 404, description = "No such parent", body = ErrorBody),
        (
            status = 422,
            description = "Refused: the id is taken, or the parent is of the wrong kind",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn register_organisation(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    _: NoExpectedRevision,
    ApiJson(body): ApiJson<RegisterOrganisationBody>,
) -> Result<(StatusCode, Json<RegisteredOrganisation>), ApiError> {
    let actor = claims.actor();
    let (scope, recorder) = shequ_service::CommandScope::new(actor).recording();
    let organisation = shequ_service::NewOrganisation {
        id: body.id,
        kind: body.kind,
        name: &body.name,
        parent: Some(body.parent_id),
        code: body.code.as_deref(),
    };
    let registered = state.service.register_organisation(&scope, organisation).await;
    match registered {
        Ok(()) => {}
        // A retry of the same registration answers as the first time.
        Err(shequ_service::ServiceError::Organisation(
            shequ_domain::organisation::OrganisationError::AlreadyRegistered,
        )) => {
            let existing = state.service.read_organisation(actor, body.id).await?;
            let same = existing.kind == body.kind
                && existing.name == body.name.trim()
                && existing.parent_id == Some(body.parent_id)
                && existing.code == body.code;
            if !same {
                return Err(ApiError::Service(shequ_service::ServiceError::Invalid(format!(
                    "id: {} is taken by another organisation",
                    body.id
                ))));
            }
        }
        Err(error) => return Err(error.into()),
    }
    let organisation = state.service.read_organisation(actor, body.id).await?;
    Ok((StatusCode::CREATED, Json(RegisteredOrganisation { organisation, events: recorder.take() })))
}

/// A registered organisation, and what its registration appended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RegisteredOrganisation {
    #[serde(flatten)]
    organisation: OrganisationView,
    /// What this call appended: the registration's event, or none on a retry.
    events: Vec<RecordedRef>,
}

#[utoipa::path(
    get,
    path = "/organisations/{id}",
    tag = "organisations",
    params(
        ("id" = Uuid, Path, description = "The organisation's id")
    ),
    responses(
        (status = 200, description = "The organisation", body = OrganisationView),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "No such organisation", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn read_organisation(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<OrganisationView>, ApiError> {
    Ok(Json(state.service.read_organisation(claims.actor(), id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MandateQuery {
    /// Only mandates in this status.
    status: Option<MandateStatus>,
    /// Only mandates carried by this community.
    community: Option<Uuid>,
    /// Only mandates from this street office or department.
    delegating_unit: Option<Uuid>,
    /// Only mandates for this catalogue matter, e.g. `EMP-001`.
    matter_code: Option<String>,
    /// Only mandates with (true) or without (false) an open contest.
    contested: Option<bool>,
    /// The `next_cursor` of the page before: the last id it held.
    cursor: Option<Uuid>,
    /// Items per page, 1–500 (default 50).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/mandates",
    tag = "mandates",
    params(
        MandateQuery
    ),
    responses(
        (status = 200, description = "Mandates the caller may see, in id order", body = Page<MandateView>),
        (
            status = 400,
            description = "A malformed filter, cursor or limit (1–500), naming it",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn list_mandates(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<MandateQuery>, QueryRejection>,
) -> Result<Json<Page<MandateView>>, ApiError> {
    let request = query(raw)?;
    let limit = limit(request.limit)?;
    let filter = MandateFilter {
        status: request.status,
        community: request.community,
        delegating_unit: request.delegating_unit,
        matter_code: request.matter_code,
        contested: request.contested,
    };
    let items = state.service.list_mandates(claims.actor(), &filter, request.cursor, limit).await?;
    Ok(Json(page(items, limit, |view| view.mandate.to_string())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ContestQuery {
    /// Only contests by this community.
    community: Option<Uuid>,
    /// The `next_cursor` of the page before: the last mandate id it held.
    cursor: Option<Uuid>,
    /// Items per page, 1–500 (default 50).
    limit: Option<usize>,
}

/// Open contests: mandates whose community contests them and that nobody has decided yet.
#[utoipa::path(
    get,
    path = "/contests",
    tag = "mandates",
    params(
        ContestQuery
    ),
    responses(
        (
            status = 200,
            description = "Open contests the caller may see, in mandate id order",
            body = Page<MandateView>
        ),
        (
            status = 400,
            description = "A malformed filter, cursor or limit (1–500), naming it",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn list_contests(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<ContestQuery>, QueryRejection>,
) -> Result<Json<Page<MandateView>>, ApiError> {
    let request = query(raw)?;
    let limit = limit(request.limit)?;
    let filter =
        MandateFilter { community: request.community, contested: Some(true), ..MandateFilter::default() };
    let items = state.service.list_mandates(claims.actor(), &filter, request.cursor, limit).await?;
    Ok(Json(page(items, limit, |view| view.mandate.to_string())))
}

/// A service request brought to a community's one-stop station.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = FileRequest)]
#[serde(deny_unknown_fields)]
struct FileRequestBody {
    /// Chosen by the client: a retried request with the same id returns the first result.
    request_id: Uuid,
    matter_code: String,
    /// The station's community; a resident's own community when absent.
    station: Option<Uuid>,
    channel: Channel,
    /// Whom it is for, when a community worker files on a resident's behalf.
    resident: Option<String>,
    description: String,
    address: Option<String>,
    lat: Option<f64>,
    long: Option<f64>,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
}

/// A request and whether it is overdue today; after a command, what the command appended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ServiceRequest)]
struct RequestOut {
    #[serde(flatten)]
    request: RequestView,
    /// Past its expected date and not yet resolved, as of today.
    overdue: bool,
    /// What this call appended (only in the answer to a command).
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<RecordedRef>>,
}

fn request_out(view: RequestView, today: &str) -> RequestOut {
    RequestOut { overdue: view.is_overdue(today), request: view, events: None }
}

#[utoipa::path(
    post,
    path = "/requests",
    tag = "requests",
    request_body = FileRequestBody,
    responses(
        (
            status = 201,
            description = "Filed and routed (or the first answer to a retry with the same `request_id`)",
            body = RequestOut
        ),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "The station or the matter is unknown", body = ErrorBody),
        (
            status = 409,
            description = "The record changed meanwhile: read it again and retry",
            body = ErrorBody
        ),
        (
            status = 422,
            description = "Refused by a business rule or the access policy, citing it",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn file_request(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    _: NoExpectedRevision,
    ApiJson(body): ApiJson<FileRequestBody>,
) -> Result<(StatusCode, Json<RequestOut>), ApiError> {
    let actor = claims.actor();
    let filing = FileRequest {
        matter_code: body.matter_code,
        station: body.station.unwrap_or(actor.organisation),
        channel: body.channel,
        resident: body.resident,
        description: body.description,
        address: body.address,
        lat: body.lat,
        long: body.long,
        attributes: body.attributes,
    };
    let (scope, recorder) = shequ_service::CommandScope::new(actor).recording();
    let view = state.service.file_request(&scope, &claims.sub, body.request_id, filing).await?;
    let out = RequestOut { events: Some(recorder.take()), ..request_out(view, &state.service.today()) };
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    /// Only requests in this status.
    status: Option<RequestStatus>,
    /// Only requests for this catalogue matter.
    matter_code: Option<String>,
    /// Only requests filed at this community's station.
    station: Option<Uuid>,
    /// Only requests this organisation holds now.
    holder: Option<Uuid>,
    /// Only requests past (true) or not past (false) their expected date and not yet resolved.
    overdue: Option<bool>,
    /// Only call-assistance requests (true) or the others (false).
    priority: Option<bool>,
    /// Only requests filed at or after this time (RFC 3339).
    filed_from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only requests filed before this time (RFC 3339).
    filed_before: Option<chrono::DateTime<chrono::Utc>>,
    /// The `next_cursor` of the page before: the last id it held.
    cursor: Option<Uuid>,
    /// Items per page, 1–500 (default 50).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/requests",
    tag = "requests",
    params(
        RequestQuery
    ),
    responses(
        (status = 200, description = "Requests the caller may see, in id order", body = Page<RequestOut>),
        (
            status = 400,
            description = "A malformed filter, cursor or limit (1–500), naming it",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn list_requests(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<RequestQuery>, QueryRejection>,
) -> Result<Json<Page<RequestOut>>, ApiError> {
    let request = query(raw)?;
    let limit = limit(request.limit)?;
    let time = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let filter = RequestFilter {
        status: request.status,
        matter_code: request.matter_code,
        station: request.station,
        holder: request.holder,
        overdue: request.overdue,
        priority: request.priority,
        filed_from: request.filed_from.map(time),
        filed_before: request.filed_before.map(time),
    };
    let items =
        state.service.list_requests(claims.actor(), &claims.sub, &filter, request.cursor, limit).await?;
    let today = state.service.today();
    let items: Vec<RequestOut> = items.into_iter().map(|view| request_out(view, &today)).collect();
    Ok(Json(page(items, limit, |out| out.request.request.to_string())))
}

#[utoipa::path(
    get,
    path = "/requests/{id}",
    tag = "requests",
    params(
        ("id" = Uuid, Path, description = "The request's id")
    ),
    responses(
        (status = 200, description = "The request, its routing and its history", body = RequestOut),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "No such request", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn read_request(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RequestOut>, ApiError> {
    let view = state.service.read_request(claims.actor(), &claims.sub, id).await?;
    Ok(Json(request_out(view, &state.service.today())))
}

/// What an action on a request says: `note` for most, `reason` for `reject`, `rating` (1–5)
/// and `comment` for `rate`; the others are ignored.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = RequestAction)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    note: String,
    #[serde(default)]
    reason: String,
    /// 1–5; required by `rate`.
    rating: Option<u8>,
    #[serde(default)]
    comment: String,
}

#[utoipa::path(
    post,
    path = "/requests/{id}/{action}",
    tag = "requests",
    params(
        ("id" = Uuid, Path, description = "The request's id"),
        (
            "action" = String,
            Path,
            description = "One of `forward`, `accept`, `start`, `resolve`, `reject`, `close`, `rate`"
        ),
        CommandHeaders
    ),
    request_body(
        content = Option<ActionBody>,
        description = "May be left out (no body at all) where the action needs nothing: `accept`, `start`, `resolve`, `close` and `forward` take an optional `note`"
    ),
    responses(
        (
            status = 200,
            description = "The request after the action, with the events it appended",
            body = RequestOut
        ),
        (
            status = 400,
            description = "Malformed input, naming the field (`rate` needs `rating`)",
            body = ErrorBody
        ),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "No such request, or an unknown action", body = ErrorBody),
        (
            status = 409,
            description = "The record changed meanwhile: read it again and retry",
            body = ErrorBody
        ),
        (
            status = 422,
            description = "Not allowed in the request's status, or not by its holder",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn act_on_request(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    ApiPath((id, action)): ApiPath<(Uuid, String)>,
    headers: CommandHeaders,
    OptionalJson(body): OptionalJson<ActionBody>,
) -> Result<Json<RequestOut>, ApiError> {
    let (scope, recorder) = headers.scope(&state.service, claims.actor(), &action, &body).await;
    let action = match action.as_str() {
        "forward" => RequestAction::Forward { note: body.note },
        "accept" => RequestAction::Accept { note: body.note },
        "start" => RequestAction::Start { note: body.note },
        "resolve" => RequestAction::Resolve { note: body.note },
        "reject" => RequestAction::Reject { reason: body.reason },
        "close" => RequestAction::Close { note: body.note },
        "rate" => RequestAction::Rate {
            rating: body.rating.ok_or_else(|| ApiError::BadRequest("rating: required, 1–5".into()))?,
            comment: body.comment,
        },
        other => {
            return Err(ApiError::Service(shequ_service::ServiceError::NotFound(format!(
                "action `{other}` (use forward, accept, start, resolve, reject, close or rate)"
            ))))
        }
    };
    let view = state.service.act_on_request(&scope, &claims.sub, id, action).await?;
    Ok(Json(RequestOut { events: Some(recorder.take()), ..request_out(view, &state.service.today()) }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TransferQuery {
    /// Only transfers of this kind.
    kind: Option<TransferKind>,
    /// Only transfers made for this mandate.
    mandate: Option<Uuid>,
    /// Only transfers into or out of this organisation's budget account or, for a community,
    /// its mandate accounts.
    organisation: Option<Uuid>,
    /// The position after which to continue: the `next_cursor` of the page before.
    cursor: Option<u64>,
    /// Items per page, 1–500 (default 50).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/ledger/transfers",
    tag = "ledger",
    params(
        TransferQuery
    ),
    responses(
        (
            status = 200,
            description = "The transfers the caller may read (those into or out of an account `GET /ledger/balances` shows it) that the filters keep, in log order. A page looks through at most 10 ledger events for each transfer it may hold (500 for the default `limit` of 50), so a page can hold fewer than `limit`, even none, and still have a `next_cursor`: the list ends only where `next_cursor` is null",
            body = Page<TransferEntry>
        ),
        (
            status = 400,
            description = "A malformed filter, cursor or limit (1–500), naming it",
            body = ErrorBody
        ),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "The caller's organisation is unknown", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_transfers(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<TransferQuery>, QueryRejection>,
) -> Result<Json<Page<TransferEntry>>, ApiError> {
    let request = query(raw)?;
    let limit = limit(request.limit)?;
    let filter =
        TransferFilter { kind: request.kind, mandate: request.mandate, organisation: request.organisation };
    let (items, next) =
        state.service.list_transfers(claims.actor(), &filter, request.cursor.unwrap_or(0), limit).await?;
    Ok(Json(Page { items, next_cursor: next.map(|position| position.to_string()) }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AsOfQuery {
    /// A position, an RFC 3339 time, or `head` (the default).
    as_of: Option<String>,
}

fn as_of(raw: Result<Query<AsOfQuery>, QueryRejection>) -> Result<AsOf, ApiError> {
    match query(raw)?.as_of {
        None => Ok(AsOf::Head),
        Some(text) => AsOf::parse(&text).map_err(|reason| ApiError::BadRequest(format!("as_of: {reason}"))),
    }
}

/// The caller's district's state at one point of the log.
// What `state_as_of` streams, as `replay::write_state` writes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DistrictState {
    district: Uuid,
    #[serde(flatten)]
    state: StateDocument,
}

/// The district's whole state as of a time or position, rebuilt from the log (inspectors).
#[utoipa::path(
    get,
    path = "/audit/state",
    tag = "audit",
    params(
        AsOfQuery
    ),
    responses(
        (
            status = 200,
            description = "The district's state as of the point asked, rebuilt from the log",
            body = DistrictState
        ),
        (
            status = 400,
            description = "`as_of` is neither a position, an RFC 3339 time nor `head`",
            body = ErrorBody
        ),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "The caller's organisation is unknown", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn state_as_of(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let as_of = as_of(raw)?;
    // Refusals and a bad `as_of` are answered before the first byte of the state.
    let district_state = state.service.state_as_of(claims.actor(), as_of).await?;
    // The state is replayed and sent a chunk at a time, one mandate or request in memory at a
    // time, however long the log; a client that hangs up stops the replay.
    let body = streamed(|chunks| district_state.write(JsonStyle::Compact, chunks));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A response body of the chunks that `write` hands over, written by a task of its own. The
/// task is stopped when the body is dropped; if it fails, the body ends with an error, so the
/// client sees a broken response rather than a shorter document that parses.
fn streamed<Write, Writing>(write: Write) -> Body
where
    Write: FnOnce(tokio::sync::mpsc::Sender<Vec<u8>>) -> Writing,
    Writing: std::future::Future<Output = Result<(), WriteStateError>> + Send + 'static,
{
    let (chunks, receiver) = tokio::sync::mpsc::channel(STATE_CHUNKS_QUEUED);
    let writing = WritingTask(tokio::spawn(write(chunks)));
    let body = futures::stream::unfold((receiver, Some(writing)), |(mut receiver, writing)| async move {
        if let Some(chunk) = receiver.recv().await {
            return Some((Ok(Bytes::from(chunk)), (receiver, writing)));
        }
        // Every chunk is out: the body ends here if the writing went through.
        let failed = match (&mut writing?.0).await {
            Ok(Ok(())) => return None,
            Ok(Err(error)) => std::io::Error::other(error.to_string()),
            Err(error) => std::io::Error::other(error.to_string()),
        };
        tracing::error!(error = %failed, "a streamed response stopped half-way");
        Some((Err(failed), (receiver, None)))
    });
    Body::from_stream(body)
}

/// Chunks of the state waiting for the client, at most (`replay::CHUNK_BYTES` each).
const STATE_CHUNKS_QUEUED: usize = 2;

/// The task that writes a response body. Dropping the body (a client that hung up, a server
/// shutting down) stops it at once, not at its next chunk.
struct WritingTask(tokio::task::JoinHandle<Result<(), WriteStateError>>);

impl Drop for WritingTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[utoipa::path(
    get,
    path = "/audit/mandates/{id}/timeline",
    tag = "audit",
    params(
        ("id" = Uuid, Path, description = "The mandate's id")
    ),
    responses(
        (
            status = 200,
            description = "Every event of the mandate and every transfer made for it",
            body = Timeline
        ),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "No such mandate", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn mandate_timeline(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Timeline>, ApiError> {
    Ok(Json(state.service.mandate_timeline(claims.actor(), id).await?))
}

/// The district's balances at one point of the log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BalancesAsOf {
    district: Uuid,
    position: u64,
    balances: Vec<BalanceView>,
}

/// The ledger's balances as of a date (or position), for inspectors and the district.
#[utoipa::path(
    get,
    path = "/audit/balances",
    tag = "audit",
    params(
        AsOfQuery
    ),
    responses(
        (status = 200, description = "The district's balances as of the point asked", body = BalancesAsOf),
        (
            status = 400,
            description = "`as_of` is neither a position, an RFC 3339 time nor `head`",
            body = ErrorBody
        ),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "The caller's organisation is unknown", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn balances_as_of(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<BalancesAsOf>, ApiError> {
    let as_of = as_of(raw)?;
    let (district, position, balances) = state.service.balances_as_of(claims.actor(), as_of).await?;
    Ok(Json(BalancesAsOf { district, position, balances }))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collected(body: Body) -> Vec<Result<Bytes, String>> {
        use futures::StreamExt;
        body.into_data_stream().map(|chunk| chunk.map_err(|error| error.to_string())).collect().await
    }

    #[tokio::test]
    async fn a_streamed_body_is_every_chunk_then_its_end_or_an_error() {
        let whole = streamed(|chunks| async move {
            for chunk in [b"{\"a\":".to_vec(), b"1}".to_vec()] {
                chunks.send(chunk).await.map_err(|_| WriteStateError::Closed)?;
            }
            Ok(())
        });
        assert_eq!(collected(whole).await, [Ok(Bytes::from("{\"a\":")), Ok(Bytes::from("1}"))]);

        let broken = streamed(|chunks| async move {
            chunks.send(b"{\"a\":".to_vec()).await.map_err(|_| WriteStateError::Closed)?;
            Err(shequ_service::ServiceError::Projection("position 7: unreadable".into()).into())
        });
        let parts = collected(broken).await;
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0], Ok(Bytes::from("{\"a\":")));
        assert!(parts[1].as_ref().is_err_and(|error| error.contains("position 7")), "{parts:?}");
    }

    #[tokio::test]
    async fn dropping_a_streamed_body_stops_its_writer() {
        let (stopped, is_stopped) = tokio::sync::oneshot::channel::<()>();
        let body = streamed(|_chunks| async move {
            // Held until the task is dropped: aborted, or finished.
            let _stopped = stopped;
            std::future::pending::<Result<(), WriteStateError>>().await
        });
        tokio::task::yield_now().await;
        drop(body);
        tokio::time::timeout(std::time::Duration::from_secs(5), is_stopped)
            .await
            .expect("the writer stops when the body is dropped")
            .expect_err("the writer never finishes by itself");
    }
}
