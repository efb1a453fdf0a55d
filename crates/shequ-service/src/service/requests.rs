//! Service requests at the one-stop station: filing (routed by `policies/routing`), working,
//! closing and rating them.

use std::collections::BTreeMap;

use chrono::Duration;
use shequ_domain::catalogue::Matter;
use shequ_domain::mandate::MandateStatus;
use shequ_domain::recorded::RecordedInput;
use shequ_domain::request::{
    FileRequest, Filing, Request, RequestCommand, RequestError, RequestStatus, RequestStep, Route, Routing,
};
use shequ_domain::{Date, Fen};
use uuid::Uuid;

use super::authz::Target;
use super::reads::Reader;
use super::runner::Known;
use super::scope::CommandScope;
use super::Service;
use crate::actor::{Actor, Role};
use crate::error::Result;
use crate::projection::{Projection, RequestView};
use crate::ServiceError;

/// The `policies/authz` action a step asks for.
fn authz_action(step: &RequestStep) -> &'static str {
    match step {
        RequestStep::Forward { .. } => "request.forward",
        RequestStep::Accept { .. }
        | RequestStep::Start { .. }
        | RequestStep::Resolve { .. }
        | RequestStep::Reject { .. } => "request.handle",
        RequestStep::Close { .. } => "request.close",
        RequestStep::Rate { .. } => "request.rate",
    }
}

impl Service {
    /// Files a request at a station. The routing policy decides who handles it, and the
    /// decision is recorded with its input. A retry with the same id and content returns the
    /// request as it is.
    pub async fn file_request(
        &self,
        scope: &CommandScope,
        subject: &str,
        request: Uuid,
        filing: FileRequest,
    ) -> Result<RequestView> {
        let actor = scope.actor();
        let resident = match (actor.role, &filing.resident) {
            (Role::Resident, _) => Some(subject.to_owned()),
            (_, resident) => resident.clone(),
        };
        // Authorised before the place is checked: whoever may not file here gets a 403, not a
        // hint about what the station's id is.
        let place = self.community_place(filing.station).await.ok();
        let target = Target {
            district: place.map(|(district, _)| district),
            street: place.map(|(_, street)| street),
            community: Some(filing.station),
            resident: resident.clone(),
            ..Target::default()
        };
        self.authorize_subject(&actor, Some(subject), "request.file", target).await?;
        let (district, street) = self.community_place(filing.station).await?;
        let resident = resident
            .ok_or_else(|| ServiceError::Invalid("resident: whom the request is for is required".into()))?;
        // A retry with the same id and content gets the request as it stands.
        let asked = (filing.station, filing.matter_code.clone(), filing.description.trim().to_owned());
        let for_whom = resident.clone();
        let same = move |existing: RequestView| match existing.station == asked.0
            && existing.matter_code == asked.1
            && existing.description == asked.2
            && existing.resident == for_whom
        {
            true => Ok(existing),
            false => Err(ServiceError::Invalid(format!("request id {request} is taken by another request"))),
        };
        let existing = self.read_model.read().await?.request(request);
        if let Some(existing) = existing {
            return same(existing);
        }
        let (routing, sla_days) = self.route(&filing.matter_code, filing.station, street, district).await?;
        let expected_date = (self.clock.now() + Duration::days(i64::from(sla_days))).date_naive().to_string();
        let expected_date = Date::parse(&expected_date).expect("chrono writes dates as YYYY-MM-DD");
        let filing = Filing::taken_down(filing, resident, expected_date);
        let context = scope.context().with_decision(routing.decision_id);
        match self
            .execute_known::<Request>(
                context,
                request,
                RequestCommand::File { filing: Box::new(filing), routing: Box::new(routing) },
                Known::New,
            )
            .await
        {
            Ok(_) => self.request_view(request).await,
            // Filed meanwhile, here or by another process the projection has not heard from
            // yet: ask the log, then answer as for any retry.
            Err(ServiceError::Request(RequestError::AlreadyExists)) => {
                self.read_model.catch_up().await?;
                same(self.request_view(request).await?)
            }
            Err(error) => Err(error),
        }
    }

