//! The effect ledger in a DynamoDB table, for the AWS path: every Lambda instance of every
//! agent claims and records effects there, with conditional writes, so a redelivery to another
//! instance, a retry or a replay gets the recorded result and acts nowhere a second time.
//!
//! The table is the template's `LedgerTable` (`choreo infra synth`): partition key `pk`, sort
//! key `sk`, both strings. An effect is the item `pk` = the CloudEvent id, `sk` = the rest of
//! its key (`tool|canonical arguments`), so an event's effects are one partition, read with one
//! strongly consistent query. Attributes: `agent`, `correlation_id`, `tool`, `args` and
//! `result` (JSON text), `state` (`started` | `done`), `started_at`/`finished_at` (ms since the
//! epoch), `suppressed` (a counter).
//!
//! Retries: the SDK's standard mode retries throttling and 5xx answers (3 attempts); what is
//! left is a [`StoreError`] naming the table, retryable when another try may help, so the
//! delivery is retried rather than dead-lettered.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use choreo_bus::aws::{Call, ServiceError, tables};
use serde_json::Value;

use super::effects::{Ledger, NO_COMPLETION, Recorded};
use super::{Claim, ClaimMeta, StoreError, now_ms};
use crate::runner::ESCALATE_TOOL;

pub(super) type Item = HashMap<String, AttributeValue>;

/// The effect ledger in DynamoDB table `table`.
pub struct DynamoLedger {
    pub(super) client: Client,
    pub(super) table: String,
}

impl DynamoLedger {
    /// The ledger in `table`, reached with `sdk` (its region, credentials and endpoint).
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Result<Self, StoreError> {
        let table = table.into();
        if sdk.region().is_none() {
            return Err(StoreError { path: where_(&table).into(), detail: tables::NO_REGION.into(), retryable: false });
        }
        Ok(Self { client: Client::new(sdk), table })
    }

    /// Makes the table if it does not exist (a local server, a test; in production the
    /// deployment template makes it).
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        tables::ensure_table(&self.client, &self.table)
            .await
            .map_err(|(detail, retryable)| self.error(detail, retryable))
    }

    pub(super) fn fail<E: ServiceError>(&self, operation: &'static str, e: SdkError<E, HttpResponse>) -> StoreError {
        let (detail, retryable) = Call::new("DynamoDB", operation, &self.table).describe(e);
        self.error(detail, retryable)
    }

    pub(super) fn error(&self, detail: String, retryable: bool) -> StoreError {
        StoreError { path: where_(&self.table).into(), detail, retryable }
    }

    /// The item's key for effect `key` of `meta.event_id`.
    fn key(key: &str, meta: &ClaimMeta<'_>) -> (AttributeValue, AttributeValue) {
        let rest = key.strip_prefix(meta.event_id).and_then(|k| k.strip_prefix('|')).unwrap_or(key);
        (AttributeValue::S(meta.event_id.to_owned()), AttributeValue::S(rest.to_owned()))
    }

    fn item(key: &str, meta: &ClaimMeta<'_>, done: Option<&Value>) -> Item {
        let (pk, sk) = Self::key(key, meta);
        let now = AttributeValue::N(now_ms().to_string());
        let mut item = Item::from([
            ("pk".to_owned(), pk),
            ("sk".to_owned(), sk),
            ("agent".to_owned(), AttributeValue::S(meta.agent.to_owned())),
            ("correlation_id".to_owned(), AttributeValue::S(meta.correlation_id.to_owned())),
            ("tool".to_owned(), AttributeValue::S(meta.tool.to_owned())),
            ("args".to_owned(), AttributeValue::S(meta.args.to_string())),
            ("state".to_owned(), AttributeValue::S(if done.is_some() { "done" } else { "started" }.to_owned())),
            ("started_at".to_owned(), now.clone()),
            ("suppressed".to_owned(), AttributeValue::N("0".to_owned())),
        ]);
        if let Some(result) = done {
            item.insert("result".to_owned(), AttributeValue::S(result.to_string()));
            item.insert("finished_at".to_owned(), now);
        }
        item
    }

    /// Puts `item` unless its key is taken: `None` when it was put, else the item there.
    async fn put_new(&self, item: Item, key: &str, meta: &ClaimMeta<'_>) -> Result<Option<Item>, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) => {
                let PutItemError::ConditionalCheckFailedException(failed) = e.into_err() else { unreachable!() };
                match failed.item {
                    Some(item) if !item.is_empty() => Ok(Some(item)),
                    // A server that does not return the item (not every one does): read it.
                    _ => self.get(key, meta).await.map(|item| Some(item.unwrap_or_default())),
                }
            }
            Err(e) => Err(self.fail("PutItem", e)),
        }
    }

    /// Everything recorded for CloudEvent `event_id` (its partition), read strongly consistent.
    pub(super) async fn event_items(&self, event_id: &str) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :event")
            .expression_attribute_values(":event", AttributeValue::S(event_id.to_owned()))
            .consistent_read(true);
        tables::query_all(query).await.map_err(|(detail, retryable)| self.error(detail, retryable))
    }

    async fn get(&self, key: &str, meta: &ClaimMeta<'_>) -> Result<Option<Item>, StoreError> {
        let (pk, sk) = Self::key(key, meta);
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", e))?;
        Ok(got.item)
    }

    /// Counts one suppression of `key`; answers the item after.
    async fn suppressed(&self, key: &str, meta: &ClaimMeta<'_>) -> Result<Item, StoreError> {
        let (pk, sk) = Self::key(key, meta);
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("ADD suppressed :one")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.fail("UpdateItem", e))?;
        Ok(updated.attributes.unwrap_or_default())
    }
}

