//! Producers: the one way onto the bus. [`Publisher`] checks events against the catalog, packs
//! them into PutEvents calls within EventBridge's limits, and retries only the entries that
//! failed with a retryable code; it never reports an entry published that the bus did not
//! accept.
//!
//! ```
//! use std::sync::Arc;
//! use choreo_bus::{Config, EmbeddedBus};
//! use choreo_producers::{Outcome, Publisher};
//! use choreo_schemas::catalog::{Channel, OrderSupportPlaced};
//! use choreo_schemas::envelope::{AuthType, EnvelopeBuilder};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let bus = Arc::new(EmbeddedBus::open(Config::new(dir.path())).unwrap());
//! let request = OrderSupportPlaced {
//!     order_id: "o-1001".into(),
//!     message: "Charged twice.".into(),
//!     needed_by: None,
//!     channel: Channel::Web,
//! };
//! let event = EnvelopeBuilder::of("retail.support-api", &request).auth(AuthType::AppUser, "c-1001").build().unwrap();
//! let outcomes = Publisher::new(bus).publish(&[event]).await.unwrap();
//! assert!(matches!(outcomes[0], Outcome::Published { .. }));
//! # });
//! ```

pub use choreo_bus::publisher::{Outcome, PublishError, Publisher, RetryPolicy};

pub mod http;
pub mod lambda;
pub mod outbox;
