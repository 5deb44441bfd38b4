//! Whether a data schema may stand for a published version of the same `dataschema` id: every
//! event valid under the published schema must stay valid under the new one (the archive
//! replays old events, and consumers check data against the schema). Read by hand for the subset
//! of JSON Schema our schemas use; anything outside it is "cannot judge", never an error.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::domain::accepts;

/// Keywords that never change which values are valid.
const ANNOTATIONS: &[&str] =
    &["$schema", "$id", "$comment", "$defs", "title", "description", "examples", "default", "deprecated"];
/// The assertions this check reads.
const ASSERTIONS: &[&str] = &[
    "type",
    "const",
    "enum",
    "oneOf",
    "anyOf",
    "$ref",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

/// How a candidate schema differs from the published one.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Diff {
    /// What the published version accepts and the candidate refuses: a breaking change.
    pub breaking: Vec<String>,
    /// What the candidate accepts and the published version refuses: consumers still checking
    /// against the published version would refuse such events.
    pub widening: Vec<String>,
    /// What this check cannot read or decide.
    pub unjudged: Vec<String>,
}

/// Compares `candidate` against `published`.
pub(crate) fn diff(published: &Value, candidate: &Value) -> Diff {
    let read = |root: &Value| Reader { root }.node(root, "", 0);
    let (old, new) = match (read(published), read(candidate)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(why), _) => return Diff { unjudged: vec![format!("the published schema: {why}")], ..Diff::default() },
        (_, Err(why)) => return Diff { unjudged: vec![why], ..Diff::default() },
    };
    let (mut back, mut fwd) = (Vec::new(), Vec::new());
    narrowed(&old, &new, "", &mut back);
    narrowed(&new, &old, "", &mut fwd);
    let mut diff = Diff::default();
    for change in &back {
        match &change.what {
            What::Unjudged(why) => diff.unjudged.push(format!("{}: {why}", shown(&change.path))),
            _ => diff.breaking.push(change.render(true)),
        }
    }
    for change in &fwd {
        match &change.what {
            What::Unjudged(why) => {
                let line = format!("{}: {why}", shown(&change.path));
                if !diff.unjudged.contains(&line) {
                    diff.unjudged.push(line);
                }
            }
            _ => diff.widening.push(change.render(false)),
        }
    }
    diff
}

/// A schema node as the union of what it accepts.
#[derive(Debug, Clone)]
struct Node {
    branches: Vec<Branch>,
    /// The node as a schema of its own (with the root's `$defs`), to check values against.
    raw: Value,
}

#[derive(Debug, Clone)]
enum Branch {
    Any,
    Value(Value),
    String { min: u64, max: Option<u64>, pattern: Option<String>, format: Option<String> },
    Number { integer: bool, lo: Bound, hi: Bound, format: Option<String> },
    Array { items: Box<Node>, min: u64, max: Option<u64>, unique: bool },
    Object { props: BTreeMap<String, Node>, required: BTreeSet<String>, closed: bool },
}

/// A numeric bound: the value and whether it is exclusive.
type Bound = Option<(f64, bool)>;

struct Reader<'a> {
    root: &'a Value,
}

