//! The notifier as AWS Lambda functions (`choreo infra synth` makes both from this binary),
//! by `CHOREO_NOTIFIER_ROLE`:
//!
//! - `socket`: the WebSocket API's `$connect` (the token checked), `$disconnect` and `$default`
//!   (`hello`, acknowledgements) routes; needs `CHOREO_JWKS_URL` and `CHOREO_TOKEN_ISSUER`;
//! - `push`: fed by the notifier's SQS queue, posts each customer's notifications to their
//!   connections with `PostToConnection` (410 Gone drops a connection), answering partial
//!   batch failures;
//!
//! both with `CHOREO_CONNECTIONS_TABLE` (the DynamoDB table) and `CHOREO_WEBSOCKET_ENDPOINT`
//! (the API's stage URL, to post to connections), and the standard AWS settings. A missing
//! setting fails the function's start, with the reason in its log.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use choreo_notifier::aws::AwsNotifier;
use choreo_notifier::aws::table::Table;
use lambda_runtime::{Error, LambdaEvent, service_fn};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str, what: &str) -> Result<String, Error> {
    env(name).ok_or_else(|| format!("{name} is not set: {what}").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let role = required("CHOREO_NOTIFIER_ROLE", "`socket` or `push`")?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let table = Table::new(&sdk, required("CHOREO_CONNECTIONS_TABLE", "the notifier's DynamoDB table")?)?;
    let mut notifier = AwsNotifier::new(table);
    if let Some(endpoint) = env("CHOREO_WEBSOCKET_ENDPOINT") {
        notifier = notifier.with_endpoint(&sdk, &endpoint);
    }
    match role.as_str() {
        "socket" => {
            let url = required("CHOREO_JWKS_URL", "the key set of the tokens' issuer")?;
            let issuer = required("CHOREO_TOKEN_ISSUER", "the tokens' `iss`")?;
            let verifier = choreo::jwks::fetch(&url, &issuer).await.map_err(|e| format!("{e:#}"))?;
            tokio::spawn(choreo::jwks::refresh(verifier.clone(), url));
            let notifier = Arc::new(notifier.with_verifier(verifier));
            lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
                let notifier = notifier.clone();
                async move { Ok::<_, Error>(notifier.socket(event.payload).await) }
            }))
            .await
        }
        "push" => {
            if env("CHOREO_WEBSOCKET_ENDPOINT").is_none() {
                return Err("CHOREO_WEBSOCKET_ENDPOINT is not set: the WebSocket API's stage URL".into());
            }
            let notifier = Arc::new(notifier);
            lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
                let notifier = notifier.clone();
                async move { Ok::<_, Error>(notifier.push(event.payload).await) }
            }))
            .await
        }
        other => Err(format!("CHOREO_NOTIFIER_ROLE `{other}`: use `socket` or `push`").into()),
    }
}
