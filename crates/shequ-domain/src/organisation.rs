//! Organisations: the district, its functional departments, its streets (street offices) and
//! each street's communities (residents' committees). See `plan:3.2.2-ST` and the
//! organisation table in the plan's clause index.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::DomainEvent;

/// The longest organisation name we accept, in characters.
pub const NAME_LENGTH_MAX: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrganisationKind {
    District,
    Department,
    Street,
    Community,
}

impl OrganisationKind {
    /// The kind an organisation of this kind must hang under; `None` for the top.
    pub fn parent_kind(self) -> Option<OrganisationKind> {
        match self {
            OrganisationKind::District => None,
            OrganisationKind::Department | OrganisationKind::Street => Some(OrganisationKind::District),
            OrganisationKind::Community => Some(OrganisationKind::Street),
        }
    }
}

/// A parent as the caller found it in the log before issuing the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentRef {
    pub id: Uuid,
    pub kind: OrganisationKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganisationCommand {
    /// `code` names a department in the catalogue's `owner_department` (e.g. `civil_affairs`),
    /// so requests for its matters reach it; only departments carry one.
    Register {
        kind: OrganisationKind,
        name: String,
        parent: Option<ParentRef>,
        code: Option<String>,
    },
    Rename {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr)]
#[serde(tag = "eventType", content = "data")]
pub enum OrganisationEvent {
    OrganisationRegistered {
        kind: OrganisationKind,
        name: String,
        parent_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
    OrganisationRenamed {
        name: String,
    },
}

impl DomainEvent for OrganisationEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganisationError {
    #[error("the organisation is already registered")]
    AlreadyRegistered,
    #[error("the organisation is not registered")]
    NotRegistered,
    #[error("code: only a department has one, of 1–{CODE_BYTES_MAX} of a–z, 0–9 and `_`")]
    InvalidCode,
    #[error("name must be 1–{NAME_LENGTH_MAX} characters and not blank")]
    InvalidName,
    /// Another organisation under the same parent already has the name: people tell them
    /// apart by name.
    #[error("another organisation under the same parent is already named {0}")]
    NameTaken(String),
    /// Another department of the district already carries the code: requests for its matters
    /// would go to one of them only.
    #[error("another department of the district already carries the code {0}")]
    CodeTaken(String),
    #[error("a {kind:?} must hang under a {expected:?}, not {found:?}")]
    WrongParent {
        kind: OrganisationKind,
        expected: Option<OrganisationKind>,
        found: Option<OrganisationKind>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganisationState {
    pub registered: Option<Registered>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub kind: OrganisationKind,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub code: Option<String>,
}

crate::aggregate!(
    Organisation,
    "organisation",
    OrganisationState,
    OrganisationCommand,
    OrganisationEvent,
    OrganisationError
);

/// Decides a command on the state: the events it records, or why it is refused.
fn decide(
    state: &OrganisationState,
    command: OrganisationCommand,
) -> Result<Vec<OrganisationEvent>, OrganisationError> {
    match command {
        OrganisationCommand::Register { kind, name, parent, code } => {
            if state.registered.is_some() {
                return Err(OrganisationError::AlreadyRegistered);
            }
            let name = parse_name(&name)?;
            let found = parent.map(|parent| parent.kind);
            if found != kind.parent_kind() {
                return Err(OrganisationError::WrongParent { kind, expected: kind.parent_kind(), found });
            }
            let parent_id = parent.map(|parent| parent.id);
            let code = parse_code(kind, code)?;
            Ok(vec![OrganisationEvent::OrganisationRegistered { kind, name, parent_id, code }])
        }
        OrganisationCommand::Rename { name } => {
            let Some(registered) = &state.registered else {
                return Err(OrganisationError::NotRegistered);
            };
            let name = parse_name(&name)?;
            if name == registered.name {
                return Ok(vec![]);
            }
            Ok(vec![OrganisationEvent::OrganisationRenamed { name }])
        }
    }
}

/// The state an event leaves.
fn evolve(state: OrganisationState, event: OrganisationEvent) -> OrganisationState {
    match event {
        OrganisationEvent::OrganisationRegistered { kind, name, parent_id, code } => {
            OrganisationState { registered: Some(Registered { kind, name, parent_id, code }) }
        }
        OrganisationEvent::OrganisationRenamed { name } => {
            let registered = state.registered.expect("a rename is only ever recorded after registration");
            OrganisationState { registered: Some(Registered { name, ..registered }) }
        }
    }
}

/// The longest department code, in bytes.
const CODE_BYTES_MAX: usize = 64;

fn parse_code(kind: OrganisationKind, code: Option<String>) -> Result<Option<String>, OrganisationError> {
    let Some(code) = code else { return Ok(None) };
    let well_formed = !code.is_empty()
        && code.len() <= CODE_BYTES_MAX
        && code.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if kind != OrganisationKind::Department || !well_formed {
        return Err(OrganisationError::InvalidCode);
    }
    Ok(Some(code))
}

fn parse_name(name: &str) -> Result<String, OrganisationError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_LENGTH_MAX {
        return Err(OrganisationError::InvalidName);
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use esrs::Aggregate;

    use super::*;

    /// The command registering an organisation.
    fn register(
        kind: OrganisationKind,
        name: &str,
        parent: Option<ParentRef>,
        code: Option<&str>,
    ) -> OrganisationCommand {
        OrganisationCommand::Register { kind, name: name.into(), parent, code: code.map(str::to_owned) }
    }
    use crate::event::DecodeError;

    /// Given these events, when this command, then these events or this refusal.
    fn check(
        given: Vec<OrganisationEvent>,
        when: OrganisationCommand,
        then: Result<Vec<OrganisationEvent>, OrganisationError>,
    ) {
        let state = given.into_iter().fold(OrganisationState::default(), Organisation::apply_event);
        assert_eq!(Organisation::handle_command(&state, when), then);
    }

    fn district() -> ParentRef {
        ParentRef { id: Uuid::from_u128(1), kind: OrganisationKind::District }
    }

    fn registered_street() -> OrganisationEvent {
        OrganisationEvent::OrganisationRegistered {
            kind: OrganisationKind::Street,
            name: "Jianguomen Street".into(),
            parent_id: Some(district().id),
            code: None,
        }
    }

    #[test]
    fn registers_a_street_under_a_district() {
        let command = register(OrganisationKind::Street, "  Jianguomen Street ", Some(district()), None);
        check(vec![], command, Ok(vec![registered_street()]));
    }

    #[test]
    fn only_departments_carry_a_well_formed_code() {
        let department =
            |code: &str| register(OrganisationKind::Department, "民政局", Some(district()), Some(code));
        let registered = OrganisationEvent::OrganisationRegistered {
            kind: OrganisationKind::Department,
            name: "民政局".into(),
            parent_id: Some(district().id),
            code: Some("civil_affairs".into()),
        };
        check(vec![], department("civil_affairs"), Ok(vec![registered]));
        check(vec![], department("Civil Affairs"), Err(OrganisationError::InvalidCode));
        let street =
            register(OrganisationKind::Street, "Jianguomen Street", Some(district()), Some("street"));
        check(vec![], street, Err(OrganisationError::InvalidCode));
    }

    #[test]
    fn refuses_a_community_directly_under_a_district() {
        let command = register(OrganisationKind::Community, "Xiushui", Some(district()), None);
        let refusal = OrganisationError::WrongParent {
            kind: OrganisationKind::Community,
            expected: Some(OrganisationKind::Street),
            found: Some(OrganisationKind::District),
        };
        check(vec![], command, Err(refusal));
    }

    #[test]
    fn refuses_a_second_registration_and_blank_names() {
        let again = register(OrganisationKind::Street, "Again", Some(district()), None);
        check(vec![registered_street()], again, Err(OrganisationError::AlreadyRegistered));
        check(
            vec![registered_street()],
            OrganisationCommand::Rename { name: "  ".into() },
            Err(OrganisationError::InvalidName),
        );
        check(
            vec![],
            OrganisationCommand::Rename { name: "X".into() },
            Err(OrganisationError::NotRegistered),
        );
    }

    #[test]
    fn renaming_to_the_same_name_records_nothing() {
        let same = OrganisationCommand::Rename { name: "Jianguomen Street".into() };
        check(vec![registered_street()], same, Ok(vec![]));
        let other = OrganisationCommand::Rename { name: "Chaoyangmen Street".into() };
        check(
            vec![registered_street()],
            other,
            Ok(vec![OrganisationEvent::OrganisationRenamed { name: "Chaoyangmen Street".into() }]),
        );
    }

    #[test]
    fn events_split_into_type_and_data_and_back() {
        let event = registered_street();
        let data = event.to_data().unwrap();
        assert!(!data.contains("eventType"), "the type is not repeated in the data: {data}");
        assert_eq!(OrganisationEvent::from_data(event.event_type(), 1, &data).unwrap(), event);
        assert!(matches!(
            OrganisationEvent::from_data("OrganisationRegistered", 2, &data),
            Err(DecodeError::UnknownVersion { .. })
        ));
    }
}
