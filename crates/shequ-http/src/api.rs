//! `/api/v1`: every capability over JSON, each request authenticated by a bearer token and
//! authorised by the command path (`policies/authz`).

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shequ_domain::mandate::{ContestGround, MandateError, MandateRecord, MandateStatus, Proposal, Violation};
use shequ_domain::Fen;
use shequ_service::{MandateOutcome, ServiceError};
use shequ_store::RecordedRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{AuthError, Claims};
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

mod reads;

/// Every `/api/v1` route with its OpenAPI operation: what is routed is what is documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(reads::router())
        .routes(routes!(catalogue))
        .routes(routes!(propose))
        .routes(routes!(read_mandate))
        .routes(routes!(record_outside_process))
        .routes(routes!(accept))
        .routes(routes!(contest))
        .routes(routes!(cure))
        .routes(routes!(review))
        .routes(routes!(withdraw))
        .routes(routes!(complete))
        .routes(routes!(reassign))
        .routes(routes!(spend))
        .routes(routes!(allocate))
        .routes(routes!(balances))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
        .routes(routes!(public_key))
}

/// The bearer of a valid token.
pub struct Authenticated(pub Claims);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let token = header
            .to_str()
            .ok()
            .and_then(crate::auth::bearer_token)
            .ok_or_else(|| AuthError::Invalid("expected `Authorization: Bearer <token>`".into()))?;
        Ok(Authenticated(state.keys.verify(token)?))
    }
}

/// The optional headers of a command on an existing mandate or request, parsed and
/// documented once. A malformed one is answered 400 naming the header.
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaders {
    /// A UUID the client chose for this command, bare or quoted (the IETF draft's form): a
    /// retry with the same key returns the first result (the events the command appended to
    /// the mandate or request, and its state as it stands) instead of running it again. A
    /// retry sent while the first attempt still runs waits for it, then answers the same.
    #[param(rename = "Idempotency-Key", value_type = Option<Uuid>)]
    idempotency_key: Option<Uuid>,
    /// The `revision` the client last read the mandate or request at: the command goes
    /// through only if it is still there, and is answered 409 otherwise (read it again and
    /// decide again). Without it, the command acts on the state as it stands.
    #[param(rename = "Expected-Revision", value_type = Option<u64>, minimum = 0)]
    expected_revision: Option<u64>,
}

impl CommandHeaders {
    /// A handle on `service` for this command (`action`, with the body it was sent), and the
    /// recorder of the events it appends. The digest of the action and its body, as parsed,
    /// goes with a keyed command's events: the same key sent with another body is refused.
    async fn scope(
        &self,
        service: &shequ_service::Service,
        actor: shequ_service::Actor,
        action: &str,
        body: &impl Serialize,
    ) -> (shequ_service::CommandScope, shequ_store::Recorder) {
        let digest = self.idempotency_key.map(|_| {
            let body = serde_json::to_vec(body).expect("a parsed body serialises");
            let mut hasher = Sha256::new();
            hasher.update(action.as_bytes());
            hasher.update(b"\n");
            hasher.update(&body);
            hex::encode(hasher.finalize())
        });
        let scope = shequ_service::CommandScope::new(actor);
        let scope = match self.idempotency_key {
            Some(key) => scope.keyed(service, key, digest).await,
            None => scope,
        };
        scope.expecting(self.expected_revision).recording()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let header = |name: &str| parts.headers.get(name).map(|value| value.to_str().unwrap_or("").trim());
        let idempotency_key = match header("idempotency-key") {
            None => None,
            Some(value) => Some(
                Uuid::parse_str(value.trim_matches('"'))
                    .map_err(|_| ApiError::BadRequest("Idempotency-Key: must be a UUID".into()))?,
            ),
        };
        let expected_revision = match header("expected-revision") {
            None => None,
            Some(value) => Some(value.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(
                    "Expected-Revision: must be a revision number, the `revision` of the record as read"
                        .into(),
                )
            })?),
        };
        Ok(CommandHeaders { idempotency_key, expected_revision })
    }
}

