//! Projections: the current state, folded from the log in position order.
//!
//! One fold serves three readers: the live read model behind the API's lists
//! ([`crate::read_model`]), `shequ replay --as-of` and the inspectors' state as of a time or
//! position. Because all of them run this one fold over the same events, a replay of the whole
//! log and the live projection give the same state, byte for byte in JSON.
//!
//! Each aggregate's events are folded with the aggregate's own `apply_event`, so the read side
//! cannot drift from the command side. Balances are summed from the transfers; the transfers
//! themselves stay in the log (`ledger-{district}`), so the projection's size follows the
//! number of things (organisations, mandates, requests, accounts), not the number of events.
//! The policy inputs recorded with decisions and routings (kilobytes each, for re-deciding
//! from the log) are not kept: no view shows them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use esrs::Aggregate;
use serde::Serialize;
use shequ_domain::catalogue::{Catalogue, CatalogueEvent, CatalogueState};
use shequ_domain::ledger::{Account, LedgerEvent};
use shequ_domain::mandate::{ContestGround, Mandate, MandateEvent, MandateState, MandateStatus, Violation};
use shequ_domain::organisation::{Organisation, OrganisationEvent, OrganisationKind, OrganisationState};
use shequ_domain::recorded::RecordedInput;
use shequ_domain::request::{
    Channel, Request, RequestEvent, RequestRecord, RequestState, RequestStatus, Route,
};
use shequ_domain::{Date, DomainEvent, Fen};
use shequ_store::RecordedEvent;
use uuid::Uuid;

/// Why an event could not be folded: the log holds something this build cannot read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("position {position} ({stream}, {event_type}): {reason}")]
pub struct ProjectionError {
    pub position: u64,
    pub stream: String,
    pub event_type: String,
    pub reason: String,
}

/// Where a replay stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Everything up to and including this position.
    Position(u64),
    /// Everything recorded at or before this time.
    Time(DateTime<Utc>),
    /// The whole log.
    Head,
}

impl AsOf {
    /// Parses `latest`/`head`, a position (`1234`) or an RFC 3339 time.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("head") || text.eq_ignore_ascii_case("latest") {
            return Ok(AsOf::Head);
        }
        if let Ok(position) = text.parse::<u64>() {
            return Ok(AsOf::Position(position));
        }
        DateTime::parse_from_rfc3339(text).map(|time| AsOf::Time(time.with_timezone(&Utc))).map_err(|_| {
            format!(
                "`{text}` is neither a position (e.g. 1200) nor an RFC 3339 time (e.g. 2026-11-29T08:00:00Z)"
            )
        })
    }

    /// Whether `event` lies beyond this point; positions and times only grow along the log.
    pub fn excludes(&self, event: &RecordedEvent) -> bool {
        match self {
            AsOf::Position(position) => event.position > *position,
            AsOf::Time(time) => event.recorded_at > *time,
            AsOf::Head => false,
        }
    }
}

/// One organisation as the projection holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrganisationView {
    pub id: Uuid,
    pub kind: OrganisationKind,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub code: Option<String>,
}

/// One mandate as the projection holds it: the fold of its stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct MandateRow {
    state: MandateState,
    revision: u64,
    updated_at: Option<DateTime<Utc>>,
}

/// A mandate's or a request's state: the fold of its stream alone, event by event in revision
/// order. The live projection keeps one per stream; a replay holds one at a time.
pub(crate) trait StreamFold: Default + Send {
    /// Folds the next event of the stream in.
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError>;
}

impl StreamFold for MandateRow {
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let decoded = MandateEvent::from_data(&event.event_type, event.event_version, &event.data)
            .map_err(|error| failed(event, error.to_string()))?;
        self.state = Mandate::apply_event(std::mem::take(&mut self.state), decoded);
        // The policy input stays in the log for re-deciding; no view shows it.
        if let Some(record) = self.state.mandate.as_mut() {
            record.decision.input = RecordedInput::default();
        }
        self.revision = event.revision;
        self.updated_at = Some(event.recorded_at);
        Ok(())
    }
}

impl MandateRow {
    /// Where routing finds the mandate while it is not over: its community now and its matter.
    fn live_key(&self) -> Option<(Uuid, String)> {
        let record = self.state.mandate.as_ref()?;
        let live = !record.status.is_final();
        live.then(|| (record.proposal.community, record.proposal.matter_code.clone()))
    }

