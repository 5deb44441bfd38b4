//! `choreo pattern check`: a stream of `{"pattern" | "pattern_text", "event"}` lines in, exactly
//! one answer line out per input line, in order. A bad line gets an `error:` answer and the
//! stream goes on; only a failing stdin or stdout stops it.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::str;

use anyhow::Context;
use choreo_bus::json::{self, JsonError};
use choreo_bus::pattern::{EventError, Explanation, MAX_EVENT_DEPTH, Machine, Pattern, PatternError, Scratch};

use super::{OneLine, json_kind};
use crate::cli::{Backend, CheckArgs};

/// Longest input line read: far above EventBridge's 256 KiB event, low enough that one
/// endless line cannot exhaust memory. A longer line gets an `error:` answer.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Why an input line cannot be matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("empty line")]
    Empty,
    #[error("line is longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("line is not valid UTF-8 at byte {offset}")]
    NotUtf8 { offset: usize },
    #[error("line is {0}")]
    Json(JsonError),
    #[error("line must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("line has the field \"{0}\" twice")]
    Duplicate(&'static str),
    #[error("line needs a \"pattern\" or a \"pattern_text\" field")]
    NoPattern,
    #[error("line has both \"pattern\" and \"pattern_text\"; give one")]
    BothPatterns,
    #[error("line needs an \"event\" field")]
    NoEvent,
    #[error("\"event\" must be a JSON object, got {0}")]
    EventNotAnObject(&'static str),
    #[error("\"pattern_text\" must be a JSON string, got {0}")]
    PatternTextNotAString(&'static str),
    #[error("\"pattern_text\" is not a valid string: {0}")]
    PatternTextUnreadable(String),
    #[error(transparent)]
    Event(#[from] EventError),
}

/// The answer to one input line.
#[derive(Debug)]
pub enum Answer {
    Match,
    /// No match; the reason when `--explain` asked for it.
    Miss(Option<Explanation>),
    Invalid(PatternError),
    Error(LineError),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Match => f.write_str("true"),
            Answer::Miss(None) => f.write_str("false"),
            Answer::Miss(Some(why)) => write!(f, "false: {}", OneLine(why)),
            Answer::Invalid(e) => write!(f, "invalid: {}", OneLine(e)),
            Answer::Error(e) => write!(f, "error: {}", OneLine(e)),
        }
    }
}

/// Answers one input line (without its line ending).
pub fn answer(line: &[u8], explain: bool, scratch: &mut Scratch) -> Answer {
    let (pattern, event) = match split(line) {
        Ok(parts) => parts,
        Err(e) => return Answer::Error(e),
    };
    let pattern = match pattern {
        PatternSource::Raw(text) => Pattern::parse(text),
        PatternSource::Text(text) => Pattern::parse(&text),
    };
    let pattern = match pattern {
        Ok(p) => p,
        Err(e) => return Answer::Invalid(e),
    };
    let machine = Machine::single(&pattern);
    match machine.is_match(event, scratch) {
        Ok(true) => Answer::Match,
        Ok(false) if !explain => Answer::Miss(None),
        Ok(false) => match machine.explain(0, event) {
            Ok(why) => Answer::Miss(Some(why)),
            Err(e) => Answer::Error(e.into()),
        },
        Err(e) => Answer::Error(e.into()),
    }
}

pub(super) enum PatternSource<'a> {
    /// The `pattern` value's own text, so number literals, duplicate keys and length are
    /// judged on what was written.
    Raw(&'a str),
    /// The decoded `pattern_text` string.
    Text(String),
}

/// Reads a line into its pattern and its event's raw bytes.
pub(super) fn split(line: &[u8]) -> Result<(PatternSource<'_>, &[u8]), LineError> {
    if line.is_empty() {
        return Err(LineError::Empty);
    }
    let text = str::from_utf8(line).map_err(|e| LineError::NotUtf8 { offset: e.valid_up_to() })?;
    // Validates the whole line iteratively, with its depth bounded, before anything else reads it.
    json::check(line, MAX_EVENT_DEPTH).map_err(LineError::Json)?;
    let kind = json_kind(line);
    if kind != "an object" {
        return Err(LineError::NotAnObject(kind));
    }
    let members = json::members(line).map_err(LineError::Json)?;
    let field = |name: &'static str| -> Result<Option<&str>, LineError> {
        let mut found = members.iter().filter(|(k, _)| k == name).map(|(_, range)| &text[range.clone()]);
        let first = found.next();
        if found.next().is_some() { Err(LineError::Duplicate(name)) } else { Ok(first) }
    };
    let pattern = match (field("pattern")?, field("pattern_text")?) {
        (Some(raw), None) => PatternSource::Raw(raw),
        (None, Some(quoted)) => {
            let kind = json_kind(quoted.as_bytes());
            if kind != "a string" {
                return Err(LineError::PatternTextNotAString(kind));
            }
            let text =
                serde_json::from_str::<String>(quoted).map_err(|e| LineError::PatternTextUnreadable(e.to_string()))?;
            PatternSource::Text(text)
        }
        (None, None) => return Err(LineError::NoPattern),
        (Some(_), Some(_)) => return Err(LineError::BothPatterns),
    };
    let event = field("event")?.ok_or(LineError::NoEvent)?;
    let kind = json_kind(event.as_bytes());
    if kind != "an object" {
        return Err(LineError::EventNotAnObject(kind));
    }
    Ok((pattern, event.as_bytes()))
}

