//! The notifier's state in one DynamoDB table (the template's `ConnectionsTable`: `pk`/`sk`
//! strings, TTL on `expires`), read strongly consistent:
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | a connection | `conn#<id>` | `conn` | `customer`, `after`, `expires` (the token's `exp`) |
//! | a customer's connection | `customer#<c>` | `conn#<id>` | `expires` |
//! | a customer's cursor | `customer#<c>` | `cursor` | `last` (numbers given), `acked` |
//! | a notification | `customer#<c>` | `note#<seq, 20 digits>` | `frame`, `event_id`, `at` (ms), `expires` |
//! | an event notified | `customer#<c>` | `event#<CloudEvent id>` | `seq`, `expires` |
//!
//! A notification is numbered from the cursor's counter, then written together with its
//! event's item in one transaction whose condition is that the event has no item yet: a
//! redelivered or replayed event makes no second notification. (Numbers only grow; two
//! deliveries of one event racing leave a gap, the loser's number.)

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use choreo_bus::aws::{Call, ServiceError, tables};

use crate::store::Pending;
use crate::{CaseNotification, NotifierError};

/// How long a notification (and its event's item) is kept: 30 days.
const KEEP_SECS: i64 = 30 * 24 * 3600;
/// The most notifications a catch-up reads per page.
const PAGE: i32 = 100;

type Item = HashMap<String, AttributeValue>;

/// A connection: whose, after which number its catch-up starts, until when its token holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub customer: String,
    pub after: Option<u64>,
    /// The token's `exp`, seconds since the epoch.
    pub expires: u64,
}

/// The table.
pub struct Table {
    client: Client,
    name: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn num(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn customer_pk(customer: &str) -> AttributeValue {
    s(format!("customer#{customer}"))
}

fn note_sk(seq: u64) -> String {
    format!("note#{seq:020}")
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Table {
    /// The table `name`, reached with `sdk`.
    pub fn new(sdk: &SdkConfig, name: impl Into<String>) -> Result<Self, NotifierError> {
        let name = name.into();
        if sdk.region().is_none() {
            return Err(NotifierError::Store {
                path: format!("DynamoDB table `{name}`").into(),
                detail: tables::NO_REGION.into(),
                retryable: false,
            });
        }
        Ok(Self { client: Client::new(sdk), name })
    }

    /// Makes the table if it does not exist (a local server, a test).
    pub async fn ensure(&self) -> Result<(), NotifierError> {
        tables::ensure_table(&self.client, &self.name)
            .await
            .map_err(|(detail, retryable)| self.error(detail, retryable))
    }

    fn fail<E: ServiceError>(&self, operation: &'static str, e: SdkError<E, HttpResponse>) -> NotifierError {
        let (detail, retryable) = Call::new("DynamoDB", operation, &self.name).describe(e);
        self.error(detail, retryable)
    }

    fn odd(&self, e: impl std::fmt::Display) -> NotifierError {
        self.error(e.to_string(), false)
    }

    fn error(&self, detail: String, retryable: bool) -> NotifierError {
        NotifierError::Store { path: format!("DynamoDB table `{}`", self.name).into(), detail, retryable }
    }

    /// Records a connection of `customer`.
    pub async fn connect(&self, c: &Connection) -> Result<(), NotifierError> {
        let mut item = Item::from([
            ("pk".to_owned(), s(format!("conn#{}", c.id))),
            ("sk".to_owned(), s("conn")),
            ("customer".to_owned(), s(&c.customer)),
            ("expires".to_owned(), n(c.expires)),
        ]);
        if let Some(after) = c.after {
            item.insert("after".to_owned(), n(after));
        }
        let index = Item::from([
            ("pk".to_owned(), customer_pk(&c.customer)),
            ("sk".to_owned(), s(format!("conn#{}", c.id))),
            ("expires".to_owned(), n(c.expires)),
        ]);
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
        };
        self.client
            .transact_write_items()
            .transact_items(put(item).map_err(|e| self.odd(e))?)
            .transact_items(put(index).map_err(|e| self.odd(e))?)
            .send()
            .await
            .map_err(|e| self.fail("TransactWriteItems", e))?;
        Ok(())
    }

    /// The connection `id`, if recorded.
    pub async fn connection(&self, id: &str) -> Result<Option<Connection>, NotifierError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", s(format!("conn#{id}")))
            .key("sk", s("conn"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", e))?;
        Ok(got.item.and_then(|item| {
            Some(Connection {
                id: id.to_owned(),
                customer: text(&item, "customer")?.to_owned(),
                after: num(&item, "after"),
                expires: num(&item, "expires").unwrap_or(0),
            })
        }))
    }

    /// Forgets connection `id` (of `customer`, when known).
    pub async fn disconnect(&self, id: &str, customer: Option<&str>) -> Result<(), NotifierError> {
        let customer = match customer {
            Some(c) => Some(c.to_owned()),
            None => self.connection(id).await?.map(|c| c.customer),
        };
        let delete = |pk: AttributeValue, sk: String| {
            self.client.delete_item().table_name(&self.name).key("pk", pk).key("sk", s(sk)).send()
        };
        delete(s(format!("conn#{id}")), "conn".into()).await.map_err(|e| self.fail("DeleteItem", e))?;
        if let Some(customer) = customer {
            delete(customer_pk(&customer), format!("conn#{id}")).await.map_err(|e| self.fail("DeleteItem", e))?;
        }
        Ok(())
    }

    /// The connections of `customer`: their ids and their tokens' `exp`.
    pub async fn connections_of(&self, customer: &str) -> Result<Vec<(String, u64)>, NotifierError> {
        let items = self.query(customer, "sk BETWEEN :from AND :to", "conn#", "conn#\u{10ffff}").await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let id = text(item, "sk")?.strip_prefix("conn#")?;
                Some((id.to_owned(), num(item, "expires").unwrap_or(0)))
            })
            .collect())
    }