    /// The mandate's view, once it has been proposed.
    pub(crate) fn view(&self, id: Uuid) -> Option<MandateView> {
        let record = self.state.mandate.as_ref()?;
        Some(MandateView {
            mandate: id,
            matter_code: record.proposal.matter_code.clone(),
            delegating_unit: record.proposal.delegating_unit,
            community: record.proposal.community,
            status: record.status,
            scope: record.proposal.scope.clone(),
            volume: record.proposal.volume,
            deadline: record.proposal.deadline.clone(),
            funds_offered_fen: record.proposal.funds_offered_fen,
            funds_posted_fen: record.funds_posted_fen,
            recorded_outside_process: record.recorded_outside_process,
            decision_id: record.decision.decision_id,
            violations: record.decision.violations.clone(),
            contest: record.contest.as_ref().map(|contest| ContestView {
                mandate: id,
                contest_id: contest.contest_id,
                community: record.proposal.community,
                delegating_unit: record.proposal.delegating_unit,
                grounds: contest.grounds.clone(),
                deadline: contest.deadline.clone(),
                escalated: contest.escalated,
            }),
            revision: self.revision,
            updated_at: self.updated_at.map(time).unwrap_or_default(),
        })
    }
}

/// A step in a request's status history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub position: u64,
    pub status: RequestStatus,
    pub note: String,
    pub actor: String,
    pub at: String,
}

/// A step of a request's history as the projection keeps it, for every request it holds: the
/// time is kept as a time and the texts boxed, and a [`HistoryEntry`] is made when the request
/// is shown.
#[derive(Debug, Clone)]
struct Step {
    position: u64,
    status: RequestStatus,
    at: DateTime<Utc>,
    note: Box<str>,
    actor: Box<str>,
}

impl Step {
    fn entry(&self) -> HistoryEntry {
        HistoryEntry {
            position: self.position,
            status: self.status,
            note: self.note.to_string(),
            actor: self.actor.to_string(),
            at: time(self.at),
        }
    }
}

/// One request as the projection holds it: the fold of its stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestRow {
    state: RequestState,
    history: Vec<Step>,
    /// The filing's attributes, moved out of `state` once it holds them: a `BTreeMap` takes a
    /// node of about 540 bytes for even one entry, for every request held.
    attributes: Box<[(Box<str>, Box<str>)]>,
    filed_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    comment: Option<String>,
    revision: u64,
}

impl StreamFold for RequestRow {
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let decoded = RequestEvent::from_data(&event.event_type, event.event_version, &event.data)
            .map_err(|error| failed(event, error.to_string()))?;
        if let Some(status) = decoded.status() {
            self.history.push(Step {
                position: event.position,
                status,
                at: event.recorded_at,
                note: decoded.note().into(),
                actor: actor_of(&event.metadata).into_boxed_str(),
            });
        }
        match &decoded {
            RequestEvent::RequestFiled { .. } => self.filed_at = Some(event.recorded_at),
            RequestEvent::SatisfactionRated { comment, .. } => self.comment = Some(comment.clone()),
            _ => {}
        }
        self.state = Request::apply_event(std::mem::take(&mut self.state), decoded);
        // As for mandates: the routing input is in the log, and no view shows it; nor the
        // bundle's digest. No later event's fold reads either, nor the attributes.
        if let Some(record) = self.state.request.as_mut() {
            record.routing.input = RecordedInput::default();
            record.routing.bundle_digest = String::new();
            if !record.filing.attributes.is_empty() {
                let attributes = std::mem::take(&mut record.filing.attributes);
                self.attributes =
                    attributes.into_iter().map(|(code, value)| (code.into(), value.into())).collect();
            }
        }
        self.revision = event.revision;
        self.updated_at = Some(event.recorded_at);
        Ok(())
    }
}

impl RequestRow {
    /// The request's view, once it has been filed.
    pub(crate) fn view(&self, id: Uuid) -> Option<RequestView> {
        let record: &RequestRecord = self.state.request.as_ref()?;
        Some(RequestView {
            request: id,
            matter_code: record.filing.matter_code.clone(),
            station: record.filing.station,
            channel: record.filing.channel,
            priority: record.filing.is_priority(),
            resident: record.filing.resident.clone(),
            description: record.filing.description.clone(),
            address: record.filing.address.clone(),
            lat: record.filing.lat,
            long: record.filing.long,
            attributes: self
                .attributes
                .iter()
                .map(|(code, value)| (code.to_string(), value.to_string()))
                .collect(),
            status: record.status,
            route: record.routing.route,
            holder: record.holder,
            handler: record.routing.handler,
            mandate: record.routing.mandate,
            routing_reason: record.routing.reason.clone(),
            routing_clause: record.routing.clause.clone(),
            expected_date: record.filing.expected_date.clone(),
            filed_at: self.filed_at.map(time).unwrap_or_default(),
            updated_at: self.updated_at.map(time).unwrap_or_default(),
            rating: record.rating,
            rating_comment: self.comment.clone(),
            history: self.history.iter().map(Step::entry).collect(),
            revision: self.revision,
        })
    }
}

