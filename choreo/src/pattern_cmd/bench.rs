//! `choreo pattern bench`: compile each rule set once, match a file of events several times,
//! report the median rate beside a parsing baseline, and check each rule's match count against
//! the expected one. The table streams set by set; `--json` prints one report at the end.

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use choreo_bus::pattern::bench::{Events, RuleSet, SetReport, load_rules, parse_baseline, run_set};
use serde::Serialize;

use super::shown;
use crate::cli::BenchArgs;
use crate::{Status, UsageError};

/// Where progress notes go: stderr when a person is watching it, nowhere otherwise.
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn stderr_if_terminal() -> Progress {
        Progress { enabled: std::io::stderr().is_terminal() }
    }

    pub fn hidden() -> Progress {
        Progress { enabled: false }
    }

    fn note(&self, what: &str) {
        if self.enabled {
            // Progress is a courtesy: a failing stderr must not stop the measurement.
            let _ = writeln!(std::io::stderr().lock(), "choreo: {what}…");
        }
    }
}

pub fn run(args: &BenchArgs, output: &mut impl Write, progress: Progress) -> anyhow::Result<Status> {
    let rules_name = shown(&args.rules);
    let text = std::fs::read_to_string(&args.rules).with_context(|| format!("cannot read rules file {rules_name}"))?;
    let sets = load_rules(&text).with_context(|| format!("cannot load rules from {rules_name}"))?;
    let sets = select(sets, &args.sets, &rules_name)?;

    let events_name = shown(&args.events);
    let data = std::fs::read(&args.events).with_context(|| format!("cannot read events file {events_name}"))?;
    let events = Events::from_bytes(data);
    if events.is_empty() {
        bail!("no events in {events_name}");
    }
    let passes = args.passes as usize;
    let mut table = (!args.json).then(|| Table::new(&sets, &events));
    let write_err = "cannot write to stdout";
    if let Some(t) = &table {
        t.header(output, &events_name, &events, args.passes).context(write_err)?;
    }

    let baseline = (!args.no_baseline).then(|| {
        progress.note("measuring the baseline");
        parse_baseline(&events, passes)
    });
    if let (Some(t), Some(rate)) = (&table, baseline) {
        t.baseline(output, rate).context(write_err)?;
    }

    let mut reports = Vec::with_capacity(sets.len());
    for set in &sets {
        progress.note(&format!("measuring {} ({} rules, {passes} passes)", set.name, set.rules.len()));
        let report =
            run_set(set, &events, passes).with_context(|| format!("cannot match events from {events_name}"))?;
        if let Some(t) = &mut table {
            t.set(output, &report, baseline).context(write_err)?;
        }
        reports.push(report);
    }

    let mismatches: Vec<String> = reports.iter().flat_map(SetReport::mismatches).collect();
    if table.is_some() {
        summary(output, &reports, &mismatches).context(write_err)?;
    } else {
        let report = JsonReport::new(&events_name, &events, args.passes, baseline, &reports, &mismatches);
        serde_json::to_writer_pretty(&mut *output, &report).context(write_err)?;
        writeln!(output).context(write_err)?;
    }
    Ok(if mismatches.is_empty() { Status::Success } else { Status::CheckFailed })
}

/// The sets named with `--set`, in the order given (all of them when none is named).
fn select(sets: Vec<RuleSet>, names: &[String], rules_name: &str) -> anyhow::Result<Vec<RuleSet>> {
    if names.is_empty() {
        return Ok(sets);
    }
    let mut chosen: Vec<RuleSet> = Vec::with_capacity(names.len());
    for name in names {
        if chosen.iter().any(|s| &s.name == name) {
            continue;
        }
        let Some(set) = sets.iter().find(|s| &s.name == name) else {
            let available: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
            return Err(UsageError(format!(
                "no rule set named {name:?} in {rules_name}; available: {}",
                available.join(", ")
            ))
            .into());
        };
        chosen.push(set.clone());
    }
    Ok(chosen)
}

/// The human report: one block per set, columns aligned across every block.
struct Table {
    id_width: usize,
    count_width: usize,
}

impl Table {
    fn new(sets: &[RuleSet], events: &Events) -> Table {
        let id_width = sets.iter().flat_map(|s| &s.rules).map(|r| r.id.chars().count()).max().unwrap_or(0).max(4);
        // No count exceeds the number of events; expected counts from the file might.
        let widest = sets.iter().flat_map(|s| &s.rules).filter_map(|r| r.expected).max().unwrap_or(0);
        let count_width = digits(events.len() as u64).max(digits(widest)).max("expected".len());
        Table { id_width, count_width }
    }

    fn header(&self, out: &mut impl Write, name: &str, events: &Events, passes: u32) -> std::io::Result<()> {
        let runs = if passes == 1 { "1 pass".to_owned() } else { format!("{passes} passes, median rate") };
        writeln!(out, "events: {} from {name} ({} bytes); {runs}", events.len(), events.bytes())?;
        out.flush()
    }

    fn baseline(&self, out: &mut impl Write, rate: f64) -> std::io::Result<()> {
        writeln!(out, "baseline: {} events/s (serde_json::Value per event)", per_sec(rate))?;
        out.flush()
    }