    async fn query(&self, customer: &str, condition: &str, from: &str, to: &str) -> Result<Vec<Item>, NotifierError> {
        let query = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression(format!("pk = :pk AND {condition}"))
            .expression_attribute_values(":pk", customer_pk(customer))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .consistent_read(true)
            .limit(PAGE);
        tables::query_all(query).await.map_err(|(detail, retryable)| self.error(detail, retryable))
    }

    /// Makes `pending` a notification of its customer: its number, or `None` when its event
    /// was notified to that customer already.
    pub(crate) async fn notify(&self, pending: &Pending) -> Result<Option<u64>, NotifierError> {
        // A redelivery of an event notified long ago takes no number: only two deliveries
        // racing can make a gap.
        let known = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", customer_pk(pending.customer()))
            .key("sk", s(format!("event#{}", pending.event_id())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", e))?;
        if known.item.is_some() {
            return Ok(None);
        }
        let counted = self
            .client
            .update_item()
            .table_name(&self.name)
            .key("pk", customer_pk(pending.customer()))
            .key("sk", s("cursor"))
            .update_expression("ADD #last :one")
            .expression_attribute_names("#last", "last")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| self.fail("UpdateItem", e))?;
        let seq = counted.attributes.as_ref().and_then(|a| num(a, "last")).ok_or_else(|| self.odd("no counter"))?;
        let expires = n(now_secs() + KEEP_SECS);
        let event = Put::builder()
            .table_name(&self.name)
            .item("pk", customer_pk(pending.customer()))
            .item("sk", s(format!("event#{}", pending.event_id())))
            .item("seq", n(seq))
            .item("expires", expires.clone())
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| self.odd(e))?;
        let note = Put::builder()
            .table_name(&self.name)
            .item("pk", customer_pk(pending.customer()))
            .item("sk", s(note_sk(seq)))
            .item("frame", s(pending.frame(seq)))
            .item("event_id", s(pending.event_id()))
            .item("at", n(now_ms()))
            .item("expires", expires)
            .build()
            .map_err(|e| self.odd(e))?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(event).build())
            .transact_items(TransactWriteItem::builder().put(note).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(Some(seq)),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(c)
                    if c.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed")) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.fail("TransactWriteItems", e)),
        }
    }

    /// The notifications of `customer` after number `after`, in order: numbers and frames.
    pub async fn after(&self, customer: &str, after: u64) -> Result<Vec<(u64, String)>, NotifierError> {
        let from = note_sk(after.saturating_add(1));
        let items = self.query(customer, "sk BETWEEN :from AND :to", &from, &note_sk(u64::MAX)).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let seq = text(item, "sk")?.strip_prefix("note#")?.parse().ok()?;
                Some((seq, text(item, "frame")?.to_owned()))
            })
            .collect())
    }

    /// `customer`'s notifications of case `case`, in order (for `choreo trace --backend aws`).
    pub async fn case_notifications(&self, customer: &str, case: &str) -> Result<Vec<CaseNotification>, NotifierError> {
        let (_, acked) = self.cursor(customer).await?;
        let items = self.query(customer, "sk BETWEEN :from AND :to", &note_sk(0), &note_sk(u64::MAX)).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let seq: u64 = text(item, "sk")?.strip_prefix("note#")?.parse().ok()?;
                let frame: serde_json::Value = serde_json::from_str(text(item, "frame")?).ok()?;
                (frame["case"] == case).then(|| CaseNotification {
                    customer: customer.to_owned(),
                    seq,
                    event_id: text(item, "event_id").unwrap_or_default().to_owned(),
                    event_type: frame["event"].as_str().unwrap_or_default().to_owned(),
                    created_ms: num(item, "at").map_or(0, |at| at as i64),
                    acked: seq <= acked,
                })
            })
            .collect())
    }

    /// The last number given to `customer` and the last they acknowledged (0 when none).
    pub async fn cursor(&self, customer: &str) -> Result<(u64, u64), NotifierError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", customer_pk(customer))
            .key("sk", s("cursor"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", e))?;
        let item = got.item.unwrap_or_default();
        Ok((num(&item, "last").unwrap_or(0), num(&item, "acked").unwrap_or(0)))
    }

    /// Moves `customer`'s acknowledgement to `seq`, forward only.
    pub async fn ack(&self, customer: &str, seq: u64) -> Result<(), NotifierError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.name)
            .key("pk", customer_pk(customer))
            .key("sk", s("cursor"))
            .update_expression("SET acked = :seq")
            .condition_expression("attribute_not_exists(acked) OR acked < :seq")
            .expression_attribute_values(":seq", n(seq))
            .send()
            .await;
        match updated {
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.fail("UpdateItem", e)),
            Ok(_) => Ok(()),
        }
    }
}
