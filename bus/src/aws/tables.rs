//! The DynamoDB tables of the AWS path (the effect ledger's, the notifier's): the template's
//! key schema (`pk`, `sk`: strings), made here when missing, for a local server or a test.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use super::errors::Call;

/// Makes table `table` (pay per request, keys `pk` and `sk`) unless it exists; a failure is
/// described as [`Call::describe`] does.
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), (String, bool)> {
    let odd = |e: aws_sdk_dynamodb::error::BuildError| (format!("DynamoDB CreateTable: {e}"), false);
    let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let attribute =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash).map_err(odd)?)
        .key_schema(key("sk", KeyType::Range).map_err(odd)?)
        .attribute_definitions(attribute("pk").map_err(odd)?)
        .attribute_definitions(attribute("sk").map_err(odd)?)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(()),
        Err(e) => Err(Call::new("DynamoDB", "CreateTable", table).describe(e)),
    }
}

/// Every item `query` finds, page after page (strongly consistent when the query says so); a
/// failure is described as [`Call::describe`] does.
pub async fn query_all(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
) -> Result<Vec<HashMap<String, AttributeValue>>, (String, bool)> {
    let table = query.get_table_name().clone().unwrap_or_default();
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = query.clone().set_exclusive_start_key(start.take()).send().await;
        let page = page.map_err(|e| Call::new("DynamoDB", "Query", &table).describe(e))?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => return Ok(items),
        }
    }
}

/// What a table's store says when there is no region to find it in.
pub const NO_REGION: &str = "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) or a region in the AWS profile";
