//! What the agents' end-to-end tests share: the seeded case's events, and a model layer that
//! counts the calls made to the model (over every instance it wraps).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use choreo_consumers::local::ModelLayer;
use choreo_models::{Model, ModelError, ModelRequest, ModelResponse};

/// The seeded case resolved: one event of each of these types, in type order.
pub const SEEDED_CASE_EVENTS: [&str; 6] = [
    "FulfilmentIssueResolved",
    "InventoryChecked",
    "OrderSupportCompleted",
    "OrderSupportPlaced",
    "PaymentIssueResolved",
    "SupportTriaged",
];

/// Counts the model's calls into `calls`.
pub struct Counted {
    pub inner: Arc<dyn Model>,
    pub calls: Arc<AtomicUsize>,
}

impl Counted {
    /// A layer for `Options::model_layer` counting into `calls`.
    pub fn layer(calls: Arc<AtomicUsize>) -> ModelLayer {
        Box::new(move |inner| Arc::new(Counted { inner, calls }) as Arc<dyn Model>)
    }
}

#[async_trait::async_trait]
impl Model for Counted {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.converse(request).await
    }
}