/// What a run answered, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub matched: u64,
    pub missed: u64,
    pub invalid: u64,
    pub errors: u64,
}

/// Answers every line of `input` on `output`. Output is flushed whenever the input has nothing
/// buffered, so a caller that writes one line and waits for its answer gets it at once, while
/// a piped file is still answered in large writes.
pub fn run<R: Read, W: Write>(args: &CheckArgs, input: &mut BufReader<R>, output: &mut W) -> anyhow::Result<Tally> {
    if args.backend == Backend::Aws {
        return super::aws::run(args, input, output);
    }
    let mut tally = Tally::default();
    let mut line = Vec::with_capacity(4096);
    let mut scratch = Scratch::new();
    loop {
        if input.buffer().is_empty() {
            output.flush().context("cannot write to stdout")?;
        }
        line.clear();
        let complete = match read_line(input, &mut line).context("cannot read stdin")? {
            Line::Eof => break,
            Line::Complete => true,
            Line::TooLong => false,
        };
        let answer = if complete {
            answer(trim_line_end(&line), args.explain, &mut scratch)
        } else {
            Answer::Error(LineError::TooLong { limit: MAX_LINE_BYTES })
        };
        match answer {
            Answer::Match => tally.matched += 1,
            Answer::Miss(_) => tally.missed += 1,
            Answer::Invalid(_) => tally.invalid += 1,
            Answer::Error(_) => tally.errors += 1,
        }
        writeln!(output, "{answer}").context("cannot write to stdout")?;
    }
    output.flush().context("cannot write to stdout")?;
    Ok(tally)
}

pub(super) enum Line {
    Eof,
    Complete,
    /// Longer than [`MAX_LINE_BYTES`]; the rest of it was read and dropped.
    TooLong,
}

/// Reads one line, up to and including its `\n`, into `buf`. A last line without `\n` counts;
/// the end of input right after a `\n` is not a line.
pub(super) fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    // Room for the limit plus "\r\n": anything longer than that is too long whatever follows.
    let n = input.by_ref().take(MAX_LINE_BYTES as u64 + 2).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    // `take` stops only at '\n', at the end of input, or past the limit: within it, the line is whole.
    if trim_line_end(buf).len() <= MAX_LINE_BYTES {
        return Ok(Line::Complete);
    }
    if !buf.ends_with(b"\n") {
        skip_rest_of_line(input)?;
    }
    Ok(Line::TooLong)
}

fn skip_rest_of_line<R: BufRead>(input: &mut R) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            input.consume(i + 1);
            return Ok(());
        }
        let n = chunk.len();
        input.consume(n);
    }
}

