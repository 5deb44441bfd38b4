//! The command line: every command, flag and help text of `choreo`, as clap derive types.
//! Commands live in their own modules; this file only says what can be typed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Check the agent folders (manifests, prompts, tools, patterns, offline scripts, cases)
    #[command(after_help = VALIDATE_EXIT_CODES)]
    Validate(ValidateArgs),
    /// Publish a file of CloudEvents (JSON lines) to the bus of the data directory
    #[command(after_help = PUBLISH_EXIT_CODES)]
    Publish(PublishArgs),
    /// Check, test and benchmark EventBridge event patterns
    #[command(subcommand)]
    Pattern(PatternCommand),
}

const DEMO_EXIT_CODES: &str = "\
Exit codes:
  0  the case was resolved (OrderSupportCompleted), or escalated when the case calls for it
  1  the case was escalated, or did not finish within --timeout
  2  usage error
  3  the agents could not start (an invalid agent folder, a data directory in use)";

const VALIDATE_EXIT_CODES: &str = "\
Exit codes:
  0  every agent folder is valid
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
  error: <why the line cannot be read>";

const CHECK_EXIT_CODES: &str = "\
Exit codes:
  0  every line was answered (invalid: and error: lines included)
  2  usage error
  3  stdin could not be read or stdout written";

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
    #[arg(long)]
    pub explain: bool,
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
