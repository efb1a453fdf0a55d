//! A log of real domain events, as long as asked, for the read benchmarks.
//!
//! Commands through `Service` cost milliseconds each (policy decisions, fsyncs), too slow for
//! a million events. So the demo is loaded through `Service` into a scratch store, and on top
//! of it a few dozen *episodes* are run through it the same way: service requests filed,
//! routed by the routing policy and worked through their lifecycle (forwarded, accepted,
//! started, resolved, rejected, closed, rated), and mandates proposed, decided, accepted,
//! funded and spent against. The generated log is that scratch log, then clones of the
//! episodes: each clone takes fresh ids for everything the episode created (its request or
//! mandate, decisions, transfers, correlations), new resident details, and a simulated clock;
//! every event is decoded into its domain enum and serialised back with
//! `DomainEvent::to_data`, with metadata as `EventMetadata`. A few thousand episodes run at
//! once and their commands interleave, as at real stations.
//!
//! The events are hash-chained here and loaded with `EventLog::import` (bulk, checked event
//! by event, positions and hashes kept), so the log verifies as if appended.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use shequ::demo::{self, DemoOutcome, DemoPlaces};
use shequ_domain::ledger::{LedgerEvent, TransferKind};
use shequ_domain::mandate::{MandateEvent, Proposal};
use shequ_domain::request::{Channel, FileRequest, RequestEvent, RequestStep, Route};
use shequ_domain::{DomainEvent, Fen};
use shequ_policy::Policies;
use shequ_service::{Actor, CommandScope, Role, Service, SystemClock};
use shequ_store::canonical::chain_hash;
use shequ_store::{EventLog, EventMetadata, RecordedEvent};
use uuid::Uuid;

/// Episodes in flight at once: how far apart the commands of one request land in the log.
const EPISODES_OPEN: usize = 3_000;
/// Of every 100 episodes started, how many are mandates (the rest are service requests).
const MANDATE_EPISODES_PER_100: u64 = 4;
/// The mean gap between two commands on the simulated clock, in milliseconds.
const COMMAND_GAP_MS_MEAN: u64 = 2_000;
/// The seed of the generator: the same templates give the same log.
const SEED: u64 = 0x5348_4551_5500_0001;

/// Requests run through the command path as templates: (matter, community index). Together
/// they take every route: a community with a live mandate, the station as agent for a
/// department or a street, a suspended mandate back to its delegating unit, self-governance.
const REQUEST_TEMPLATES: [(&str, usize); 18] = [
    ("EMP-001", 0),
    ("EMP-001", 1),
    ("EMP-001", 6),
    ("SIN-001", 3),
    ("EMP-003", 10),
    ("SSV-003", 2),
    ("SSV-005", 7),
    ("SSV-007", 4),
    ("SSV-007", 11),
    ("SSV-006", 5),
    ("EMP-002", 9),
    ("SSV-010", 1),
    ("SSV-012", 3),
    ("SSV-014", 8),
    ("CSE-006", 0),
    ("PMD-002", 2),
    ("SAF-001", 9),
    ("FLP-001", 5),
];

const DESCRIPTIONS: [&str; 8] = [
    "申请办理失业登记，需要社区协助核实材料",
    "Elderly resident asks for help registering for home-care subsidy",
    "咨询灵活就业社保补贴申领条件",
    "楼道堆物影响通行，请求协调清理",
    "Needs a certificate of residence for a school application",
    "独居老人需要上门探访和助餐服务",
    "邻里纠纷调解：楼上漏水",
    "Asks how to apply for the minimum living allowance",
];

const NOTES: [&str; 6] = [
    "材料齐全，已受理",
    "assigned to the duty officer",
    "已电话联系居民",
    "visited the household",
    "办结，居民确认",
    "",
];

/// A piece of a template's text: as recorded, or one of the episode's own ids.
#[derive(Debug, Clone)]
enum Segment {
    Text(String),
    Local(usize),
}

#[derive(Debug, Clone)]
struct TemplateEvent {
    stream: Vec<Segment>,
    /// Whether the stream belongs to the episode (its revisions start at 0 in each clone).
    stream_is_local: bool,
    event_type: String,
    event_version: u32,
    data: Vec<Segment>,
    metadata: Vec<Segment>,
}

