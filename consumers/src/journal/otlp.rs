//! Span export over OTLP/HTTP (protobuf), with the opentelemetry crates. Live: the journal's
//! writer hands every committed batch to a task that exports the runs it ends. After the fact:
//! `choreo trace --otlp-endpoint` exports a case's [`super::spans::case_spans`].

use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::{mpsc, oneshot};

use super::spans::run_spans;
use super::{Runs, StepRow};

/// The standard variable naming the collector's base URL (`/v1/traces` is appended).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable naming the traces URL itself (taken as is).
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Spans per export request at most.
const CHUNK: usize = 512;
/// How long one export request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`: spans go to `<base>/v1/traces`.
    Base(String),
    /// The traces URL itself, as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    Traces(String),
}

impl Endpoint {
    /// From the standard variables (the traces one first); `None` when neither is set, or
    /// when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_env() -> Option<Endpoint> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
        {
            return None;
        }
        var(TRACES_ENDPOINT_VAR).map(Endpoint::Traces).or_else(|| var(ENDPOINT_VAR).map(Endpoint::Base))
    }

    /// The URL spans are POSTed to.
    pub fn traces_url(&self) -> String {
        match self {
            Endpoint::Traces(url) => url.trim().to_owned(),
            Endpoint::Base(base) => {
                let base = base.trim().trim_end_matches('/');
                if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") }
            }
        }
    }
}

/// Why spans could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OTLP endpoint {url}: {detail}")]
    Config { url: String, detail: String },
    #[error("OTLP export to {url} failed: {detail}")]
    Export { url: String, detail: String },
}

/// An OTLP/HTTP span exporter with Choreo's resource (`service.name`, default `choreo`).
#[derive(Debug)]
pub struct Exporter {
    inner: opentelemetry_otlp::SpanExporter,
    url: String,
}

impl Exporter {
    /// Needs a tokio runtime to export on (its HTTP client is reqwest's).
    pub fn new(endpoint: &Endpoint) -> Result<Exporter, ExportError> {
        let url = endpoint.traces_url();
        let mut inner = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .with_timeout(TIMEOUT)
            .build()
            .map_err(|e| ExportError::Config { url: url.clone(), detail: e.to_string() })?;
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "choreo".to_owned());
        inner.set_resource(&Resource::builder().with_service_name(service).build());
        Ok(Exporter { inner, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Exports `spans`, in requests of at most 512.
    pub async fn export(&self, mut spans: Vec<SpanData>) -> Result<(), ExportError> {
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(CHUNK));
            self.inner
                .export(spans)
                .await
                .map_err(|e| ExportError::Export { url: self.url.clone(), detail: e.to_string() })?;
            spans = rest;
        }
        Ok(())
    }
}

/// What the journal's writer sends the live exporter.
pub(crate) enum LiveMessage {
    /// Rows just committed, in order.
    Rows(Vec<StepRow>),
    /// Answered once everything sent before it was exported (or failed to be).
    Flush(oneshot::Sender<()>),
}

/// Starts the live export task on the current tokio runtime; `None` outside one (logged).
pub(crate) fn spawn_live(exporter: Exporter) -> Option<mpsc::UnboundedSender<LiveMessage>> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(url = exporter.url(), "no tokio runtime to export spans on; spans are not exported");
        return None;
    };
    let (sender, receiver) = mpsc::unbounded_channel();
    runtime.spawn(live(exporter, receiver));
    Some(sender)
}

async fn live(exporter: Exporter, mut receiver: mpsc::UnboundedReceiver<LiveMessage>) {
    let mut runs = Runs::default();
    while let Some(first) = receiver.recv().await {
        // Everything queued while the last export ran goes in this one.
        let mut spans = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                LiveMessage::Rows(rows) => {
                    for row in rows {
                        if let Some(run) = runs.push(row) {
                            spans.extend(run_spans(&run));
                        }
                    }
                }
                LiveMessage::Flush(done) => flushes.push(done),
            }
            next = receiver.try_recv().ok();
        }
        if !spans.is_empty()
            && let Err(e) = exporter.export(spans).await
        {
            // Telemetry is best effort: the journal keeps the steps, `choreo trace` can export again.
            tracing::warn!(error = %e, "spans not exported");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
