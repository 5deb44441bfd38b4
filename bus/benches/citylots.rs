//! The matcher benchmark: every rule set of `../shared/bench/citylots_rules.json` over the
//! generated city-lots events, counts checked, events/s beside the `serde_json::Value` parse
//! baseline measured in the same run; then rule-count scaling (5 vs 10,000 exact rules) and
//! array-length scaling (500 to 3,000 elements). Prints figures; exits non-zero only when a
//! count is wrong.
//!
//! `cargo bench -p choreo-bus --bench citylots`. Env: `CHOREO_SHARED_DIR` (default
//! `../shared`), `CHOREO_BENCH_EVENTS` (default `target/bench-data/citylots.jsonl`, generated
//! with the shared script when missing), `CHOREO_BENCH_PASSES` (default 7).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use choreo_bus::pattern::bench::{Events, RuleSet, load_rules, measure, parse_baseline, run_set};
use choreo_bus::pattern::{MachineBuilder, Pattern, Scratch};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shared() -> PathBuf {
    std::env::var_os("CHOREO_SHARED_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared"))
}

fn events_file() -> PathBuf {
    if let Some(p) = std::env::var_os("CHOREO_BENCH_EVENTS") {
        return PathBuf::from(p);
    }
    let path = workspace().join("target/bench-data/citylots.jsonl");
    if !path.is_file() {
        generate(&path);
    }
    path
}

fn generate(path: &Path) {
    let script = shared().join("bench/gen_citylots.py");
    eprintln!("generating {} with {}", path.display(), script.display());
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create bench-data dir");
    let tmp = path.with_extension("jsonl.tmp");
    let status = Command::new("python3")
        .arg(&script)
        .args(["--seed", "1", "--n", "213068", "--out"])
        .arg(&tmp)
        .status()
        .expect("run python3");
    assert!(status.success(), "the generator failed");
    std::fs::rename(&tmp, path).expect("move generated data in place");
}

struct Target {
    set: &'static str,
    ratio: f64,
}

const TARGETS: &[Target] = &[
    Target { set: "EXACT", ratio: 7.0 },
    Target { set: "PREFIX", ratio: 7.0 },
    Target { set: "WILDCARD", ratio: 7.0 },
    Target { set: "SUFFIX", ratio: 5.0 },
    Target { set: "EQUALS_IGNORE_CASE", ratio: 5.0 },
    Target { set: "ANYTHING_BUT", ratio: 2.0 },
    Target { set: "COMBO_NO_NUMERIC", ratio: 2.0 },
    Target { set: "NUMERIC", ratio: 0.15 },
];

fn main() -> ExitCode {
    let passes: usize = std::env::var("CHOREO_BENCH_PASSES").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let rules_path = shared().join("bench/citylots_rules.json");
    let rules_text = std::fs::read_to_string(&rules_path)
        .unwrap_or_else(|e| panic!("read {}: {e} (set CHOREO_SHARED_DIR)", rules_path.display()));
    let sets = load_rules(&rules_text).expect("the shared rules load");
    let path = events_file();
    let events = Events::from_bytes(std::fs::read(&path).expect("read events"));
    println!(
        "citylots: {} events, {:.1} MB, mean {:.0} bytes; median of {passes} passes, single thread",
        events.len(),
        events.bytes() as f64 / 1e6,
        events.bytes() as f64 / events.len() as f64
    );

    let baseline = parse_baseline(&events, passes);
    println!("\n{:<22} {:>12} {:>9}   counts", "rule set", "events/s", "× parse");
    println!("{:<22} {:>12.0} {:>9.2}", "baseline: parse Value", baseline, 1.0);
    let mut bad = Vec::new();
    let mut rates = Vec::new();
    for set in &sets {
        let report = run_set(set, &events, passes).expect("events match");
        let ratio = report.events_per_sec / baseline;
        let counts: Vec<String> = report.counts.iter().map(|(_, got, _)| got.to_string()).collect();
        let mism = report.mismatches();
        println!(
            "{:<22} {:>12.0} {:>9.2}   {} {}",
            report.name,
            report.events_per_sec,
            ratio,
            counts.join(","),
            if mism.is_empty() { "ok" } else { "MISMATCH" }
        );
        bad.extend(mism.into_iter().map(|m| format!("{}: {m}", report.name)));
        rates.push((report.name.clone(), ratio));
    }

    println!("\ntargets (ratio to the parse baseline of this run):");
    for t in TARGETS {
        if let Some((_, r)) = rates.iter().find(|(n, _)| n == t.set) {
            let verdict = if *r >= t.ratio { "meets" } else { "MISSES" };
            println!("  {:<22} {:>6.2}× (target ≥ {:>4}×)  {verdict}", t.set, r, t.ratio);
        }
    }

    rule_scaling(&sets, &events, passes);
    array_scaling();
    adversarial_consistency();

    if bad.is_empty() {
        println!("\nall counts match the expected ones");
        ExitCode::SUCCESS
    } else {
        println!("\ncount mismatches:\n  {}", bad.join("\n  "));
        ExitCode::FAILURE
    }
}