/// What a fold says of an event it cannot take.
fn failed(event: &RecordedEvent, reason: String) -> ProjectionError {
    ProjectionError {
        position: event.position,
        stream: event.stream.clone(),
        event_type: event.event_type.clone(),
        reason,
    }
}

/// The UUID that ends the name of `event`'s stream (`mandate-{id}`), written as the domain
/// writes it: lower-case and hyphenated. Other spellings of a UUID are refused rather than
/// read, so that one entity has one stream and streams in name order are entities in id order.
pub(crate) fn entity_id(event: &RecordedEvent) -> Result<Uuid, ProjectionError> {
    let id = event.stream.split_once('-').map_or("", |(_, id)| id);
    let canonical = id.len() == 36 && !id.bytes().any(|byte| byte.is_ascii_uppercase());
    let parsed = canonical.then(|| Uuid::try_parse(id).ok()).flatten();
    parsed.ok_or_else(|| {
        failed(event, "the stream name does not end in a UUID (lower-case, hyphenated)".into())
    })
}

/// The state folded from the log up to `position`.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    position: u64,
    recorded_at: Option<DateTime<Utc>>,
    organisations: BTreeMap<Uuid, OrganisationState>,
    catalogue: CatalogueState,
    catalogue_version: u64,
    mandates: BTreeMap<Uuid, MandateRow>,
    /// The mandates not yet over, by community and matter: what routing a request reads, so
    /// that its cost does not grow with all the mandates ever proposed. A fold that moves a
    /// mandate (a reassignment) or ends it moves or drops its entry.
    live_mandates: BTreeMap<(Uuid, String), BTreeSet<Uuid>>,
    balances: BTreeMap<Uuid, BTreeMap<Account, i64>>,
    requests: BTreeMap<Uuid, RequestRow>,
}