/// For a command that takes no `Expected-Revision`: one that creates its record, or moves
/// money under its own transfer id. A client that sends the header expects a check this
/// command does not make, and is told so (400) instead of having it ignored.
pub struct NoExpectedRevision;

impl<S: Send + Sync> FromRequestParts<S> for NoExpectedRevision {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match parts.headers.contains_key("expected-revision") {
            false => Ok(NoExpectedRevision),
            true => Err(ApiError::BadRequest(
                "Expected-Revision: this command takes none (it creates its record, or names its \
                 own transfer id); send it only on an action on an existing mandate or request"
                    .into(),
            )),
        }
    }
}

/// A path parameter, with a malformed one answered 400 in the JSON error body naming it
/// (axum's own answer is plain text).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// JSON in, with malformed input answered 400 naming the field (axum's own answer is 422).
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

/// [`ApiJson`] for a body the client may leave out: a request with no body at all (no
/// `Content-Type`, nothing sent), or a JSON `null`, stands for `T::default()`. Any other body
/// is read as [`ApiJson`] reads it.
pub struct OptionalJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
        let headers = request.headers();
        let left_out = !headers.contains_key(CONTENT_TYPE)
            && !headers.contains_key(TRANSFER_ENCODING)
            && headers.get(CONTENT_LENGTH).is_none_or(|length| length.as_bytes() == b"0");
        match left_out {
            true => Ok(OptionalJson(T::default())),
            // `null` stands for the default as well, as the OpenAPI document allows it.
            false => Ok(OptionalJson(
                ApiJson::<Option<T>>::from_request(request, state).await?.0.unwrap_or_default(),
            )),
        }
    }
}

/// The catalogue of community public-service matters.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Catalogue)]
struct CatalogueView {
    /// The number of catalogue events so far: every decision names the version it used.
    version: u64,
    matters: Vec<shequ_domain::catalogue::Matter>,
}

