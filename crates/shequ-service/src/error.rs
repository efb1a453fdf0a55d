use shequ_domain::catalogue::CatalogueError;
use shequ_domain::ledger::LedgerError;
use shequ_domain::mandate::MandateError;
use shequ_domain::organisation::OrganisationError;
use shequ_policy::PolicyError;
use shequ_store::StoreError;

/// Why a command did not go through. A policy refusal of a proposal is not an error: it is
/// recorded, and returned as a `MandateOutcome` with its violations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error(transparent)]
    Organisation(#[from] OrganisationError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Mandate(#[from] MandateError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
