//! `/api/v1/mandates` and `/api/v1/contests`: tasks delegated to communities, every step of
//! them, and their contests.

use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use shequ_domain::mandate::{
    ContestGround, Cure, MandateError, MandateRecord, MandateStatus, Proposal, ReviewOutcome, Violation,
};
use shequ_domain::Fen;
use shequ_service::projection::MandateView as MandateSummary;
use shequ_service::{MandateFilter, MandateOutcome, ServiceError};
use shequ_store::RecordedRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, CommandHeaders, CreateJson};
use super::page::{self, Page};
use super::responses::{error_responses, ListErrors, MandateCommandErrors};
use super::{Created, Reply};
use crate::error::ApiError;
use crate::AppState;

/// The mandate routes with their operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_mandates, propose))
        .routes(routes!(list_contests))
        .routes(routes!(read_mandate))
        .routes(routes!(record_outside_process))
        .routes(routes!(accept))
        .routes(routes!(contest))
        .routes(routes!(cure))
        .routes(routes!(review))
        .routes(routes!(withdraw))
        .routes(routes!(complete))
        .routes(routes!(reassign))
}

/// What became of a mandate after a command.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MandateOutcome)]
pub struct OutcomeView {
    mandate: Uuid,
    status: MandateStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_id: Option<Uuid>,
    violations: Vec<Violation>,
    /// What this call appended, in order (none for a retry that found its first result).
    events: Vec<RecordedRef>,
}

impl OutcomeView {
    fn new(outcome: MandateOutcome, events: Vec<RecordedRef>) -> Self {
        Self {
            mandate: outcome.mandate,
            status: outcome.status,
            decision_id: outcome.decision_id,
            violations: outcome.violations,
            events,
        }
    }

    /// The answer to a command that may be refused by the access policy: refused, it was
    /// recorded, and is answered with the mandate and every violation.
    fn unless_refused(outcome: MandateOutcome, events: Vec<RecordedRef>) -> Result<Self, ApiError> {
        match outcome.violations.is_empty() {
            true => Ok(Self::new(outcome, events)),
            false => Err(ApiError::refused(outcome.mandate, outcome.violations)),
        }
    }
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

#[utoipa::path(get, path = "/mandates", tag = "mandates", security(("bearer" = [])),
    params(MandateQuery),
    responses((status = 200, description = "Mandates the caller may see, in id order", body = Page<MandateSummary>), ListErrors)
)]
async fn list_mandates(
    caller: Caller,
    ApiQuery(query): ApiQuery<MandateQuery>,
) -> Reply<Page<MandateSummary>> {
    let limit = page::limit(query.limit)?;
    let filter = MandateFilter {
        status: query.status,
        community: query.community,
        delegating_unit: query.delegating_unit,
        matter_code: query.matter_code,
        contested: query.contested,
    };
    let items = caller.service().list_mandates(caller.actor(), &filter, query.cursor, limit).await?;
    Ok(Json(Page::of(items, limit, |view| view.mandate.to_string())))
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
#[utoipa::path(get, path = "/contests", tag = "mandates", security(("bearer" = [])),
    params(ContestQuery),
    responses((status = 200, description = "Open contests the caller may see, in mandate id order", body = Page<MandateSummary>), ListErrors)
)]
async fn list_contests(
    caller: Caller,
    ApiQuery(query): ApiQuery<ContestQuery>,
) -> Reply<Page<MandateSummary>> {
    let limit = page::limit(query.limit)?;
    let filter =
        MandateFilter { community: query.community, contested: Some(true), ..MandateFilter::default() };
    let items = caller.service().list_mandates(caller.actor(), &filter, query.cursor, limit).await?;
    Ok(Json(Page::of(items, limit, |view| view.mandate.to_string())))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProposeRequest {
    /// Chosen by the client: a retried request with the same id returns the first result.
    mandate_id: Uuid,
    matter_code: String,
    community: Uuid,
    scope: String,
    volume: u32,
    deadline: String,
    funds_offered_fen: i64,
    #[serde(default)]
    powers_granted: Vec<String>,
    #[serde(default)]
    working_conditions: Vec<String>,
}

#[utoipa::path(post, path = "/mandates", tag = "mandates", security(("bearer" = [])),
    request_body = ProposeRequest,
    responses((status = 201, description = "Admitted (or the first answer to a retry with the same `mandate_id`)", body = OutcomeView), ProposeErrors)
)]
async fn propose(caller: Caller, CreateJson(request): CreateJson<ProposeRequest>) -> Created<OutcomeView> {
    let actor = caller.actor();
    let proposal = Proposal {
        matter_code: request.matter_code,
        delegating_unit: actor.organisation,
        community: request.community,
        scope: request.scope,
        volume: request.volume,
        deadline: super::date("deadline", &request.deadline)?,
        funds_offered_fen: super::fen("funds_offered_fen", request.funds_offered_fen)?,
        powers_granted: request.powers_granted,
        working_conditions: request.working_conditions,
    };
    let (scope, recorder) = CommandHeaders::NONE.scope(&caller, "propose", &()).await;
    let outcome = match caller.service().propose(&scope, request.mandate_id, proposal.clone()).await {
        Ok(outcome) => outcome,
        // A retry of the same proposal: answer as the first time.
        Err(ServiceError::Mandate(MandateError::AlreadyExists)) => {
            let (record, _) = caller.service().read_mandate(actor, request.mandate_id).await?;
            if record.proposal != proposal {
                let taken = format!("mandate_id {} is taken by another proposal", request.mandate_id);
                return Err(ServiceError::Invalid(taken).into());
            }
            MandateOutcome {
                mandate: request.mandate_id,
                status: record.status,
                violations: record.decision.violations.clone(),
                decision_id: Some(record.decision.decision_id),
            }
        }
        Err(error) => return Err(error.into()),
    };
    Ok((StatusCode::CREATED, Json(OutcomeView::unless_refused(outcome, recorder.take())?)))
}

