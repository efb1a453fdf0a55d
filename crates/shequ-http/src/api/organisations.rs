//! `/api/v1/organisations` and `/api/v1/catalogue`: the district, its departments, streets
//! and communities, and the catalogue of what communities may be asked to do.

use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use shequ_domain::catalogue::Matter;
use shequ_domain::organisation::{OrganisationError, OrganisationKind};
use shequ_service::projection::OrganisationView;
use shequ_service::{NewOrganisation, ServiceError};
use shequ_store::RecordedRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller, CommandHeaders, CreateJson};
use super::page::{self, Page};
use super::responses::{error_responses, ListErrors};
use super::{Created, Reply};
use crate::AppState;

/// The organisation and catalogue routes with their operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(catalogue))
        .routes(routes!(list_organisations, register_organisation))
        .routes(routes!(read_organisation))
}

/// The catalogue of community public-service matters.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Catalogue)]
struct CatalogueView {
    /// The number of catalogue events so far: every decision names the version it used.
    version: u64,
    matters: Vec<Matter>,
}

#[utoipa::path(get, path = "/catalogue", tag = "catalogue", security(("bearer" = [])),
    responses((status = 200, description = "The catalogue of community public-service matters and its version", body = CatalogueView))
)]
async fn catalogue(caller: Caller) -> Reply<CatalogueView> {
    let (version, matters) = caller.service().catalogue().await?;
    Ok(Json(CatalogueView { version, matters: matters.into_values().collect() }))
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

#[utoipa::path(get, path = "/organisations", tag = "organisations", security(("bearer" = [])),
    params(OrganisationQuery),
    responses((status = 200, description = "Organisations the caller may see, in id order", body = Page<OrganisationView>), ListErrors)
)]
async fn list_organisations(
    caller: Caller,
    ApiQuery(query): ApiQuery<OrganisationQuery>,
) -> Reply<Page<OrganisationView>> {
    let limit = page::limit(query.limit)?;
    let items = caller
        .service()
        .list_organisations(caller.actor(), query.kind, query.parent, query.cursor, limit)
        .await?;
    Ok(Json(Page::of(items, limit, |view| view.id.to_string())))
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

/// A registered organisation, and what its registration appended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RegisteredOrganisation {
    #[serde(flatten)]
    organisation: OrganisationView,
    /// What this call appended: the registration's event, or none on a retry.
    events: Vec<RecordedRef>,
}

/// The district registers a department, street or community under itself.
#[utoipa::path(post, path = "/organisations", tag = "organisations", security(("bearer" = [])),
    request_body = RegisterOrganisationBody,
    responses((status = 201, description = "Registered, with the events appended (none on a retry of the same registration)", body = RegisteredOrganisation), RegisterErrors)
)]
async fn register_organisation(
    caller: Caller,
    CreateJson(body): CreateJson<RegisterOrganisationBody>,
) -> Created<RegisteredOrganisation> {
    let actor = caller.actor();
    let (scope, recorder) = CommandHeaders::NONE.scope(&caller, "register_organisation", &()).await;
    let organisation = NewOrganisation {
        id: body.id,
        kind: body.kind,
        name: &body.name,
        parent: Some(body.parent_id),
        code: body.code.as_deref(),
    };
    let registered = caller.service().register_organisation(&scope, organisation).await;
    match registered {
        Ok(()) => {}
        // A retry of the same registration answers as the first time.
        Err(ServiceError::Organisation(OrganisationError::AlreadyRegistered)) => {
            let existing = caller.service().read_organisation(actor, body.id).await?;
            let same = existing.kind == body.kind
                && existing.name == body.name.trim()
                && existing.parent_id == Some(body.parent_id)
                && existing.code == body.code;
            if !same {
                let taken = format!("id: {} is taken by another organisation", body.id);
                return Err(ServiceError::Invalid(taken).into());
            }
        }
        Err(error) => return Err(error.into()),
    }
    let organisation = caller.service().read_organisation(actor, body.id).await?;
    Ok((StatusCode::CREATED, Json(RegisteredOrganisation { organisation, events: recorder.take() })))
}

#[utoipa::path(get, path = "/organisations/{id}", tag = "organisations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The organisation's id")),
    responses((status = 200, description = "The organisation", body = OrganisationView), ReadErrors)
)]
async fn read_organisation(caller: Caller, ApiPath(id): ApiPath<Uuid>) -> Reply<OrganisationView> {
    Ok(Json(caller.service().read_organisation(caller.actor(), id).await?))
}

// The errors each operation documents, beside the shared ones (`responses.rs`).

error_responses!(
    RegisterErrors: BadRequest("Malformed body, or a blank name or a malformed code, naming the field"),
    Forbidden("Not the district of the parent (`policies/authz`)"),
    NotFound("No such parent"),
    Refused("Refused: the id is taken, or the parent is of the wrong kind"),
);

error_responses!(ReadErrors: Forbidden, NotFound("No such organisation"));
