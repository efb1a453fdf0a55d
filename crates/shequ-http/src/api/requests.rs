//! `/api/v1/requests`: residents' service requests at the one-stop community service station,
//! filed, listed, read and taken through their steps.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use shequ_domain::request::{Channel, FileRequest, RequestStatus, RequestStep};
use shequ_service::projection::RequestView;
use shequ_service::{RequestFilter, ServiceError};
use shequ_store::RecordedRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller, CommandHeaders, CreateJson, OptionalJson};
use super::page::{self, Page};
use super::responses::{error_responses, ListErrors};
use super::{Created, Reply};
use crate::error::ApiError;
use crate::AppState;

/// The request routes with their operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(file_request, list_requests))
        .routes(routes!(read_request))
        .routes(routes!(act_on_request))
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

impl RequestOut {
    fn new(view: RequestView, today: &str) -> Self {
        RequestOut { overdue: view.is_overdue(today), request: view, events: None }
    }
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
    attributes: BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/requests", tag = "requests", security(("bearer" = [])),
    request_body = FileRequestBody,
    responses((status = 201, description = "Filed and routed (or the first answer to a retry with the same `request_id`)", body = RequestOut), FileErrors)
)]
async fn file_request(caller: Caller, CreateJson(body): CreateJson<FileRequestBody>) -> Created<RequestOut> {
    let actor = caller.actor();
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
    let (scope, recorder) = CommandHeaders::NONE.scope(&caller, "file_request", &()).await;
    let view = caller.service().file_request(&scope, caller.subject(), body.request_id, filing).await?;
    let out =
        RequestOut { events: Some(recorder.take()), ..RequestOut::new(view, &caller.service().today()) };
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
    filed_from: Option<DateTime<Utc>>,
    /// Only requests filed before this time (RFC 3339).
    filed_before: Option<DateTime<Utc>>,
    /// The `next_cursor` of the page before: the last id it held.
    cursor: Option<Uuid>,
    /// Items per page, 1–500 (default 50).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/requests", tag = "requests", security(("bearer" = [])),
    params(RequestQuery),
    responses((status = 200, description = "Requests the caller may see, in id order", body = Page<RequestOut>), ListErrors)
)]
async fn list_requests(caller: Caller, ApiQuery(query): ApiQuery<RequestQuery>) -> Reply<Page<RequestOut>> {
    let limit = page::limit(query.limit)?;
    let time = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let filter = RequestFilter {
        status: query.status,
        matter_code: query.matter_code,
        station: query.station,
        holder: query.holder,
        overdue: query.overdue,
        priority: query.priority,
        filed_from: query.filed_from.map(time),
        filed_before: query.filed_before.map(time),
    };
    let items = caller
        .service()
        .list_requests(caller.actor(), caller.subject(), &filter, query.cursor, limit)
        .await?;
    let today = caller.service().today();
    let items: Vec<RequestOut> = items.into_iter().map(|view| RequestOut::new(view, &today)).collect();
    Ok(Json(Page::of(items, limit, |out| out.request.request.to_string())))
}

#[utoipa::path(get, path = "/requests/{id}", tag = "requests", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The request's id")),
    responses((status = 200, description = "The request, its routing and its history", body = RequestOut), ReadErrors)
)]
async fn read_request(caller: Caller, ApiPath(id): ApiPath<Uuid>) -> Reply<RequestOut> {
    let view = caller.service().read_request(caller.actor(), caller.subject(), id).await?;
    Ok(Json(RequestOut::new(view, &caller.service().today())))
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

impl ActionBody {
    /// The step `action` names, with what it says.
    fn action(self, action: &str) -> Result<RequestStep, ApiError> {
        Ok(match action {
            "forward" => RequestStep::Forward { note: self.note },
            "accept" => RequestStep::Accept { note: self.note },
            "start" => RequestStep::Start { note: self.note },
            "resolve" => RequestStep::Resolve { note: self.note },
            "reject" => RequestStep::Reject { reason: self.reason },
            "close" => RequestStep::Close { note: self.note },
            "rate" => RequestStep::Rate {
                rating: self.rating.ok_or_else(|| ApiError::bad_request("rating: required, 1–5"))?,
                comment: self.comment,
            },
            other => {
                return Err(ServiceError::NotFound(format!(
                    "action `{other}` (use forward, accept, start, resolve, reject, close or rate)"
                ))
                .into())
            }
        })
    }
}

#[utoipa::path(post, path = "/requests/{id}/{action}", tag = "requests", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The request's id"), ("action" = String, Path, description = "One of `forward`, `accept`, `start`, `resolve`, `reject`, `close`, `rate`"), CommandHeaders),
    request_body(content = Option<ActionBody>, description = "May be left out (no body at all) where the action needs nothing: `accept`, `start`, `resolve`, `close` and `forward` take an optional `note`"),
    responses((status = 200, description = "The request after the action, with the events it appended", body = RequestOut), ActionErrors)
)]
async fn act_on_request(
    caller: Caller,
    ApiPath((id, action)): ApiPath<(Uuid, String)>,
    headers: CommandHeaders,
    OptionalJson(body): OptionalJson<ActionBody>,
) -> Reply<RequestOut> {
    let (scope, recorder) = headers.scope(&caller, &action, &body).await;
    let action = body.action(&action)?;
    let view = caller.service().act_on_request(&scope, caller.subject(), id, action).await?;
    Ok(Json(RequestOut { events: Some(recorder.take()), ..RequestOut::new(view, &caller.service().today()) }))
}

// The errors each operation documents, beside the shared ones (`responses.rs`).

error_responses!(
    FileErrors: BadRequest,
    Forbidden,
    NotFound("The station or the matter is unknown"),
    Conflict,
    Refused,
);

error_responses!(ReadErrors: Forbidden, NotFound("No such request"));

error_responses!(
    ActionErrors: BadRequest("Malformed input, naming the field (`rate` needs `rating`)"),
    Forbidden,
    NotFound("No such request, or an unknown action"),
    Conflict,
    Refused("Not allowed in the request's status, or not by its holder"),
);