/// One mandate as its aggregate holds it: the proposal, the decision, the funds, any contest.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MandateDetail)]
struct MandateView {
    mandate: Uuid,
    status: MandateStatus,
    proposal: Proposal,
    decision_id: Uuid,
    bundle_digest: String,
    catalogue_version: u64,
    violations: Vec<Violation>,
    funds_posted_fen: Fen,
    contest: Option<ContestView>,
    recorded_outside_process: bool,
    /// The revision of the mandate's last event: a command sent with it as
    /// `Expected-Revision` goes through only on this state.
    revision: u64,
}

/// A mandate's open contest.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MandateContest)]
struct ContestView {
    contest_id: Uuid,
    grounds: Vec<ContestGround>,
    deadline: String,
    escalated: bool,
}

impl MandateView {
    fn new(mandate: Uuid, record: MandateRecord, revision: u64) -> Self {
        Self {
            mandate,
            revision,
            status: record.status,
            decision_id: record.decision.decision_id,
            bundle_digest: record.decision.bundle_digest,
            catalogue_version: record.decision.catalogue_version,
            violations: record.decision.violations,
            funds_posted_fen: record.funds_posted_fen,
            contest: record.contest.map(|contest| ContestView {
                contest_id: contest.contest_id,
                grounds: contest.grounds,
                deadline: contest.deadline,
                escalated: contest.escalated,
            }),
            recorded_outside_process: record.recorded_outside_process,
            proposal: record.proposal,
        }
    }
}

