//! Who calls, and where: the key (`api_key`, or `Authorization: Bearer`) and
//! `jurisdiction_id`.

use axum::http::{header, HeaderMap};
use shequ_domain::organisation::OrganisationKind;
use uuid::Uuid;

use super::errors::Problem;
use super::params::Params;
use crate::auth::Claims;
use crate::AppState;

/// The caller, from `api_key` or `Authorization: Bearer`; 403 without a valid one.
pub fn authenticate(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
    operation: &str,
) -> Result<Claims, Problem> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(crate::auth::bearer_token);
    // The spec answers a missing or wrong key 403, where `/api/v1` answers 401.
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
pub async fn check_jurisdiction(
    state: &AppState,
    params: &Params,
    caller: Option<&Claims>,
) -> Result<(), Problem> {
    let Some(given) = params.get("jurisdiction_id")? else { return Ok(()) };
    let id = Uuid::parse_str(given).ok();
    let projection = state.service.read_model().read().await.map_err(Problem::from)?;
    let known = match (id, caller) {
        (Some(id), Some(claims)) => projection.district_of(claims.org) == Some(id),
        (Some(id), None) => {
            projection.organisation(id).is_some_and(|view| view.kind == OrganisationKind::District)
        }
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
