//! Service requests (cases) at the one-stop community service station (`plan:3.2.2-ST`,
//! `plan:3.4.2-R5`): a resident, or a community worker on their behalf, files a request for a
//! catalogue matter; the routing policy decides who handles it; its status history is kept,
//! with an expected date from the matter's SLA and a satisfaction rating after closure
//! (`plan:5.1-C`).
//!
//! Lifecycle: received → routed → (forwarded →) accepted → in progress → resolved → closed;
//! or rejected by whoever holds it. The aggregate checks transitions; who may act is decided
//! before the command (`policies/authz`), where the request is routed by `policies/routing`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::date::Date;
use crate::event::DomainEvent;
use crate::recorded::RecordedInput;

/// The longest description, note or reason, in characters.
pub const TEXT_CHARS_MAX: usize = 4_000;
/// The most attributes one request carries.
pub const ATTRIBUTES_MAX: usize = 64;
/// The longest attribute code or value, and the longest resident or address, in characters.
pub const FIELD_CHARS_MAX: usize = 500;

/// How the request reached the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Counter,
    Phone,
    Web,
    Hotline,
    /// The call-assistance line for elderly and disabled residents (`plan:4.3-E4`): priority.
    CallAssistance,
}

impl Channel {
    pub fn is_priority(self) -> bool {
        matches!(self, Channel::CallAssistance)
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Received,
    Routed,
    Accepted,
    Forwarded,
    InProgress,
    Resolved,
    Closed,
    Rejected,
}

impl RequestStatus {
    /// Nothing more happens to the request but a rating.
    pub fn is_final(self) -> bool {
        matches!(self, RequestStatus::Closed | RequestStatus::Rejected)
    }

    /// The work is done (or refused): the SLA clock stops.
    pub fn stops_the_clock(self) -> bool {
        matches!(self, RequestStatus::Resolved | RequestStatus::Closed | RequestStatus::Rejected)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Received => "received",
            RequestStatus::Routed => "routed",
            RequestStatus::Accepted => "accepted",
            RequestStatus::Forwarded => "forwarded",
            RequestStatus::InProgress => "in_progress",
            RequestStatus::Resolved => "resolved",
            RequestStatus::Closed => "closed",
            RequestStatus::Rejected => "rejected",
        }
    }
}

/// Where the routing policy sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// The community handles it: it holds an active, funded mandate, or it is a
    /// self-governance matter.
    Community,
    /// The station acts as agent (代办代理, `plan:3.2.2-ST`) and forwards it to the owner.
    Agent,
    /// The community's mandate for it is suspended by a contest: back to the delegating unit.
    DelegatingUnit,
}

/// What a resident asks for, as the station took it down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Filing {
    pub matter_code: String,
    /// The community whose service station received the request.
    pub station: Uuid,
    pub channel: Channel,
    /// Who asked: the resident's token subject, or the name a worker took down.
    pub resident: String,
    pub description: String,
    pub address: Option<String>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub attributes: BTreeMap<String, String>,
    /// When the matter's SLA says it should be done, `YYYY-MM-DD`.
    #[schema(value_type = String)]
    pub expected_date: Date,
}

/// What a resident asks for, as a resident or a community worker takes it down at the
/// station: a [`Filing`] before the station names whom it is for and when it is due.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRequest {
    pub matter_code: String,
    /// The community whose station receives it; a resident files at their own.
    pub station: Uuid,
    pub channel: Channel,
    /// Whom it is for, when a worker files on a resident's behalf; a resident files for
    /// themself (their token subject).
    pub resident: Option<String>,
    pub description: String,
    pub address: Option<String>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub attributes: BTreeMap<String, String>,
}

impl Filing {
    /// The filing of what was taken down, for `resident`, due by `expected_date`; its
    /// description as written, without the white space around it.
    pub fn taken_down(asked: FileRequest, resident: String, expected_date: Date) -> Self {
        Filing {
            matter_code: asked.matter_code,
            station: asked.station,
            channel: asked.channel,
            resident,
            description: asked.description.trim().to_owned(),
            address: asked.address,
            lat: asked.lat,
            long: asked.long,
            attributes: asked.attributes,
            expected_date,
        }
    }

