use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The roles of `policies/authz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    District,
    Department,
    StreetOffice,
    Community,
    Inspector,
    Resident,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::District => "district",
            Role::Department => "department",
            Role::StreetOffice => "street_office",
            Role::Community => "community",
            Role::Inspector => "inspector",
            Role::Resident => "resident",
        }
    }
}

/// Who issues a command: a role, for an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub role: Role,
    pub organisation: Uuid,
}

impl fmt::Display for Actor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.role.as_str(), self.organisation)
    }
}
