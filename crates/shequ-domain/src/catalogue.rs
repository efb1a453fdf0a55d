//! The catalogue of community public-service matters (`plan:5.1-C`): what may enter a
//! community, who owns it, on what terms. Event-sourced, so every decision can name the
//! catalogue version that applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::DomainEvent;
use crate::money::Fen;

/// The one catalogue's aggregate id: the catalogue is a single stream.
pub const CATALOGUE_ID: uuid::Uuid = uuid::Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001);
/// The most matters one catalogue holds.
pub const MATTERS_MAX: usize = 10_000;

/// The service categories of `plan:3.1.1-S`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ServiceCategory {
    Employment,
    SocialInsurance,
    SocialServices,
    MedicalHealth,
    FamilyPlanning,
    CultureSportsEducation,
    CommunitySafety,
    LegalPublicity,
    LegalServices,
    LegalAid,
    PeoplesMediation,
    PostalServices,
    SciencePopularisation,
    FloatingPopulation,
}

/// The level of government that owns a matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OwnerLevel {
    DistrictDepartment,
    Street,
    Community,
}

/// What kind of matter it is under the access rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatterNature {
    /// Within government's own duties: never shifted onto the community (`plan:3.4.2-R2`).
    GovernmentDuty,
    /// The community assists by law, with funds and working conditions (`plan:3.4.2-R3`).
    LegalAssistance,
    /// May be entrusted, with its authority and funds (`plan:3.4.2-R4`).
    Entrustable,
    /// The residents' own affairs: not a task anyone delegates.
    SelfGovernance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostPer {
    Case,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostStandard {
    pub amount_fen: Fen,
    pub per: CostPer,
}

/// One catalogue entry. Its JSON form is the one in `policies/data/catalogue.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Matter {
    pub code: String,
    pub name: String,
    pub name_en: String,
    pub category: ServiceCategory,
    pub owner_level: OwnerLevel,
    pub owner_department: Option<String>,
    pub nature: MatterNature,
    /// The owner level can handle it itself: pushing it down breaks `plan:3.4.2-R1`.
    pub handled_by_owner: bool,
    pub powers_required: Vec<String>,
    pub working_conditions: Vec<String>,
    pub cost_standard: CostStandard,
    pub sla_days: u32,
    pub priority_groups: Vec<String>,
    pub legal_basis: String,
}

/// The longest matter code, in bytes.
const CODE_BYTES_MAX: usize = 32;

