//! Reads from the projections: lists with filters and cursors, and the inspectors' views
//! (state as of a point of the log, one mandate's timeline, the ledger as of a date). Every
//! row is shown only to an actor `policies/authz` lets read it.

use serde::Serialize;
use std::collections::HashMap;

use shequ_domain::ledger::{Account, LedgerEvent, Transfer, TransferKind};
use shequ_domain::mandate::MandateStatus;
use shequ_domain::organisation::OrganisationKind;
use shequ_domain::DomainEvent;
use shequ_store::RecordedEvent;
use uuid::Uuid;

use super::authz::Target;
use super::Service;
use crate::actor::Actor;
use crate::error::Result;
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

/// What a list of transfers is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferFilter {
    pub kind: Option<TransferKind>,
    pub mandate: Option<Uuid>,
    /// Transfers into or out of this organisation's budget account or, for a community, its
    /// mandate accounts.
    pub organisation: Option<Uuid>,
}

impl TransferFilter {
    fn matches(&self, transfer: &Transfer) -> bool {
        let owned_by = |account: Account, organisation: Uuid| match account {
            Account::Organisation { organisation: owner } | Account::Mandate { community: owner, .. } => {
                owner == organisation
            }
            Account::Fiscal | Account::Expenditure | Account::Reserved { .. } => false,
        };
        self.kind.is_none_or(|kind| transfer.kind == kind)
            && self.mandate.is_none_or(|mandate| transfer.mandate == Some(mandate))
            && self.organisation.is_none_or(|organisation| {
                owned_by(transfer.debit, organisation) || owned_by(transfer.credit, organisation)
            })
    }
}

/// How many ledger events a list of transfers reads at a time while it fills a page.
const TRANSFERS_READ_EVENTS: usize = 500;

/// How many ledger events a page of transfers may read for each transfer it may hold: a page
/// of 50 reads at most 500 events, whatever it finds among them.
pub const TRANSFERS_SCANNED_PER_ITEM: usize = 10;

/// Who reads a list, and the `policies/authz` action each row asks of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub(crate) actor: &'a Actor,
    /// The resident's token subject, for reads a resident may make of their own rows.
    pub(crate) subject: Option<&'a str>,
    pub(crate) action: &'a str,
}

/// The part of a district's ledger an actor may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerView {
    pub district: Uuid,
    pub balances: Vec<(Account, i64)>,
    /// How many transfers touch an account shown.
    pub transfers: usize,
}

/// Which accounts of a district one actor may read: all (`shown: None`), or those whose
/// place `policies/authz` lets the actor read, each asked once per request.
struct LedgerScope {
    district: Uuid,
    actor: Actor,
    shown: Option<HashMap<Account, bool>>,
}

impl LedgerScope {
    fn shows(&mut self, service: &Service, projection: &Projection, account: Account) -> Result<bool> {
        let Some(shown) = &mut self.shown else { return Ok(true) };
        if let Some(answer) = shown.get(&account) {
            return Ok(*answer);
        }
        let target = account_place(projection, self.district, account);
        let answer = service.authz_decision_in(projection, &self.actor, None, "read.ledger", target)?.allow;
        shown.insert(account, answer);
        Ok(answer)
    }

    /// A transfer is shown to whoever may read either of its accounts.
    fn shows_transfer(
        &mut self,
        service: &Service,
        projection: &Projection,
        transfer: &Transfer,
    ) -> Result<bool> {
        Ok(self.shows(service, projection, transfer.debit)?
            || self.shows(service, projection, transfer.credit)?)
    }
}