impl Reader<'_> {
    fn node(&self, schema: &Value, at: &str, depth: usize) -> Result<Node, String> {
        let mut raw = schema.clone();
        if let (Value::Object(map), Some(defs)) = (&mut raw, self.root.get("$defs")) {
            map.insert("$defs".into(), defs.clone());
        }
        Ok(Node { branches: self.branches(schema, at, depth)?, raw })
    }

    fn branches(&self, schema: &Value, at: &str, depth: usize) -> Result<Vec<Branch>, String> {
        let obj = match schema {
            Value::Bool(true) => return Ok(vec![Branch::Any]),
            Value::Bool(false) => return Ok(Vec::new()),
            Value::Object(obj) => obj,
            _ => return Err(format!("{}: not a schema", shown(at))),
        };
        if depth > 32 {
            return Err(format!("{}: nested too deep (a recursive schema?)", shown(at)));
        }
        if let Some(keyword) =
            obj.keys().find(|k| !ANNOTATIONS.contains(&k.as_str()) && !ASSERTIONS.contains(&k.as_str()))
        {
            return Err(format!("{}: `{keyword}` is outside what this check reads", shown(at)));
        }
        let assertions: Vec<&str> =
            obj.keys().map(String::as_str).filter(|k| ASSERTIONS.contains(k) && *k != "type").collect();
        let alone = |keyword: &str| -> Result<(), String> {
            match assertions.iter().find(|k| **k != keyword) {
                Some(other) => Err(format!("{}: `{keyword}` beside `{other}`", shown(at))),
                None => Ok(()),
            }
        };
        if let Some(reference) = obj.get("$ref") {
            alone("$ref")?;
            let target = reference.as_str().and_then(|r| r.strip_prefix('#')).and_then(|p| self.root.pointer(p));
            let target = target.ok_or_else(|| format!("{}: cannot resolve `$ref` {reference}", shown(at)))?;
            return self.branches(target, at, depth + 1);
        }
        if let Some(value) = obj.get("const") {
            alone("const")?;
            return Ok(vec![Branch::Value(value.clone())]);
        }
        if let Some(values) = obj.get("enum") {
            alone("enum")?;
            let values = values.as_array().ok_or_else(|| format!("{}: `enum` is not an array", shown(at)))?;
            return Ok(values.iter().cloned().map(Branch::Value).collect());
        }
        for keyword in ["anyOf", "oneOf"] {
            let Some(alternatives) = obj.get(keyword) else { continue };
            alone(keyword)?;
            let alternatives = alternatives.as_array().ok_or_else(|| format!("{}: `{keyword}`", shown(at)))?;
            let mut branches = Vec::new();
            for alternative in alternatives {
                branches.extend(self.branches(alternative, at, depth + 1)?);
            }
            // `oneOf` means "exactly one": the same as `anyOf` only when alternatives cannot overlap.
            if keyword == "oneOf" && !branches.iter().all(|b| matches!(b, Branch::Value(_))) {
                return Err(format!("{}: `oneOf` of alternatives that are not constants", shown(at)));
            }
            return Ok(branches);
        }
        let types: Vec<&str> = match obj.get("type") {
            None if assertions.is_empty() => return Ok(vec![Branch::Any]),
            None => return Err(format!("{}: `{}` without a `type`", shown(at), assertions[0])),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            Some(other) => return Err(format!("{}: `type` {other}", shown(at))),
        };
        types.into_iter().map(|t| self.typed(obj, t, at, depth)).collect::<Result<Vec<_>, _>>().map(|b| b.concat())
    }

    fn typed(&self, obj: &Map<String, Value>, kind: &str, at: &str, depth: usize) -> Result<Vec<Branch>, String> {
        let uint = |key: &str| obj.get(key).and_then(Value::as_u64);
        let float = |key: &str| obj.get(key).and_then(Value::as_f64);
        let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
        let bound = |inclusive: &str, exclusive: &str| match (float(inclusive), float(exclusive)) {
            (Some(i), Some(e)) if e >= i => Some((e, true)),
            (Some(i), _) => Some((i, false)),
            (None, Some(e)) => Some((e, true)),
            (None, None) => None,
        };
        Ok(vec![match kind {
            "null" => Branch::Value(Value::Null),
            "boolean" => return Ok(vec![Branch::Value(true.into()), Branch::Value(false.into())]),
            "string" => Branch::String {
                min: uint("minLength").unwrap_or(0),
                max: uint("maxLength"),
                pattern: text("pattern"),
                format: text("format"),
            },
            "integer" | "number" => {
                // The upper bound is the smaller of the two, as the lower is the larger.
                let hi = match (float("maximum"), float("exclusiveMaximum")) {
                    (Some(i), Some(e)) if e <= i => Some((e, true)),
                    _ => bound("maximum", "exclusiveMaximum"),
                };
                Branch::Number {
                    integer: kind == "integer",
                    lo: bound("minimum", "exclusiveMinimum"),
                    hi,
                    format: text("format"),
                }
            }
            "array" => {
                let items = self.node(obj.get("items").unwrap_or(&Value::Bool(true)), &format!("{at}[]"), depth + 1)?;
                let unique = obj.get("uniqueItems") == Some(&Value::Bool(true));
                Branch::Array {
                    items: Box::new(items),
                    min: uint("minItems").unwrap_or(0),
                    max: uint("maxItems"),
                    unique,
                }
            }
            "object" => {
                let closed = match obj.get("additionalProperties") {
                    None | Some(Value::Bool(true)) => false,
                    Some(Value::Bool(false)) => true,
                    Some(_) => return Err(format!("{}: `additionalProperties` with a schema", shown(at))),
                };
                let mut props = BTreeMap::new();
                for (key, schema) in obj.get("properties").and_then(Value::as_object).into_iter().flatten() {
                    props.insert(key.clone(), self.node(schema, &join(at, key), depth + 1)?);
                }
                let required = obj.get("required").and_then(Value::as_array).into_iter().flatten();
                let required = required.filter_map(Value::as_str).map(str::to_owned).collect();
                Branch::Object { props, required, closed }
            }
            other => return Err(format!("{}: type `{other}`", shown(at))),
        }])
    }
}

