//! Archive, replay and dead-letter tooling, over the [`Bus`](choreo_bus::Bus) and
//! [`Inboxes`](choreo_bus::Inboxes) traits so that it works on the embedded engine and on AWS
//! alike: `choreo replay`, `choreo dlq`.
//!
//! A replay re-puts archived events to the rules it names only, as EventBridge does. Two things
//! are added on top, with EventBridge's own parts:
//! - **one case only** (`--case`): a temporary rule per destination rule, whose pattern is the
//!   destination's narrowed to the replay's `replay-name` and the case's `correlationid`, with
//!   the same targets; the replay names only the temporary rules, which are removed once it
//!   has ended ([`sweep`]).
//! - **a dry run** ([`dry_run`]): the archive's events in the window that the destinations
//!   would receive, and for each agent whether it handled the event already and which effects
//!   the ledger would answer instead of acting again ([`LedgerView`]).

mod dlq;
mod dry_run;
mod error;
mod follow;
mod plan;

pub use dlq::{DeadLetterEntry, Selection, dead_letter_inboxes, redrive, select};
pub use dry_run::{DryRun, DryRunDelivery, DryRunEvent, LedgerView, RecordedEffect, dry_run};
pub use error::ReplayError;
pub use follow::{follow, sweep};
pub use plan::{Destination, Plan, ReplayRequest, TEMPORARY_RULE_PREFIX, plan, start};
