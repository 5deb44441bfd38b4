//! A production issuer's keys: its JSON Web Key Set fetched over HTTPS, refreshed every
//! [`REFRESH`] so a rotation is seen; shared by `choreo serve --jwks-url` and the ingest and
//! notifier functions on AWS.

use std::time::Duration;

use anyhow::Context;
use choreo_auth::Verifier;

/// How often the key set is fetched again.
pub const REFRESH: Duration = Duration::from_secs(600);

/// A verifier of `issuer`'s tokens with the key set at `url`.
pub async fn fetch(url: &str, issuer: &str) -> anyhow::Result<Verifier> {
    let text = get(url).await?;
    Verifier::from_jwks(&text, issuer).with_context(|| format!("the key set at {url}"))
}

async fn get(url: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("fetch the key set {url}"))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "fetch the key set {url}: HTTP {status}");
    response.text().await.with_context(|| format!("read the key set {url}"))
}

/// Fetches the key set again every [`REFRESH`], for ever; a failed fetch keeps the keys.
pub async fn refresh(verifier: Verifier, url: String) {
    let mut every = tokio::time::interval(REFRESH);
    every.tick().await;
    loop {
        every.tick().await;
        match get(&url).await.and_then(|text| Ok(verifier.replace_keys(&text)?)) {
            Ok(()) => tracing::debug!(%url, "key set refreshed"),
            // The keys we have stay in use; the next refresh tries again.
            Err(e) => tracing::warn!(%url, error = %e, "key set refresh failed"),
        }
    }
}
