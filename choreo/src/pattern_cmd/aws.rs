//! `choreo pattern check --backend aws`: each line answered by EventBridge's own matcher
//! (`TestEventPattern`), the lines read and parsed as the embedded check reads them. Lines are
//! sent several at a time (what the input holds, up to [`IN_FLIGHT`]) and answered in order;
//! a caller that writes one line and waits gets its answer at once.

use std::io::{BufReader, Read, Write};

use anyhow::Context;
use choreo_bus::AwsConfig;
use choreo_bus::aws::{AwsMatcher, Verdict};
use futures_util::future::join_all;

use super::OneLine;
use super::check::{Line, LineError, MAX_LINE_BYTES, PatternSource, Tally, read_line, split, trim_line_end};
use crate::cli::CheckArgs;

/// Lines sent to EventBridge at once, at most.
const IN_FLIGHT: usize = 16;

/// One line's question: the pattern's text and the event's, or why the line cannot be asked.
type Question = Result<(String, String), LineError>;

pub fn run<R: Read, W: Write>(args: &CheckArgs, input: &mut BufReader<R>, output: &mut W) -> anyhow::Result<Tally> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the runtime")?;
    let mut config = AwsConfig::new("");
    if let Some(url) = &args.endpoint_url {
        config = config.with_endpoint_url(url);
    }
    let matcher = runtime.block_on(AwsMatcher::connect(&config)).context("EventBridge")?;
    let mut tally = Tally::default();
    let mut line = Vec::with_capacity(4096);
    let mut eof = false;
    while !eof {
        // What the input holds now, at least one line (waiting for it), up to IN_FLIGHT.
        let mut questions: Vec<Question> = Vec::new();
        while questions.len() < IN_FLIGHT && (questions.is_empty() || !input.buffer().is_empty()) {
            line.clear();
            questions.push(match read_line(input, &mut line).context("cannot read stdin")? {
                Line::Eof => {
                    eof = true;
                    break;
                }
                Line::Complete => question(trim_line_end(&line)),
                Line::TooLong => Err(LineError::TooLong { limit: MAX_LINE_BYTES }),
            });
        }
        let matcher = &matcher;
        let asked = questions.iter().map(|q| async move {
            match q {
                Ok((pattern, event)) => matcher.test(pattern, event).await.map(Ok),
                Err(e) => Ok(Err(e)),
            }
        });
        for verdict in runtime.block_on(join_all(asked)) {
            let answer = match verdict.context("EventBridge could not answer")? {
                Err(e) => {
                    tally.errors += 1;
                    format!("error: {}", OneLine(e))
                }
                Ok(Verdict::Match) => {
                    tally.matched += 1;
                    "true".to_owned()
                }
                Ok(Verdict::Miss) => {
                    tally.missed += 1;
                    "false".to_owned()
                }
                Ok(Verdict::Invalid(why)) => {
                    tally.invalid += 1;
                    format!("invalid: {}", OneLine(why))
                }
                Ok(Verdict::Rejected(why)) => {
                    tally.errors += 1;
                    format!("error: EventBridge: {}", OneLine(why))
                }
            };
            writeln!(output, "{answer}").context("cannot write to stdout")?;
        }
        output.flush().context("cannot write to stdout")?;
    }
    Ok(tally)
}

/// The pattern's text (as written, or `pattern_text` decoded) and the event's text.
fn question(line: &[u8]) -> Question {
    let (pattern, event) = split(line)?;
    let pattern = match pattern {
        PatternSource::Raw(text) => text.to_owned(),
        PatternSource::Text(text) => text,
    };
    // `split` read the line as UTF-8 JSON: the event's bytes are its text.
    Ok((pattern, String::from_utf8_lossy(event).into_owned()))
}
