//! The domain core of shequ.
//!
//! Purposefully synchronous and free of IO: no database, no HTTP, no clock, no randomness.
//! What a command needs from the outside world (an id, the time, a policy decision, a parent
//! organisation's kind) is looked up by the caller and put into the command.

pub mod catalogue;
pub mod event;
pub mod ledger;
pub mod mandate;
pub mod money;
pub mod organisation;
pub mod recorded;
pub mod request;
pub mod stream;

pub use event::{DecodeError, DomainEvent};
pub use money::Fen;
pub use stream::{Category, StreamName, StreamNameError};