/// One conversation with the command path: its commands, each a list of events appended
/// together.
#[derive(Debug, Clone)]
struct Episode {
    commands: Vec<Vec<TemplateEvent>>,
    /// How many ids the episode created; each clone takes as many fresh ones.
    locals: usize,
    /// For a request: the matter's SLA, for the expected date.
    sla_days: u32,
}

/// The demo and the episodes as recorded, ready to clone.
#[derive(Debug)]
pub struct Templates {
    /// The scratch log: the demo, then the episodes run once each.
    prefix: Vec<RecordedEvent>,
    requests: Vec<Episode>,
    mandates: Vec<Episode>,
}

impl Templates {
    /// Events the prefix holds: the generated log is at least this long.
    pub fn prefix_events(&self) -> u64 {
        self.prefix.len() as u64
    }

    pub fn summary(&self) -> String {
        format!(
            "{} events of demo and templates, {} request and {} mandate episodes",
            self.prefix.len(),
            self.requests.len(),
            self.mandates.len()
        )
    }
}

/// Loads the demo into a scratch SQLite store and runs the template episodes through
/// `Service`.
pub async fn templates() -> Result<Templates, Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let log =
        EventLog::open(&format!("sqlite://{}", directory.path().join("templates.db").display())).await?;
    let policies = Policies::embedded()?;
    let places = match demo::load(&log, &policies).await? {
        DemoOutcome::Loaded { places, .. } => places,
        DemoOutcome::AlreadyLoaded { .. } => return Err("a fresh store already holds the demo".into()),
    };
    let demo_end = log.head().await?.position;
    let service = Service::new(log.clone(), policies, Arc::new(SystemClock)).await?;
    let catalogue = shequ_policy::starting_catalogue()?;

    let mut request_ranges = Vec::new();
    for (index, (code, community)) in REQUEST_TEMPLATES.iter().enumerate() {
        let before = log.head().await?.position;
        match run_request(&service, &places, index, code, places.communities[*community].0).await {
            Ok(()) => {}
            Err(error) => {
                eprintln!("  template request {code} at community {community} skipped: {error}");
                continue;
            }
        }
        let sla_days =
            catalogue.iter().find(|matter| matter.code == *code).map_or(7, |matter| matter.sla_days);
        request_ranges.push((before, log.head().await?.position, sla_days));
    }
    let mut mandate_ranges = Vec::new();
    for (code, unit, community, spends) in mandate_templates(&places) {
        let before = log.head().await?.position;
        let Some(matter) = catalogue.iter().find(|matter| matter.code == code) else { continue };
        if let Err(error) = run_mandate(&service, matter, unit, community, spends).await {
            eprintln!("  template mandate {code} skipped: {error}");
            continue;
        }
        mandate_ranges.push((before, log.head().await?.position, 0));
    }

    let head = log.head().await?;
    let prefix = read_all_events(&log, head.position).await?;
    log.close().await;
    let world = world_ids(&prefix[..usize::try_from(demo_end)?]);
    let episodes = |ranges: Vec<(u64, u64, u32)>| -> Vec<Episode> {
        ranges
            .into_iter()
            .filter(|(before, after, _)| after > before)
            .map(|(before, after, sla_days)| {
                let events =
                    &prefix[usize::try_from(before).unwrap_or(0)..usize::try_from(after).unwrap_or(0)];
                episode(events, &world, sla_days)
            })
            .collect()
    };
    let requests = episodes(request_ranges);
    let mandates = episodes(mandate_ranges);
    if requests.is_empty() || mandates.is_empty() {
        return Err("no template episode could run through the command path".into());
    }
    Ok(Templates { prefix, requests, mandates })
}

