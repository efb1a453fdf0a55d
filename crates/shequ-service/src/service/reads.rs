//! Reads from the projections: lists with filters and cursors, and the inspectors' views
//! (state as of a point of the log, one mandate's timeline, the ledger as of a date). Every
//! row is shown only to an actor `policies/authz` lets read it.

use serde::Serialize;
use shequ_domain::ledger::{LedgerEvent, Transfer};
use shequ_domain::mandate::MandateStatus;
use shequ_domain::organisation::OrganisationKind;
use shequ_domain::DomainEvent;
use shequ_store::RecordedEvent;
use uuid::Uuid;

use super::{Service, Target};
use crate::actor::Actor;
use crate::projection::{AsOf, BalanceView, MandateView, OrganisationView, Projection};
use crate::replay;
use crate::ServiceError;

/// What a list of mandates is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MandateFilter {
    pub status: Option<MandateStatus>,
    pub community: Option<Uuid>,
    pub delegating_unit: Option<Uuid>,
    pub matter_code: Option<String>,
    /// Only mandates with an open contest.
    pub contested: Option<bool>,
}

impl MandateFilter {
    fn matches(&self, view: &MandateView) -> bool {
        self.status.is_none_or(|status| view.status == status)
            && self.community.is_none_or(|community| view.community == community)
            && self.delegating_unit.is_none_or(|unit| view.delegating_unit == unit)
            && self.matter_code.as_ref().is_none_or(|code| &view.matter_code == code)
            && self.contested.is_none_or(|contested| view.contest.is_some() == contested)
    }
}

/// One event of a mandate's timeline, with who did it and what was decided.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub position: u64,
    pub revision: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub recorded_at: String,
    pub actor: String,
    pub correlation_id: Option<String>,
    pub decision_id: Option<String>,
    /// The event's data as recorded: proposals, decisions with their violations and clauses.
    pub data: serde_json::Value,
}

/// A mandate's whole history: its events, and the money that moved for it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub mandate: Uuid,
    pub events: Vec<TimelineEntry>,
    pub transfers: Vec<TransferEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TransferEntry {
    pub position: u64,
    pub recorded_at: String,
    pub actor: String,
    #[serde(flatten)]
    pub transfer: Transfer,
}

impl TransferEntry {
    /// A `TransferRecorded` event of a ledger stream, with who made it.
    fn from_event(event: &RecordedEvent) -> Result<Self, ServiceError> {
        let LedgerEvent::TransferRecorded { transfer } =
            LedgerEvent::from_data(&event.event_type, event.event_version, &event.data)
                .map_err(|error| ServiceError::Projection(format!("position {}: {error}", event.position)))?;
        let metadata: serde_json::Value = serde_json::from_str(&event.metadata).unwrap_or_default();
        Ok(TransferEntry {
            position: event.position,
            recorded_at: event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            actor: metadata.get("actor").and_then(|actor| actor.as_str()).unwrap_or_default().to_owned(),
            transfer,
        })
    }
}

impl Service {
    /// Where an organisation sits, as a target for `policies/authz`.
    fn place_of(projection: &Projection, organisation: Uuid) -> Target {
        let view = projection.organisation(organisation);
        let kind = view.as_ref().map(|view| view.kind);
        Target {
            district: projection.district_of(organisation),
            street: projection.street_of(organisation),
            community: (kind == Some(OrganisationKind::Community)).then_some(organisation),
            ..Target::default()
        }
    }

