//! The embedded bus behind a wrapper that fails what EventBridge can fail: the whole call (the
//! bus down), chosen entries (throttled), an answer lost after the bus accepted, a call that
//! never answers. Every PutEvents call is recorded. Shared by the publisher's, the ingest API's
//! and the outbox relay's tests (each uses a part of it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use choreo_bus::api::*;
use choreo_bus::{Bus, BusError, EmbeddedBus};
use choreo_schemas::eventbridge::PutEventsEntry;
use tokio::sync::Notify;

/// What names an entry in [`Faulty::calls`] and [`Faulty::fail`].
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// The CloudEvent `id`.
    Id,
    /// The CloudEvent `subject` (`orders/o-1`): all the events of one order.
    Subject,
}

pub struct Faulty {
    pub inner: EmbeddedBus,
    key: Key,
    /// The keys of the entries of each call, in order.
    pub calls: Mutex<Vec<Vec<String>>>,
    /// Key → how many more of its entries to fail with ThrottlingException.
    pub fail: Mutex<HashMap<String, u32>>,
    /// While set, every call fails whole, as an unreachable EventBridge would.
    pub down: AtomicBool,
    /// Calls still to pass to the bus and then answer with an error, as if the answer was lost.
    pub lose_answers: AtomicU32,
    /// While set, calls pass to the bus, notify, and never answer.
    pub hang: Mutex<Option<Arc<Notify>>>,
}

impl Faulty {
    pub fn new(inner: EmbeddedBus, key: Key) -> Self {
        Self {
            inner,
            key,
            calls: Mutex::default(),
            fail: Mutex::default(),
            down: AtomicBool::new(false),
            lose_answers: AtomicU32::new(0),
            hang: Mutex::default(),
        }
    }

    fn key_of(&self, entry: &PutEventsEntry) -> String {
        let event = entry.to_envelope().expect("the publisher sends CloudEvents");
        match self.key {
            Key::Id => event.id().to_owned(),
            Key::Subject => event.subject().unwrap_or_default().to_owned(),
        }
    }
}

#[async_trait]
impl Bus for Faulty {
    async fn put_events(&self, entries: Vec<PutEventsEntry>) -> Result<PutEventsOutput, BusError> {
        let keys: Vec<String> = entries.iter().map(|e| self.key_of(e)).collect();
        self.calls.lock().unwrap().push(keys.clone());
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Closed);
        }
        let (mut pass, mut slots) = (Vec::new(), Vec::new());
        {
            let mut fail = self.fail.lock().unwrap();
            for (entry, key) in entries.into_iter().zip(&keys) {
                match fail.get_mut(key).filter(|n| **n > 0) {
                    Some(n) => {
                        *n -= 1;
                        slots.push(None);
                    }
                    None => {
                        slots.push(Some(pass.len()));
                        pass.push(entry);
                    }
                }
            }
        }
        let answered = if pass.is_empty() { Vec::new() } else { self.inner.put_events(pass).await?.entries };
        let hang = self.hang.lock().unwrap().clone();
        if let Some(notify) = hang {
            notify.notify_one();
            std::future::pending::<()>().await;
        }
        if self.lose_answers.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(BusError::Closed);
        }
        let entries: Vec<EntryResult> = slots
            .into_iter()
            .map(|slot| match slot {
                Some(k) => answered[k].clone(),
                None => EntryResult::Failed {
                    error_code: ErrorCode::ThrottlingException,
                    error_message: "Rate exceeded".into(),
                },
            })
            .collect();
        let failed_entry_count = entries.iter().filter(|e| e.event_id().is_none()).count();
        Ok(PutEventsOutput { failed_entry_count, entries })
    }
    async fn put_rule(&self, rule: RuleSpec) -> Result<String, BusError> {
        self.inner.put_rule(rule).await
    }
    async fn delete_rule(&self, name: &str) -> Result<(), BusError> {
        self.inner.delete_rule(name).await
    }
    async fn set_rule_state(&self, name: &str, state: RuleState) -> Result<(), BusError> {
        self.inner.set_rule_state(name, state).await
    }
    async fn describe_rule(&self, name: &str) -> Result<Rule, BusError> {
        self.inner.describe_rule(name).await
    }
    async fn list_rules(&self) -> Result<Vec<Rule>, BusError> {
        self.inner.list_rules().await
    }
    async fn put_targets(&self, rule: &str, targets: Vec<Target>) -> Result<(), BusError> {
        self.inner.put_targets(rule, targets).await
    }
    async fn remove_targets(&self, rule: &str, ids: &[String]) -> Result<(), BusError> {
        self.inner.remove_targets(rule, ids).await
    }
    async fn create_archive(&self, archive: ArchiveSpec) -> Result<String, BusError> {
        self.inner.create_archive(archive).await
    }
    async fn delete_archive(&self, name: &str) -> Result<(), BusError> {
        self.inner.delete_archive(name).await
    }
    async fn describe_archive(&self, name: &str) -> Result<Archive, BusError> {
        self.inner.describe_archive(name).await
    }
    async fn list_archives(&self) -> Result<Vec<Archive>, BusError> {
        self.inner.list_archives().await
    }
    async fn start_replay(&self, replay: ReplaySpec) -> Result<Replay, BusError> {
        self.inner.start_replay(replay).await
    }
    async fn describe_replay(&self, name: &str) -> Result<Replay, BusError> {
        self.inner.describe_replay(name).await
    }
    async fn cancel_replay(&self, name: &str) -> Result<ReplayState, BusError> {
        self.inner.cancel_replay(name).await
    }
    async fn list_replays(&self) -> Result<Vec<Replay>, BusError> {
        self.inner.list_replays().await
    }
}