impl Matter {
    /// Checks what the types cannot: a code of the form `ABC-001`, names, an SLA of 1–365 days.
    pub fn validate(&self) -> Result<(), CatalogueError> {
        let code_ok = !self.code.is_empty()
            && self.code.len() <= CODE_BYTES_MAX
            && self
                .code
                .bytes()
                .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'-');
        if !code_ok {
            return Err(CatalogueError::InvalidMatter {
                code: self.code.clone(),
                reason: "code must be A–Z, 0–9 and `-`".into(),
            });
        }
        if self.name.trim().is_empty() || self.name_en.trim().is_empty() {
            return Err(CatalogueError::InvalidMatter {
                code: self.code.clone(),
                reason: "a matter needs a name".into(),
            });
        }
        if !(1..=365).contains(&self.sla_days) {
            return Err(CatalogueError::InvalidMatter {
                code: self.code.clone(),
                reason: format!("SLA of {} days is not 1–365", self.sla_days),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogueCommand {
    /// Publishes `matters` as the catalogue: new codes are published, changed ones amended,
    /// codes no longer listed retired. Publishing the same list again records nothing.
    Publish { matters: Vec<Matter> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr)]
#[serde(tag = "eventType", content = "data")]
pub enum CatalogueEvent {
    MatterPublished { matter: Matter },
    MatterAmended { matter: Matter },
    MatterRetired { code: String },
}

impl DomainEvent for CatalogueEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("matter `{code}` is invalid: {reason}")]
    InvalidMatter { code: String, reason: String },
    #[error("matter `{0}` is listed twice")]
    DuplicateCode(String),
    #[error("a catalogue holds at most {MATTERS_MAX} matters")]
    TooManyMatters,
}

/// The current catalogue: live matters by code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogueState {
    pub matters: BTreeMap<String, Matter>,
}

crate::aggregate!(Catalogue, "catalogue", CatalogueState, CatalogueCommand, CatalogueEvent, CatalogueError);

/// Decides a command on the state: the events it records, or why it is refused.
fn decide(state: &CatalogueState, command: CatalogueCommand) -> Result<Vec<CatalogueEvent>, CatalogueError> {
    let CatalogueCommand::Publish { matters } = command;
    if matters.len() > MATTERS_MAX {
        return Err(CatalogueError::TooManyMatters);
    }
    let mut listed = BTreeMap::new();
    for matter in matters {
        matter.validate()?;
        let code = matter.code.clone();
        if listed.insert(code.clone(), matter).is_some() {
            return Err(CatalogueError::DuplicateCode(code));
        }
    }
    let mut events = Vec::new();
    for (code, matter) in &listed {
        match state.matters.get(code) {
            None => events.push(CatalogueEvent::MatterPublished { matter: matter.clone() }),
            Some(current) if current != matter => {
                events.push(CatalogueEvent::MatterAmended { matter: matter.clone() });
            }
            Some(_) => {}
        }
    }
    for code in state.matters.keys().filter(|code| !listed.contains_key(*code)) {
        events.push(CatalogueEvent::MatterRetired { code: code.clone() });
    }
    Ok(events)
}

/// The state an event leaves.
fn evolve(mut state: CatalogueState, event: CatalogueEvent) -> CatalogueState {
    match event {
        CatalogueEvent::MatterPublished { matter } | CatalogueEvent::MatterAmended { matter } => {
            state.matters.insert(matter.code.clone(), matter);
        }
        CatalogueEvent::MatterRetired { code } => {
            state.matters.remove(&code);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use esrs::Aggregate;

    use super::*;

    pub(crate) fn matter(code: &str) -> Matter {
        Matter {
            code: code.into(),
            name: "失业登记".into(),
            name_en: "Unemployment registration".into(),
            category: ServiceCategory::Employment,
            owner_level: OwnerLevel::DistrictDepartment,
            owner_department: Some("human_resources_social_security".into()),
            nature: MatterNature::LegalAssistance,
            handled_by_owner: false,
            powers_required: vec![],
            working_conditions: vec!["service-counter".into()],
            cost_standard: CostStandard { amount_fen: Fen::parse(3_000).unwrap(), per: CostPer::Case },
            sla_days: 5,
            priority_groups: vec![],
            legal_basis: "《就业促进法》".into(),
        }
    }

    fn check(
        given: Vec<CatalogueEvent>,
        when: CatalogueCommand,
        then: Result<Vec<CatalogueEvent>, CatalogueError>,
    ) {
        let state = given.into_iter().fold(CatalogueState::default(), Catalogue::apply_event);
        assert_eq!(Catalogue::handle_command(&state, when), then);
    }

    #[test]
    fn publishes_amends_and_retires_by_difference() {
        let mut amended = matter("EMP-001");
        amended.sla_days = 3;
        check(
            vec![
                CatalogueEvent::MatterPublished { matter: matter("EMP-001") },
                CatalogueEvent::MatterPublished { matter: matter("EMP-002") },
            ],
            CatalogueCommand::Publish { matters: vec![amended.clone(), matter("EMP-003")] },
            Ok(vec![
                CatalogueEvent::MatterAmended { matter: amended },
                CatalogueEvent::MatterPublished { matter: matter("EMP-003") },
                CatalogueEvent::MatterRetired { code: "EMP-002".into() },
            ]),
        );
    }

    #[test]
    fn publishing_the_same_list_records_nothing() {
        check(
            vec![CatalogueEvent::MatterPublished { matter: matter("EMP-001") }],
            CatalogueCommand::Publish { matters: vec![matter("EMP-001")] },
            Ok(vec![]),
        );
    }

    #[test]
    fn the_shipped_catalogue_publishes_cleanly() {
        #[derive(Deserialize)]
        struct Shipped {
            matters: Vec<Matter>,
        }
        let shipped: Shipped =
            serde_json::from_str(include_str!("../../../policies/data/catalogue.json")).unwrap();
        assert!(shipped.matters.len() >= 30);
        let events = Catalogue::handle_command(
            &CatalogueState::default(),
            CatalogueCommand::Publish { matters: shipped.matters.clone() },
        )
        .unwrap();
        assert_eq!(events.len(), shipped.matters.len());
        for nature in [
            MatterNature::GovernmentDuty,
            MatterNature::LegalAssistance,
            MatterNature::Entrustable,
            MatterNature::SelfGovernance,
        ] {
            assert!(
                shipped.matters.iter().any(|matter| matter.nature == nature),
                "{nature:?} is represented"
            );
        }
        assert!(shipped
            .matters
            .iter()
            .any(|matter| matter.handled_by_owner && matter.nature == MatterNature::Entrustable));
    }

    #[test]
    fn refuses_duplicates_and_bad_entries() {
        let twice = CatalogueCommand::Publish { matters: vec![matter("EMP-001"), matter("EMP-001")] };
        check(vec![], twice, Err(CatalogueError::DuplicateCode("EMP-001".into())));
        let mut bad = matter("emp 1");
        bad.sla_days = 0;
        let refused = Catalogue::handle_command(
            &CatalogueState::default(),
            CatalogueCommand::Publish { matters: vec![bad] },
        );
        assert!(matches!(refused, Err(CatalogueError::InvalidMatter { .. })));
    }
}
