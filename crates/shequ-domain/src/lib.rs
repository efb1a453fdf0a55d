//! The domain core of shequ.
//!
//! Purposefully synchronous and free of IO: no database, no HTTP, no clock, no randomness.
//! What a command needs from the outside world (an id, the time, a policy decision, a parent
//! organisation's kind) is looked up by the caller and put into the command.

/// Declares an aggregate for esrs: its unit type, its category in the log, and its state,
/// command, event and refusal types. Its decisions are the module's own `decide` (a command
/// on a state: the events it records, or why it is refused; pure) and `evolve` (the state an
/// event leaves), so that every aggregate reads the same way.
macro_rules! aggregate {
    ($aggregate:ident, $name:literal, $state:ty, $command:ty, $event:ty, $error:ty) => {
        #[derive(Debug)]
        pub struct $aggregate;

        impl esrs::Aggregate for $aggregate {
            const NAME: &'static str = $name;
            type State = $state;
            type Command = $command;
            type Event = $event;
            type Error = $error;

            fn handle_command(state: &$state, command: $command) -> Result<Vec<$event>, $error> {
                decide(state, command)
            }

            fn apply_event(state: $state, event: $event) -> $state {
                evolve(state, event)
            }
        }
    };
}
pub(crate) use aggregate;

pub mod catalogue;
pub mod date;
pub mod event;
pub mod ledger;
pub mod mandate;
pub mod money;
pub mod organisation;
pub mod recorded;
pub mod request;
pub mod stream;

pub use date::{Date, DateError};
pub use event::{DecodeError, DomainEvent};
pub use money::Fen;
pub use stream::{Category, StreamName, StreamNameError};
