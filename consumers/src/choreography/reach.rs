//! Can a rule's pattern ever match an event? First the real engine on the event's example (a
//! match settles it), then the pattern read against what each field can hold: a rule is said
//! never to match only when one of its conditions provably never holds.

use choreo_bus::pattern::{Machine, Pattern, Scratch};
use serde_json::{Map, Value, json};

use super::domain::{Kind, Open, accepts};
use super::emission::Emission;

/// What a rule does with one kind of emission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The real engine matched the event built from its example.
    Example,
    /// Nothing rules it out.
    Possible,
    /// It never matches, and why.
    Never(String),
}

impl Reach {
    pub fn can_match(&self) -> bool {
        !matches!(self, Reach::Never(_))
    }
}

/// A rule's pattern, parsed for the engine and kept as JSON to read its structure.
pub(crate) struct Rule {
    pattern: Pattern,
    json: Map<String, Value>,
}

impl Rule {
    /// `None` when the text is not a valid pattern (the manifest check reports that).
    pub fn parse(text: &str) -> Option<Rule> {
        let pattern = Pattern::parse(text).ok()?;
        let Ok(Value::Object(json)) = serde_json::from_str(text) else { return None };
        Some(Rule { pattern, json })
    }

    pub fn reach(&self, emission: &Emission) -> Reach {
        if let Some(event) = &emission.delivered
            && self.pattern.explain(event.as_bytes()).is_ok_and(|e| e.matched)
        {
            return Reach::Example;
        }
        match never(&self.json, &mut Vec::new(), emission) {
            Some(why) => Reach::Never(why),
            None => Reach::Possible,
        }
    }

    /// The event names the pattern asks for by `detail-type` (or `detail.type`), exactly.
    pub fn named_events(&self) -> Vec<String> {
        let mut names = Vec::new();
        named(&self.json, &mut names);
        names
    }
}

fn named(obj: &Map<String, Value>, names: &mut Vec<String>) {
    let leaves = [obj.get("detail-type"), obj.get("detail").and_then(|d| d.get("type"))];
    for value in leaves.into_iter().flatten().filter_map(Value::as_array).flatten() {
        if let Some(name) = value.as_str().filter(|n| !names.iter().any(|x| x == n)) {
            names.push(name.to_owned());
        }
    }
    for alternative in obj.get("$or").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object) {
        named(alternative, names);
    }
}

/// Why the object pattern `obj` at `path` never matches the emission, if it provably does not.
/// Its fields must all hold, and each `$or` needs one alternative that does.
fn never(obj: &Map<String, Value>, path: &mut Vec<String>, emission: &Emission) -> Option<String> {
    for (key, value) in obj {
        let why = if key == "$or" {
            let alternatives: Vec<&Map<String, Value>> =
                value.as_array().into_iter().flatten().filter_map(Value::as_object).collect();
            let whys: Option<Vec<String>> = alternatives.iter().map(|alt| never(alt, path, emission)).collect();
            whys.filter(|w| !w.is_empty()).map(|w| format!("no alternative of `$or` can match ({})", w.join("; ")))
        } else {
            path.push(key.clone());
            let why = match value {
                Value::Object(inner) => never(inner, path, emission),
                Value::Array(leaf) => never_leaf(path, leaf, emission),
                _ => None,
            };
            path.pop();
            why
        };
        if why.is_some() {
            return why;
        }
    }
    None
}

/// Why no value the field can hold satisfies the leaf, if none can.
fn never_leaf(path: &[String], leaf: &[Value], emission: &Emission) -> Option<String> {
    let domain = emission.domain(path);
    if domain.unknown {
        return None;
    }
    let rule = Rule::parse(&json!({ "f": leaf }).to_string())?;
    // Absence and each listed value: the engine decides, operator by operator as it would.
    if domain.absent && engine_matches(&rule.pattern, &json!({})) {
        return None;
    }
    if domain.values.iter().any(|v| engine_matches(&rule.pattern, &json!({ "f": v }))) {
        return None;
    }
    if domain.open.iter().any(|open| leaf.iter().any(|m| may_match(m, open))) {
        return None;
    }
    let wanted = Value::Array(leaf.to_vec());
    Some(format!(
        "`{}` wants {wanted}, but in `{}` from `{}` it is {}",
        path.join("."),
        emission.event,
        emission.source,
        domain.describe()
    ))
}

fn engine_matches(pattern: &Pattern, event: &Value) -> bool {
    Machine::single(pattern).is_match(event.to_string().as_bytes(), &mut Scratch::new()).unwrap_or(true)
}

