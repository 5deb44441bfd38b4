//! A crash drill for the agents: `agent_drill <data-dir> <agents-dir> crash` submits the seeded
//! case and aborts the whole process the moment payments' model is called after its refund
//! (between the effect and the ack); `agent_drill <data-dir> <agents-dir> resume <case>`
//! restarts on the same data directory, ten minutes later, and waits for the case's answer.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use choreo_bus::ManualClock;
use choreo_consumers::local::{Local, Options, SupportRequest};
use choreo_consumers::observe::StepKind;
use choreo_models::{ContentBlock, Model, ModelError, ModelRequest, ModelResponse};
use chrono::{Days, Utc};

/// The model, except that it kills the process when payments asks it for the turn after a
/// refund: the refund is done and recorded, the event neither completed nor acknowledged.
struct DieAfterRefund(Arc<dyn Model>);

#[async_trait]
impl Model for DieAfterRefund {
    fn name(&self) -> String {
        self.0.name()
    }

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let refunded = request.messages.iter().any(|m| m.tool_uses().any(|u| u.name == "payments.refund_charge"));
        let answered =
            request.messages.last().is_some_and(|m| m.content.iter().any(|b| matches!(b, ContentBlock::ToolResult(_))));
        if request.agent == "payments" && refunded && answered {
            let _ = std::io::stdout().flush();
            std::process::abort();
        }
        self.0.converse(request).await
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(data_dir), Some(agents_dir), Some(mode)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: agent_drill <data-dir> <agents-dir> crash | resume <case>");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let code = runtime.block_on(async {
        let mut options = Options::new(data_dir);
        options.agents_dir = agents_dir.into();
        let case = match mode.as_str() {
            "crash" => {
                options.model_layer = Some(Box::new(|model| Arc::new(DieAfterRefund(model)) as Arc<dyn Model>));
                None
            }
            "resume" => {
                // Later than any visibility timeout or backoff the dead process left behind.
                options.clock = Arc::new(ManualClock::new(Utc::now() + chrono::Duration::minutes(10)));
                args.get(4).cloned()
            }
            _ => return 2,
        };
        let local = Local::start(options).await.expect("start");
        let mut steps = local.services.observer.subscribe();
        let case = match case {
            Some(case) => case,
            None => {
                let tomorrow = Utc::now().date_naive().checked_add_days(Days::new(1)).expect("a date");
                let placed = local.submit(&SupportRequest::seeded(tomorrow)).await.expect("submit");
                println!("case {}", placed.id());
                let _ = std::io::stdout().flush();
                placed.id().to_owned()
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, steps.recv()).await {
                Ok(Ok(step)) if step.correlation_id == case => {
                    if let StepKind::Published { event_type, .. } = &step.kind
                        && event_type == "OrderSupportCompleted"
                    {
                        println!("completed {case}");
                        local.shutdown().await;
                        return 0;
                    }
                }
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                _ => return 1,
            }
        }
    });
    std::process::exit(code);
}
