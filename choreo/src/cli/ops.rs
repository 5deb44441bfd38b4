//! The operations commands: `choreo replay`, `choreo dlq`, `choreo trace`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub const OPS_EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the replay ended FAILED or CANCELLED, or did not finish within --timeout
  2  usage error
  3  bad input (unknown archive, agent, rule, case, message or replay; a window in the future
     or reversed; a replay name in use): nothing was moved";

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Replay archived events to one agent (its rule only) or to named rules
    #[command(long_about = REPLAY_START_ABOUT, after_help = OPS_EXIT_CODES)]
    Start(ReplayStartArgs),
    /// A replay's state and progress
    #[command(after_help = OPS_EXIT_CODES)]
    Describe(ReplayNameArgs),
    /// Every replay, newest last
    #[command(after_help = OPS_EXIT_CODES)]
    List(JsonArgs),
    /// Stop a running replay between two batches; what was replayed stays replayed
    #[command(after_help = OPS_EXIT_CODES)]
    Cancel(ReplayNameArgs),
}

const REPLAY_START_ABOUT: &str = "\
Replay archived events to one agent (its rule only) or to named rules.

The events are those of the archive whose time is in the window (--from/--since .. --to), and
of one case only with --case. Each replayed event keeps its CloudEvent (id, correlationid,
traceparent) and gets EventBridge's replay-name: an agent that handled it already acknowledges
it without running, and an effect already in the ledger is answered from the ledger, never done
again. --dry-run lists the events, the agents they would reach, and for each the effects the
ledger will answer and those the agent may still do, and moves nothing.

Examples:
  choreo replay start --agent payments --case 01JF3W9Z6Q...
  choreo replay start --agent payments --since 2h --dry-run
  choreo replay start --rule orders --rule inventory --from 2026-12-01T09:00:00Z --to 2026-12-01T10:00:00Z";

#[derive(Debug, Args)]
pub struct ReplayStartArgs {
    /// The replay's name (1-64 of [.-_A-Za-z0-9]); default: <agent|rules>-<UTC time>
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The archive to replay from
    #[arg(long, default_value = "choreo", value_name = "NAME")]
    pub archive: String,
    /// Replay to this agent only (its rule)
    #[arg(long, value_name = "AGENT", required_unless_present = "rules", conflicts_with = "rules")]
    pub agent: Option<String>,
    /// Replay to these rules only (repeat for more)
    #[arg(long = "rule", value_name = "RULE")]
    pub rules: Vec<String>,
    /// Only the events of this case (its correlationid)
    #[arg(long, value_name = "CASE")]
    pub case: Option<String>,
    /// Start of the window of event times (RFC 3339)
    #[arg(long, value_name = "TIME", conflicts_with = "since")]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Start of the window, this long ago: 90s, 30m, 12h, 7d
    #[arg(long, value_name = "DURATION", value_parser = super::parse_ttl)]
    pub since: Option<std::time::Duration>,
    /// End of the window (RFC 3339); default: now
    #[arg(long, value_name = "TIME")]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// List what would be replayed and what the ledger would answer; move nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Return once the replay is started instead of following it to its end
    #[arg(long, conflicts_with = "dry_run")]
    pub detach: bool,
    /// Give up following after this many seconds (the replay goes on)
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
    /// The agent folders (default: consumers/agents of this source tree)
    #[arg(long, env = "CHOREO_AGENTS_DIR", value_name = "DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayNameArgs {
    /// The replay's name
    pub name: String,
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

/// `choreo replay`: where the bus is, and what to do.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(subcommand)]
    pub command: ReplayCommand,
}

/// `choreo dlq`: where the bus is, and what to do.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// Which bus the operations commands act on.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// The data directory's embedded bus, or EventBridge and SQS (standard AWS configuration:
    /// region, credentials, profile)
    #[arg(long, value_enum, default_value_t = Backend::Embedded, global = true)]
    pub backend: Backend,
    /// The event bus on AWS
    #[arg(long = "bus", env = "CHOREO_BUS", default_value = "choreo", value_name = "NAME", global = true)]
    pub bus_name: String,
    /// Put before every queue's name on AWS (a stage's namespace)
    #[arg(long, env = "CHOREO_QUEUE_PREFIX", value_name = "PREFIX", global = true)]
    pub queue_prefix: Option<String>,
    /// Another endpoint than AWS's for EventBridge and SQS (a local server: ministack, LocalStack)
    #[arg(long, value_name = "URL", global = true)]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The bus in the data directory (`bus.db`)
    Embedded,
    /// EventBridge and SQS
    Aws,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// The dead-letter inboxes and their counts, or the messages of one agent's
    #[command(after_help = OPS_EXIT_CODES)]
    List(DlqListArgs),
    /// One dead-lettered message: the event and why (rule, target, error, attempts)
    #[command(after_help = OPS_EXIT_CODES)]
    Show(DlqShowArgs),
    /// Send dead-lettered messages back to their agent's inbox, with fresh attempts
    #[command(after_help = OPS_EXIT_CODES)]
    Redrive(DlqSelectArgs),
    /// Delete dead-lettered messages for good (asks first; --yes without a terminal)
    #[command(after_help = OPS_EXIT_CODES)]
    Purge(DlqPurgeArgs),
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Only this agent's dead letters, one line per message
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqShowArgs {
    /// The message id, as `choreo dlq list --agent A` prints it (e.g. payments-dlq/42)
    pub message: String,
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqSelectArgs {
    /// These messages (ids as `choreo dlq list --agent A` prints them)
    #[arg(value_name = "MESSAGE", required_unless_present_any = ["agent", "all"])]
    pub messages: Vec<String>,
    /// Every dead letter of this agent (narrowed by --case and --code)
    #[arg(long, value_name = "AGENT", conflicts_with_all = ["messages", "all"])]
    pub agent: Option<String>,
    /// Every dead letter of every agent (narrowed by --case and --code)
    #[arg(long, conflicts_with = "messages")]
    pub all: bool,
    /// Only messages of this case (correlationid)
    #[arg(long, value_name = "CASE")]
    pub case: Option<String>,
    /// Only messages that failed with this error code (e.g. TOOL_BROKEN)
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// The agent folders (default: consumers/agents of this source tree)
    #[arg(long, env = "CHOREO_AGENTS_DIR", value_name = "DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqPurgeArgs {
    #[command(flatten)]
    pub select: DlqSelectArgs,
    /// Do not ask for confirmation
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The case: its correlationid (as `choreo demo` or the ingest API's case_id gives it)
    pub case: String,
    /// Print JSON for scripts instead of the timeline
    #[arg(long)]
    pub json: bool,
    /// Also export the case's spans over OTLP/HTTP to this endpoint (default: $OTEL_EXPORTER_OTLP_ENDPOINT when set)
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Read the case from the AWS deployment's tables (its events, the runs its functions
    /// copied there, its effects; its notifications with --connections-table) instead of the
    /// data directory
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    pub backend: Backend,
    /// The ledger's DynamoDB table on AWS (the template's `LedgerTable`)
    #[arg(long, env = "CHOREO_LEDGER_TABLE", value_name = "TABLE", required_if_eq("backend", "aws"))]
    pub ledger_table: Option<String>,
    /// With `--backend aws`, also the case's notifications, from the notifier's DynamoDB table
    /// (the template's `ConnectionsTable`)
    #[arg(long, env = "CHOREO_CONNECTIONS_TABLE", value_name = "TABLE")]
    pub connections_table: Option<String>,
    /// Another endpoint than AWS's for DynamoDB (a local server)
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// How `choreo validate` prints the who-triggers-whom graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Text,
    Mermaid,
    Dot,
}
