//! `choreo pattern test`: one pattern file against one event file; the answer is the exit code
//! (0 match, 1 no match), and any unreadable or malformed input exits 3 naming its file.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, anyhow};
use choreo_bus::json;
use choreo_bus::pattern::{MAX_EVENT_DEPTH, Machine, Pattern, Scratch};

use super::{OneLine, json_kind, read_input, shown};
use crate::cli::TestArgs;
use crate::{Status, UsageError};

pub fn run(args: &TestArgs, output: &mut impl Write) -> anyhow::Result<Status> {
    if args.pattern == Path::new("-") && args.event == Path::new("-") {
        return Err(UsageError("--pattern and --event cannot both read stdin ('-')".into()).into());
    }
    let pattern = load_pattern(&args.pattern)?;
    let event = load_event(&args.event)?;
    let name = shown(&args.event);
    let machine = Machine::single(&pattern);
    let matched = machine.is_match(&event, &mut Scratch::new()).with_context(|| format!("event in {name}"))?;
    if matched {
        writeln!(output, "true").context("cannot write to stdout")?;
        return Ok(Status::Success);
    }
    if args.explain {
        let why = machine.explain(0, &event).with_context(|| format!("event in {name}"))?;
        writeln!(output, "false: {}", OneLine(why)).context("cannot write to stdout")?;
    } else {
        writeln!(output, "false").context("cannot write to stdout")?;
    }
    Ok(Status::CheckFailed)
}

/// The pattern file's text, without surrounding blanks (an editor's final newline is not
/// part of the pattern, nor counted toward its 2048-character limit).
fn load_pattern(path: &Path) -> anyhow::Result<Pattern> {
    let name = shown(path);
    let bytes = read_input(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| anyhow!("pattern in {name} is not valid UTF-8 at byte {}", e.valid_up_to()))?;
    Pattern::parse(text.trim()).map_err(|e| anyhow!("invalid pattern in {name}: {}", OneLine(e)))
}

fn load_event(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = shown(path);
    let bytes = read_input(path)?;
    json::check(&bytes, MAX_EVENT_DEPTH).map_err(|e| anyhow!("event in {name} is {e}"))?;
    let kind = json_kind(&bytes);
    if kind != "an object" {
        return Err(anyhow!("event in {name} must be a JSON object, got {kind}"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pattern: &str, event: &str) -> (tempfile::TempDir, TestArgs) {
        let dir = tempfile::tempdir().unwrap();
        let (p, e) = (dir.path().join("p.json"), dir.path().join("e.json"));
        std::fs::write(&p, pattern).unwrap();
        std::fs::write(&e, event).unwrap();
        (dir, TestArgs { pattern: p, event: e, explain: true })
    }

    #[test]
    fn match_and_miss_give_status_and_line() {
        let (_d, args) = files("{\"a\":[\"x\"]}\n", r#"{"a":"x"}"#);
        let mut out = Vec::new();
        assert_eq!(run(&args, &mut out).unwrap(), Status::Success);
        assert_eq!(out, b"true\n");

        let (_d, args) = files(r#"{"a":["x"]}"#, r#"{"a":"y"}"#);
        let mut out = Vec::new();
        assert_eq!(run(&args, &mut out).unwrap(), Status::CheckFailed);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("false: a: wanted"), "{out}");
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let (_d, args) = files(r#"{"a":"x"}"#, "{}");
        let err = format!("{:#}", run(&args, &mut Vec::new()).unwrap_err());
        assert!(err.starts_with("invalid pattern in ") && err.contains("p.json"), "{err}");

        let (_d, args) = files(r#"{"a":["x"]}"#, "[1]");
        let err = format!("{:#}", run(&args, &mut Vec::new()).unwrap_err());
        assert!(err.contains("e.json must be a JSON object, got an array"), "{err}");
    }
}
