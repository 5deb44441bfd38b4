//! The effect ledger as the runtime calls it: one trait, kept by the agents' store (SQLite, in
//! the data directory: the embedded default) or by a DynamoDB table (the AWS path, where many
//! Lambda instances of one agent share it: see [`super::dynamo`]).

use async_trait::async_trait;
use serde_json::Value;

use super::{Claim, ClaimMeta, Store, StoreError};

/// A completion or escalation a run recorded: its key, its tool, the envelope recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub key: String,
    pub tool: String,
    pub envelope: Value,
}

/// Where effects are recorded before and after they act, so that a redelivery, a retry or a
/// replay gets the recorded result back instead of acting again. Every call names the effect's
/// key and who acts ([`ClaimMeta`]); keys are unique per event, tool and arguments.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Where the ledger is, for messages (a file, a table).
    fn name(&self) -> String;

    /// Claims `key`: the first caller gets [`Claim::Fresh`] and must act, then
    /// [`Ledger::settle`] (or [`Ledger::release`] if it certainly did not act); later callers
    /// the recorded result (one suppression counted), or [`Claim::InDoubt`] while unsettled.
    async fn claim(&self, key: &str, meta: &ClaimMeta<'_>) -> Result<Claim, StoreError>;

    /// Records the result of the effect claimed under `key`.
    async fn settle(&self, key: &str, meta: &ClaimMeta<'_>, result: &Value) -> Result<(), StoreError>;

    /// Gives a claim back: the effect certainly did not happen, a retry may act.
    async fn release(&self, key: &str, meta: &ClaimMeta<'_>) -> Result<(), StoreError>;

    /// Records `result` under `key` unless the key is taken, in one conditional write: `None`
    /// when this call recorded it, else the result there (one suppression counted). Two runs
    /// racing for a completion cannot both win.
    async fn record_once(&self, key: &str, meta: &ClaimMeta<'_>, result: &Value) -> Result<Option<Value>, StoreError>;

    /// The completions and escalations `agent` recorded for CloudEvent `event_id`, oldest
    /// first, where the ledger is not the store a delivery's prior run is read from; `None`
    /// where it is (the store's read holds them already).
    async fn recorded(&self, agent: &str, event_id: &str) -> Result<Option<Vec<Recorded>>, StoreError>;

    /// Records that a run of `meta.agent` on `meta.event_id` ended its turn without completing
    /// (`text`, its last words), where the ledger is shared beyond the store: a later delivery
    /// of the event to another instance is then answered with it ([`NO_COMPLETION`] among
    /// [`Ledger::recorded`]), its model not asked again. Where the ledger is the store, the
    /// store's record of the run does that already: nothing to do.
    async fn ended_without_completion(&self, _meta: &ClaimMeta<'_>, _text: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The tool name under which a shared ledger keeps a run that ended without completing.
pub const NO_COMPLETION: &str = "run.no_completion";

#[async_trait]
impl Ledger for Store {
    fn name(&self) -> String {
        self.path().display().to_string()
    }

    async fn claim(&self, key: &str, meta: &ClaimMeta<'_>) -> Result<Claim, StoreError> {
        Store::claim(self, key, meta)
    }

    async fn settle(&self, key: &str, _meta: &ClaimMeta<'_>, result: &Value) -> Result<(), StoreError> {
        Store::settle(self, key, result)
    }

    async fn release(&self, key: &str, _meta: &ClaimMeta<'_>) -> Result<(), StoreError> {
        Store::release(self, key)
    }

    async fn record_once(&self, key: &str, meta: &ClaimMeta<'_>, result: &Value) -> Result<Option<Value>, StoreError> {
        Store::record_once(self, key, meta, result)
    }

    async fn recorded(&self, _agent: &str, _event_id: &str) -> Result<Option<Vec<Recorded>>, StoreError> {
        Ok(None)
    }
}
