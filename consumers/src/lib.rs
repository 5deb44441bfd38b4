//! The agent runtime: agents that each subscribe to events through a rule, run a Converse-style
//! loop (model + typed tools) and publish a completion event others may subscribe to.
//!
//! - [`manifest`]: agent folders (`agent.toml`, `prompt.md`, `offline.toml`, `cases/`, `events/`).
//! - [`runner`]: the agent loop, completions and escalations; [`tools`]: the typed tools.
//! - [`store`]: the effect ledger, the case store, budgets, handled events (`agents.db`).
//! - [`consumer`] and [`runtime`]: inbox consumer loops, one per agent, and their rules.
//! - [`observe`]: the steps of the work as it happens; [`journal`]: those steps kept in
//!   `agents.db` (for `choreo trace`) and exported as OpenTelemetry spans.
//! - [`local`]: everything in one process on the embedded bus, as `choreo demo` runs it.
//!
//! ```no_run
//! use choreo_consumers::local::{Local, Options, SupportRequest};
//! use chrono::NaiveDate;
//!
//! # async fn demo() -> Result<(), choreo_consumers::local::LocalError> {
//! let local = Local::start(Options::new(".choreo/example")).await?;
//! let mut steps = local.services.observer.subscribe();
//! let placed = local.submit(&SupportRequest::seeded(NaiveDate::from_ymd_opt(2026, 12, 2).unwrap())).await?;
//! while let Ok(step) = steps.recv().await {
//!     if step.correlation_id == placed.id() {
//!         println!("{} {:?}", step.agent, step.kind);
//!     }
//! #   break;
//! }
//! local.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod cases;
pub mod choreography;
pub mod consumer;
pub mod journal;
pub mod lambda;
pub mod local;
pub mod manifest;
pub mod observe;
pub mod runner;
pub mod runtime;
pub mod store;
pub mod tools;
pub mod validate;
