//! The command line: every command, flag and help text of `choreo`, as clap derive types.
//! Commands live in their own modules; this file only says what can be typed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod ops;

pub use ops::*;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a check failed (no match, a count differs from the expected one)
  2  usage error
  3  bad input: a file or stream could not be read or written, or is malformed";

/// Event-driven agent choreography on Amazon EventBridge.
#[derive(Debug, Parser)]
#[command(name = "choreo", version, after_help = EXIT_CODES, arg_required_else_help = true)]
pub struct Cli {
    /// Directory for the local bus, archive and state.
    #[arg(long, global = true, env = "CHOREO_DATA_DIR", default_value = "./.choreo", value_name = "DIR")]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the seeded support case end to end on the embedded bus, printing its timeline
    #[command(after_help = DEMO_EXIT_CODES)]
    Demo(DemoArgs),
    /// Check the agent folders (manifests, tools, patterns, offline scripts, cases) and the choreography they make
    #[command(after_help = VALIDATE_EXIT_CODES)]
    Validate(ValidateArgs),
    /// Publish a file of CloudEvents (JSON lines) to the bus of the data directory
    #[command(after_help = PUBLISH_EXIT_CODES)]
    Publish(PublishArgs),
    /// Serve the ingest API, the notifier WebSocket, the customer web page and the agents on one port
    #[command(long_about = SERVE_ABOUT, after_help = SERVE_EXIT_CODES)]
    Serve(ServeArgs),
    /// Issue bearer tokens from the local issuer of the data directory
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check, test and benchmark EventBridge event patterns
    #[command(subcommand)]
    Pattern(PatternCommand),
    /// Replay archived events to chosen agents or rules; follow, list and cancel replays
    Replay(ReplayArgs),
    /// Dead letters: list, show, redrive to the agent's inbox, purge
    Dlq(DlqArgs),
    /// A case's timeline: events, agents, model turns, tool calls, completions, notifications
    #[command(after_help = OPS_EXIT_CODES)]
    Trace(TraceArgs),
    /// The AWS deployment: the SAM template synthesized from the agent folders
    #[command(subcommand)]
    Infra(InfraCommand),
}

#[derive(Debug, Subcommand)]
pub enum InfraCommand {
    /// Write the AWS SAM template (JSON) of the agent folders: bus, archive, rules, queues, functions, APIs, tables
    #[command(after_help = SYNTH_EXIT_CODES)]
    Synth(SynthArgs),
}

const SYNTH_EXIT_CODES: &str = "\
Exit codes:
  0  the template was written
  1  the agent folders are invalid (each problem named), or the file could not be written
  2  usage error";

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The agent folders (default: consumers/agents of this source tree)
    #[arg(long, env = "CHOREO_AGENTS_DIR", value_name = "DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Write the template to this file instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The custom event bus's name
    #[arg(long, default_value = "choreo", value_name = "NAME")]
    pub bus_name: String,
    /// Days the archive keeps events (0: forever)
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub archive_retention_days: u32,
    /// The workspace as seen from the template's folder (the functions' CodeUri)
    #[arg(long, default_value = "..", value_name = "PATH")]
    pub code_uri: String,
}

const SERVE_ABOUT: &str = "\
Serve the ingest API, the notifier WebSocket, the customer web page and the agents on one
port, over the data directory (bus, archive, back office, agents' state, notifications).

  GET  /                         the customer web page (sign in as a seeded customer)
  POST /v1/support-requests      a customer's request (customer bearer token)
  POST /v1/events                CloudEvents over HTTP (service bearer token)
  GET  /v1/notifications         WebSocket: the customer's notifications (?token=...)
  GET  /v1/openapi.json          the API's OpenAPI document
  GET  /.well-known/jwks.json    the local issuer's public keys

Tokens come from the local issuer (`choreo token issue`), or with --jwks-url from a
production issuer's key set. Ctrl-C or SIGTERM stops it gracefully: requests in flight are
answered, agents finish what they hold, and what they had not taken waits in their inboxes.";

const SERVE_EXIT_CODES: &str = "\
Exit codes:
  0  stopped by Ctrl-C or SIGTERM, gracefully
  2  usage error
  3  could not start (address in use, invalid agent folder, data directory in use, key set unreadable)";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed)
    #[arg(long, env = "CHOREO_ADDR", default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub addr: std::net::SocketAddr,
    /// The model: offline (deterministic, no network), bedrock:<model-id> or openai:<base-url>#<model>
    #[arg(long, env = "CHOREO_MODEL", default_value = "offline", value_name = "MODEL")]
    pub model: choreo_models::ModelSpec,
    /// The agent folders (default: consumers/agents of this source tree)
    #[arg(long, env = "CHOREO_AGENTS_DIR", value_name = "DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Trust tokens from this issuer's JWKS document instead of the local issuer (disables the page's local sign-in)
    #[arg(long, env = "CHOREO_JWKS_URL", value_name = "URL", requires = "issuer")]
    pub jwks_url: Option<String>,
    /// The `iss` claim of tokens from --jwks-url
    #[arg(long, env = "CHOREO_ISSUER", value_name = "ISSUER", requires = "jwks_url")]
    pub issuer: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed bearer token for a customer or a service
    #[command(after_help = TOKEN_EXAMPLES)]
    Issue(TokenIssueArgs),
}