/// How the table is named in errors.
pub(super) fn where_(table: &str) -> String {
    format!("DynamoDB table `{table}`")
}

pub(super) fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn json(item: &Item, name: &str) -> Value {
    text(item, name).and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null)
}

#[async_trait]
impl Ledger for DynamoLedger {
    fn name(&self) -> String {
        where_(&self.table)
    }

    async fn claim(&self, key: &str, meta: &ClaimMeta<'_>) -> Result<Claim, StoreError> {
        let Some(there) = self.put_new(Self::item(key, meta, None), key, meta).await? else {
            return Ok(Claim::Fresh);
        };
        if text(&there, "state") == Some("done") {
            let after = self.suppressed(key, meta).await?;
            return Ok(Claim::Done(json(&after, "result")));
        }
        let started_at_ms = there.get("started_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
        Ok(Claim::InDoubt { started_at_ms: started_at_ms.unwrap_or(0) })
    }

    async fn settle(&self, key: &str, meta: &ClaimMeta<'_>, result: &Value) -> Result<(), StoreError> {
        let (pk, sk) = Self::key(key, meta);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET #state = :done, #result = :result, finished_at = :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#result", "result")
            .expression_attribute_values(":done", AttributeValue::S("done".to_owned()))
            .expression_attribute_values(":result", AttributeValue::S(result.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .send()
            .await
            .map_err(|e| self.fail("UpdateItem", e))?;
        Ok(())
    }

    async fn release(&self, key: &str, meta: &ClaimMeta<'_>) -> Result<(), StoreError> {
        let (pk, sk) = Self::key(key, meta);
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .condition_expression("#state = :started")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":started", AttributeValue::S("started".to_owned()))
            .send()
            .await;
        match deleted {
            // Settled meanwhile (or gone): nothing to give back.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.fail("DeleteItem", e)),
            Ok(_) => Ok(()),
        }
    }

    async fn record_once(&self, key: &str, meta: &ClaimMeta<'_>, result: &Value) -> Result<Option<Value>, StoreError> {
        if self.put_new(Self::item(key, meta, Some(result)), key, meta).await?.is_none() {
            return Ok(None);
        }
        let after = self.suppressed(key, meta).await?;
        Ok(Some(json(&after, "result")))
    }

    async fn ended_without_completion(&self, meta: &ClaimMeta<'_>, text: &str) -> Result<(), StoreError> {
        // One per agent and event; a later end (a run that raced this one) replaces it.
        let key = format!("{}|{}|{NO_COMPLETION}", meta.event_id, meta.agent);
        let meta = ClaimMeta { tool: NO_COMPLETION, ..*meta };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(&key, &meta, Some(&serde_json::json!({ "text": text })))))
            .send()
            .await
            .map_err(|e| self.fail("PutItem", e))?;
        Ok(())
    }

    async fn recorded(&self, agent: &str, event_id: &str) -> Result<Option<Vec<Recorded>>, StoreError> {
        let items = self.event_items(event_id).await?;
        let mut answers: Vec<(i64, Recorded)> = items
            .iter()
            .filter(|item| text(item, "agent") == Some(agent) && text(item, "state") == Some("done"))
            .filter_map(|item| {
                let tool = text(item, "tool")?;
                if !(tool.starts_with(crate::runner::COMPLETE_PREFIX) || tool == ESCALATE_TOOL || tool == NO_COMPLETION)
                {
                    return None;
                }
                let sk = text(item, "sk")?;
                let at = item.get("started_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
                Some((
                    at,
                    Recorded { key: format!("{event_id}|{sk}"), tool: tool.to_owned(), envelope: json(item, "result") },
                ))
            })
            .collect();
        answers.sort_by_key(|(at, _)| *at);
        Ok(Some(answers.into_iter().map(|(_, r)| r).collect()))
    }
}
