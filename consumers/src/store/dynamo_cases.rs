//! The case store in the ledger's DynamoDB table, for the AWS path: every instance of every
//! agent function records the case's events, notes and spend there, so that `support` joins
//! over completions other functions recorded, and parallel agents on many instances share one
//! budget.
//!
//! A case is the partition `pk` = `case#<correlationid>`:
//! - `sk` = `event#<id>`: an event (`type`, `source`, `causation_id`, `time`, `data` as JSON
//!   text, `customer` it acts for, `at` when first recorded, in ms), put once by a conditional
//!   write;
//! - `sk` = `note#<at>#<ulid>`: a note (`event_id`, `agent`, `kind`, `detail`), in order;
//! - `sk` = `spend`: the counters `turns`, `tokens`, `hops`, debited by `ADD` under a condition
//!   on the limits, so two instances racing for the last turn cannot both get it;
//! - `sk` = `run#…`: the runs copied for `choreo trace` ([`DynamoLedger::put_runs`]).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use choreo_bus::aws::tables;
use choreo_schemas::Envelope;
use choreo_schemas::envelope::{AuthType, Budget};
use serde_json::Value;

use super::dynamo::{Item, json, text, where_};
use super::{CaseEvent, CaseNote, CaseStore, DynamoLedger, Exhausted, NoteKind, Spend, StoreError, now_ms};

const SPEND: &str = "spend";

fn case_key(case: &str) -> AttributeValue {
    AttributeValue::S(format!("case#{case}"))
}