impl Projection {
    /// The last position folded in (0 for none).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Folds one event in. Events must come in position order, each once.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.position <= self.position {
            return Err(failed(event, format!("already folded up to position {}", self.position)));
        }
        self.fold(event)?;
        self.position = event.position;
        self.recorded_at = Some(event.recorded_at);
        Ok(())
    }

    /// Folds one event into its own stream's state. Every part of the projection is the
    /// fold of one stream (an organisation, the catalogue, a mandate, a district's ledger, a
    /// request) and reads no other stream, so streams may be folded one after another, each
    /// in revision order, with the same result as the whole log in position order: what
    /// `crate::replay` does. Where the fold has got to is [`Self::stop_at`]'s to set.
    pub(crate) fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let category = event.stream.split_once('-').map_or(event.stream.as_str(), |(category, _)| category);
        let decode = |error: shequ_domain::DecodeError| failed(event, error.to_string());
        let id_of_stream = || entity_id(event);
        match category {
            "organisation" => {
                let decoded =
                    OrganisationEvent::from_data(&event.event_type, event.event_version, &event.data)
                        .map_err(decode)?;
                let state = self.organisations.entry(id_of_stream()?).or_default();
                *state = Organisation::apply_event(std::mem::take(state), decoded);
            }
            "catalogue" => {
                let decoded = CatalogueEvent::from_data(&event.event_type, event.event_version, &event.data)
                    .map_err(decode)?;
                self.catalogue = Catalogue::apply_event(std::mem::take(&mut self.catalogue), decoded);
                self.catalogue_version = event.revision + 1;
            }
            "mandate" => {
                let id = id_of_stream()?;
                let row = self.mandates.entry(id).or_default();
                let before = row.live_key();
                row.fold(event)?;
                let after = row.live_key();
                if after != before {
                    self.file_live_mandate(id, before, after);
                }
            }
            "ledger" => {
                let LedgerEvent::TransferRecorded { transfer } =
                    LedgerEvent::from_data(&event.event_type, event.event_version, &event.data)
                        .map_err(decode)?;
                let balances = self.balances.entry(id_of_stream()?).or_default();
                let amount = transfer.amount_fen.get();
                *balances.entry(transfer.debit).or_default() -= amount;
                *balances.entry(transfer.credit).or_default() += amount;
            }
            "request" => self.requests.entry(id_of_stream()?).or_default().fold(event)?,
            // Policy bundles, checkpoints and other bookkeeping streams hold no state shown here.
            _ => {}
        }
        Ok(())
    }

    /// Marks the fold as reaching `position`, recorded at `recorded_at`: for a replay that
    /// folded the streams one by one up to that position.
    pub(crate) fn stop_at(&mut self, position: u64, recorded_at: Option<DateTime<Utc>>) {
        self.position = position;
        self.recorded_at = recorded_at;
    }

    /// Keeps `row`, folded elsewhere, as mandate `id`'s.
    pub(crate) fn insert_mandate(&mut self, id: Uuid, row: MandateRow) {
        let after = row.live_key();
        let before = self.mandates.insert(id, row).and_then(|before| before.live_key());
        self.file_live_mandate(id, before, after);
    }

    /// Moves mandate `id` in `live_mandates` from `before`'s set to `after`'s.
    fn file_live_mandate(&mut self, id: Uuid, before: Option<(Uuid, String)>, after: Option<(Uuid, String)>) {
        if let Some(before) = before {
            if let Some(ids) = self.live_mandates.get_mut(&before) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.live_mandates.remove(&before);
                }
            }
        }
        if let Some(after) = after {
            self.live_mandates.entry(after).or_default().insert(id);
        }
    }

    /// Keeps `row`, folded elsewhere, as request `id`'s.
    pub(crate) fn insert_request(&mut self, id: Uuid, row: RequestRow) {
        self.requests.insert(id, row);
    }

    // ----- Queries ------------------------------------------------------------------------------

    pub fn organisation(&self, id: Uuid) -> Option<OrganisationView> {
        let registered = self.organisations.get(&id)?.registered.as_ref()?;
        Some(OrganisationView {
            id,
            kind: registered.kind,
            name: registered.name.clone(),
            parent_id: registered.parent_id,
            code: registered.code.clone(),
        })
    }

    pub fn organisations(&self) -> impl Iterator<Item = OrganisationView> + '_ {
        self.organisations.keys().filter_map(|id| self.organisation(*id))
    }

    /// The district an organisation belongs to (itself, for a district).
    pub fn district_of(&self, organisation: Uuid) -> Option<Uuid> {
        let mut current = self.organisation(organisation)?;
        for _ in 0..4 {
            match (current.kind, current.parent_id) {
                (OrganisationKind::District, _) => return Some(current.id),
                (_, Some(parent)) => current = self.organisation(parent)?,
                (_, None) => return None,
            }
        }
        None
    }

    /// The street an organisation belongs to: itself for a street, its parent for a community.
    pub fn street_of(&self, organisation: Uuid) -> Option<Uuid> {
        let view = self.organisation(organisation)?;
        match view.kind {
            OrganisationKind::Street => Some(view.id),
            OrganisationKind::Community => view.parent_id,
            OrganisationKind::District | OrganisationKind::Department => None,
        }
    }

    /// The district's departments by catalogue code.
    pub fn departments(&self, district: Uuid) -> BTreeMap<String, Uuid> {
        self.organisations()
            .filter(|view| view.kind == OrganisationKind::Department && view.parent_id == Some(district))
            .filter_map(|view| view.code.map(|code| (code, view.id)))
            .collect()
    }

    pub fn catalogue_version(&self) -> u64 {
        self.catalogue_version
    }

    pub fn catalogue(&self) -> &CatalogueState {
        &self.catalogue
    }

    /// Whether mandate `id`'s stream has any event folded in.
    pub fn has_mandate(&self, id: Uuid) -> bool {
        self.mandates.contains_key(&id)
    }

    pub fn mandate(&self, id: Uuid) -> Option<MandateView> {
        self.mandates.get(&id)?.view(id)
    }

    /// Mandates in id order (ids are UUID v7 in the API, so roughly in time order).
    pub fn mandates(&self) -> impl Iterator<Item = MandateView> + '_ {
        self.mandates.keys().filter_map(|id| self.mandate(*id))
    }

    /// A community's mandates for one matter that are not over, for routing.
    pub fn live_mandates_for(&self, community: Uuid, matter_code: &str) -> Vec<MandateView> {
        let ids = self.live_mandates.get(&(community, matter_code.to_owned())).into_iter().flatten();
        ids.filter_map(|id| self.mandate(*id)).collect()
    }

    pub fn balance(&self, district: Uuid, account: Account) -> i64 {
        self.balances.get(&district).and_then(|balances| balances.get(&account)).copied().unwrap_or(0)
    }

    pub fn balances(&self, district: Uuid) -> Vec<BalanceView> {
        self.balances
            .get(&district)
            .into_iter()
            .flatten()
            .map(|(account, balance)| BalanceView { district, account: *account, balance_fen: *balance })
            .collect()
    }

    pub fn request(&self, id: Uuid) -> Option<RequestView> {
        self.requests.get(&id)?.view(id)
    }

    pub fn requests(&self) -> impl Iterator<Item = RequestView> + '_ {
        self.requests.keys().filter_map(|id| self.request(*id))
    }

    /// Everything, as one JSON document: what `shequ replay` writes.
    pub fn document(&self) -> StateDocument {
        let mandates: Vec<MandateView> = self.mandates().collect();
        StateDocument {
            as_of: self.as_of(),
            organisations: self.organisations().collect(),
            catalogue: self.catalogue_view(),
            open_contests: mandates.iter().filter_map(|view| view.contest.clone()).collect(),
            mandates,
            balances: self.all_balances(),
            requests: self.requests().collect(),
        }
    }

    pub(crate) fn as_of(&self) -> AsOfView {
        AsOfView { position: self.position, recorded_at: self.recorded_at.map(time) }
    }

    pub(crate) fn catalogue_view(&self) -> CatalogueView {
        CatalogueView {
            version: self.catalogue_version,
            matters: self.catalogue.matters.keys().cloned().collect(),
        }
    }

    /// Every district's balances, district by district.
    pub(crate) fn all_balances(&self) -> Vec<BalanceView> {
        self.balances.keys().flat_map(|district| self.balances(*district)).collect()
    }
}

