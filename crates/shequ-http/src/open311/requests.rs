//! `requests.{fmt}` (filing with POST, listing with GET) and `requests/{id}.{fmt}`: residents'
//! service requests, through the same command path, routing policy and authorisation as
//! `/api/v1`.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use shequ_domain::catalogue::Matter;
use shequ_domain::request::{Channel, FileRequest, RequestStatus};
use shequ_service::projection::RequestView;
use shequ_service::{CommandScope, RequestFilter, Role, ServiceError};
use uuid::Uuid;

use super::access::{authenticate, check_jurisdiction};
use super::errors::Problem;
use super::params::Params;
use super::services::{attributes, channel, matter, CHANNEL};
use super::wire::{Document, Node};
use super::Answer;
use super::{REQUESTS_MAX, WINDOW_DAYS};
use crate::auth::Claims;
use crate::error::ErrorKind;
use crate::AppState;

/// Requests read from the service per page while filtering a `GET requests`.
const PAGE_REQUESTS: usize = 1_000;
/// Where a filed `address_id` is kept among the request's attributes.
const ADDRESS_ID: &str = "address_id";

// ----- Filing -------------------------------------------------------------------------------

pub async fn create_request(state: &AppState, params: &Params, headers: &HeaderMap) -> Answer {
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
    let (request, filing) = filing(&claims, &matter, params)?;
    let view = state
        .service
        .file_request(&CommandScope::new(claims.actor()), &claims.sub, request, filing)
        .await
        .map_err(Problem::from)?;
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

/// The request a form files, and its id: every problem with the form at once, one error each.
fn filing(claims: &Claims, matter: &Matter, params: &Params) -> Result<(Uuid, FileRequest), Problem> {
    let mut problems = Vec::new();
    let mut filed_attributes = BTreeMap::new();
    let channel = match sent_attributes(params) {
        Ok(sent) => {
            let (channel, mut attribute_problems) = check_attributes(matter, &sent);
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
        (_, false) => return Err(Problem::each(ErrorKind::BadRequest, problems)),
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
    Ok((request, filing))
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

pub async fn one_request(state: &AppState, id: &str, params: &Params, headers: &HeaderMap) -> Answer {
    let view = read_one(state, id, params, headers, "get_service_request", "service_request_id").await?;
    requests_document(state, vec![view]).await
}

/// The request `id` names, for the key: `named` in the 404 when it is unknown or no request
/// id at all.
pub async fn read_one(
    state: &AppState,
    id: &str,
    params: &Params,
    headers: &HeaderMap,
    operation: &str,
    named: &str,
) -> Result<RequestView, Problem> {
    let claims = authenticate(state, params, headers, operation)?;
    check_jurisdiction(state, params, Some(&claims)).await?;
    let not_found = || Problem::not_found(format!("{named} {id} not found"));
    let request = Uuid::parse_str(id).map_err(|_| not_found())?;
    match state.service.read_request(claims.actor(), &claims.sub, request).await {
        Ok(view) => Ok(view),
        Err(ServiceError::NotFound(_)) => Err(not_found()),
        Err(error) => Err(error.into()),
    }
}

pub async fn list_requests(state: &AppState, params: &Params, headers: &HeaderMap) -> Answer {
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
                Err(error) => return Err(error.into()),
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
            .map_err(Problem::from)?;
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

async fn requests_document(state: &AppState, views: Vec<RequestView>) -> Answer {
    let (_, matters) = state.service.catalogue().await.map_err(Problem::from)?;
    let agencies: BTreeMap<Uuid, String> = {
        let projection = state.service.read_model().read().await.map_err(Problem::from)?;
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
                ("expected_datetime", Node::optional_text(end_of_day(view.expected_date.as_str()))),
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
    fn attributes_are_sent_by_code() {
        let params = Params::parse(b"a=1&attribute[channel]=web");
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
