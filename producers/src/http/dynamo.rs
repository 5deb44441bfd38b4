//! Idempotency records in a DynamoDB table, for the ingest API on Lambda: every instance sees
//! every key, so a retry that lands on another instance finds the first attempt's case. An
//! item per customer and key (`pk` = `ingest#<customer>`, `sk` = `key#<Idempotency-Key>`),
//! written once with a conditional `PutItem`; kept a day (`expires`, the table's TTL).

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use choreo_bus::aws::{Call, ServiceError};

use super::idempotency::Record;

/// How long a key is remembered.
const KEEP_SECS: i64 = 24 * 3600;

pub(crate) struct TableRecords {
    client: Client,
    table: String,
}

fn key(customer: &str, key: &str) -> [(&'static str, AttributeValue); 2] {
    [("pk", AttributeValue::S(format!("ingest#{customer}"))), ("sk", AttributeValue::S(format!("key#{key}")))]
}

fn record(item: &std::collections::HashMap<String, AttributeValue>) -> Option<Record> {
    let text = |name: &str| item.get(name)?.as_s().ok().cloned();
    Some(Record {
        request: text("request")?,
        event: text("event")?,
        published: item.get("published").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
    })
}

impl TableRecords {
    pub(crate) fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        Self { client: Client::new(sdk), table: table.into() }
    }

    fn fail<E: ServiceError>(&self, operation: &'static str, e: SdkError<E, HttpResponse>) -> String {
        let (detail, _) = Call::new("DynamoDB", operation, &self.table).describe(e);
        format!("idempotency records in DynamoDB table `{}`: {detail}", self.table)
    }

    pub(crate) async fn claim(
        &self,
        customer: &str,
        k: &str,
        request: String,
        event: String,
    ) -> Result<Record, String> {
        let expires = chrono::Utc::now().timestamp() + KEEP_SECS;
        let mut put = self.client.put_item().table_name(&self.table);
        for (name, value) in key(customer, k) {
            put = put.item(name, value);
        }
        let put = put
            .item("request", AttributeValue::S(request.clone()))
            .item("event", AttributeValue::S(event.clone()))
            .item("published", AttributeValue::Bool(false))
            .item("expires", AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(Record { request, event, published: false }),
            Err(e) if matches!(e.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
                let there = match e.into_service_error() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item.and_then(|item| record(&item)),
                    _ => None,
                };
                match there {
                    Some(record) => Ok(record),
                    // A server that does not return the item: read it.
                    None => self.get(customer, k).await?.ok_or_else(|| {
                        format!(
                            "idempotency records in DynamoDB table `{}`: key {k:?} was taken, yet not there",
                            self.table
                        )
                    }),
                }
            }
            Err(e) => Err(self.fail("PutItem", e)),
        }
    }

    async fn get(&self, customer: &str, k: &str) -> Result<Option<Record>, String> {
        let mut get = self.client.get_item().table_name(&self.table).consistent_read(true);
        for (name, value) in key(customer, k) {
            get = get.key(name, value);
        }
        let got = get.send().await.map_err(|e| self.fail("GetItem", e))?;
        Ok(got.item.as_ref().and_then(record))
    }

    pub(crate) async fn mark_published(&self, customer: &str, k: &str) -> Result<(), String> {
        let mut update = self.client.update_item().table_name(&self.table);
        for (name, value) in key(customer, k) {
            update = update.key(name, value);
        }
        update
            .update_expression("SET published = :yes")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| self.fail("UpdateItem", e))?;
        Ok(())
    }
}