#[utoipa::path(get, path = "/mandates/{id}", tag = "mandates", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id")),
    responses((status = 200, description = "The mandate, its decision and any open contest", body = MandateView), ReadErrors)
)]
async fn read_mandate(caller: Caller, ApiPath(id): ApiPath<Uuid>) -> Reply<MandateView> {
    let (record, revision) = caller.service().read_mandate(caller.actor(), id).await?;
    Ok(Json(MandateView::new(id, record, revision)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OutsideProcessRequest {
    mandate_id: Uuid,
    /// The unit the task came from.
    delegating_unit: Uuid,
    matter_code: String,
    scope: String,
    volume: u32,
    deadline: String,
    #[serde(default)]
    funds_offered_fen: i64,
    #[serde(default)]
    powers_granted: Vec<String>,
    #[serde(default)]
    working_conditions: Vec<String>,
    /// How the task reached the community, in its own words.
    statement: String,
}

#[utoipa::path(post, path = "/mandates/outside-process", tag = "mandates", security(("bearer" = [])),
    request_body = OutsideProcessRequest,
    responses((status = 201, description = "Recorded, contested on the ground `outside_access_process`", body = OutcomeView), MandateCommandErrors)
)]
async fn record_outside_process(
    caller: Caller,
    CreateJson(request): CreateJson<OutsideProcessRequest>,
) -> Created<OutcomeView> {
    let actor = caller.actor();
    let proposal = Proposal {
        matter_code: request.matter_code,
        delegating_unit: request.delegating_unit,
        community: actor.organisation,
        scope: request.scope,
        volume: request.volume,
        deadline: super::date("deadline", &request.deadline)?,
        funds_offered_fen: super::fen("funds_offered_fen", request.funds_offered_fen)?,
        powers_granted: request.powers_granted,
        working_conditions: request.working_conditions,
    };
    let (scope, recorder) = CommandHeaders::NONE.scope(&caller, "record_outside_process", &()).await;
    let outcome = caller
        .service()
        .record_outside_process(&scope, request.mandate_id, proposal, &request.statement)
        .await?;
    Ok((StatusCode::CREATED, Json(OutcomeView::new(outcome, recorder.take()))))
}

#[utoipa::path(post, path = "/mandates/{id}/accept", tag = "mandates", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id"), CommandHeaders),
    responses((status = 200, description = "Accepted by the community", body = OutcomeView), MandateCommandErrors)
)]
async fn accept(caller: Caller, headers: CommandHeaders, ApiPath(id): ApiPath<Uuid>) -> Reply<OutcomeView> {
    let (scope, recorder) = headers.scope(&caller, "accept", &()).await;
    let outcome = caller.service().accept(&scope, id).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ContestRequest {
    grounds: Vec<ContestGround>,
    statement: String,
}

#[utoipa::path(post, path = "/mandates/{id}/contest", tag = "mandates", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id"), CommandHeaders),
    request_body = ContestRequest,
    responses((status = 200, description = "Contested", body = OutcomeView), MandateCommandErrors)
)]
async fn contest(
    caller: Caller,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ContestRequest>,
) -> Reply<OutcomeView> {
    let (scope, recorder) = headers.scope(&caller, "contest", &request).await;
    let outcome = caller.service().contest(&scope, id, request.grounds, &request.statement).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CureRequest {
    #[serde(default)]
    funds_added_fen: i64,
    #[serde(default)]
    powers_added: Vec<String>,
    #[serde(default)]
    working_conditions_added: Vec<String>,
}

#[utoipa::path(post, path = "/mandates/{id}/cure", tag = "mandates", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id"), CommandHeaders),
    request_body = CureRequest,
    responses((status = 200, description = "Cured and decided again", body = OutcomeView), MandateCommandErrors)
)]
async fn cure(
    caller: Caller,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CureRequest>,
) -> Reply<OutcomeView> {
    let (scope, recorder) = headers.scope(&caller, "cure", &request).await;
    let cure = Cure {
        funds_added_fen: super::fen("funds_added_fen", request.funds_added_fen)?,
        powers_added: request.powers_added,
        working_conditions_added: request.working_conditions_added,
    };
    let outcome = caller.service().cure(&scope, id, cure).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReviewRequest {
    outcome: ReviewOutcome,
    reason: String,
}

#[utoipa::path(post, path = "/mandates/{id}/review", tag = "mandates", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id"), CommandHeaders),
    request_body = ReviewRequest,
    responses((status = 200, description = "The contest upheld or dismissed", body = OutcomeView), MandateCommandErrors)
)]
async fn review(
    caller: Caller,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ReviewRequest>,
) -> Reply<OutcomeView> {
    let (scope, recorder) = headers.scope(&caller, "review", &request).await;
    let outcome = caller.service().review(&scope, id, request.outcome, &request.reason).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReasonRequest {
    reason: String,
}

#[utoipa::path(post, path = "/mandates/{id}/withdraw", tag = "mandates", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id"), CommandHeaders),
    request_body = ReasonRequest,
    responses((status = 200, description = "Withdrawn; unspent funds returned", body = OutcomeView), MandateCommandErrors)
)]
async fn withdraw(
    caller: Caller,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ReasonRequest>,
) -> Reply<OutcomeView> {
    let (scope, recorder) = headers.scope(&caller, "withdraw", &request).await;
    let outcome = caller.service().withdraw(&scope, id, &request.reason).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[utoipa::path(post, path = "/mandates/{id}/complete", tag = "mandates", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id"), CommandHeaders),
    responses((status = 200, description = "Completed", body = OutcomeView), MandateCommandErrors)
)]
async fn complete(caller: Caller, headers: CommandHeaders, ApiPath(id): ApiPath<Uuid>) -> Reply<OutcomeView> {
    let (scope, recorder) = headers.scope(&caller, "complete", &()).await;
    let outcome = caller.service().complete(&scope, id).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReassignRequest {
    community: Uuid,
}

#[utoipa::path(post, path = "/mandates/{id}/reassign", tag = "mandates", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The mandate's id"), CommandHeaders),
    request_body = ReassignRequest,
    responses((status = 200, description = "Reassigned; the funds follow", body = OutcomeView), ReassignErrors)
)]
async fn reassign(
    caller: Caller,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ReassignRequest>,
) -> Reply<OutcomeView> {
    let (scope, recorder) = headers.scope(&caller, "reassign", &request).await;
    let outcome = caller.service().reassign(&scope, id, request.community).await?;
    Ok(Json(OutcomeView::unless_refused(outcome, recorder.take())?))
}

// The errors each operation documents, beside the shared ones (`responses.rs`).

error_responses!(
    ProposeErrors: BadRequest,
    Forbidden,
    NotFound("The community is unknown"),
    Conflict,
    Refused("Refused: recorded, and answered with `mandate` and every violation"),
);

error_responses!(ReadErrors: Forbidden, NotFound("No such mandate"));

error_responses!(
    ReassignErrors: BadRequest,
    Forbidden,
    NotFound("No such mandate, or an organisation it names is unknown"),
    Conflict,
    Refused("Refused: the access policy's violations for the new community, with `mandate`"),
);
