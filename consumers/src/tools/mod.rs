//! Tools: typed Rust functions whose input derives a JSON Schema, grouped by domain
//! (`<domain>.<verb>_<noun>` = fn `<verb>_<noun>` in `tools/<domain>.rs`). A side-effecting
//! tool is marked `effect` and runs only through the effect ledger (see `runner`).

mod case;
mod inventory;
mod orders;
mod payments;

use std::collections::BTreeMap;

use choreo_backoffice::{BackOffice, BackOfficeError};
use choreo_schemas::Envelope;
use chrono::NaiveDate;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::store::{CaseEvent, CaseNote};

/// What a tool call may use. The customer comes from the event's auth context, never from
/// the model: a tool acts only on what this customer owns.
pub struct ToolContext<'a> {
    pub agent: &'a str,
    pub event: &'a Envelope,
    pub correlation_id: &'a str,
    /// The envelope's `authid` when it acts for a customer (`authtype` = `app_user`).
    pub customer: Option<&'a str>,
    /// The ledger key of this call, passed downstream as its idempotency key.
    pub idempotency_key: &'a str,
    pub today: NaiveDate,
    pub backoffice: &'a BackOffice,
    /// The case so far, read from the case store before the call, for a tool that reads it
    /// ([`ToolDef::reads_case`]); `None` for the others.
    pub case: Option<&'a CaseSoFar>,
}

/// The case so far: its events in the order recorded, and its notes.
#[derive(Debug, Clone, Default)]
pub struct CaseSoFar {
    pub events: Vec<CaseEvent>,
    pub notes: Vec<CaseNote>,
}

impl ToolContext<'_> {
    /// The customer the call acts for, or a refusal when the event acts for none.
    pub fn customer(&self) -> Result<&str, ToolError> {
        self.customer.ok_or_else(|| ToolError::Refused("the event acts for no customer (no app_user authid)".into()))
    }
}

/// Why a tool call did not succeed, classified where it is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The call names something the case's customer does not own: told to the model and
    /// recorded on the case.
    #[error("refused: {0}")]
    Refused(String),
    /// The input does not match the tool's schema: told to the model, which may correct it.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The call was understood but cannot be done (not found, already refunded, out of
    /// stock): told to the model.
    #[error("{0}")]
    Failed(String),
    /// A system the tool needs is unavailable: the run stops and the event is retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The tool cannot work at all: the run stops and the event is dead-lettered.
    #[error("broken: {0}")]
    Broken(String),
}

impl From<BackOfficeError> for ToolError {
    fn from(e: BackOfficeError) -> Self {
        match e {
            BackOfficeError::NotOwned { .. } => ToolError::Refused(e.to_string()),
            BackOfficeError::Invalid { .. } => ToolError::Invalid(e.to_string()),
            BackOfficeError::NotFound { .. } | BackOfficeError::Conflict { .. } => ToolError::Failed(e.to_string()),
            BackOfficeError::Storage { .. } => ToolError::Unavailable(e.to_string()),
            BackOfficeError::Rejected { .. } => ToolError::Broken(e.to_string()),
        }
    }
}

type CallFn = dyn Fn(&ToolContext<'_>, Value) -> Result<Value, ToolError> + Send + Sync;

/// A tool as the runtime holds it.
pub struct ToolDef {
    pub name: &'static str,
    pub description: &'static str,
    /// Side-effecting: every call goes through the effect ledger.
    pub effect: bool,
    /// Reads the case so far: the runtime reads it from the case store (which may be a table
    /// on AWS) and hands it in the context.
    pub reads_case: bool,
    pub input_schema: Value,
    call: Box<CallFn>,
}

impl ToolDef {
    /// A tool from a typed function: the input is read (strictly) from the model's JSON and
    /// its schema derived from the type.
    pub fn typed<I, O>(
        name: &'static str,
        description: &'static str,
        effect: bool,
        f: fn(&ToolContext<'_>, I) -> Result<O, ToolError>,
    ) -> Self
    where
        I: DeserializeOwned + JsonSchema + 'static,
        O: Serialize + 'static,
    {
        let mut settings = SchemaSettings::draft2020_12();
        settings.inline_subschemas = true;
        let mut schema = settings.into_generator().into_root_schema_for::<I>();
        schema.remove("$schema");
        schema.remove("title");
        let call = move |ctx: &ToolContext<'_>, input: Value| {
            let input: I = serde_json::from_value(input).map_err(|e| ToolError::Invalid(e.to_string()))?;
            let output = f(ctx, input)?;
            serde_json::to_value(output).map_err(|e| ToolError::Broken(format!("cannot serialize the result: {e}")))
        };
        Self { name, description, effect, reads_case: false, input_schema: schema.to_value(), call: Box::new(call) }
    }

    /// This tool reads the case so far ([`ToolContext::case`]).
    pub fn reading_case(mut self) -> Self {
        self.reads_case = true;
        self
    }

    pub fn call(&self, ctx: &ToolContext<'_>, input: Value) -> Result<Value, ToolError> {
        (self.call)(ctx, input)
    }
}

/// Every tool the runtime knows, by name.
pub struct Registry {
    tools: BTreeMap<&'static str, ToolDef>,
}

impl Registry {
    /// The retail tools: orders, payments, inventory, and the case.
    pub fn standard() -> Self {
        let mut tools = BTreeMap::new();
        for tool in [orders::tools(), payments::tools(), inventory::tools(), case::tools()].into_iter().flatten() {
            tools.insert(tool.name, tool);
        }
        Self { tools }
    }

    pub fn get(&self, name: &str) -> Option<&ToolDef> {
        self.tools.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tools.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_follow_the_naming_rule_and_publish_object_schemas() {
        let registry = Registry::standard();
        let names: Vec<_> = registry.names().collect();
        for expected in ["payments.refund_charge", "orders.get_order", "inventory.check_stock", "case.get_case"] {
            assert!(names.contains(&expected), "{names:?}");
        }
        for name in names {
            let (domain, verb_noun) = name.split_once('.').unwrap();
            assert!(["orders", "payments", "inventory", "case"].contains(&domain), "{name}");
            assert!(verb_noun.contains('_') && !verb_noun.contains("__"), "{name}");
            let tool = registry.get(name).unwrap();
            assert_eq!(tool.input_schema["type"], "object", "{name}");
            assert!(!tool.description.is_empty());
        }
        assert!(registry.get("payments.refund_charge").unwrap().effect);
        assert!(!registry.get("payments.list_charges").unwrap().effect);
    }
}