/// Whether the matcher `m` (one element of a leaf) could match some value of the family. Only
/// the type of value an operator can match rules it out, and for an exact value the schema;
/// anything else (`anything-but`, ranges against bounds, prefixes against patterns) may match.
fn may_match(m: &Value, open: &Open) -> bool {
    let string = open.kind == Kind::String;
    match m {
        Value::String(_) => string && accepts(&open.schema, m),
        Value::Number(_) => !string && accepts(&open.schema, m),
        Value::Bool(_) | Value::Null => false,
        Value::Object(op) => match op.keys().next().map(String::as_str) {
            Some("prefix" | "suffix" | "equals-ignore-case" | "wildcard" | "cidr") => string,
            Some("numeric") => !string,
            Some("exists") => op.get("exists") == Some(&Value::Bool(true)),
            _ => true,
        },
        Value::Array(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use choreo_schemas::catalog;

    use super::super::emission::{Auth, Emitter};
    use super::*;

    fn emission(event: &str, source: &str, auth: Option<Auth>) -> Emission {
        let schema = catalog::lookup(event).map(|e| e.schema().clone());
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples");
        Emission::new(event, Emitter::Agent(0), source, auth, schema).with_example(&examples)
    }

    fn triaged() -> Emission {
        emission("SupportTriaged", "agents.support", None)
    }

    fn reach(pattern: &str, emission: &Emission) -> Reach {
        Rule::parse(pattern).unwrap().reach(emission)
    }

    #[test]
    fn the_example_settles_a_match() {
        let pattern = r#"{"detail-type": ["SupportTriaged"], "detail": {"data": {"issues": ["missing_item"]}}}"#;
        assert_eq!(reach(pattern, &triaged()), Reach::Example);
    }

    #[test]
    fn a_value_the_example_lacks_but_the_schema_allows_is_possible() {
        let pattern = r#"{"detail-type": ["SupportTriaged"], "detail": {"data": {"issues": ["wrong_item"]}}}"#;
        assert_eq!(reach(pattern, &triaged()), Reach::Possible);
        let prefix = r#"{"detail": {"data": {"summary": [{"prefix": "Customer"}, {"prefix": "zzz"}]}}}"#;
        assert!(reach(prefix, &triaged()).can_match());
    }

    #[test]
    fn an_enum_value_the_schema_does_not_allow_never_matches() {
        let pattern = r#"{"detail-type": ["SupportTriaged"], "detail": {"data": {"issues": ["lost_parcel"]}}}"#;
        let Reach::Never(why) = reach(pattern, &triaged()) else { panic!("matched") };
        assert!(why.starts_with(r#"`detail.data.issues` wants ["lost_parcel"], but in `SupportTriaged`"#), "{why}");
        assert!(why.contains(r#""duplicate_charge""#), "{why}");
    }

    #[test]
    fn another_detail_type_a_missing_field_or_a_wrong_type_never_matches() {
        let cases = [
            (r#"{"detail-type": ["PaymentIssueResolved"]}"#, "`detail-type`"),
            (r#"{"detail": {"data": {"colour": ["red"]}}}"#, "no such field"),
            (r#"{"detail": {"data": {"summary": [{"numeric": [">", 0]}]}}}"#, "`detail.data.summary`"),
            (r#"{"detail": {"data": {"order_id": ["x-1"]}}}"#, "a string its schema allows"),
            (r#"{"detail": {"data": {"needed_by": [true]}}}"#, "or nothing"),
            (r#"{"version": ["1"]}"#, "`version`"),
            (r#"{"$or": [{"source": ["retail.x"]}, {"detail": {"data": {"issues": [{"exists": false}]}}}]}"#, "$or"),
        ];
        for (pattern, expected) in cases {
            match reach(pattern, &triaged()) {
                Reach::Never(why) => assert!(why.contains(expected), "{pattern}: {why}"),
                other => panic!("{pattern}: {other:?}"),
            }
        }
    }

    #[test]
    fn what_cannot_be_judged_is_never_called_impossible() {
        let cases = [
            // Agents carry over the case's auth context: anything may be there.
            r#"{"detail": {"authtype": ["service_account"]}}"#,
            // Extensions are open.
            r#"{"detail": {"budgethops": [{"numeric": [">", 100]}]}}"#,
            r#"{"detail": {"data": {"needed_by": [{"exists": false}]}}}"#,
            r#"{"detail": {"data": {"summary": [{"anything-but": "x"}]}}}"#,
            r#"{"detail": {"data": {"issues": [{"exists": true}]}}}"#,
        ];
        for pattern in cases {
            assert!(reach(pattern, &triaged()).can_match(), "{pattern}");
        }
    }

    #[test]
    fn producers_fix_source_and_auth() {
        let notifier =
            r#"{"source":[{"prefix":"agents."}],"detail":{"authtype":["app_user"],"authid":[{"exists":true}]}}"#;
        let shipped = emission("OrderShipped", "retail.backoffice", Some(Auth::Service("backoffice".into())));
        // Both its source and its auth type rule the back office's events out; either may be told.
        let why = reach(notifier, &shipped);
        assert!(
            matches!(&why, Reach::Never(w) if w.starts_with("`source`") || w.starts_with("`detail.authtype`")),
            "{why:?}"
        );
        assert_eq!(reach(notifier, &triaged()), Reach::Example);
        let by_service = r#"{"detail": {"authtype": ["app_user"]}}"#;
        assert!(!reach(by_service, &shipped).can_match());
    }

    /// `may_match` rules an operator out by the type of value alone: the engine must agree.
    #[test]
    fn operators_ruled_out_by_type_never_match_that_type_in_the_engine() {
        let string = Open { kind: Kind::String, schema: json!({"type": "string"}) };
        let number = Open { kind: Kind::Number, schema: json!({"type": "number"}) };
        let matchers = [
            json!("5"),
            json!(5),
            json!(true),
            json!(null),
            json!({"prefix": "5"}),
            json!({"suffix": "5"}),
            json!({"equals-ignore-case": "5"}),
            json!({"wildcard": "*"}),
            json!({"cidr": "10.0.0.0/8"}),
            json!({"numeric": [">=", 0]}),
            json!({"exists": false}),
        ];
        let samples = [(string, vec![json!("5"), json!("10.0.0.1"), json!("")]), (number, vec![json!(5), json!(0)])];
        for m in &matchers {
            let pattern = Pattern::parse(&json!({ "f": [m] }).to_string()).unwrap();
            for (open, values) in &samples {
                if may_match(m, open) {
                    continue;
                }
                for v in values {
                    assert!(!engine_matches(&pattern, &json!({ "f": v })), "{m} matched {v}");
                }
            }
        }
    }

    /// Soundness on real data: whatever the engine matches, the analysis must not rule out.
    #[test]
    fn the_analysis_never_rules_out_what_the_engine_matches() {
        let agents = crate::manifest::discover(&crate::local::default_agents_dir()).unwrap();
        let mut patterns: Vec<String> = agents.into_iter().map(|a| a.pattern).collect();
        patterns.extend(
            [
                r#"{"source":[{"prefix":"agents."}],"detail":{"authtype":["app_user"],"authid":[{"exists":true}]}}"#,
                r#"{"detail": {"data": {"outcome": ["refunded", "shipment_arranged"]}}}"#,
                r#"{"detail": {"data": {"refunds": {"amount": {"currency": ["EUR"]}}}}}"#,
                r#"{"detail": {"data": {"shipments": {"service_level": [{"prefix": "next"}]}}}}"#,
                r#"{"detail": {"data": {"alternative": {"available": [true]}, "quantity_on_hand": [{"numeric": ["=", 0]}]}}}"#,
                r#"{"detail": {"subject": [{"prefix": "orders/"}], "data": {"needed_by": [{"exists": true}]}}}"#,
                r#"{"$or": [{"detail": {"data": {"issues": ["missing_item"]}}}, {"detail": {"data": {"reason": ["budget_exhausted"]}}}]}"#,
                r#"{"detail": {"data": {"order_id": [{"wildcard": "o-*"}], "channel": [{"anything-but": "email"}]}}}"#,
            ]
            .map(str::to_owned),
        );
        let emitters = [
            ("agents.x", None),
            ("retail.backoffice", Some(Auth::Service("backoffice".into()))),
            ("retail.support-api", Some(Auth::Customer)),
        ];
        let mut matched = 0;
        for event in catalog::catalog() {
            for (source, auth) in &emitters {
                let emission = emission(event.name(), source, auth.clone());
                let delivered = emission.delivered.clone().unwrap();
                for text in &patterns {
                    let rule = Rule::parse(text).unwrap();
                    if rule.pattern.explain(delivered.as_bytes()).unwrap().matched {
                        matched += 1;
                        assert_eq!(never(&rule.json, &mut Vec::new(), &emission), None, "{text} on {}", event.name());
                    }
                }
            }
        }
        assert!(matched >= 40, "only {matched} matches: the test checks too little");
    }

    #[test]
    fn named_events_come_from_detail_type_and_or_alternatives() {
        let rule = Rule::parse(
            r#"{"detail-type": ["A", {"prefix": "B"}], "$or": [{"detail": {"type": ["C"]}}, {"detail-type": ["A"]}]}"#,
        )
        .unwrap();
        assert_eq!(rule.named_events(), ["A", "C"]);
    }
}