/// Reads a whole (small) log into memory.
async fn read_all_events(log: &EventLog, head: u64) -> Result<Vec<RecordedEvent>, shequ_store::StoreError> {
    let mut events = Vec::new();
    while (events.len() as u64) < head {
        let page = log.read_all(events.len() as u64 + 1, 1_000).await?;
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    Ok(events)
}

fn role_of(places: &DemoPlaces, organisation: Uuid) -> Role {
    if places.departments.iter().any(|(id, ..)| *id == organisation) {
        Role::Department
    } else if places.streets.iter().any(|(id, _)| *id == organisation) {
        Role::StreetOffice
    } else if places.district == organisation {
        Role::District
    } else {
        Role::Community
    }
}

/// Files one request and works it to its end. The lifecycle varies with `index`: some are
/// rejected, some resolved without a separate start, some never rated.
async fn run_request(
    service: &Service,
    places: &DemoPlaces,
    index: usize,
    code: &str,
    station: Uuid,
) -> Result<(), shequ_service::ServiceError> {
    let resident = Actor { role: Role::Resident, organisation: station };
    let worker = Actor { role: Role::Community, organisation: station };
    let filing = FileRequest {
        matter_code: code.to_owned(),
        station,
        channel: Channel::Counter,
        resident: None,
        description: DESCRIPTIONS[index % DESCRIPTIONS.len()].to_owned(),
        address: Some(format!("多福巷 {}号", 10 + index)),
        lat: Some(39.915 + index as f64 * 0.001),
        long: Some(116.404),
        attributes: [("household".to_owned(), "2".to_owned())].into(),
    };
    let id = Uuid::now_v7();
    let filed = service.file_request(&CommandScope::new(resident), "r1", id, filing).await?;
    if filed.route == Route::Agent {
        service
            .act_on_request(
                &CommandScope::new(worker),
                "w",
                id,
                RequestStep::Forward { note: "转交主管部门".into() },
            )
            .await?;
    }
    let holder = service.read_request(resident, "r1", id).await?.holder;
    let handler = Actor { role: role_of(places, holder), organisation: holder };
    let note = |step: usize| NOTES[(index + step) % NOTES.len()].to_owned();
    if index % 6 == 5 {
        let reason = "不属于本单位受理范围".to_owned();
        service.act_on_request(&CommandScope::new(handler), "h", id, RequestStep::Reject { reason }).await?;
        return Ok(());
    }
    service
        .act_on_request(&CommandScope::new(handler), "h", id, RequestStep::Accept { note: note(0) })
        .await?;
    if index % 5 != 2 {
        service
            .act_on_request(&CommandScope::new(handler), "h", id, RequestStep::Start { note: note(1) })
            .await?;
    }
    service
        .act_on_request(&CommandScope::new(handler), "h", id, RequestStep::Resolve { note: note(2) })
        .await?;
    service
        .act_on_request(&CommandScope::new(resident), "r1", id, RequestStep::Close { note: note(3) })
        .await?;
    if index % 4 != 3 {
        let rating = 3 + u8::try_from(index % 3).unwrap_or(0);
        service
            .act_on_request(
                &CommandScope::new(resident),
                "r1",
                id,
                RequestStep::Rate { rating, comment: note(4) },
            )
            .await?;
    }
    Ok(())
}

/// (matter, delegating unit, community, spends): mandates admitted and spent against, and
/// one refused.
fn mandate_templates(places: &DemoPlaces) -> Vec<(&'static str, Actor, Uuid, usize)> {
    let department =
        |index: usize| Actor { role: Role::Department, organisation: places.departments[index].0 };
    let street = |index: usize| Actor { role: Role::StreetOffice, organisation: places.streets[index].0 };
    let community = |index: usize| places.communities[index].0;
    vec![
        ("EMP-001", department(1), community(3), 4),
        ("SSV-007", department(0), community(7), 3),
        ("SAF-001", street(2), community(10), 5),
        ("SSV-006", street(0), community(1), 0),
    ]
}

/// Proposes a mandate that meets every rule its matter asks for; if admitted, the community
/// accepts and spends against it `spends` times.
async fn run_mandate(
    service: &Service,
    matter: &shequ_domain::catalogue::Matter,
    unit: Actor,
    community: Uuid,
    spends: usize,
) -> Result<(), shequ_service::ServiceError> {
    let volume = 20;
    let funds = Fen::parse(matter.cost_standard.amount_fen.get() * i64::from(volume)).unwrap_or(Fen::ZERO);
    let proposal = Proposal {
        matter_code: matter.code.clone(),
        delegating_unit: unit.organisation,
        community,
        scope: format!("{} ({})", matter.name, matter.name_en),
        volume,
        deadline: shequ_domain::Date::parse("2026-12-31").expect("a date"),
        funds_offered_fen: funds,
        powers_granted: matter.powers_required.clone(),
        working_conditions: matter.working_conditions.clone(),
    };
    let mandate = Uuid::now_v7();
    let outcome = service.propose(&CommandScope::new(unit), mandate, proposal).await?;
    if !outcome.violations.is_empty() || spends == 0 {
        return Ok(());
    }
    let in_community = CommandScope::new(Actor { role: Role::Community, organisation: community });
    service.accept(&in_community, mandate).await?;
    let case = matter.cost_standard.amount_fen.get().max(100);
    for spend in 0..spends {
        let amount = Fen::parse(case * (1 + i64::try_from(spend % 3).unwrap_or(0))).unwrap_or(Fen::ZERO);
        let memo = format!("{} cases assisted", 1 + spend % 3);
        service.spend(&in_community, mandate, Uuid::now_v7(), amount, &memo).await?;
    }
    Ok(())
}

/// Every id the demo's events name: organisations, the demo's mandates and transfers. Ids
/// outside this set that an episode names are its own, and fresh in each clone.
fn world_ids(events: &[RecordedEvent]) -> HashSet<Uuid> {
    let mut ids = HashSet::new();
    for event in events {
        for text in [event.stream.as_str(), &event.data, &event.metadata] {
            ids.extend(uuids_in(text).into_iter().map(|(_, id)| id));
        }
    }
    ids
}

/// The hyphenated UUIDs in `text`, with their byte offsets.
fn uuids_in(text: &str) -> Vec<(usize, Uuid)> {
    const LENGTH: usize = 36;
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut start = 0;
    while start + LENGTH <= bytes.len() {
        let candidate = &bytes[start..start + LENGTH];
        let shaped = candidate.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        });
        if shaped {
            if let Ok(id) = Uuid::try_parse_ascii(candidate) {
                found.push((start, id));
                start += LENGTH;
                continue;
            }
        }
        start += 1;
    }
    found
}