pub(super) fn number(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn spend_of(item: &Item) -> Spend {
    let count = |name| u32::try_from(number(item, name)).unwrap_or(u32::MAX);
    Spend { turns: count("turns"), tokens: u64::try_from(number(item, "tokens")).unwrap_or(0), hops: count("hops") }
}

impl DynamoLedger {
    /// The items of case `case` whose sort key begins with `prefix`, in key order.
    pub(super) async fn case_items(&self, case: &str, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :case AND begins_with(sk, :prefix)")
            .expression_attribute_values(":case", case_key(case))
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
            .consistent_read(true);
        tables::query_all(query).await.map_err(|(detail, retryable)| self.error(detail, retryable))
    }

    /// The event items of case `case`, in the order recorded (two recorded in one millisecond,
    /// by two instances, in the order of their time).
    pub(super) async fn case_event_items(&self, case: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = self.case_items(case, "event#").await?;
        items.sort_by_key(|item| (number(item, "at"), text(item, "time").map(str::to_owned)));
        Ok(items)
    }

    /// Debits one of `what` (`turns` or `hops`) while every limit holds.
    async fn debit(
        &self,
        case: &str,
        budget: &Budget,
        what: &'static str,
    ) -> Result<Result<Spend, Exhausted>, StoreError> {
        let limit = if what == "turns" { budget.turns } else { budget.hops };
        if limit > 0 && budget.tokens > 0 {
            let updated = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", case_key(case))
                .key("sk", AttributeValue::S(SPEND.into()))
                .update_expression("ADD #what :one")
                .condition_expression(
                    "(attribute_not_exists(#what) OR #what < :limit) AND (attribute_not_exists(tokens) OR tokens < :tokens)",
                )
                .expression_attribute_names("#what", what)
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
                .expression_attribute_values(":tokens", AttributeValue::N(budget.tokens.to_string()))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match updated {
                Ok(out) => return Ok(Ok(spend_of(&out.attributes.unwrap_or_default()))),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(self.fail("UpdateItem", e)),
            }
        }
        Ok(Err(Exhausted::of(CaseStore::spend(self, case).await?, budget, what)))
    }
}

#[async_trait]
impl CaseStore for DynamoLedger {
    fn name(&self) -> String {
        where_(&self.table)
    }

    async fn add_event(&self, envelope: &Envelope) -> Result<(), StoreError> {
        let case = envelope.correlation_id().unwrap_or(envelope.id());
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", case_key(case))
            .item("sk", AttributeValue::S(format!("event#{}", envelope.id())))
            .item("event_id", AttributeValue::S(envelope.id().to_owned()))
            .item("type", AttributeValue::S(envelope.event_type().to_owned()))
            .item("source", AttributeValue::S(envelope.source().to_owned()))
            .item("data", AttributeValue::S(envelope.data().cloned().unwrap_or(Value::Null).to_string()))
            .item("at", AttributeValue::N(now_ms().to_string()))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(causation) = envelope.causation_id() {
            put = put.item("causation_id", AttributeValue::S(causation.to_owned()));
        }
        if let Some(time) = envelope.time() {
            put = put.item("time", AttributeValue::S(time.to_rfc3339()));
        }
        // Whom it acts for: the trace finds the case's notifications under the customer.
        if envelope.auth_type() == Some(AuthType::AppUser) {
            put = put.item("customer", AttributeValue::S(envelope.auth_id().unwrap_or_default().to_owned()));
        }
        match put.send().await {
            // There already: an event joins its case once.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.fail("PutItem", e)),
            Ok(_) => Ok(()),
        }
    }

    /// One conditional put does what a look and a put would.
    async fn record_event(&self, envelope: &Envelope) -> Result<(), StoreError> {
        CaseStore::add_event(self, envelope).await
    }

    async fn has_event(&self, case: &str, event_id: &str) -> Result<bool, StoreError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", case_key(case))
            .key("sk", AttributeValue::S(format!("event#{event_id}")))
            .projection_expression("pk")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", e))?;
        Ok(got.item.is_some_and(|item| !item.is_empty()))
    }

    async fn case_events(&self, case: &str) -> Result<Vec<CaseEvent>, StoreError> {
        Ok(self
            .case_event_items(case)
            .await?
            .iter()
            .filter_map(|item| {
                Some(CaseEvent {
                    id: text(item, "event_id")?.to_owned(),
                    event_type: text(item, "type")?.to_owned(),
                    source: text(item, "source")?.to_owned(),
                    causation_id: text(item, "causation_id").map(str::to_owned),
                    time: text(item, "time").map(str::to_owned),
                    data: json(item, "data"),
                })
            })
            .collect())
    }

    async fn note(
        &self,
        case: &str,
        event_id: &str,
        agent: &str,
        kind: NoteKind,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", case_key(case))
            .item("sk", AttributeValue::S(format!("note#{:013}#{}", now_ms(), ulid::Ulid::generate())))
            .item("event_id", AttributeValue::S(event_id.to_owned()))
            .item("agent", AttributeValue::S(agent.to_owned()))
            .item("kind", AttributeValue::S(kind.as_str().to_owned()))
            .item("detail", AttributeValue::S(detail.to_owned()))
            .send()
            .await
            .map_err(|e| self.fail("PutItem", e))?;
        Ok(())
    }

    async fn notes(&self, case: &str) -> Result<Vec<CaseNote>, StoreError> {
        Ok(self
            .case_items(case, "note#")
            .await?
            .iter()
            .filter_map(|item| {
                Some(CaseNote {
                    event_id: text(item, "event_id")?.to_owned(),
                    agent: text(item, "agent")?.to_owned(),
                    kind: NoteKind::parse(text(item, "kind")?),
                    detail: text(item, "detail").unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }

    async fn spend(&self, case: &str) -> Result<Spend, StoreError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", case_key(case))
            .key("sk", AttributeValue::S(SPEND.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", e))?;
        Ok(got.item.as_ref().map(spend_of).unwrap_or_default())
    }

    async fn debit_hop(&self, case: &str, budget: &Budget) -> Result<Result<Spend, Exhausted>, StoreError> {
        self.debit(case, budget, "hops").await
    }

    async fn debit_turn(&self, case: &str, budget: &Budget) -> Result<Result<Spend, Exhausted>, StoreError> {
        self.debit(case, budget, "turns").await
    }

    async fn add_tokens(&self, case: &str, tokens: u64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", case_key(case))
            .key("sk", AttributeValue::S(SPEND.into()))
            .update_expression("ADD tokens :n")
            .expression_attribute_values(":n", AttributeValue::N(tokens.to_string()))
            .send()
            .await
            .map_err(|e| self.fail("UpdateItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_reads_missing_counters_as_zero() {
        let item = Item::from([
            ("turns".to_owned(), AttributeValue::N("3".into())),
            ("tokens".to_owned(), AttributeValue::N("1200".into())),
        ]);
        assert_eq!(spend_of(&item), Spend { turns: 3, tokens: 1200, hops: 0 });
        assert_eq!(spend_of(&Item::new()), Spend::default());
    }
}
