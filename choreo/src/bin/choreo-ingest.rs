//! The ingest API as an AWS Lambda function behind API Gateway (the template's HTTP API,
//! `/v1/{proxy+}`): the same axum router as `choreo serve`'s, under `lambda_http`, publishing
//! on EventBridge through the one publisher. Configured by the environment:
//!
//! - `CHOREO_JWKS_URL` and `CHOREO_TOKEN_ISSUER`: the issuer whose tokens are accepted (its
//!   JSON Web Key Set, fetched at start and every 10 minutes, and its `iss`);
//! - `CHOREO_BUS`: the event bus (default `choreo`);
//! - `CHOREO_LEDGER_TABLE`: the DynamoDB table that keeps the `Idempotency-Key` records (the
//!   template's `LedgerTable`), shared by every instance; without it they are the instance's
//!   own, in `CHOREO_DATA_DIR` (default `/tmp/choreo-ingest`);
//! - the standard AWS settings (region, credentials, `AWS_ENDPOINT_URL` for a local server).
//!
//! A missing setting, a key set that cannot be fetched or a bus that does not exist fail the
//! function's start (its init), with the reason in its log.

use std::path::PathBuf;
use std::sync::Arc;

use choreo_bus::{AwsBus, AwsConfig, Bus};
use choreo_producers::Publisher;
use choreo_producers::http::Ingest;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let url = env("CHOREO_JWKS_URL").ok_or("CHOREO_JWKS_URL is not set: the key set of the tokens' issuer")?;
    let issuer = env("CHOREO_TOKEN_ISSUER").ok_or("CHOREO_TOKEN_ISSUER is not set: the tokens' `iss`")?;
    let verifier = choreo::jwks::fetch(&url, &issuer).await.map_err(|e| format!("{e:#}"))?;
    tokio::spawn(choreo::jwks::refresh(verifier.clone(), url));
    let config = AwsConfig::new(env("CHOREO_BUS").unwrap_or_else(|| "choreo".into()));
    let bus: Arc<dyn Bus> = Arc::new(AwsBus::connect(config).await.map_err(|e| format!("the bus: {e}"))?);
    let dir = env("CHOREO_DATA_DIR").map_or_else(|| PathBuf::from("/tmp/choreo-ingest"), PathBuf::from);
    let mut ingest = Ingest::open(&dir, Publisher::new(bus), verifier).map_err(|e| format!("the ingest API: {e}"))?;
    if let Some(table) = env("CHOREO_LEDGER_TABLE") {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        ingest = ingest.with_idempotency_table(&sdk, &table);
    }
    choreo_producers::lambda::run(ingest.router()).await
}