fn segments(text: &str, world: &HashSet<Uuid>, locals: &mut HashMap<Uuid, usize>) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut copied = 0;
    for (offset, id) in uuids_in(text) {
        if world.contains(&id) {
            continue;
        }
        if offset > copied {
            segments.push(Segment::Text(text[copied..offset].to_owned()));
        }
        let next = locals.len();
        segments.push(Segment::Local(*locals.entry(id).or_insert(next)));
        copied = offset + 36;
    }
    if copied < text.len() {
        segments.push(Segment::Text(text[copied..].to_owned()));
    }
    segments
}

fn render(segments: &[Segment], ids: &[Uuid]) -> String {
    let mut text = String::new();
    for segment in segments {
        match segment {
            Segment::Text(part) => text.push_str(part),
            Segment::Local(index) => text.push_str(&ids[*index].hyphenated().to_string()),
        }
    }
    text
}

/// The events of one episode, grouped into commands (consecutive events of one
/// correlation), with the episode's own ids as segments.
fn episode(events: &[RecordedEvent], world: &HashSet<Uuid>, sla_days: u32) -> Episode {
    let mut locals = HashMap::new();
    let mut commands: Vec<Vec<TemplateEvent>> = Vec::new();
    let mut last_correlation = None;
    for event in events {
        let correlation = serde_json::from_str::<EventMetadata>(&event.metadata)
            .map(|metadata| metadata.correlation_id)
            .ok();
        let stream = segments(&event.stream, world, &mut locals);
        let template = TemplateEvent {
            stream_is_local: stream.iter().any(|segment| matches!(segment, Segment::Local(_))),
            stream,
            event_type: event.event_type.clone(),
            event_version: event.event_version,
            data: segments(&event.data, world, &mut locals),
            metadata: segments(&event.metadata, world, &mut locals),
        };
        match commands.last_mut() {
            Some(command) if correlation.is_some() && correlation == last_correlation => {
                command.push(template)
            }
            _ => commands.push(vec![template]),
        }
        last_correlation = correlation;
    }
    Episode { commands, locals: locals.len(), sla_days }
}

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }

    /// A UUID v7 at `at`, its random bits from this generator.
    fn uuid_v7(&mut self, at: DateTime<Utc>) -> Uuid {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        random[8..].copy_from_slice(&self.next_u64().to_le_bytes()[..2]);
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }
}

/// An episode being cloned.
#[derive(Debug)]
struct Open {
    episode: (bool, usize),
    ids: Vec<Uuid>,
    next_command: usize,
    /// Revisions of the episode's own streams, by stream.
    revisions: Vec<(String, u64)>,
    /// The resident's details, the same on every clone of a filing.
    serial: u64,
}