    /// Organisations `actor` may see, in id order after `after`.
    pub async fn list_organisations(
        &self,
        actor: Actor,
        kind: Option<OrganisationKind>,
        parent: Option<Uuid>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<OrganisationView>, ServiceError> {
        let projection = self.read_model.read().await?;
        let mut page = Vec::new();
        for view in projection.organisations() {
            let wanted = after.is_none_or(|after| view.id > after)
                && kind.is_none_or(|kind| view.kind == kind)
                && parent.is_none_or(|parent| view.parent_id == Some(parent));
            if wanted
                && self.permits(
                    &projection,
                    &actor,
                    None,
                    "read.state",
                    Self::place_of(&projection, view.id),
                )?
            {
                page.push(view);
                if page.len() == limit {
                    break;
                }
            }
        }
        Ok(page)
    }

    pub async fn read_organisation(&self, actor: Actor, id: Uuid) -> Result<OrganisationView, ServiceError> {
        let (view, target) = {
            let projection = self.read_model.read().await?;
            let view = projection
                .organisation(id)
                .ok_or_else(|| ServiceError::NotFound(format!("organisation {id}")))?;
            (view, Self::place_of(&projection, id))
        };
        self.authorize(&actor, "read.state", target).await?;
        Ok(view)
    }

    /// Mandates `actor` may see, in id order after `after`.
    pub async fn list_mandates(
        &self,
        actor: Actor,
        filter: &MandateFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<MandateView>, ServiceError> {
        let projection = self.read_model.read().await?;
        let mut page = Vec::new();
        for view in projection.mandates() {
            if after.is_some_and(|after| view.mandate <= after) || !filter.matches(&view) {
                continue;
            }
            let target = Target {
                delegating_unit: Some(view.delegating_unit),
                ..Self::place_of(&projection, view.community)
            };
            if self.permits(&projection, &actor, None, "read.mandate", target)? {
                page.push(view);
                if page.len() == limit {
                    break;
                }
            }
        }
        Ok(page)
    }

    /// The state of the actor's district as of a point of the log, to be rebuilt by replaying
    /// it: the caller is authorised, the point found and the kept state folded now; the
    /// mandates and requests are folded and written by [`StateAsOf::write`].
    pub async fn state_as_of(&self, actor: Actor, as_of: AsOf) -> Result<StateAsOf, ServiceError> {
        let district = self.audit_district(&actor).await?;
        let cut = replay::cut(&self.log, as_of).await?;
        let kept = replay::kept(&self.log, cut).await?;
        Ok(StateAsOf { district, kept, log: self.log.clone() })
    }

    /// The district's balances as of a point of the log.
    pub async fn balances_as_of(
        &self,
        actor: Actor,
        as_of: AsOf,
    ) -> Result<(Uuid, u64, Vec<BalanceView>), ServiceError> {
        let district = self.read_ledger(actor).await?.0;
        let projection = replay::replay_ledgers(&self.log, as_of).await?;
        Ok((district, projection.position(), projection.balances(district)))
    }

    /// Every event of one mandate, with actor and decision, and every transfer made for it.
    pub async fn mandate_timeline(&self, actor: Actor, mandate: Uuid) -> Result<Timeline, ServiceError> {
        let (_, district, _) = self.authorize_on_mandate(&actor, mandate, "read.audit").await?;
        let stream = format!("mandate-{mandate}");
        let mut events = Vec::new();
        for event in self.log.read_stream(&stream).await? {
            let metadata: serde_json::Value = serde_json::from_str(&event.metadata).unwrap_or_default();
            let text = |key: &str| metadata.get(key).and_then(|value| value.as_str()).map(str::to_owned);
            events.push(TimelineEntry {
                position: event.position,
                revision: event.revision,
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                recorded_at: event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                actor: text("actor").unwrap_or_default(),
                correlation_id: text("$correlationId"),
                decision_id: text("decisionId"),
                data: serde_json::from_str(&event.data).unwrap_or_default(),
            });
        }
        let mut transfers = Vec::new();
        for event in self.log.read_stream(&format!("ledger-{district}")).await? {
            let entry = TransferEntry::from_event(&event)?;
            if entry.transfer.mandate == Some(mandate) {
                transfers.push(entry);
            }
        }
        Ok(Timeline { mandate, events, transfers })
    }

    /// The district's transfers in log order, after position `after`, at most `limit`.
    pub async fn list_transfers(
        &self,
        actor: Actor,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TransferEntry>, ServiceError> {
        let district = self.ledger_district(actor).await?;
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let events = self.log.read_stream_after(&format!("ledger-{district}"), after, limit).await?;
        events.iter().map(TransferEntry::from_event).collect()
    }

    async fn audit_district(&self, actor: &Actor) -> Result<Uuid, ServiceError> {
        let district = self.district_of(actor.organisation).await?;
        self.authorize(actor, "read.audit", Target { district: Some(district), ..Target::default() }).await?;
        Ok(district)
    }
}

/// One district's state at one point of the log, authorised and ready to be written.
#[derive(Debug, Clone)]
pub struct StateAsOf {
    pub district: Uuid,
    kept: replay::Kept,
    log: shequ_store::EventLog,
}

impl StateAsOf {
    /// Writes the state as JSON into `chunks`: `{"district": …, "as_of": …, …}`, one mandate
    /// or request in memory at a time (see [`replay::write_state`]).
    pub async fn write(
        self,
        style: replay::JsonStyle,
        chunks: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<(), replay::WriteStateError> {
        replay::write_state(&self.log, self.kept, Some(self.district), style, |_| {}, chunks).await
    }
}