/// 10,000 exact rules on one field against the 5 of the EXACT set: the machine indexes values,
/// so the rate should barely move.
fn rule_scaling(sets: &[RuleSet], events: &Events, passes: usize) {
    let exact = sets.iter().find(|s| s.name == "EXACT").expect("EXACT set");
    let five = run_set(exact, events, passes).expect("match").events_per_sec;
    let mut values: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in events.iter() {
        let v: serde_json::Value = serde_json::from_slice(e).expect("event JSON");
        if let Some(s) = v["properties"]["MAPBLKLOT"].as_str()
            && seen.insert(s.to_owned())
        {
            values.push(s.to_owned());
            if values.len() == 10_000 {
                break;
            }
        }
    }
    let mut b = MachineBuilder::new();
    for r in &exact.rules {
        b.add_rule(r.id.clone(), r.pattern.clone());
    }
    for (i, v) in values.iter().enumerate().take(10_000 - exact.rules.len()) {
        let p = Pattern::parse(&format!("{{\"properties\":{{\"MAPBLKLOT\":[\"{v}\"]}}}}")).expect("pattern");
        b.add_rule(format!("X{i}"), p);
    }
    let machine = b.build();
    let t = Instant::now();
    let (counts, rates) = measure(&machine, events, passes).expect("match");
    let _ = t;
    let mut rates = rates;
    rates.sort_by(f64::total_cmp);
    let many = rates[rates.len() / 2];
    let first_five: Vec<u64> = counts[..exact.rules.len()].to_vec();
    let want: Vec<u64> = exact.rules.iter().filter_map(|r| r.expected).collect();
    println!(
        "\nrule scaling: 5 exact rules {five:.0} ev/s, {} exact rules {many:.0} ev/s: {:.2}× slower (target within 2×) {}; EXACT counts {}",
        machine.len(),
        five / many,
        if five / many <= 2.0 { "meets" } else { "MISSES" },
        if first_five == want { "unchanged" } else { "CHANGED" }
    );
}

/// Events with one big array plus a scalar, matched by two-field rules (exists, prefix,
/// exact; and an array of objects that needs element consistency): time per element must stay
/// flat from 500 to 3,000 elements.
fn array_scaling() {
    println!("\narray scaling (ns per array element; linear means flat):");
    let rules = [
        ("exists", r#"{"arr":[{"exists":true}],"s":["x"]}"#),
        ("prefix", r#"{"arr":[{"prefix":"v29"}],"s":["x"]}"#),
        ("exact", r#"{"arr":["v2999"],"s":["x"]}"#),
        ("objects", r#"{"objs":{"a":["v1"],"b":["w1"]},"s":["x"]}"#),
    ];
    let sizes = [500usize, 1000, 2000, 3000];
    print!("  {:<8}", "rule");
    for n in sizes {
        print!(" {:>8}", n);
    }
    println!("  growth 500→3000");
    for (name, text) in rules {
        let machine = {
            let mut b = MachineBuilder::new();
            b.add_rule(name, Pattern::parse(text).expect("pattern"));
            b.build()
        };
        let mut scratch = Scratch::new();
        let mut per = Vec::new();
        for n in sizes {
            let event = if name == "objects" {
                // Every element has a=v1 or b=w1 but never both: all hits, no consistent pair.
                let items: Vec<String> = (0..n)
                    .map(|i| {
                        if i % 2 == 0 {
                            r#"{"a":"v1","b":"w0"}"#.to_owned()
                        } else {
                            r#"{"a":"v0","b":"w1"}"#.to_owned()
                        }
                    })
                    .collect();
                format!(r#"{{"objs":[{}],"s":"x"}}"#, items.join(","))
            } else {
                let items: Vec<String> = (0..n).map(|i| format!("\"v{i}\"")).collect();
                format!(r#"{{"arr":[{}],"s":"x"}}"#, items.join(","))
            };
            let reps = 200;
            let t = Instant::now();
            let mut matched = 0;
            for _ in 0..reps {
                matched += usize::from(machine.is_match(event.as_bytes(), &mut scratch).expect("event"));
            }
            let ns = t.elapsed().as_nanos() as f64 / reps as f64 / n as f64;
            std::hint::black_box(matched);
            per.push(ns);
        }
        print!("  {:<8}", name);
        for ns in &per {
            print!(" {:>8.1}", ns);
        }
        let growth = per[per.len() - 1] / per[0];
        println!("  {:.2}× {}", growth, if growth <= 2.0 { "linear" } else { "SUPERLINEAR" });
    }
}

/// Three arrays of 70 objects, each object holding a different 4 of the 8 fields the pattern
/// wants under its array: no element holds all 8, so the event does not match, and a search
/// over element combinations would take 70^3 steps or worse.
fn adversarial_consistency() {
    let fields = |p: &str| (0..8).map(|i| format!(r#""f{i}":[{{"exists":true}}]"#)).collect::<Vec<_>>().join(",") + p;
    let pattern = format!(r#"{{"x":{{"y0":{{{}}},"y1":{{{}}},"y2":{{{}}}}}}}"#, fields(""), fields(""), fields(""));
    let mut subsets = Vec::new();
    for mask in 0u32..256 {
        if mask.count_ones() == 4 {
            let obj: Vec<String> = (0..8).filter(|i| mask & (1 << i) != 0).map(|i| format!(r#""f{i}":1"#)).collect();
            subsets.push(format!("{{{}}}", obj.join(",")));
        }
    }
    let arr = format!("[{}]", subsets.join(","));
    let event = format!(r#"{{"x":{{"y0":{arr},"y1":{arr},"y2":{arr}}}}}"#);
    let mut b = MachineBuilder::new();
    b.add_rule("adversarial", Pattern::parse(&pattern).expect("pattern"));
    let machine = b.build();
    let mut scratch = Scratch::new();
    let reps = 200;
    let t = Instant::now();
    let mut matched = 0;
    for _ in 0..reps {
        matched += usize::from(machine.is_match(event.as_bytes(), &mut scratch).expect("event"));
    }
    println!(
        "\nadversarial consistency: 3 arrays × {} objects, 24 fields, {:.1} µs per event ({} bytes), matched {}",
        subsets.len(),
        t.elapsed().as_secs_f64() * 1e6 / reps as f64,
        event.len(),
        matched > 0
    );
}