/// The events of the log, from position 1 to `events`, hash-chained.
#[derive(Debug)]
pub struct Generator<'a> {
    templates: &'a Templates,
    events: u64,
    position: u64,
    previous_hash: [u8; 32],
    clock: DateTime<Utc>,
    rng: Rng,
    open: Vec<Open>,
    started: u64,
    /// The command being emitted, event by event.
    pending: std::collections::VecDeque<RecordedEvent>,
    /// Revisions of streams that outlive episodes (the district's ledger), by stream.
    world_revisions: HashMap<String, u64>,
}

impl<'a> Generator<'a> {
    /// A generator of `events` events. The prefix's commit times are moved onto the
    /// simulated clock, which starts 60 days ago (times are not in the hash chain).
    pub fn new(templates: &'a Templates, events: u64) -> Self {
        let start = (Utc::now() - Duration::days(60)).trunc_subsecs(0);
        let mut world_revisions = HashMap::new();
        for event in &templates.prefix {
            world_revisions.insert(event.stream.clone(), event.revision + 1);
        }
        Self {
            templates,
            events,
            position: 0,
            previous_hash: shequ_store::canonical::GENESIS_HASH,
            clock: start,
            rng: Rng(SEED),
            open: Vec::with_capacity(EPISODES_OPEN),
            started: 0,
            pending: std::collections::VecDeque::new(),
            world_revisions,
        }
    }

    /// Emits the next command of some episode, starting a new one when fewer than
    /// `EPISODES_OPEN` are open.
    fn next_command(&mut self) {
        let gap = self.rng.below(2 * COMMAND_GAP_MS_MEAN);
        self.clock += Duration::milliseconds(i64::try_from(gap).unwrap_or(0));
        let start_one = self.open.is_empty() || (self.open.len() < EPISODES_OPEN && self.rng.below(3) == 0);
        let index = match start_one {
            true => {
                let mandate = self.rng.below(100) < MANDATE_EPISODES_PER_100;
                let pool = match mandate {
                    true => &self.templates.mandates,
                    false => &self.templates.requests,
                };
                let which = usize::try_from(self.rng.below(pool.len() as u64)).unwrap_or(0);
                let locals = pool[which].locals;
                let ids = (0..locals).map(|_| self.rng.uuid_v7(self.clock)).collect();
                self.started += 1;
                self.open.push(Open {
                    episode: (mandate, which),
                    ids,
                    next_command: 0,
                    revisions: Vec::new(),
                    serial: self.started,
                });
                self.open.len() - 1
            }
            false => usize::try_from(self.rng.below(self.open.len() as u64)).unwrap_or(0),
        };
        let (mandate, which) = self.open[index].episode;
        let templates = self.templates;
        let episode = match mandate {
            true => &templates.mandates[which],
            false => &templates.requests[which],
        };
        let command = &episode.commands[self.open[index].next_command];
        let recorded_at = self.clock.trunc_subsecs(6);
        for template in command {
            let event = self.clone_event(index, episode, template, recorded_at);
            self.pending.push_back(event);
        }
        let open = &mut self.open[index];
        open.next_command += 1;
        if open.next_command == episode.commands.len() {
            self.open.swap_remove(index);
        }
    }

    fn clone_event(
        &mut self,
        index: usize,
        episode: &Episode,
        template: &TemplateEvent,
        recorded_at: DateTime<Utc>,
    ) -> RecordedEvent {
        let open = &self.open[index];
        let stream = render(&template.stream, &open.ids);
        let revision = match template.stream_is_local {
            true => {
                let open = &mut self.open[index];
                match open.revisions.iter_mut().find(|(name, _)| *name == stream) {
                    Some((_, next)) => {
                        *next += 1;
                        *next - 1
                    }
                    None => {
                        open.revisions.push((stream.clone(), 1));
                        0
                    }
                }
            }
            false => {
                let next = self.world_revisions.entry(stream.clone()).or_insert(0);
                *next += 1;
                *next - 1
            }
        };
        let open = &self.open[index];
        let data = render(&template.data, &open.ids);
        let serial = open.serial;
        let data = self.typed_data(&stream, template, &data, serial, episode.sla_days);
        let mut metadata: EventMetadata =
            serde_json::from_str(&render(&template.metadata, &self.open[index].ids))
                .expect("template metadata is the store's own");
        metadata.occurred_at = recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        RecordedEvent {
            position: 0,
            stream,
            revision,
            event_id: self.rng.uuid_v7(recorded_at),
            event_type: template.event_type.clone(),
            event_version: template.event_version,
            data,
            metadata: metadata.to_json(),
            recorded_at,
            hash: [0; 32],
        }
    }

