//! The event-bus core of Choreo: EventBridge event patterns (parse, validate, compile, match,
//! explain); the [`Bus`] and [`Inboxes`] traits; the embedded engine, [`EmbeddedBus`], a
//! durable EventBridge-and-SQS on SQLite; and the AWS backend, [`AwsBus`], the same traits on
//! Amazon EventBridge and Amazon SQS.
//!
//! ```
//! use choreo_bus::pattern::{MachineBuilder, Pattern, Scratch};
//!
//! let mut rules = MachineBuilder::new();
//! rules.add_rule(
//!     "payments",
//!     Pattern::parse(r#"{"detail-type":["SupportTriaged"],"detail":{"data":{"issues":["duplicate_charge"]}}}"#)?,
//! );
//! let machine = rules.build();
//! let event = br#"{"detail-type":"SupportTriaged","detail":{"data":{"issues":["missing_item","duplicate_charge"]}}}"#;
//! let mut scratch = Scratch::new();
//! let hits = machine.matches(event, &mut scratch)?;
//! assert_eq!(machine.rule_name(hits[0]), "payments");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
pub mod aws;
pub mod clock;
pub mod embedded;
pub mod json;
pub mod pattern;
pub mod publisher;
mod retry;

pub use api::{Bus, BusError, Inboxes};
pub use aws::{AwsBus, AwsConfig};
pub use clock::{Clock, ManualClock, SystemClock};
pub use embedded::{Config, Durability, EmbeddedBus};
pub use publisher::{Outcome, PublishError, Publisher};