    fn set(&mut self, out: &mut impl Write, report: &SetReport, baseline: Option<f64>) -> std::io::Result<()> {
        let (iw, cw) = (self.id_width, self.count_width);
        let versus = baseline.map(|b| format!(", {} baseline", ratio(report.events_per_sec, b))).unwrap_or_default();
        writeln!(out)?;
        writeln!(out, "{}: {} events/s{versus}", report.name, per_sec(report.events_per_sec))?;
        writeln!(out, "  {:<iw$}  {:>cw$}  {:>cw$}", "rule", "matches", "expected")?;
        for (id, got, want) in &report.counts {
            let (want, verdict) = match want {
                Some(w) if w == got => (w.to_string(), "  OK"),
                Some(w) => (w.to_string(), "  MISMATCH"),
                None => ("-".to_owned(), ""),
            };
            writeln!(out, "  {id:<iw$}  {got:>cw$}  {want:>cw$}{verdict}")?;
        }
        out.flush()
    }
}

fn summary(out: &mut impl Write, reports: &[SetReport], mismatches: &[String]) -> std::io::Result<()> {
    let checked = reports.iter().flat_map(|r| &r.counts).filter(|(_, _, want)| want.is_some()).count();
    writeln!(out)?;
    if mismatches.is_empty() {
        writeln!(out, "{checked} expected counts checked, all as expected")?;
    } else {
        writeln!(out, "{} of {checked} expected counts differ:", mismatches.len())?;
        for m in mismatches {
            writeln!(out, "  {m}")?;
        }
    }
    out.flush()
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// A rate with three significant figures: `2.84M`, `458K`, `97.1`.
fn per_sec(rate: f64) -> String {
    if !rate.is_finite() {
        return "n/a (too fast to time)".to_owned();
    }
    let (value, unit) = match rate {
        r if r >= 1e9 => (r / 1e9, "G"),
        r if r >= 1e6 => (r / 1e6, "M"),
        r if r >= 1e3 => (r / 1e3, "K"),
        r => (r, ""),
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}{unit}")
}

fn ratio(rate: f64, baseline: f64) -> String {
    let r = rate / baseline;
    if r.is_finite() { format!("{r:.2}x") } else { "n/a x".to_owned() }
}

/// The `--json` report. Rates that could not be timed (a tiny file) are `null`.
#[derive(Serialize)]
struct JsonReport<'a> {
    events_file: &'a str,
    events: usize,
    bytes: usize,
    passes: u32,
    baseline_events_per_sec: Option<f64>,
    sets: Vec<JsonSet<'a>>,
    mismatches: &'a [String],
}

#[derive(Serialize)]
struct JsonSet<'a> {
    name: &'a str,
    events_per_sec: Option<f64>,
    vs_baseline: Option<f64>,
    rules: Vec<JsonRule<'a>>,
}

#[derive(Serialize)]
struct JsonRule<'a> {
    id: &'a str,
    matches: u64,
    expected: Option<u64>,
    ok: Option<bool>,
}

impl<'a> JsonReport<'a> {
    fn new(
        events_file: &'a str,
        events: &Events,
        passes: u32,
        baseline: Option<f64>,
        reports: &'a [SetReport],
        mismatches: &'a [String],
    ) -> Self {
        let finite = |r: f64| r.is_finite().then_some(r);
        let sets = reports
            .iter()
            .map(|r| JsonSet {
                name: &r.name,
                events_per_sec: finite(r.events_per_sec),
                vs_baseline: baseline.and_then(|b| finite(r.events_per_sec / b)),
                rules: r
                    .counts
                    .iter()
                    .map(|(id, got, want)| JsonRule { id, matches: *got, expected: *want, ok: want.map(|w| w == *got) })
                    .collect(),
            })
            .collect();
        JsonReport {
            events_file,
            events: events.len(),
            bytes: events.bytes(),
            passes,
            baseline_events_per_sec: baseline.and_then(finite),
            sets,
            mismatches,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_at_a_glance() {
        assert_eq!(per_sec(2_843_112.0), "2.84M");
        assert_eq!(per_sec(458_123.0), "458K");
        assert_eq!(per_sec(43_210.0), "43.2K");
        assert_eq!(per_sec(97.06), "97.1");
        assert_eq!(per_sec(f64::INFINITY), "n/a (too fast to time)");
        assert_eq!(ratio(3.0, 2.0), "1.50x");
        assert_eq!(digits(0), 1);
        assert_eq!(digits(213_068), 6);
    }

    #[test]
    fn unknown_set_lists_the_available_ones() {
        let sets = load_rules(r#"{"rule_sets":[{"name":"A","rules":[]},{"name":"B","rules":[]}]}"#).unwrap();
        let err = select(sets.clone(), &["C".into()], "r.json").unwrap_err();
        assert!(err.is::<UsageError>());
        assert_eq!(err.to_string(), r#"no rule set named "C" in r.json; available: A, B"#);
        let picked = select(sets, &["B".into(), "A".into(), "B".into()], "r.json").unwrap();
        assert_eq!(picked.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["B", "A"]);
    }

    #[test]
    fn table_marks_mismatches_and_summary_counts_them() {
        let sets = load_rules(
            r#"{"rule_sets":[{"name":"S","rules":[{"id":"r1","pattern":"{\"a\":[1]}","expected_matches":2}]}]}"#,
        )
        .unwrap();
        let events = Events::from_bytes(b"{\"a\":1}\n\n{\"a\":2}\n".to_vec());
        let report = run_set(&sets[0], &events, 1).unwrap();
        let mut out = Vec::new();
        let mut table = Table::new(&sets, &events);
        table.set(&mut out, &report, None).unwrap();
        summary(&mut out, std::slice::from_ref(&report), &report.mismatches()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("  r1           1         2  MISMATCH\n"), "{out}");
        assert!(out.contains("1 of 1 expected counts differ:\n  r1: counted 1, expected 2\n"), "{out}");
    }
}