    pub fn is_priority(&self) -> bool {
        self.channel.is_priority()
    }
}

/// The routing policy's decision, recorded with its input so it can be re-run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Routing {
    pub route: Route,
    /// The organisation that acts next: the community, the owner the station forwards to, or
    /// the delegating unit.
    pub handler: Uuid,
    /// The mandate the routing relied on, if any.
    pub mandate: Option<Uuid>,
    pub reason: String,
    /// The plan clause that sends it there, e.g. `plan:3.2.2-ST`.
    pub clause: String,
    pub decision_id: Uuid,
    pub bundle_digest: String,
    pub catalogue_version: u64,
    // The routing input exactly as evaluated; shared, not copied (see `Decision::input`).
    #[schema(value_type = serde_json::Value)]
    pub input: RecordedInput,
}

/// A step in a request's life, as whoever takes it asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStep {
    /// The station, as agent, passes it to the organisation routing named.
    Forward {
        note: String,
    },
    /// The handler takes it on.
    Accept {
        note: String,
    },
    Start {
        note: String,
    },
    Resolve {
        note: String,
    },
    Reject {
        reason: String,
    },
    /// The resident or the station closes a resolved request.
    Close {
        note: String,
    },
    /// The resident rates a closed request, 1–5 (`plan:5.1-C`).
    Rate {
        rating: u8,
        comment: String,
    },
}

