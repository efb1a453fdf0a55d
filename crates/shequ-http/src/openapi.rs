//! The OpenAPI 3.1 document of the HTTP API, generated from the code: each handler's
//! `#[utoipa::path]`, the types' `ToSchema` derives (and so their serde attributes), and the
//! router itself. A route is added together with its operation (`utoipa_axum::routes!`), so
//! what is routed is what is documented. The statuses that every operation of a kind can give
//! (401 and 500 behind a token, 413 with a body, 408 anywhere, a JSON 400 for a malformed
//! path parameter) are added here from the operation's shape, once. Every error answer refers
//! to the shared response of its kind (`api::responses`).
//!
//! Served at `GET /openapi.json` and committed as `schemas/openapi.json` (`docs/api.md`); the
//! suite fails when the two drift.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::responses;
use crate::error::{ErrorBody, ErrorKind};
use crate::AppState;

/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shequ",
        description = "shequ (社区) records the community public service system laid down in the State \
Council's *Community Service System Construction Plan (2011–2015)* as an append-only, hash-chained \
event log. Street offices and district departments delegate tasks (mandates) to residents' communities \
under the plan's access rules (`plan:3.4.2-R1`…`R4`: only matters in the catalogue, funded, with the \
powers and conditions they need); communities contest unfunded mandates; residents bring service \
requests to the one-stop community service station (`plan:3.2.2`); inspectors replay the audit trail.\n\n\
Every `/api/v1` call but `/api/v1/audit/public-key` needs `Authorization: Bearer <token>`, a JWT \
naming a role and an organisation (`shequ token issue`). Errors under `/api/v1` answer with \
`ErrorBody`; a refusal cites the plan's clause. Money is an integer number of fen. Ids are UUIDs; \
a client chooses the id of what it creates, and a retry with the same id returns the first answer."
    ),
    tags(
        (name = "operations", description = "Liveness, readiness and metrics"),
        (name = "catalogue", description = "The catalogue of community public-service matters"),
        (name = "organisations", description = "The district, its departments, streets and communities"),
        (name = "mandates", description = "Tasks delegated to communities, and their contests"),
        (name = "requests", description = "Residents' service requests at the one-stop station"),
        (name = "ledger", description = "The funding ledger: allocations, reservations, postings, spending"),
        (name = "audit", description = "Inspectors' views: the past, timelines, Merkle proofs")
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The routes and their document, built once per process (tens of milliseconds in a debug
/// build, and the tests build an app per request).
struct Built {
    router: Router<AppState>,
    document: Document,
    rendered: Bytes,
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(super::health))
        .routes(routes!(super::ready))
        .routes(routes!(super::metrics::render))
        .nest("/api/v1", crate::api::router())
        .split_for_parts();
    complete(&mut document);
    let rendered = render(&document);
    Built { router, document, rendered }
});

/// Every route with its operation (state is supplied by [`crate::app`]), and the document
/// they make, rendered.
pub(crate) fn routes() -> (Router<AppState>, Bytes) {
    (BUILT.router.clone(), BUILT.rendered.clone())
}

/// The OpenAPI document, as served and as committed.
pub fn document() -> Document {
    BUILT.document.clone()
}

/// The text served at `/openapi.json` and committed as `schemas/openapi.json`: pretty JSON
/// with a final newline.
pub fn render(document: &Document) -> Bytes {
    let mut text = serde_json::to_string_pretty(document).expect("an OpenAPI document is JSON");
    text.push('\n');
    Bytes::from(text)
}

pub(crate) async fn serve(text: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], text)
}

/// Adds the bearer scheme, the shared error responses, and the statuses every operation of a
/// kind can give.
fn complete(document: &mut Document) {
    let components = document.components.get_or_insert_with(Default::default);
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some("A JWT (HS256) naming the bearer (`sub`), a role and an organisation (`org`)."))
        .build();
    components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    components.responses.extend(responses::components());
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            complete_operation(operation);
        }
    }
}

fn complete_operation(operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|security| !security.is_empty());
    let has_body = operation.request_body.as_ref().is_some_and(|body: &RequestBody| !body.content.is_empty());
    let path_parameters =
        operation.parameters.iter().flatten().any(|parameter| parameter.parameter_in == ParameterIn::Path);
    let responses = &mut operation.responses.responses;
    if path_parameters {
        let description = "A malformed path parameter, naming it";
        match responses.get_mut("400") {
            Some(response) => {
                let said = format!("{}; {}", responses::described(response), lowercase_first(description));
                responses::describe(response, said);
            }
            None => responses.extend([responses::reference(ErrorKind::BadRequest, Some(description))]),
        }
    }
    let mut shared = Vec::new();
    if secured {
        shared.extend([ErrorKind::Unauthorized, ErrorKind::Internal]);
    }
    if has_body {
        shared.push(ErrorKind::TooLarge);
    }
    for kind in shared {
        let (status, response) = responses::reference(kind, None);
        responses.entry(status).or_insert(response);
    }
    let timeout =
        ResponseBuilder::new().description("The request took longer than 30 s (empty body)").build();
    responses.entry("408".into()).or_insert_with(|| RefOr::T(timeout));
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_lowercase().chain(chars).collect()).unwrap_or_default()
}