/// One way `a` accepts something `b` does not, at `path`.
#[derive(Debug)]
struct Change {
    path: String,
    what: What,
}

#[derive(Debug)]
enum What {
    Value(Value),
    Type(&'static str),
    Property(String),
    Required(String),
    Closed,
    /// A property an open object now gives a schema (it accepted anything there).
    Constrained(String),
    /// A keyword's value in `a`, then in `b`.
    Constraint {
        keyword: &'static str,
        a: String,
        b: String,
    },
    Unjudged(String),
}

impl Change {
    /// `backward`: `a` is the published schema, `b` the candidate; otherwise the other way.
    fn render(&self, backward: bool) -> String {
        let at = shown(&self.path);
        match (&self.what, backward) {
            (What::Value(v), true) => format!("{at}: {v} is no longer allowed"),
            (What::Value(v), false) => format!("{at}: {v} is new"),
            (What::Type(t), true) => format!("{at}: {t} no longer allowed"),
            (What::Type(t), false) => format!("{at}: {t} now allowed"),
            (What::Property(p), true) => format!("{} removed", shown(&join(&self.path, p))),
            (What::Property(p), false) => format!("{} added", shown(&join(&self.path, p))),
            (What::Required(p), true) => format!("{} newly required", shown(&join(&self.path, p))),
            (What::Required(p), false) => format!("{} no longer required", shown(&join(&self.path, p))),
            (What::Closed, true) => format!("{at}: additional properties no longer allowed"),
            (What::Closed, false) => format!("{at}: additional properties now allowed"),
            (What::Constrained(p), true) => {
                format!("{} now has a schema where anything was allowed", shown(&join(&self.path, p)))
            }
            (What::Constrained(p), false) => format!("{} no longer has a schema", shown(&join(&self.path, p))),
            (What::Constraint { keyword, a, b }, true) => format!("{at}: `{keyword}` {a} → {b}"),
            (What::Constraint { keyword, a, b }, false) => format!("{at}: `{keyword}` {b} → {a}"),
            (What::Unjudged(why), _) => format!("{at}: {why}"),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn shown(path: &str) -> String {
    if path.is_empty() { "the data".to_owned() } else { format!("`{path}`") }
}

/// What `a` accepts and `b` refuses, branch by branch.
fn narrowed(a: &Node, b: &Node, path: &str, out: &mut Vec<Change>) {
    if b.branches.iter().any(|x| matches!(x, Branch::Any)) {
        return;
    }
    for branch in &a.branches {
        if let Branch::Value(v) = branch {
            if !accepts(&b.raw, v) {
                out.push(Change { path: path.to_owned(), what: What::Value(v.clone()) });
            }
            continue;
        }
        // Of `b`'s branches of the same kind, one that covers this one settles it; else the
        // first one's differences are the story.
        let mut first = None;
        let mut covered = false;
        for other in b.branches.iter().filter(|o| same_kind(branch, o)) {
            let mut changes = Vec::new();
            narrowed_branch(branch, other, path, &mut changes);
            if changes.is_empty() {
                covered = true;
                break;
            }
            first.get_or_insert(changes);
        }
        match (covered, first) {
            (true, _) => {}
            (false, Some(changes)) => out.extend(changes),
            (false, None) => out.push(Change { path: path.to_owned(), what: What::Type(kind_name(branch)) }),
        }
    }
}

fn same_kind(a: &Branch, b: &Branch) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn kind_name(branch: &Branch) -> &'static str {
    match branch {
        Branch::Any => "any value",
        Branch::Value(_) => "a constant",
        Branch::String { .. } => "strings",
        Branch::Number { integer: true, .. } => "integers",
        Branch::Number { .. } => "numbers",
        Branch::Array { .. } => "arrays",
        Branch::Object { .. } => "objects",
    }
}

fn narrowed_branch(a: &Branch, b: &Branch, path: &str, out: &mut Vec<Change>) {
    let constraint = |out: &mut Vec<Change>, keyword, a: String, b: String| {
        out.push(Change { path: path.to_owned(), what: What::Constraint { keyword, a, b } });
    };
    match (a, b) {
        (
            Branch::String { min: a_min, max: a_max, pattern: a_pat, format: a_fmt },
            Branch::String { min: b_min, max: b_max, pattern: b_pat, format: b_fmt },
        ) => {
            if b_min > a_min {
                constraint(out, "minLength", a_min.to_string(), b_min.to_string());
            }
            if tighter_max(*a_max, *b_max) {
                constraint(out, "maxLength", shown_opt(a_max), shown_opt(b_max));
            }
            text_change(out, path, "pattern", a_pat, b_pat);
            text_change(out, path, "format", a_fmt, b_fmt);
        }
        (
            Branch::Number { integer: a_int, lo: a_lo, hi: a_hi, format: a_fmt },
            Branch::Number { integer: b_int, lo: b_lo, hi: b_hi, format: b_fmt },
        ) => {
            if !a_int && *b_int {
                out.push(Change { path: path.to_owned(), what: What::Type("numbers that are not integers") });
            }
            if tighter(*a_lo, *b_lo, |x, y| y > x) {
                constraint(out, "minimum", shown_bound(*a_lo, ">"), shown_bound(*b_lo, ">"));
            }
            if tighter(*a_hi, *b_hi, |x, y| y < x) {
                constraint(out, "maximum", shown_bound(*a_hi, "<"), shown_bound(*b_hi, "<"));
            }
            text_change(out, path, "format", a_fmt, b_fmt);
        }
        (
            Branch::Array { items: a_items, min: a_min, max: a_max, unique: a_unique },
            Branch::Array { items: b_items, min: b_min, max: b_max, unique: b_unique },
        ) => {
            narrowed(a_items, b_items, &format!("{path}[]"), out);
            if b_min > a_min {
                constraint(out, "minItems", a_min.to_string(), b_min.to_string());
            }
            if tighter_max(*a_max, *b_max) {
                constraint(out, "maxItems", shown_opt(a_max), shown_opt(b_max));
            }
            if !a_unique && *b_unique {
                constraint(out, "uniqueItems", "false".into(), "true".into());
            }
        }
        (
            Branch::Object { props: a_props, required: a_req, closed: a_closed },
            Branch::Object { props: b_props, required: b_req, closed: b_closed },
        ) => {
            for (key, a_node) in a_props {
                match b_props.get(key) {
                    Some(b_node) => narrowed(a_node, b_node, &join(path, key), out),
                    None if *b_closed => out.push(Change { path: path.to_owned(), what: What::Property(key.clone()) }),
                    None => {}
                }
            }
            for key in b_req.difference(a_req) {
                out.push(Change { path: path.to_owned(), what: What::Required(key.clone()) });
            }
            if !a_closed {
                if *b_closed {
                    out.push(Change { path: path.to_owned(), what: What::Closed });
                }
                for (key, b_node) in b_props.iter().filter(|(k, _)| !a_props.contains_key(*k)) {
                    if !b_node.branches.iter().any(|x| matches!(x, Branch::Any)) {
                        out.push(Change { path: path.to_owned(), what: What::Constrained(key.clone()) });
                    }
                }
            }
        }
        (Branch::Any, _) => out.push(Change { path: path.to_owned(), what: What::Type("any value") }),
        _ => out.push(Change { path: path.to_owned(), what: What::Type(kind_name(a)) }),
    }
}

/// A `pattern` added is a narrowing; a `format` may be an annotation only (validators differ),
/// and a changed pattern is a question of regular languages: both beyond this check.
fn text_change(out: &mut Vec<Change>, path: &str, keyword: &'static str, a: &Option<String>, b: &Option<String>) {
    let what = match (a, b) {
        (None, Some(b)) if keyword == "pattern" => What::Constraint { keyword, a: "none".into(), b: format!("{b:?}") },
        (None, Some(b)) => What::Unjudged(format!("`{keyword}` {b:?} added")),
        (Some(a), Some(b)) if a != b => What::Unjudged(format!("`{keyword}` {a:?} → {b:?}")),
        _ => return,
    };
    out.push(Change { path: path.to_owned(), what });
}

fn tighter_max(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => b < a,
        _ => false,
    }
}

/// Whether `b` bounds more tightly than `a`; `beyond(x, y)` says `y` lies inside `x`'s range.
fn tighter(a: Bound, b: Bound, beyond: impl Fn(f64, f64) -> bool) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some((x, x_excl)), Some((y, y_excl))) => beyond(x, y) || (x == y && y_excl && !x_excl),
        _ => false,
    }
}