    /// The clone's data, through its domain event: a filing gets its own resident and
    /// details, a spending its own amount and memo.
    fn typed_data(
        &mut self,
        stream: &str,
        template: &TemplateEvent,
        data: &str,
        serial: u64,
        sla_days: u32,
    ) -> String {
        let (event_type, version) = (template.event_type.as_str(), template.event_version);
        let category = stream.split_once('-').map_or(stream, |(category, _)| category);
        let encoded = match category {
            "request" => RequestEvent::from_data(event_type, version, data).and_then(|mut event| {
                if let RequestEvent::RequestFiled { filing } = &mut event {
                    let mut rng = Rng(SEED ^ serial);
                    filing.resident = match rng.below(3) {
                        0 => format!("r{}", rng.below(50_000)),
                        1 => format!("居民{}", rng.below(50_000)),
                        _ => format!("resident-{}", rng.below(50_000)),
                    };
                    filing.description = format!("{}（{}）", rng.pick(&DESCRIPTIONS), serial);
                    filing.channel = *rng.pick(&[
                        Channel::Counter,
                        Channel::Counter,
                        Channel::Phone,
                        Channel::Web,
                        Channel::Hotline,
                        Channel::CallAssistance,
                    ]);
                    filing.address = match rng.below(4) {
                        0 => None,
                        number => Some(format!(
                            "{}号楼{}单元{}室",
                            number * 3,
                            rng.below(6) + 1,
                            rng.below(600) + 101
                        )),
                    };
                    let jitter = (rng.below(2_000) as f64 - 1_000.0) / 100_000.0;
                    filing.lat = filing.lat.map(|lat| ((lat + jitter) * 1e6).round() / 1e6);
                    filing.long = filing.long.map(|long| ((long - jitter) * 1e6).round() / 1e6);
                    if rng.below(2) == 0 {
                        filing.attributes.insert("household".into(), (rng.below(5) + 1).to_string());
                    } else {
                        filing.attributes.clear();
                    }
                    let today = self.clock.date_naive();
                    filing.expected_date =
                        shequ_domain::Date::parse(&(today + Duration::days(i64::from(sla_days))).to_string())
                            .expect("chrono writes dates as YYYY-MM-DD");
                }
                event.to_data()
            }),
            "mandate" => MandateEvent::from_data(event_type, version, data).and_then(|event| event.to_data()),
            "ledger" => LedgerEvent::from_data(event_type, version, data).and_then(|mut event| {
                let LedgerEvent::TransferRecorded { transfer } = &mut event;
                if transfer.kind == TransferKind::Spending {
                    let cases = 1 + self.rng.below(4);
                    let case = transfer.amount_fen.get().max(100);
                    transfer.amount_fen =
                        Fen::parse(case * i64::try_from(cases).unwrap_or(1)).unwrap_or(Fen::ZERO);
                    transfer.memo = format!("{cases} cases assisted");
                }
                event.to_data()
            }),
            other => panic!("no episode writes to `{other}` streams"),
        };
        encoded.expect("template events are this build's own")
    }
}

impl Iterator for Generator<'_> {
    type Item = RecordedEvent;

    fn next(&mut self) -> Option<RecordedEvent> {
        if self.position >= self.events {
            return None;
        }
        let mut event = match self.templates.prefix.get(usize::try_from(self.position).ok()?) {
            Some(event) => {
                let mut event = event.clone();
                event.recorded_at = self.clock.trunc_subsecs(6);
                self.clock += Duration::milliseconds(50);
                event
            }
            None => {
                if self.pending.is_empty() {
                    self.next_command();
                }
                self.pending.pop_front()?
            }
        };
        self.position += 1;
        event.position = self.position;
        event.hash = chain_hash(&self.previous_hash, &event);
        self.previous_hash = event.hash;
        Some(event)
    }
}
