//! Who to wake when a customer's notification is committed: per customer, a `watch` of their
//! last sequence number, held while a session of theirs is open. Sessions of other customers
//! are never woken.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

const SHARDS: usize = 32;

type Shard = Mutex<HashMap<String, watch::Sender<u64>>>;

pub(crate) struct Fanout {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Fanout {
    pub fn new() -> Fanout {
        Fanout { shards: (0..SHARDS).map(|_| Shard::default()).collect(), hasher: RandomState::new() }
    }

    fn shard(&self, customer: &str) -> MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        let i = (self.hasher.hash_one(customer) as usize) % self.shards.len();
        // A panic while holding the lock leaves the map whole (each change is one call).
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to `customer`'s new notifications until the subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, customer: &str) -> Subscription {
        let receiver =
            self.shard(customer).entry(customer.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe();
        Subscription { receiver: Some(receiver), fanout: self.clone(), customer: customer.to_owned() }
    }

    /// Tells `customer`'s sessions, if any, that their notification `seq` is committed.
    pub fn wake(&self, customer: &str, seq: u64) {
        if let Some(sender) = self.shard(customer).get(customer) {
            sender.send_if_modified(|last| {
                let newer = seq > *last;
                if newer {
                    *last = seq;
                }
                newer
            });
        }
    }
}

/// A session's subscription to its customer's notifications.
pub(crate) struct Subscription {
    receiver: Option<watch::Receiver<u64>>,
    fanout: Arc<Fanout>,
    customer: String,
}

impl Subscription {
    /// Waits for a notification newer than the last one seen.
    pub async fn changed(&mut self) {
        match self.receiver.as_mut() {
            Some(receiver) => {
                // The sender lives while this receiver is registered, so this only fails if the
                // map lost it; then wait forever rather than spin.
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut shard = self.fanout.shard(&self.customer);
        if shard.get(&self.customer).is_some_and(|s| s.receiver_count() == 0) {
            shard.remove(&self.customer);
        }
    }
}