impl RequestStep {
    /// The type of the first event the step records.
    pub fn event_type(&self) -> &'static str {
        match self {
            RequestStep::Forward { .. } => "RequestForwarded",
            RequestStep::Accept { .. } => "RequestAccepted",
            RequestStep::Start { .. } => "RequestStarted",
            RequestStep::Resolve { .. } => "RequestResolved",
            RequestStep::Reject { .. } => "RequestRejected",
            RequestStep::Close { .. } => "RequestClosed",
            RequestStep::Rate { .. } => "SatisfactionRated",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestCommand {
    File {
        filing: Box<Filing>,
        routing: Box<Routing>,
    },
    /// A step, taken by the organisation `by` (the holder, where the step needs one).
    Take {
        by: Uuid,
        step: RequestStep,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr)]
#[serde(tag = "eventType", content = "data")]
pub enum RequestEvent {
    RequestFiled { filing: Filing },
    RequestRouted { routing: Routing },
    RequestForwarded { to: Uuid, note: String },
    RequestAccepted { by: Uuid, note: String },
    RequestStarted { by: Uuid, note: String },
    RequestResolved { by: Uuid, note: String },
    RequestRejected { by: Uuid, reason: String },
    RequestClosed { note: String },
    SatisfactionRated { rating: u8, comment: String },
}

impl DomainEvent for RequestEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

impl RequestEvent {
    /// The status this event leaves the request in; `None` for a rating.
    pub fn status(&self) -> Option<RequestStatus> {
        match self {
            RequestEvent::RequestFiled { .. } => Some(RequestStatus::Received),
            RequestEvent::RequestRouted { .. } => Some(RequestStatus::Routed),
            RequestEvent::RequestForwarded { .. } => Some(RequestStatus::Forwarded),
            RequestEvent::RequestAccepted { .. } => Some(RequestStatus::Accepted),
            RequestEvent::RequestStarted { .. } => Some(RequestStatus::InProgress),
            RequestEvent::RequestResolved { .. } => Some(RequestStatus::Resolved),
            RequestEvent::RequestRejected { .. } => Some(RequestStatus::Rejected),
            RequestEvent::RequestClosed { .. } => Some(RequestStatus::Closed),
            RequestEvent::SatisfactionRated { .. } => None,
        }
    }

    /// The note or reason the event carries.
    pub fn note(&self) -> &str {
        match self {
            RequestEvent::RequestFiled { .. } => "",
            RequestEvent::RequestRouted { routing } => &routing.reason,
            RequestEvent::RequestForwarded { note, .. }
            | RequestEvent::RequestAccepted { note, .. }
            | RequestEvent::RequestStarted { note, .. }
            | RequestEvent::RequestResolved { note, .. }
            | RequestEvent::RequestClosed { note } => note,
            RequestEvent::RequestRejected { reason, .. } => reason,
            RequestEvent::SatisfactionRated { comment, .. } => comment,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request already exists")]
    AlreadyExists,
    #[error("there is no such request")]
    NotFound,
    #[error("a request that is {} cannot be {action}", status.as_str())]
    WrongStatus { status: RequestStatus, action: &'static str },
    #[error("only the organisation holding the request ({holder}) can do that")]
    NotTheHolder { holder: Uuid },
    #[error("only a request the station handles as agent is forwarded")]
    NotAnAgentRequest,
    #[error("a rating is 1 to 5")]
    RatingOutOfRange,
    #[error("the request was already rated")]
    AlreadyRated,
    #[error("invalid request: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub filing: Filing,
    pub routing: Routing,
    pub status: RequestStatus,
    /// The organisation that holds the request now.
    pub holder: Uuid,
    pub rating: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestState {
    pub request: Option<RequestRecord>,
    /// Only between the two events of a `File` command.
    filed: Option<Filing>,
}

crate::aggregate!(Request, "request", RequestState, RequestCommand, RequestEvent, RequestError);

/// Decides a command on the state: the events it records, or why it is refused.
fn decide(state: &RequestState, command: RequestCommand) -> Result<Vec<RequestEvent>, RequestError> {
    use RequestCommand as C;
    use RequestEvent as E;
    use RequestStatus as S;
    use RequestStep as T;
    if let C::File { filing, routing } = command {
        if state.request.is_some() || state.filed.is_some() {
            return Err(RequestError::AlreadyExists);
        }
        validate_filing(&filing)?;
        return Ok(vec![E::RequestFiled { filing: *filing }, E::RequestRouted { routing: *routing }]);
    }
    let record = state.request.as_ref().ok_or(RequestError::NotFound)?;
    let wrong = |action| RequestError::WrongStatus { status: record.status, action };
    let holding = |by: Uuid| match by == record.holder {
        true => Ok(()),
        false => Err(RequestError::NotTheHolder { holder: record.holder }),
    };
    let C::Take { by, step } = command else { return Err(RequestError::AlreadyExists) };
    match step {
        T::Forward { note } => {
            if record.routing.route != Route::Agent {
                return Err(RequestError::NotAnAgentRequest);
            }
            if record.status != S::Routed {
                return Err(wrong("forwarded"));
            }
            Ok(vec![E::RequestForwarded { to: record.routing.handler, note: parse_text("note", &note)? }])
        }
        T::Accept { note } => {
            // An agent request is accepted by its owner only once the station forwarded it.
            let ready = match record.routing.route {
                Route::Agent => record.status == S::Forwarded,
                Route::Community | Route::DelegatingUnit => record.status == S::Routed,
            };
            if !ready {
                return Err(wrong("accepted"));
            }
            holding(by)?;
            Ok(vec![E::RequestAccepted { by, note: parse_text("note", &note)? }])
        }
        T::Start { note } => {
            if record.status != S::Accepted {
                return Err(wrong("started"));
            }
            holding(by)?;
            Ok(vec![E::RequestStarted { by, note: parse_text("note", &note)? }])
        }
        T::Resolve { note } => {
            if !matches!(record.status, S::Accepted | S::InProgress) {
                return Err(wrong("resolved"));
            }
            holding(by)?;
            Ok(vec![E::RequestResolved { by, note: parse_text("note", &note)? }])
        }
        T::Reject { reason } => {
            if !matches!(record.status, S::Routed | S::Forwarded | S::Accepted | S::InProgress) {
                return Err(wrong("rejected"));
            }
            holding(by)?;
            let reason = parse_text("reason", &reason)?;
            if reason.is_empty() {
                return Err(RequestError::Invalid("a rejection needs a reason".into()));
            }
            Ok(vec![E::RequestRejected { by, reason }])
        }
        T::Close { note } => {
            if record.status != S::Resolved {
                return Err(wrong("closed"));
            }
            Ok(vec![E::RequestClosed { note: parse_text("note", &note)? }])
        }
        T::Rate { rating, comment } => {
            if record.status != S::Closed {
                return Err(wrong("rated"));
            }
            if record.rating.is_some() {
                return Err(RequestError::AlreadyRated);
            }
            if !(1..=5).contains(&rating) {
                return Err(RequestError::RatingOutOfRange);
            }
            Ok(vec![E::SatisfactionRated { rating, comment: parse_text("comment", &comment)? }])
        }
    }
}

/// The state an event leaves.
fn evolve(mut state: RequestState, event: RequestEvent) -> RequestState {
    let status = event.status();
    match event {
        RequestEvent::RequestFiled { filing } => state.filed = Some(filing),
        RequestEvent::RequestRouted { routing } => {
            let filing = state.filed.take().expect("a request is routed in the command that files it");
            let holder = match routing.route {
                // The station holds an agent request until it forwards it.
                Route::Agent => filing.station,
                Route::Community | Route::DelegatingUnit => routing.handler,
            };
            state.request =
                Some(RequestRecord { filing, routing, status: RequestStatus::Routed, holder, rating: None });
        }
        RequestEvent::SatisfactionRated { rating, .. } => {
            if let Some(record) = state.request.as_mut() {
                record.rating = Some(rating);
            }
        }
        other => {
            if let Some(record) = state.request.as_mut() {
                if let RequestEvent::RequestForwarded { to, .. } = &other {
                    record.holder = *to;
                }
                if let Some(status) = status {
                    record.status = status;
                }
            }
        }
    }
    state
}

/// `field`'s text, trimmed: at most `TEXT_CHARS_MAX` characters.
fn parse_text(field: &str, text: &str) -> Result<String, RequestError> {
    let text = text.trim();
    if text.chars().count() > TEXT_CHARS_MAX {
        return Err(RequestError::Invalid(format!("{field} is longer than {TEXT_CHARS_MAX} characters")));
    }
    Ok(text.to_owned())
}

fn validate_filing(filing: &Filing) -> Result<(), RequestError> {
    let invalid = |reason: String| Err(RequestError::Invalid(reason));
    if filing.description.trim().is_empty() {
        return invalid("description: a request needs a description".into());
    }
    if filing.description.chars().count() > TEXT_CHARS_MAX {
        return invalid(format!("description: longer than {TEXT_CHARS_MAX} characters"));
    }
    if filing.resident.trim().is_empty() || filing.resident.chars().count() > FIELD_CHARS_MAX {
        return invalid(format!("resident: 1–{FIELD_CHARS_MAX} characters"));
    }
    if filing.address.as_ref().is_some_and(|address| address.chars().count() > FIELD_CHARS_MAX) {
        return invalid(format!("address: longer than {FIELD_CHARS_MAX} characters"));
    }
    match (filing.lat, filing.long) {
        (None, None) => {}
        (Some(lat), Some(long)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&long) => {}
        _ => return invalid("lat, long: both, within −90–90 and −180–180".into()),
    }
    if filing.attributes.len() > ATTRIBUTES_MAX {
        return invalid(format!("attribute: at most {ATTRIBUTES_MAX}"));
    }
    let too_long = |text: &String| text.chars().count() > FIELD_CHARS_MAX;
    if filing.attributes.iter().any(|(code, value)| code.is_empty() || too_long(code) || too_long(value)) {
        return invalid(format!("attribute: codes of 1–{FIELD_CHARS_MAX} characters, values up to as many"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