    /// Asks `policies/routing` where a request for `matter_code` at `station` goes.
    async fn route(
        &self,
        matter_code: &str,
        station: Uuid,
        street: Uuid,
        district: Uuid,
    ) -> Result<(Routing, u32)> {
        /// `policies/routing/routing.rego`'s input.
        #[derive(serde::Serialize)]
        struct RoutingInput<'a> {
            matter: Option<&'a Matter>,
            station: Station,
            mandates: Vec<LiveMandate>,
            departments: BTreeMap<String, Uuid>,
        }
        #[derive(serde::Serialize)]
        struct Station {
            community: Uuid,
            street: Uuid,
            district: Uuid,
        }
        #[derive(serde::Serialize)]
        struct LiveMandate {
            mandate: Uuid,
            status: MandateStatus,
            funds_offered_fen: Fen,
            funds_posted_fen: Fen,
            delegating_unit: Uuid,
        }
        let projection = self.read_model.read().await?;
        let matter = projection.catalogue().matters.get(matter_code);
        let mandates = projection
            .live_mandates_for(station, matter_code)
            .into_iter()
            .map(|view| LiveMandate {
                mandate: view.mandate,
                status: view.status,
                funds_offered_fen: view.funds_offered_fen,
                funds_posted_fen: view.funds_posted_fen,
                delegating_unit: view.delegating_unit,
            })
            .collect();
        let catalogue_version = projection.catalogue_version();
        // Written once, as text: the key of the answers remembered, and what is recorded.
        let input = RecordedInput::of(&RoutingInput {
            matter,
            station: Station { community: station, street, district },
            mandates,
            departments: projection.departments(district),
        })
        .map_err(|error| ServiceError::Invalid(format!("the routing policy's input: {error}")))?;
        let sla_days = matter.map_or(0, |matter| matter.sla_days);
        drop(projection);
        let decision =
            self.policies.route_recorded(&input)?.map_err(|refusal| ServiceError::Refused(vec![refusal]))?;
        let route = match decision.route.as_str() {
            "community" => Route::Community,
            "agent" => Route::Agent,
            "delegating_unit" => Route::DelegatingUnit,
            other => {
                return Err(ServiceError::Invalid(format!(
                    "the routing policy named an unknown route `{other}`"
                )))
            }
        };
        let handler = decision.handler.ok_or_else(|| {
            ServiceError::Invalid(format!("no organisation owns matter `{matter_code}` in this district"))
        })?;
        let routing = Routing {
            route,
            handler,
            mandate: decision.mandate,
            reason: decision.reason,
            clause: decision.clause,
            decision_id: Uuid::now_v7(),
            bundle_digest: self.policies.bundle().digest().to_owned(),
            catalogue_version,
            input,
        };
        Ok((routing, sla_days))
    }

    /// Takes one step on a request, as the scope's actor (known by `subject`).
    pub async fn act_on_request(
        &self,
        scope: &CommandScope,
        subject: &str,
        request: Uuid,
        step: RequestStep,
    ) -> Result<RequestView> {
        let actor = scope.actor();
        let view = self.request_view(request).await?;
        let target = request_target(&*self.read_model.read().await?, &view);
        self.authorize_subject(&actor, Some(subject), authz_action(&step), target).await?;
        let stream = shequ_store::AggregateStore::<Request>::stream(request);
        if self.already_done(scope, &stream, &[step.event_type()]).await? {
            return Ok(view);
        }
        let command = RequestCommand::Take { by: actor.organisation, step };
        self.execute_known::<Request>(scope.context(), request, command, scope.known_target()).await?;
        self.request_view(request).await
    }

    /// One request, for an actor allowed to see it (a resident sees only their own).
    pub async fn read_request(&self, actor: Actor, subject: &str, request: Uuid) -> Result<RequestView> {
        let view = self.request_view(request).await?;
        let target = request_target(&*self.read_model.read().await?, &view);
        self.authorize_subject(&actor, Some(subject), "read.request", target).await?;
        Ok(view)
    }

    /// Requests `actor` may see, filtered, in id order after `after`, at most `limit`.
    pub async fn list_requests(
        &self,
        actor: Actor,
        subject: &str,
        filter: &RequestFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<RequestView>> {
        let projection = self.read_model.read().await?;
        let today = self.clock.now().date_naive().to_string();
        let reader = Reader { actor: &actor, subject: Some(subject), action: "read.request" };
        self.readable_page(&projection, reader, projection.requests(), limit, |view| {
            let wanted = after.is_none_or(|after| view.request > after) && filter.matches(view, &today);
            wanted.then(|| request_target(&projection, view))
        })
    }

    async fn request_view(&self, request: Uuid) -> Result<RequestView> {
        self.read_model
            .read()
            .await?
            .request(request)
            .ok_or_else(|| ServiceError::NotFound(format!("request {request}")))
    }

    /// Today's date on the service's clock, `YYYY-MM-DD`, for overdue checks.
    pub fn today(&self) -> String {
        self.clock.now().date_naive().to_string()
    }
}

/// Where a request lands in the hierarchy, for `policies/authz`: its station's place, who
/// holds it and whom it is for.
fn request_target(projection: &Projection, view: &RequestView) -> Target {
    Target {
        district: projection.district_of(view.station),
        street: projection.street_of(view.station),
        community: Some(view.station),
        handler: Some(view.holder),
        resident: Some(view.resident.clone()),
        ..Target::default()
    }
}

/// What a list of requests is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    pub matter_code: Option<String>,
    pub station: Option<Uuid>,
    pub holder: Option<Uuid>,
    pub overdue: Option<bool>,
    pub priority: Option<bool>,
    /// Filed at or after, RFC 3339.
    pub filed_from: Option<String>,
    /// Filed before, RFC 3339.
    pub filed_before: Option<String>,
}

impl RequestFilter {
    pub fn matches(&self, view: &RequestView, today: &str) -> bool {
        self.status.is_none_or(|status| view.status == status)
            && self.matter_code.as_ref().is_none_or(|code| &view.matter_code == code)
            && self.station.is_none_or(|station| view.station == station)
            && self.holder.is_none_or(|holder| view.holder == holder)
            && self.overdue.is_none_or(|overdue| view.is_overdue(today) == overdue)
            && self.priority.is_none_or(|priority| view.priority == priority)
            && self.filed_from.as_ref().is_none_or(|from| view.filed_at.as_str() >= from.as_str())
            && self.filed_before.as_ref().is_none_or(|before| view.filed_at.as_str() < before.as_str())
    }
}
