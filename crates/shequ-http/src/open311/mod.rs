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
//!   status, which is the error's kind's as under `/api/v1` (`crate::error`): 400 for bad
//!   input (naming the field), 403 for the key or the place, 404 for what does not exist, 409
//!   for a request changed meanwhile, 413 for an oversized body, 422 for a refusal citing its
//!   rule, 500 only for an internal failure.
//!
//! One module per resource: `services`, `requests` and `tokens`; `access` for keys and
//! jurisdictions, `params` for arguments, `errors` for the error format, `wire` for JSON and
//! XML. This module routes by file name.
//!
//! Where shequ departs from the spec (keys on the request endpoints, a required description,
//! 500 for internal failures, an optional client-chosen `service_request_id` for retries), and
//! why, is listed at the end of `docs/open311.md`.

mod access;
mod errors;
mod params;
mod requests;
mod services;
mod tokens;
mod wire;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::AppState;
pub use errors::Problem;
use params::Params;
pub use wire::{Document, Format, Node};

/// What a resource answers: a document, or the spec's errors.
type Answer = Result<Document, Problem>;

/// The most requests one `GET requests` answers, as the spec's default limit.
pub const REQUESTS_MAX: usize = 1_000;
/// The longest span of a `GET requests` date range, and its default, in days.
pub const WINDOW_DAYS: i64 = 90;

/// The Open311 routes: each resource by its file name.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{file}", get(get_top).post(post_top).fallback(method_not_allowed))
        .route("/{folder}/{file}", get(get_one).fallback(method_not_allowed))
        .fallback(not_found)
}

/// The folders of the resources that one code, id or token names.
const FOLDERS: [&str; 3] = ["services", "requests", "tokens"];

fn respond(format: Format, result: Answer) -> Response {
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
    let folder = uri.path().trim_start_matches('/').split_once('/').map(|(folder, _)| folder);
    if folder.is_some_and(|folder| !FOLDERS.contains(&folder)) {
        return not_found(uri).await;
    }
    let problem = Problem::method_not_allowed(format!(
        "{} does not take this method: only requests.{{fmt}} takes POST, all take GET",
        uri.path()
    ));
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
        "services" => services::services(&state, &params).await,
        "requests" => requests::list_requests(&state, &params, &headers).await,
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
                requests::create_request(&state, &form.with(Params::from_query(query.as_deref())), &headers)
                    .await
            }
            Err(problem) => Err(problem),
        },
        "services" => {
            Err(Problem::method_not_allowed(format!("{file} does not take POST: only requests.{{fmt}} does")))
        }
        _ => Err(no_such_resource(&file)),
    };
    respond(format, result)
}

/// `services/{service_code}.{fmt}`, `requests/{service_request_id}.{fmt}` and
/// `tokens/{token}.{fmt}`.
async fn get_one(
    State(state): State<AppState>,
    Path((folder, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if !FOLDERS.contains(&folder.as_str()) {
        return not_found(uri).await;
    }
    let Some((name, format)) = Format::split(&file) else {
        return no_such_resource(&format!("{folder}/{file}")).render(Format::guess(&file));
    };
    let params = Params::from_query(query.as_deref());
    let result = match folder.as_str() {
        "services" => services::service_definition(&state, name, &params).await,
        "requests" => requests::one_request(&state, name, &params, &headers).await,
        _ => tokens::request_from_token(&state, name, &params, &headers).await,
    };
    respond(format, result)
}
