use shequ_domain::catalogue::CatalogueError;
use shequ_domain::ledger::LedgerError;
use shequ_domain::mandate::MandateError;
use shequ_domain::mandate::Violation;
use shequ_domain::organisation::OrganisationError;
use shequ_domain::request::RequestError;
use shequ_policy::PolicyError;
use shequ_store::StoreError;

/// A result whose error is the service's, unless it names another.
pub(crate) type Result<T, E = ServiceError> = std::result::Result<T, E>;

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
    /// An `Idempotency-Key` sent again with another command or body than the first time.
    #[error("{0}")]
    KeyReused(String),
    #[error(transparent)]
    Organisation(#[from] OrganisationError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Mandate(#[from] MandateError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The policy refused a command that is not recorded when refused (a request for a matter
    /// outside the catalogue): every violation, with its clause.
    #[error("refused: {}", .0.iter().map(|violation| format!("{} ({})", violation.message, violation.clause)).collect::<Vec<_>>().join("; "))]
    Refused(Vec<Violation>),
    #[error("the projection cannot fold the log: {0}")]
    Projection(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
