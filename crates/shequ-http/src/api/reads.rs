//! `/api/v1` lists from the projections (filters, cursor pagination, a page size limit),
//! service requests at the one-stop station, and the inspectors' views of the past.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shequ_domain::mandate::MandateStatus;
use shequ_domain::organisation::OrganisationKind;
use shequ_domain::request::{Channel, RequestStatus};
use shequ_service::projection::{
    AsOf, BalanceView, MandateView, OrganisationView, RequestView, StateDocument,
};
use shequ_service::{FileRequest, MandateFilter, RequestAction, RequestFilter, Timeline, TransferEntry};
use shequ_store::RecordedRef;
use uuid::Uuid;

use super::{ApiJson, Authenticated};
use crate::error::ApiError;
use crate::AppState;

/// Items per page when the caller does not say.
pub const PAGE_LIMIT_DEFAULT: usize = 50;
/// The most items one page may hold.
pub const PAGE_LIMIT_MAX: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/organisations", get(list_organisations))
        .route("/organisations/{id}", get(read_organisation))
        .route("/mandates", get(list_mandates))
        .route("/contests", get(list_contests))
        .route("/requests", post(file_request).get(list_requests))
        .route("/requests/{id}", get(read_request))
        .route("/requests/{id}/{action}", post(act_on_request))
        .route("/ledger/transfers", get(list_transfers))
        .route("/audit/state", get(state_as_of))
        .route("/audit/mandates/{id}/timeline", get(mandate_timeline))
        .route("/audit/balances", get(balances_as_of))
}

/// One page of a list, and the cursor that continues it (absent on the last page).
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganisationQuery {
    kind: Option<OrganisationKind>,
    parent: Option<Uuid>,
    cursor: Option<Uuid>,
    limit: Option<usize>,
}

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

async fn read_organisation(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(id): Path<Uuid>,
) -> Result<Json<OrganisationView>, ApiError> {
    Ok(Json(state.service.read_organisation(claims.actor(), id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MandateQuery {
    status: Option<MandateStatus>,
    community: Option<Uuid>,
    delegating_unit: Option<Uuid>,
    matter_code: Option<String>,
    contested: Option<bool>,
    cursor: Option<Uuid>,
    limit: Option<usize>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContestQuery {
    community: Option<Uuid>,
    cursor: Option<Uuid>,
    limit: Option<usize>,
}

/// Open contests: mandates whose community contests them and that nobody has decided yet.
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

#[derive(Debug, Deserialize)]
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
#[derive(Debug, Serialize)]
struct RequestOut {
    #[serde(flatten)]
    request: RequestView,
    overdue: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<RecordedRef>>,
}

fn request_out(view: RequestView, today: &str) -> RequestOut {
    RequestOut { overdue: view.is_overdue(today), request: view, events: None }
}

async fn file_request(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
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
    let (service, recorder) = state.service.recording();
    let view = service.file_request(actor, &claims.sub, body.request_id, filing).await?;
    let out = RequestOut { events: Some(recorder.take()), ..request_out(view, &state.service.today()) };
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    status: Option<RequestStatus>,
    matter_code: Option<String>,
    station: Option<Uuid>,
    holder: Option<Uuid>,
    overdue: Option<bool>,
    priority: Option<bool>,
    filed_from: Option<chrono::DateTime<chrono::Utc>>,
    filed_before: Option<chrono::DateTime<chrono::Utc>>,
    cursor: Option<Uuid>,
    limit: Option<usize>,
}

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

async fn read_request(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(id): Path<Uuid>,
) -> Result<Json<RequestOut>, ApiError> {
    let view = state.service.read_request(claims.actor(), &claims.sub, id).await?;
    Ok(Json(request_out(view, &state.service.today())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    note: String,
    #[serde(default)]
    reason: String,
    rating: Option<u8>,
    #[serde(default)]
    comment: String,
}

async fn act_on_request(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path((id, action)): Path<(Uuid, String)>,
    ApiJson(body): ApiJson<ActionBody>,
) -> Result<Json<RequestOut>, ApiError> {
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
    let (service, recorder) = state.service.recording();
    let view = service.act_on_request(claims.actor(), &claims.sub, id, action).await?;
    Ok(Json(RequestOut { events: Some(recorder.take()), ..request_out(view, &state.service.today()) }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferQuery {
    /// The position after which to continue.
    cursor: Option<u64>,
    limit: Option<usize>,
}

async fn list_transfers(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<TransferQuery>, QueryRejection>,
) -> Result<Json<Page<TransferEntry>>, ApiError> {
    let request = query(raw)?;
    let limit = limit(request.limit)?;
    let items = state.service.list_transfers(claims.actor(), request.cursor.unwrap_or(0), limit).await?;
    Ok(Json(page(items, limit, |entry| entry.position.to_string())))
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Serialize)]
struct DistrictState {
    district: Uuid,
    #[serde(flatten)]
    state: StateDocument,
}

/// The district's whole state as of a time or position, rebuilt from the log (inspectors).
async fn state_as_of(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<DistrictState>, ApiError> {
    let as_of = as_of(raw)?;
    let (district, document) = state.service.state_as_of(claims.actor(), as_of).await?;
    Ok(Json(DistrictState { district, state: document }))
}

async fn mandate_timeline(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(id): Path<Uuid>,
) -> Result<Json<Timeline>, ApiError> {
    Ok(Json(state.service.mandate_timeline(claims.actor(), id).await?))
}

#[derive(Debug, Serialize)]
struct BalancesAsOf {
    district: Uuid,
    position: u64,
    balances: Vec<BalanceView>,
}

/// The ledger's balances as of a date (or position), for inspectors and the district.
async fn balances_as_of(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    raw: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<BalancesAsOf>, ApiError> {
    let as_of = as_of(raw)?;
    let (district, position, balances) = state.service.balances_as_of(claims.actor(), as_of).await?;
    Ok(Json(BalancesAsOf { district, position, balances }))
}
