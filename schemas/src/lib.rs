//! Choreo's event catalog and the CloudEvents envelope, with its EventBridge mappings.
//!
//! - [`envelope`]: every event is a CloudEvents 1.0 [`Envelope`] (JSON structured mode) with
//!   Choreo's extensions: `correlationid`, `causationid`, `traceparent`, `authtype`, `authid`.
//! - [`eventbridge`]: an envelope as a PutEvents entry (`Detail` = the whole CloudEvent) and a
//!   delivered EventBridge event (including `replay-name`) as an envelope, both ways.
//! - [`catalog`]: one Rust type per event, its JSON Schema (checked in under `schemas/json/`)
//!   and [`catalog::validate`] for incoming data.
//!
//! ```
//! use choreo_schemas::catalog::{self, Channel, OrderSupportPlaced};
//! use choreo_schemas::envelope::{AuthType, Envelope, EnvelopeBuilder};
//! use choreo_schemas::eventbridge::PutEventsEntry;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let request = OrderSupportPlaced {
//!     order_id: "o-1001".into(),
//!     message: "Charged twice and one item is missing; I need it tomorrow.".into(),
//!     needed_by: None,
//!     channel: Channel::Web,
//! };
//! let placed = EnvelopeBuilder::of("retail.support-api", &request)
//!     .subject("orders/o-1001")
//!     .auth(AuthType::AppUser, "c-1001")
//!     .build()?;
//! catalog::validate_envelope(&placed)?;
//!
//! // On EventBridge the whole CloudEvent travels as the entry's `Detail`.
//! let entry = PutEventsEntry::from_envelope(&placed);
//! assert_eq!(entry.detail_type, "OrderSupportPlaced");
//! assert_eq!(entry.to_envelope()?, placed);
//!
//! // The agent's answer continues the case.
//! let triaged = placed.follow_up("agents.support", "SupportTriaged").build()?;
//! assert_eq!(triaged.correlation_id(), placed.correlation_id());
//! assert_eq!(triaged.causation_id(), Some(placed.id()));
//! assert_eq!(triaged.auth_id(), Some("c-1001"));
//! # Ok(())
//! # }
//! ```

pub mod catalog;
pub mod envelope;
pub mod eventbridge;

pub use envelope::{Envelope, EnvelopeBuilder, EnvelopeError};