impl Projection {
    /// [`Self::document`], narrowed to what lies in one district.
    pub fn document_for_district(&self, district: Uuid) -> StateDocument {
        let mut document = self.document();
        let inside = |organisation: Uuid| self.district_of(organisation) == Some(district);
        document.organisations.retain(|view| inside(view.id));
        document.mandates.retain(|view| inside(view.community));
        document.open_contests.retain(|view| inside(view.community));
        document.balances.retain(|view| view.district == district);
        document.requests.retain(|view| inside(view.station));
        document
    }
}

/// The `actor` of an event's metadata, or `""` when the metadata is not a JSON object or
/// its `actor` (the last, if given twice) is not a string: what reading the metadata into a
/// `serde_json::Value` and taking `actor` gives, without building the `Value`.
fn actor_of(metadata: &str) -> String {
    struct Actor(Option<String>);

    impl<'de> serde::Deserialize<'de> for Actor {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_map(ActorVisitor)
        }
    }

    struct ActorVisitor;

    impl<'de> serde::de::Visitor<'de> for ActorVisitor {
        type Value = Actor;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a JSON object")
        }

        fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Actor, M::Error> {
            let mut actor = None;
            while let Some(IsActor(is_actor)) = map.next_key()? {
                match is_actor {
                    true => actor = map.next_value::<serde_json::Value>()?.as_str().map(str::to_owned),
                    false => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
            }
            Ok(Actor(actor))
        }
    }

    /// Whether a key is `actor`, read without copying it.
    struct IsActor(bool);

    impl<'de> serde::Deserialize<'de> for IsActor {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_str(IsActorVisitor)
        }
    }

    struct IsActorVisitor;

    impl serde::de::Visitor<'_> for IsActorVisitor {
        type Value = IsActor;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a key")
        }

        fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<IsActor, E> {
            Ok(IsActor(key == "actor"))
        }
    }

    serde_json::from_str::<Actor>(metadata).ok().and_then(|actor| actor.0).unwrap_or_default()
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The whole state at one point of the log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StateDocument {
    pub as_of: AsOfView,
    pub organisations: Vec<OrganisationView>,
    pub catalogue: CatalogueView,
    pub mandates: Vec<MandateView>,
    pub balances: Vec<BalanceView>,
    pub open_contests: Vec<ContestView>,
    pub requests: Vec<RequestView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AsOfView {
    pub position: u64,
    pub recorded_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CatalogueView {
    /// The number of catalogue events so far: every decision names the version it used.
    pub version: u64,
    pub matters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MandateView {
    pub mandate: Uuid,
    pub matter_code: String,
    pub delegating_unit: Uuid,
    pub community: Uuid,
    pub status: MandateStatus,
    pub scope: String,
    pub volume: u32,
    #[schema(value_type = String)]
    pub deadline: Date,
    pub funds_offered_fen: Fen,
    pub funds_posted_fen: Fen,
    pub recorded_outside_process: bool,
    pub decision_id: Uuid,
    pub violations: Vec<Violation>,
    pub contest: Option<ContestView>,
    /// The revision of the mandate's last event: a command sent with it as
    /// `Expected-Revision` goes through only on this state.
    pub revision: u64,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ContestView {
    pub mandate: Uuid,
    pub contest_id: Uuid,
    pub community: Uuid,
    pub delegating_unit: Uuid,
    pub grounds: Vec<ContestGround>,
    pub deadline: String,
    pub escalated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BalanceView {
    pub district: Uuid,
    pub account: Account,
    pub balance_fen: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    pub request: Uuid,
    pub matter_code: String,
    pub station: Uuid,
    pub channel: Channel,
    /// Call-assistance requests from elderly and disabled residents come first (`plan:4.3-E4`).
    pub priority: bool,
    pub resident: String,
    pub description: String,
    pub address: Option<String>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub attributes: BTreeMap<String, String>,
    pub status: RequestStatus,
    pub route: Route,
    /// Who holds it now.
    pub holder: Uuid,
    /// Who routing named to handle it.
    pub handler: Uuid,
    pub mandate: Option<Uuid>,
    pub routing_reason: String,
    pub routing_clause: String,
    #[schema(value_type = String)]
    pub expected_date: Date,
    pub filed_at: String,
    pub updated_at: String,
    pub rating: Option<u8>,
    pub rating_comment: Option<String>,
    pub history: Vec<HistoryEntry>,
    /// The revision of the request's last event: an action sent with it as
    /// `Expected-Revision` goes through only on this state.
    pub revision: u64,
}

impl RequestView {
    /// Past its expected date and not yet resolved, as of `today` (`YYYY-MM-DD`).
    pub fn is_overdue(&self, today: &str) -> bool {
        !self.status.stops_the_clock() && self.expected_date.as_str() < today
    }
}

#[cfg(test)]
mod tests {
    use super::actor_of;

    /// What the projection read before `actor_of`: the metadata as a `serde_json::Value`.
    fn through_value(metadata: &str) -> String {
        serde_json::from_str::<serde_json::Value>(metadata)
            .ok()
            .and_then(|metadata| metadata.get("actor").and_then(|actor| actor.as_str()).map(str::to_owned))
            .unwrap_or_default()
    }

    #[test]
    fn actor_of_reads_what_a_value_gives() {
        let real = r#"{"$correlationId":"0190f3c4-7d1e-7c3a-9a1b-000000000001","$causationId":"0190f3c4-7d1e-7c3a-9a1b-000000000001","actor":"resident:0190f3c4-7d1e-7c3a-9a1b-000000000002","occurredAt":"2026-11-29T08:00:00.000000Z","decisionId":"0190f3c4-7d1e-7c3a-9a1b-000000000003"}"#;
        let cases = [
            real,
            r#"{"actor":"community:1"}"#,
            r#" { "actor" : "街道 \"东华门\" \u0041" } "#,
            r#"{"act\u006fr":"escaped key"}"#,
            r#"{"actor":"first","actor":"second"}"#,
            r#"{"actor":"first","actor":7}"#,
            r#"{"actor":7,"actor":"second"}"#,
            r#"{"actor":null}"#,
            r#"{"actor":["a"]}"#,
            r#"{"actor":{"actor":"inner"}}"#,
            r#"{"other":{"actor":"nested"}}"#,
            r#"{"other":[1,2,{"x":null}],"actor":"after"}"#,
            r#"{}"#,
            r#"["actor"]"#,
            r#""actor""#,
            "null",
            "",
            r#"{"actor":"a"} x"#,
            r#"{"actor":"a",}"#,
            r#"{"actor":"a""#,
            r#"{"actor":"a","other":tru}"#,
            r#"{"actor":"\ud800"}"#,
        ];
        for metadata in cases {
            assert_eq!(actor_of(metadata), through_value(metadata), "{metadata}");
        }
        assert_eq!(actor_of(real), "resident:0190f3c4-7d1e-7c3a-9a1b-000000000002");
    }
}
