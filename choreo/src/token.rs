//! `choreo token issue`: a bearer token from the local issuer of the data directory.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use choreo_auth::{Issuer, Principal};

use crate::cli::TokenIssueArgs;

/// Prints the token alone on one line, so `TOKEN=$(choreo token issue --customer c-1001)` works.
pub fn issue(args: &TokenIssueArgs, data_dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let principal = match (&args.customer, &args.service) {
        (Some(customer), _) => Principal::customer(non_empty(customer, "--customer")?),
        (None, Some(service)) => Principal::service(non_empty(service, "--service")?),
        (None, None) => return Err(crate::UsageError("say --customer <id> or --service <name>".into()).into()),
    };
    let issuer = Issuer::open_or_create(data_dir).context("open the local issuer")?;
    let token = issuer.issue(&principal, args.ttl).context("sign the token")?;
    writeln!(out, "{token}")?;
    Ok(())
}

fn non_empty<'a>(value: &'a str, flag: &str) -> anyhow::Result<&'a str> {
    let value = value.trim();
    if value.is_empty() || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(crate::UsageError(format!("{flag} {value:?}: give a non-empty id without spaces")).into());
    }
    Ok(value)
}
