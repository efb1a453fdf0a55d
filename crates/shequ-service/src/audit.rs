//! Re-deciding the audit trail: every recorded policy decision is run again on the bundle and
//! the input recorded with it (read from the log, never from today's `policies/`), and must
//! give the recorded violations.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use shequ_domain::mandate::Violation;
use shequ_policy::{Policies, PolicyBundle};
use shequ_store::EventLog;

use crate::ServiceError;

/// Events read per page while re-deciding.
const PAGE_EVENTS: u32 = 2_000;

/// What `redecide` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedecideReport {
    pub decisions: u64,
    pub identical: u64,
    pub differing: Vec<Difference>,
}

/// A recorded decision that does not come out the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub position: u64,
    pub stream: String,
    pub event_type: String,
    pub reason: String,
}

/// Re-runs every decision in the log. `progress` is called with the events read so far.
pub async fn redecide(log: &EventLog, mut progress: impl FnMut(u64)) -> Result<RedecideReport, ServiceError> {
    let mut bundles: BTreeMap<String, Result<Policies, String>> = BTreeMap::new();
    let mut report = RedecideReport::default();
    let mut events = std::pin::pin!(log.stream_all(1, PAGE_EVENTS));
    let mut read = 0u64;
    while let Some(event) = events.try_next().await? {
        read += 1;
        if read % u64::from(PAGE_EVENTS) == 0 {
            progress(read);
        }
        if event.event_type == "PolicyBundleRecorded" {
            let (digest, policies) = load_bundle(&event.data);
            bundles.insert(digest, policies);
            continue;
        }
        let data: serde_json::Value = match serde_json::from_str(&event.data) {
            Ok(data) => data,
            Err(_) => continue,
        };
        if let Some(routing) = data.get("routing") {
            let outcome = redecide_routing(&bundles, routing);
            report.decisions += 1;
            match outcome {
                Ok(()) => report.identical += 1,
                Err(reason) => report.differing.push(Difference {
                    position: event.position,
                    stream: event.stream.clone(),
                    event_type: event.event_type.clone(),
                    reason,
                }),
            }
            continue;
        }
        let Some(decision) = data.get("decision") else { continue };
        report.decisions += 1;
        let differ = |reason: String| Difference {
            position: event.position,
            stream: event.stream.clone(),
            event_type: event.event_type.clone(),
            reason,
        };
        let digest = decision["bundle_digest"].as_str().unwrap_or_default();
        let policies = match bundles.get(digest) {
            Some(Ok(policies)) => policies,
            Some(Err(reason)) => {
                report.differing.push(differ(format!("bundle {digest} cannot be loaded: {reason}")));
                continue;
            }
            None => {
                report
                    .differing
                    .push(differ(format!("bundle {digest} is not in the log before this decision")));
                continue;
            }
        };
        let recorded: Result<Vec<Violation>, _> = serde_json::from_value(decision["violations"].clone());
        let again = policies.decide_access(&decision["input"]);
        match (recorded, again) {
            (Ok(recorded), Ok(again)) if recorded == again => report.identical += 1,
            (Ok(recorded), Ok(again)) => report.differing.push(differ(format!(
                "recorded {} violation(s) [{}], re-decided {} [{}]",
                recorded.len(),
                rules(&recorded),
                again.len(),
                rules(&again)
            ))),
            (Err(error), _) => {
                report.differing.push(differ(format!("recorded violations unreadable: {error}")))
            }
            (_, Err(error)) => report.differing.push(differ(format!("re-decision failed: {error}"))),
        }
    }
    progress(read);
    Ok(report)
}

/// Re-runs one recorded routing decision (`policies/routing`) and compares where it sends the
/// request: route, handler, mandate and clause.
fn redecide_routing(
    bundles: &BTreeMap<String, Result<Policies, String>>,
    routing: &serde_json::Value,
) -> Result<(), String> {
    let digest = routing["bundle_digest"].as_str().unwrap_or_default();
    let policies = match bundles.get(digest) {
        Some(Ok(policies)) => policies,
        Some(Err(reason)) => return Err(format!("bundle {digest} cannot be loaded: {reason}")),
        None => return Err(format!("bundle {digest} is not in the log before this decision")),
    };
    let again = match policies.route(&routing["input"]) {
        Ok(Ok(route)) => route,
        Ok(Err(refusal)) => {
            return Err(format!("re-decided: refused ({}, {})", refusal.rule, refusal.clause))
        }
        Err(error) => return Err(format!("re-decision failed: {error}")),
    };
    let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
    let recorded = (
        text(&routing["route"]),
        text(&routing["handler"]),
        text(&routing["mandate"]),
        text(&routing["clause"]),
    );
    let redecided = (
        Some(again.route.clone()),
        again.handler.map(|handler| handler.to_string()),
        again.mandate.map(|mandate| mandate.to_string()),
        Some(again.clause.clone()),
    );
    match recorded == redecided {
        true => Ok(()),
        false => Err(format!("recorded route {recorded:?}, re-decided {redecided:?}")),
    }
}

/// The bundle of a `PolicyBundleRecorded` event, checked against its recorded digest.
fn load_bundle(data: &str) -> (String, Result<Policies, String>) {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    let digest = value["digest"].as_str().unwrap_or_default().to_owned();
    let files: Result<BTreeMap<String, String>, _> = serde_json::from_value(value["files"].clone());
    let policies = files
        .map_err(|error| error.to_string())
        .and_then(|files| PolicyBundle::from_files(files).map_err(|error| error.to_string()))
        .and_then(|bundle| match bundle.digest() == digest {
            true => Policies::new(bundle).map_err(|error| error.to_string()),
            false => Err(format!("its files hash to {}, not to the recorded digest", bundle.digest())),
        });
    (digest, policies)
}

fn rules(violations: &[Violation]) -> String {
    violations.iter().map(|violation| violation.rule.as_str()).collect::<Vec<_>>().join(", ")
}