fn shown_opt(v: &Option<u64>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

fn shown_bound(bound: Bound, exclusive: &str) -> String {
    match bound {
        None => "none".to_owned(),
        Some((v, true)) => format!("{exclusive} {v}"),
        Some((v, false)) => format!("{exclusive}= {v}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn published(name: &str) -> Value {
        choreo_schemas::catalog::lookup(name).unwrap().schema().clone()
    }

    /// `published` with `edit` applied.
    fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut schema = published(name);
        edit(&mut schema);
        schema
    }

    #[test]
    fn the_same_schema_is_compatible_with_itself() {
        for event in choreo_schemas::catalog::catalog() {
            assert_eq!(diff(event.schema(), event.schema()), Diff::default(), "{}", event.name());
        }
    }

    #[test]
    fn removing_a_required_property_of_a_closed_object_breaks() {
        let candidate = edited("PaymentIssueResolved", |s| {
            s["properties"].as_object_mut().unwrap().remove("summary");
            s["required"] = json!(["order_id", "outcome", "refunds"]);
        });
        let diff = diff(&published("PaymentIssueResolved"), &candidate);
        assert_eq!(diff.breaking, ["`summary` removed"]);
        assert_eq!(diff.widening, ["`summary` no longer required"]);
    }

    #[test]
    fn each_narrowing_is_named() {
        type Edit = fn(&mut Value);
        let cases: [(&str, Edit, &str); 7] = [
            (
                "SupportTriaged",
                |s| s["required"] = json!(["order_id", "issues", "summary", "needed_by"]),
                "`needed_by` newly required",
            ),
            (
                "PaymentIssueResolved",
                |s| s["properties"]["order_id"]["type"] = json!("integer"),
                "`order_id`: strings no longer allowed",
            ),
            (
                "SupportTriaged",
                |s| s["properties"]["needed_by"]["type"] = json!("string"),
                "`needed_by`: null is no longer allowed",
            ),
            (
                "PaymentIssueResolved",
                |s| {
                    s["$defs"]["PaymentOutcome"]["oneOf"].as_array_mut().unwrap().pop();
                },
                "`outcome`: \"refused\" is no longer allowed",
            ),
            (
                "SupportTriaged",
                |s| s["properties"]["summary"]["minLength"] = json!(10),
                "`summary`: `minLength` 1 → 10",
            ),
            (
                "InventoryChecked",
                |s| s["properties"]["quantity_on_hand"]["minimum"] = json!(1),
                "`quantity_on_hand`: `minimum` >= 0 → >= 1",
            ),
            (
                "FulfilmentIssueResolved",
                |s| s["$defs"]["ItemLine"]["properties"]["sku"]["pattern"] = json!("^SKU-"),
                "`missing_items[].sku`: `pattern` none → \"^SKU-\"",
            ),
        ];
        for (event, edit, expected) in cases {
            let diff = diff(&published(event), &edited(event, edit));
            assert_eq!(diff.breaking, [expected], "{event}: {diff:?}");
        }
    }

    #[test]
    fn closing_an_open_object_and_constraining_its_properties_break() {
        let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let closed = json!({"type": "object", "additionalProperties": false,
                            "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}});
        let diff = diff(&open, &closed);
        assert_eq!(
            diff.breaking,
            ["the data: additional properties no longer allowed", "`b` now has a schema where anything was allowed"]
        );
        assert_eq!(super::diff(&closed, &open).breaking, Vec::<String>::new());
    }

    #[test]
    fn widenings_are_reported_apart_from_breaking_changes() {
        let candidate = edited("PaymentIssueResolved", |s| {
            s["properties"]["note"] = json!({"type": "string"});
            s["$defs"]["PaymentOutcome"]["oneOf"]
                .as_array_mut()
                .unwrap()
                .push(json!({"const": "partial", "type": "string"}));
            s["properties"]["summary"]["minLength"] = json!(0);
        });
        let diff = diff(&published("PaymentIssueResolved"), &candidate);
        assert!(diff.breaking.is_empty(), "{diff:?}");
        assert_eq!(diff.widening, ["`note` added", "`outcome`: \"partial\" is new", "`summary`: `minLength` 1 → 0"]);
    }

    #[test]
    fn outside_the_subset_is_unjudged_never_breaking() {
        let cases = [
            json!({"type": "object", "allOf": [{"required": ["a"]}]}),
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            json!({"oneOf": [{"type": "string"}, {"type": "string", "minLength": 2}]}),
            json!({"type": "string", "pattern": "^b"}),
        ];
        let base = json!({"type": "string", "pattern": "^a"});
        for candidate in cases {
            let d = diff(&base, &candidate);
            assert!(d.breaking.is_empty() && !d.unjudged.is_empty(), "{candidate}: {d:?}");
        }
        let format = diff(&json!({"type": "string"}), &json!({"type": "string", "format": "date"}));
        assert_eq!((format.breaking.len(), format.unjudged.len()), (0, 1), "{format:?}");
    }
}