#[utoipa::path(
    get,
    path = "/catalogue",
    tag = "catalogue",
    responses(
        (
            status = 200,
            description = "The catalogue of community public-service matters and its version",
            body = CatalogueView
        )
    ),
    security(("bearer" = []))
)]
async fn catalogue(
    State(state): State<AppState>,
    Authenticated(_): Authenticated,
) -> Result<Json<CatalogueView>, ApiError> {
    let (version, matters) = state.service.catalogue().await?;
    Ok(Json(CatalogueView { version, matters: matters.into_values().collect() }))
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

/// What became of a mandate after a command.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MandateOutcome)]
struct OutcomeView {
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
}

#[utoipa::path(
    post,
    path = "/mandates",
    tag = "mandates",
    request_body = ProposeRequest,
    responses(
        (
            status = 201,
            description = "Admitted (or the first answer to a retry with the same `mandate_id`)",
            body = OutcomeView
        ),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "The community is unknown", body = ErrorBody),
        (
            status = 409,
            description = "The record changed meanwhile: read it again and retry",
            body = ErrorBody
        ),
        (
            status = 422,
            description = "Refused: recorded, and answered with `mandate` and every violation",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn propose(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    _: NoExpectedRevision,
    ApiJson(request): ApiJson<ProposeRequest>,
) -> Result<(StatusCode, Json<OutcomeView>), ApiError> {
    let actor = claims.actor();
    let funds = Fen::parse(request.funds_offered_fen)
        .map_err(|error| ApiError::BadRequest(format!("funds_offered_fen: {error}")))?;
    let proposal = Proposal {
        matter_code: request.matter_code,
        delegating_unit: actor.organisation,
        community: request.community,
        scope: request.scope,
        volume: request.volume,
        deadline: request.deadline,
        funds_offered_fen: funds,
        powers_granted: request.powers_granted,
        working_conditions: request.working_conditions,
    };
    let (scope, recorder) = shequ_service::CommandScope::new(actor).recording();
    let outcome = match state.service.propose(&scope, request.mandate_id, proposal.clone()).await {
        Ok(outcome) => outcome,
        // A retry of the same proposal: answer as the first time.
        Err(ServiceError::Mandate(MandateError::AlreadyExists)) => {
            let (record, _) = state.service.read_mandate(actor, request.mandate_id).await?;
            if record.proposal != proposal {
                return Err(ServiceError::Invalid(format!(
                    "mandate_id {} is taken by another proposal",
                    request.mandate_id
                ))
                .into());
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
    match outcome.violations.is_empty() {
        true => Ok((StatusCode::CREATED, Json(OutcomeView::new(outcome, recorder.take())))),
        false => Err(ApiError::Refused { mandate: outcome.mandate, violations: outcome.violations }),
    }
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

fn mandate_view(mandate: Uuid, record: MandateRecord, revision: u64) -> MandateView {
    MandateView {
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

#[utoipa::path(
    get,
    path = "/mandates/{id}",
    tag = "mandates",
    params(
        ("id" = Uuid, Path, description = "The mandate's id")
    ),
    responses(
        (status = 200, description = "The mandate, its decision and any open contest", body = MandateView),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "No such mandate", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn read_mandate(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<MandateView>, ApiError> {
    let (record, revision) = state.service.read_mandate(claims.actor(), id).await?;
    Ok(Json(mandate_view(id, record, revision)))
}

#[utoipa::path(
    post,
    path = "/mandates/{id}/accept",
    tag = "mandates",
    params(
        ("id" = Uuid, Path, description = "The mandate's id"),
        CommandHeaders
    ),
    responses(
        (status = 200, description = "Accepted by the community", body = OutcomeView),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
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
async fn accept(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<OutcomeView>, ApiError> {
    let (scope, recorder) = headers.scope(&state.service, claims.actor(), "accept", &()).await;
    let outcome = state.service.accept(&scope, id).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ContestRequest {
    grounds: Vec<ContestGround>,
    statement: String,
}

#[utoipa::path(
    post,
    path = "/mandates/{id}/contest",
    tag = "mandates",
    params(
        ("id" = Uuid, Path, description = "The mandate's id"),
        CommandHeaders
    ),
    request_body = ContestRequest,
    responses(
        (status = 200, description = "Contested", body = OutcomeView),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
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
async fn contest(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ContestRequest>,
) -> Result<Json<OutcomeView>, ApiError> {
    let (scope, recorder) = headers.scope(&state.service, claims.actor(), "contest", &request).await;
    let outcome = state.service.contest(&scope, id, request.grounds, &request.statement).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

fn fen(field: &str, amount: i64) -> Result<Fen, ApiError> {
    Fen::parse(amount).map_err(|error| ApiError::BadRequest(format!("{field}: {error}")))
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

#[utoipa::path(
    post,
    path = "/mandates/outside-process",
    tag = "mandates",
    request_body = OutsideProcessRequest,
    responses(
        (
            status = 201,
            description = "Recorded, contested on the ground `outside_access_process`",
            body = OutcomeView
        ),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
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
async fn record_outside_process(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    _: NoExpectedRevision,
    ApiJson(request): ApiJson<OutsideProcessRequest>,
) -> Result<(StatusCode, Json<OutcomeView>), ApiError> {
    let actor = claims.actor();
    let proposal = Proposal {
        matter_code: request.matter_code,
        delegating_unit: request.delegating_unit,
        community: actor.organisation,
        scope: request.scope,
        volume: request.volume,
        deadline: request.deadline,
        funds_offered_fen: fen("funds_offered_fen", request.funds_offered_fen)?,
        powers_granted: request.powers_granted,
        working_conditions: request.working_conditions,
    };
    let (scope, recorder) = shequ_service::CommandScope::new(actor).recording();
    let outcome = state
        .service
        .record_outside_process(&scope, request.mandate_id, proposal, &request.statement)
        .await?;
    Ok((StatusCode::CREATED, Json(OutcomeView::new(outcome, recorder.take()))))
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

#[utoipa::path(
    post,
    path = "/mandates/{id}/cure",
    tag = "mandates",
    params(
        ("id" = Uuid, Path, description = "The mandate's id"),
        CommandHeaders
    ),
    request_body = CureRequest,
    responses(
        (status = 200, description = "Cured and decided again", body = OutcomeView),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
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
async fn cure(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CureRequest>,
) -> Result<Json<OutcomeView>, ApiError> {
    let (scope, recorder) = headers.scope(&state.service, claims.actor(), "cure", &request).await;
    let cure = shequ_domain::mandate::Cure {
        funds_added_fen: fen("funds_added_fen", request.funds_added_fen)?,
        powers_added: request.powers_added,
        working_conditions_added: request.working_conditions_added,
    };
    let outcome = state.service.cure(&scope, id, cure).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReviewRequest {
    outcome: shequ_domain::mandate::ReviewOutcome,
    reason: String,
}

#[utoipa::path(
    post,
    path = "/mandates/{id}/review",
    tag = "mandates",
    params(
        ("id" = Uuid, Path, description = "The mandate's id"),
        CommandHeaders
    ),
    request_body = ReviewRequest,
    responses(
        (status = 200, description = "The contest upheld or dismissed", body = OutcomeView),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
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
async fn review(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ReviewRequest>,
) -> Result<Json<OutcomeView>, ApiError> {
    let (scope, recorder) = headers.scope(&state.service, claims.actor(), "review", &request).await;
    let outcome = state.service.review(&scope, id, request.outcome, &request.reason).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReasonRequest {
    reason: String,
}

#[utoipa::path(
    post,
    path = "/mandates/{id}/withdraw",
    tag = "mandates",
    params(
        ("id" = Uuid, Path, description = "The mandate's id"),
        CommandHeaders
    ),
    request_body = ReasonRequest,
    responses(
        (status = 200, description = "Withdrawn; unspent funds returned", body = OutcomeView),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
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
async fn withdraw(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ReasonRequest>,
) -> Result<Json<OutcomeView>, ApiError> {
    let (scope, recorder) = headers.scope(&state.service, claims.actor(), "withdraw", &request).await;
    let outcome = state.service.withdraw(&scope, id, &request.reason).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[utoipa::path(
    post,
    path = "/mandates/{id}/complete",
    tag = "mandates",
    params(
        ("id" = Uuid, Path, description = "The mandate's id"),
        CommandHeaders
    ),
    responses(
        (status = 200, description = "Completed", body = OutcomeView),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
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
async fn complete(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<OutcomeView>, ApiError> {
    let (scope, recorder) = headers.scope(&state.service, claims.actor(), "complete", &()).await;
    let outcome = state.service.complete(&scope, id).await?;
    Ok(Json(OutcomeView::new(outcome, recorder.take())))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReassignRequest {
    community: Uuid,
}

#[utoipa::path(
    post,
    path = "/mandates/{id}/reassign",
    tag = "mandates",
    params(
        ("id" = Uuid, Path, description = "The mandate's id"),
        CommandHeaders
    ),
    request_body = ReassignRequest,
    responses(
        (status = 200, description = "Reassigned; the funds follow", body = OutcomeView),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
        (
            status = 409,
            description = "The record changed meanwhile: read it again and retry",
            body = ErrorBody
        ),
        (
            status = 422,
            description = "Refused: the access policy's violations for the new community, with `mandate`",
            body = ErrorBody
        )
    ),
    security(("bearer" = []))
)]
async fn reassign(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: CommandHeaders,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ReassignRequest>,
) -> Result<Json<OutcomeView>, ApiError> {
    let (scope, recorder) = headers.scope(&state.service, claims.actor(), "reassign", &request).await;
    let outcome = state.service.reassign(&scope, id, request.community).await?;
    match outcome.violations.is_empty() {
        true => Ok(Json(OutcomeView::new(outcome, recorder.take()))),
        false => Err(ApiError::Refused { mandate: outcome.mandate, violations: outcome.violations }),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SpendRequest {
    /// Chosen by the client: a retry records nothing new.
    transfer_id: Uuid,
    amount_fen: i64,
    memo: String,
}

/// A transfer recorded, and what the call appended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TransferRecorded)]
struct Recorded {
    transfer_id: Uuid,
    /// What this call appended (none for a retry of a recorded transfer).
    events: Vec<RecordedRef>,
}

#[utoipa::path(
    post,
    path = "/mandates/{id}/spending",
    tag = "ledger",
    params(
        ("id" = Uuid, Path, description = "The mandate's id")
    ),
    request_body = SpendRequest,
    responses(
        (status = 201, description = "Recorded (or a retry of a recorded transfer)", body = Recorded),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (
            status = 404,
            description = "No such mandate, or an organisation it names is unknown",
            body = ErrorBody
        ),
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
async fn spend(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    _: NoExpectedRevision,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<SpendRequest>,
) -> Result<(StatusCode, Json<Recorded>), ApiError> {
    let amount = fen("amount_fen", request.amount_fen)?;
    let (scope, recorder) = shequ_service::CommandScope::new(claims.actor()).recording();
    state.service.spend(&scope, id, request.transfer_id, amount, &request.memo).await?;
    Ok((StatusCode::CREATED, Json(Recorded { transfer_id: request.transfer_id, events: recorder.take() })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AllocateRequest {
    transfer_id: Uuid,
    /// The paying organisation: the caller's own account (absent: the fiscal budget, district only).
    from: Option<Uuid>,
    to: Uuid,
    amount_fen: i64,
    #[serde(default)]
    memo: String,
}

#[utoipa::path(
    post,
    path = "/ledger/allocations",
    tag = "ledger",
    request_body = AllocateRequest,
    responses(
        (status = 201, description = "Recorded (or a retry of a recorded transfer)", body = Recorded),
        (status = 400, description = "Malformed input, naming the field", body = ErrorBody),
        (
            status = 403,
            description = "Outside the caller's role or place (`policies/authz`)",
            body = ErrorBody
        ),
        (status = 404, description = "An organisation is unknown", body = ErrorBody),
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
async fn allocate(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    _: NoExpectedRevision,
    ApiJson(request): ApiJson<AllocateRequest>,
) -> Result<(StatusCode, Json<Recorded>), ApiError> {
    let amount = fen("amount_fen", request.amount_fen)?;
    let actor = claims.actor();
    let (scope, recorder) = shequ_service::CommandScope::new(actor).recording();
    let allocation = shequ_service::Allocation {
        transfer_id: request.transfer_id,
        from: request.from,
        to: request.to,
        amount_fen: amount,
        memo: &request.memo,
    };
    state.service.allocate(&scope, allocation).await?;
    Ok((StatusCode::CREATED, Json(Recorded { transfer_id: request.transfer_id, events: recorder.take() })))
}

/// One account's balance; the account as text (`organisation:{id}`, `mandate:{id}@{community}`, …).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AccountBalance)]
struct BalanceView {
    account: String,
    balance_fen: i64,
}

/// The balances of the caller's district's ledger that the caller may read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = LedgerBalances)]
struct BalancesView {
    district: Uuid,
    /// How many transfers moved money into or out of the accounts shown.
    transfers: usize,
    balances: Vec<BalanceView>,
}

#[utoipa::path(
    get,
    path = "/ledger/balances",
    tag = "ledger",
    responses(
        (
            status = 200,
            description = "The balances the caller may read: every account of the district for the district, its departments and inspectors; the accounts of its street and its communities for a street office; its own for a community",
            body = BalancesView
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
async fn balances(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Json<BalancesView>, ApiError> {
    let ledger = state.service.read_ledger(claims.actor()).await?;
    let balances = ledger
        .balances
        .iter()
        .map(|(account, balance)| BalanceView { account: account.to_string(), balance_fen: *balance })
        .collect();
    Ok(Json(BalancesView { district: ledger.district, transfers: ledger.transfers, balances }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct InclusionQuery {
    /// The event's position in the log (its leaf index + 1).
    position: u64,
    /// The size of the tree to prove inclusion in: at least `position`, at most the log's head.
    tree_size: u64,
}

/// RFC 6962 / 9162 field meanings; hashes in hex. Leaf index = position − 1.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = InclusionProof)]
struct InclusionView {
    position: u64,
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    audit_path: Vec<String>,
    root_hash: String,
}

#[utoipa::path(
    get,
    path = "/audit/proof/inclusion",
    tag = "audit",
    params(
        InclusionQuery
    ),
    responses(
        (status = 200, description = "An RFC 6962 inclusion proof", body = InclusionView),
        (
            status = 400,
            description = "Missing or malformed parameters, or a position outside the tree",
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
async fn inclusion_proof(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    query: Result<axum::extract::Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InclusionView>, ApiError> {
    let query = reads::query(query)?;
    let proof = state.service.inclusion_proof(claims.actor(), query.position, query.tree_size).await?;
    Ok(Json(InclusionView {
        position: proof.position,
        leaf_index: proof.position - 1,
        tree_size: proof.tree_size,
        leaf_hash: hex::encode(proof.leaf_hash),
        audit_path: proof.audit_path.iter().map(hex::encode).collect(),
        root_hash: hex::encode(proof.root_hash),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    /// The smaller tree size.
    first: u64,
    /// The larger tree size, at most the log's head.
    second: u64,
}

/// RFC 6962 / 9162 field meanings; hashes in hex.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ConsistencyProof)]
struct ConsistencyView {
    first: u64,
    second: u64,
    first_root_hash: String,
    second_root_hash: String,
    consistency: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/audit/proof/consistency",
    tag = "audit",
    params(
        ConsistencyQuery
    ),
    responses(
        (status = 200, description = "An RFC 6962 consistency proof", body = ConsistencyView),
        (
            status = 400,
            description = "Missing or malformed parameters, or sizes outside the log",
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
async fn consistency_proof(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    query: Result<axum::extract::Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ConsistencyView>, ApiError> {
    let query = reads::query(query)?;
    let proof = state.service.consistency_proof(claims.actor(), query.first, query.second).await?;
    Ok(Json(ConsistencyView {
        first: proof.first,
        second: proof.second,
        first_root_hash: hex::encode(proof.first_root),
        second_root_hash: hex::encode(proof.second_root),
        consistency: proof.proof.iter().map(hex::encode).collect(),
    }))
}

/// The key that signs checkpoints (`docs/audit-format.md`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CheckpointPublicKey)]
struct PublicKeyView {
    /// Always `Ed25519`.
    algorithm: &'static str,
    /// The public key, hex.
    public_key: String,
}

/// The key that signs checkpoints, so anyone holding a published checkpoint can check it.
/// Public by nature: no token needed.
#[utoipa::path(
    get,
    path = "/audit/public-key",
    tag = "audit",
    responses(
        (
            status = 200,
            description = "The Ed25519 key that signs checkpoints; public, no token needed",
            body = PublicKeyView
        )
    )
)]
async fn public_key(State(state): State<AppState>) -> Json<PublicKeyView> {
    Json(PublicKeyView { algorithm: "Ed25519", public_key: state.checkpoint_public_key.to_string() })
}