const TOKEN_EXAMPLES: &str = "\
Examples:
  choreo token issue --customer c-1001
  choreo token issue --service backoffice --ttl 30m

The token is signed by the local issuer of the data directory (created on first use,
issuer.key); `choreo serve` on the same data directory accepts it.";

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "who")]
pub struct TokenIssueArgs {
    /// A customer id of the back office (c-1001 ...): may submit requests and see its notifications
    #[arg(long, value_name = "ID", group = "who")]
    pub customer: Option<String>,
    /// A service name: may publish CloudEvents to /v1/events
    #[arg(long, value_name = "NAME", group = "who")]
    pub service: Option<String>,
    /// How long the token is valid: 90s, 30m, 12h, 7d
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
}

/// `90s`, `30m`, `12h`, `7d` (a bare number is seconds); at most 366 days.
pub fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 12h or 7d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use s, m, h or d")),
    };
    let secs = n.checked_mul(scale).filter(|&s| s > 0 && s <= 366 * 86_400);
    secs.map(std::time::Duration::from_secs).ok_or_else(|| format!("{text:?} must be between 1s and 366d"))
}

const DEMO_EXIT_CODES: &str = "\
Exit codes:
  0  the case was resolved (OrderSupportCompleted), or escalated when the case calls for it
  1  the case was escalated, or did not finish within --timeout
  2  usage error
  3  the agents could not start (an invalid agent folder, a data directory in use)";

const VALIDATE_EXIT_CODES: &str = "\
Exit codes:
  0  every agent folder and the choreography they make are valid (warnings may be printed)
  1  a problem was found (each is printed with its file and field)
  2  usage error";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The model: offline (deterministic, no network), bedrock:<model-id> or openai:<base-url>#<model>
    #[arg(long, env = "CHOREO_MODEL", default_value = "offline", value_name = "MODEL")]
    pub model: choreo_models::ModelSpec,
    /// The agent folders (default: consumers/agents of this source tree)
    #[arg(long, env = "CHOREO_AGENTS_DIR", value_name = "DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Which seeded case to submit
    #[arg(long, value_enum, default_value_t = DemoCase::Seeded)]
    pub case: DemoCase,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
}

/// The seeded cases of the retail data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoCase {
    /// c-1001, o-1001: charged twice, one of two items missing, needed tomorrow
    Seeded,
    /// c-1002, o-1002: one item missing
    MissingItem,
    /// c-1003, o-1003: charged twice
    DoubleCharge,
    /// c-1004, o-1004: the missing item is out of stock; an alternative is proposed
    OutOfStock,
    /// c-1001 asks about o-1005, which is not theirs: refused and escalated
    NotYours,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The agent folders (default: consumers/agents of this source tree)
    #[arg(long, env = "CHOREO_AGENTS_DIR", value_name = "DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Also print the who-triggers-whom graph of the choreography in this format
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub graph: Option<GraphFormat>,
}

const PUBLISH_EXIT_CODES: &str = "\
Exit codes:
  0  every event was published
  1  some events were refused (schema, size) or failed at the bus; each is named by its line
  2  usage error
  3  the file cannot be read, or the bus cannot be opened";

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// JSON lines, one structured-mode CloudEvent per line (blank lines are skipped); - for stdin
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum PatternCommand {
    /// Match JSON lines from stdin, one answer line per input line
    #[command(long_about = CHECK_ABOUT, after_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
    /// Match one pattern file against one event file
    #[command(after_help = TEST_EXIT_CODES)]
    Test(TestArgs),
    /// Measure rule sets on a file of events and check their match counts
    #[command(long_about = BENCH_ABOUT, after_help = EXIT_CODES)]
    Bench(BenchArgs),
}