pub(super) fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], explain: bool) -> Vec<String> {
        let mut out = Vec::new();
        let args = CheckArgs { explain, backend: Backend::Embedded, endpoint_url: None };
        run(&args, &mut BufReader::new(input), &mut out).unwrap();
        String::from_utf8(out).unwrap().lines().map(str::to_owned).collect()
    }

    fn one(line: &str) -> String {
        answer(line.as_bytes(), false, &mut Scratch::new()).to_string()
    }

    #[test]
    fn answers_match_miss_and_invalid() {
        assert_eq!(one(r#"{"pattern":{"a":["x"]},"event":{"a":"x"}}"#), "true");
        assert_eq!(one(r#"{"event":{"a":"y"}, "pattern":{"a":["x"]}}"#), "false");
        assert_eq!(one(r#"{"pattern_text":"{\"a\":[\"x\"]}","event":{"a":"x"}}"#), "true");
        assert!(one(r#"{"pattern":{"a":["x"],"a":["y"]},"event":{}}"#).starts_with("invalid: "));
        assert!(one(r#"{"pattern":[1],"event":{}}"#).starts_with("invalid: "));
    }

    #[test]
    fn the_pattern_is_judged_on_its_own_text() {
        // Padded past 2048 characters with blanks: the limit applies to the text as written.
        let padded = format!(r#"{{"pattern":{{"a":{}["x"]}},"event":{{"a":"x"}}}}"#, " ".repeat(2100));
        assert!(one(&padded).starts_with("invalid: pattern is"), "{}", one(&padded));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases = [
            ("", "error: empty line"),
            ("[1]", "error: line must be a JSON object, got an array"),
            (r#"{"event":{}}"#, "error: line needs a \"pattern\" or a \"pattern_text\" field"),
            (r#"{"pattern":{"a":[1]},"pattern_text":"{}","event":{}}"#, "error: line has both"),
            (r#"{"pattern":{"a":[1]}}"#, "error: line needs an \"event\" field"),
            (r#"{"pattern":{"a":[1]},"event":[]}"#, "error: \"event\" must be a JSON object, got an array"),
            (r#"{"pattern":{"a":[1]},"event":{},"event":{}}"#, "error: line has the field \"event\" twice"),
            (
                r#"{"pattern_text":{"a":[1]},"event":{}}"#,
                "error: \"pattern_text\" must be a JSON string, got an object",
            ),
            (r#"{"pattern_text":"\ud800","event":{}}"#, "error: \"pattern_text\" is not a valid string"),
            (r#"{"pattern":{"a":[1]},"event":{}"#, "error: line is not valid JSON at byte 31: unexpected end of input"),
        ];
        for (line, want) in cases {
            let got = one(line);
            assert!(got.starts_with(want), "{line}: {got}");
        }
        let got = answer(b"{\"pattern\":\xff}", false, &mut Scratch::new()).to_string();
        assert_eq!(got, "error: line is not valid UTF-8 at byte 11");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep =
            format!(r#"{{"pattern":{{"a":[1]}},"event":{}1{}}}"#, r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        assert!(one(&deep).starts_with("error: line is not valid JSON at byte"), "{}", &one(&deep)[..80]);
    }

    #[test]
    fn one_answer_per_line_including_empty_and_unterminated_ones() {
        let input =
            b"{\"pattern\":{\"a\":[1]},\"event\":{\"a\":1}}\r\n\n\xff\n{\"pattern\":{\"a\":[1]},\"event\":{\"a\":2}}";
        let got = check(input, false);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], "true");
        assert_eq!(got[1], "error: empty line");
        assert!(got[2].starts_with("error: line is not valid UTF-8"));
        assert_eq!(got[3], "false");
        assert!(check(b"", false).is_empty());
    }

    #[test]
    fn an_overlong_line_is_answered_and_the_next_line_still_read() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\n{\"pattern\":{\"a\":[1]},\"event\":{\"a\":1}}\n");
        let got = check(&input, false);
        assert_eq!(got, [format!("error: line is longer than {MAX_LINE_BYTES} bytes"), "true".to_owned()]);
        // Exactly at the limit, with a \r\n ending, the line is read whole.
        let mut at_limit = vec![b' '; MAX_LINE_BYTES - 2];
        at_limit.extend_from_slice(b"{}\r\n");
        assert_eq!(check(&at_limit, false), ["error: line needs a \"pattern\" or a \"pattern_text\" field"]);
    }

    #[test]
    fn explain_names_the_field_and_what_the_event_had() {
        let got = check(br#"{"pattern":{"detail":{"state":["paid"]}},"event":{"detail":{"state":"open"}}}"#, true);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("false: detail.state"), "{}", got[0]);
        assert!(got[0].contains("\"open\""), "{}", got[0]);
    }

    #[test]
    fn a_newline_inside_a_key_stays_on_one_answer_line() {
        let got = check(br#"{"pattern":{"a\nb":["x"]},"event":{"a\nb":"y"}}"#, true);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("false: a\\nb"), "{}", got[0]);
    }
}