/// Where an account sits, as a target for `policies/authz`: an organisation's budget where
/// the organisation sits; funds posted for a mandate at the community they were posted to
/// (which keeps them after the mandate moves on); funds reserved for a mandate where the
/// mandate is carried now; the fiscal budget and expenditure at the district. A mandate's
/// delegating unit comes along when the projection knows it.
fn account_place(projection: &Projection, district: Uuid, account: Account) -> Target {
    let at_district = || Target { district: Some(district), ..Target::default() };
    let mandate = |id: Uuid| projection.mandate(id);
    match account {
        Account::Fiscal | Account::Expenditure => at_district(),
        Account::Organisation { organisation } => Service::place_of(projection, organisation),
        Account::Reserved { mandate: id } => match mandate(id) {
            Some(view) => Target {
                delegating_unit: Some(view.delegating_unit),
                ..Service::place_of(projection, view.community)
            },
            None => at_district(),
        },
        Account::Mandate { mandate: id, community } => Target {
            delegating_unit: mandate(id).map(|view| view.delegating_unit),
            ..Service::place_of(projection, community)
        },
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
    fn from_event(event: &RecordedEvent) -> Result<Self> {
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
    ) -> Result<Vec<OrganisationView>> {
        let projection = self.read_model.read().await?;
        let reader = Reader { actor: &actor, subject: None, action: "read.state" };
        self.readable_page(&projection, reader, projection.organisations(), limit, |view| {
            let wanted = after.is_none_or(|after| view.id > after)
                && kind.is_none_or(|kind| view.kind == kind)
                && parent.is_none_or(|parent| view.parent_id == Some(parent));
            wanted.then(|| Self::place_of(&projection, view.id))
        })
    }

    pub async fn read_organisation(&self, actor: Actor, id: Uuid) -> Result<OrganisationView> {
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
    ) -> Result<Vec<MandateView>> {
        let projection = self.read_model.read().await?;
        let reader = Reader { actor: &actor, subject: None, action: "read.mandate" };
        self.readable_page(&projection, reader, projection.mandates(), limit, |view| {
            let wanted = after.is_none_or(|after| view.mandate > after) && filter.matches(view);
            wanted.then(|| Target {
                delegating_unit: Some(view.delegating_unit),
                ..Self::place_of(&projection, view.community)
            })
        })
    }

    /// The first `limit` of `rows` that `place` keeps (by placing them in the hierarchy) and
    /// that `reader` may read where they are placed: a page of a list, whose every row is
    /// shown only to a reader `policies/authz` allows it.
    pub(crate) fn readable_page<T>(
        &self,
        projection: &Projection,
        reader: Reader<'_>,
        rows: impl Iterator<Item = T>,
        limit: usize,
        mut place: impl FnMut(&T) -> Option<Target>,
    ) -> Result<Vec<T>> {
        let mut page = Vec::new();
        for row in rows {
            let Some(target) = place(&row) else { continue };
            if self.authz_decision_in(projection, reader.actor, reader.subject, reader.action, target)?.allow
            {
                page.push(row);
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
    pub async fn state_as_of(&self, actor: Actor, as_of: AsOf) -> Result<StateAsOf> {
        let district = self.audit_district(&actor).await?;
        let cut = replay::cut(&self.log, as_of).await?;
        let kept = replay::kept(&self.log, cut).await?;
        Ok(StateAsOf { district, kept, log: self.log.clone() })
    }

    /// The district's balances as of a point of the log.
    pub async fn balances_as_of(&self, actor: Actor, as_of: AsOf) -> Result<(Uuid, u64, Vec<BalanceView>)> {
        let district = self.audit_district(&actor).await?;
        let projection = replay::replay_ledgers(&self.log, as_of).await?;
        Ok((district, projection.position(), projection.balances(district)))
    }

    /// Every event of one mandate, with actor and decision, and every transfer made for it.
    pub async fn mandate_timeline(&self, actor: Actor, mandate: Uuid) -> Result<Timeline> {
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

    /// The part of the district's ledger that `actor` may read: every account for the
    /// district's own readers, the accounts of its place for a street office or a community.
    pub async fn read_ledger(&self, actor: Actor) -> Result<LedgerView> {
        let (district, mut scope) = self.ledger_scope(actor).await?;
        let ledger = self.ledger(district).await?;
        let projection = self.read_model.read().await?;
        let mut balances = Vec::new();
        for (account, balance) in &ledger.balances {
            if scope.shows(self, &projection, *account)? {
                balances.push((*account, *balance));
            }
        }
        let mut transfers = 0;
        for transfer in ledger.transfers.values() {
            if scope.shows_transfer(self, &projection, transfer)? {
                transfers += 1;
            }
        }
        Ok(LedgerView { district, balances, transfers })
    }

    /// The district's transfers that `actor` may read and `filter` keeps, in log order, after
    /// position `after`: at most `limit`, found among at most `limit` × [`TRANSFERS_SCANNED_PER_ITEM`]
    /// ledger events, so that a page costs the same however few of the ledger's transfers the
    /// reader sees. Also returns where the next page starts, unless the ledger was read to its
    /// end: the last transfer of a full page, or else the last event read (a short page, even
    /// an empty one, is then not the last).
    pub async fn list_transfers(
        &self,
        actor: Actor,
        filter: &TransferFilter,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<TransferEntry>, Option<u64>)> {
        // A page holds at least one transfer: with none, it would read nothing and hand the
        // caller's cursor back.
        let limit = limit.max(1);
        let (district, mut scope) = self.ledger_scope(actor).await?;
        let stream = format!("ledger-{district}");
        let mut page = Vec::new();
        let mut after = after;
        let mut budget = limit.saturating_mul(TRANSFERS_SCANNED_PER_ITEM);
        while budget > 0 {
            let chunk = budget.min(TRANSFERS_READ_EVENTS);
            let events =
                self.log.read_stream_after(&stream, after, u32::try_from(chunk).unwrap_or(u32::MAX)).await?;
            let Some(last) = events.last() else { return Ok((page, None)) };
            let entries = events.iter().map(TransferEntry::from_event).collect::<Result<Vec<_>, _>>()?;
            // The projection must know every mandate these transfers name, to place their
            // accounts: one that has not yet seen another process's last appends asks the
            // database.
            if scope.shown.is_some() && self.read_model.read().await?.position() < last.position {
                self.read_model.catch_up().await?;
            }
            let projection = self.read_model.read().await?;
            for entry in entries {
                after = entry.position;
                if filter.matches(&entry.transfer)
                    && scope.shows_transfer(self, &projection, &entry.transfer)?
                {
                    page.push(entry);
                    if page.len() == limit {
                        return Ok((page, Some(after)));
                    }
                }
            }
            if events.len() < chunk {
                return Ok((page, None));
            }
            budget -= chunk;
        }
        Ok((page, Some(after)))
    }

    /// Whose accounts `actor` may read. The district's own readers (`read.ledger` on the
    /// district) read every account; anyone else must be allowed `read.ledger` on their own
    /// place, or is refused, and then reads the accounts whose place `policies/authz` lets
    /// them read.
    async fn ledger_scope(&self, actor: Actor) -> Result<(Uuid, LedgerScope)> {
        let district = self.district_of(actor.organisation).await?;
        let whole = {
            let projection = self.read_model.read().await?;
            let target = Target { district: Some(district), ..Target::default() };
            self.authz_decision_in(&projection, &actor, None, "read.ledger", target)?.allow
        };
        if whole {
            return Ok((district, LedgerScope { district, actor, shown: None }));
        }
        let own_place = Self::place_of(&*self.read_model.read().await?, actor.organisation);
        self.authorize(&actor, "read.ledger", own_place).await?;
        Ok((district, LedgerScope { district, actor, shown: Some(HashMap::new()) }))
    }

    async fn audit_district(&self, actor: &Actor) -> Result<Uuid> {
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