const CHECK_ABOUT: &str = "\
Match JSON lines from stdin, one answer line per input line.

Each input line is {\"pattern\": {...}, \"event\": {...}} or
{\"pattern_text\": \"<pattern as a JSON string>\", \"event\": {...}}; other fields are ignored.
The pattern is read from the exact text given (number literals, duplicate keys, the
2048-character limit). Each answer line, in input order, is one of:
  true | false | false: <reason> (with --explain)
  invalid: <why the pattern is rejected>
  error: <why the line cannot be read>

With --backend aws, EventBridge's TestEventPattern answers each line instead of the embedded
engine (several lines in flight, answers still in input order): the same answers, its messages
in invalid: lines, and error: EventBridge: <code>: <message> where it rejects a line otherwise
(an event without EventBridge's fields: id, account, source, time, region, resources,
detail-type).";

const CHECK_EXIT_CODES: &str = "\
Exit codes:
  0  every line was answered (invalid: and error: lines included)
  2  usage error
  3  stdin could not be read or stdout written, or (--backend aws) EventBridge could not answer";

const TEST_EXIT_CODES: &str = "\
Exit codes:
  0  the event matches the pattern
  1  the event does not match
  2  usage error
  3  a file cannot be read, the pattern is invalid, or the event is not a JSON object";

const BENCH_ABOUT: &str = "\
Measure rule sets on a file of events and check their match counts.

The rules file is either a JSON object of rule name -> pattern (an object or its text),
or a file with \"rule_sets\" like citylots_rules.json. Events are JSON lines; blank lines
are skipped. Each set is compiled into one machine and matched over every event
--passes times; the median rate is reported beside the baseline (parsing each event
into a serde_json::Value).";

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// On a miss, say which field failed and what the event had there
    #[arg(long, conflicts_with = "backend")]
    pub explain: bool,
    /// Whose matcher answers: the embedded engine, or EventBridge's own (TestEventPattern,
    /// standard AWS config; each event must then be a whole EventBridge event)
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    pub backend: Backend,
    /// Another endpoint than AWS's for EventBridge (a local server)
    #[arg(long, value_name = "URL", requires = "backend")]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// File holding the pattern ('-' for stdin)
    #[arg(long, value_name = "FILE")]
    pub pattern: PathBuf,
    /// File holding the event, a JSON object ('-' for stdin)
    #[arg(long, value_name = "FILE")]
    pub event: PathBuf,
    /// On a miss, say which field failed and what the event had there
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rules file (JSON)
    #[arg(long, value_name = "FILE")]
    pub rules: PathBuf,
    /// Events file (JSON lines)
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// Run only this rule set (repeat for more); default: every set
    #[arg(long = "set", value_name = "NAME")]
    pub sets: Vec<String>,
    /// Passes over the events per set; the median rate is reported
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub passes: u32,
    /// Skip the serde_json parsing baseline
    #[arg(long)]
    pub no_baseline: bool,
    /// Print a machine-readable JSON report instead of the table
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn token_ttl() {
        assert_eq!(parse_ttl("90s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(parse_ttl("2h"), Ok(std::time::Duration::from_secs(7200)));
        assert_eq!(parse_ttl("15"), Ok(std::time::Duration::from_secs(15)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").unwrap_err().contains("unknown unit"));
        assert!(parse_ttl("400d").is_err());
        assert!(parse_ttl("h").is_err());
        let both = Cli::try_parse_from(["choreo", "token", "issue", "--customer", "c-1", "--service", "s"]);
        assert!(both.is_err());
        let neither = Cli::try_parse_from(["choreo", "token", "issue"]);
        assert!(neither.is_err());
    }

    #[test]
    fn set_repeats_and_passes_must_be_positive() {
        let cli = Cli::try_parse_from([
            "choreo", "pattern", "bench", "--rules", "r.json", "--events", "e.jsonl", "--set", "A", "--set", "B",
        ])
        .unwrap();
        let Command::Pattern(PatternCommand::Bench(b)) = cli.command else { panic!("not bench") };
        assert_eq!(b.sets, ["A", "B"]);
        assert_eq!(b.passes, 5);
        let zero =
            Cli::try_parse_from(["choreo", "pattern", "bench", "--rules", "r", "--events", "e", "--passes", "0"]);
        assert!(zero.is_err());
    }
}
