//! What a field of an event can hold, read from the event's JSON Schema: the values it may take,
//! whether it may be missing, or "cannot tell". Always a superset of the truth, so that a rule
//! found unable to match really is.

use serde_json::{Map, Value};

/// Keywords that only annotate: they never change which values are valid.
const ANNOTATIONS: &[&str] =
    &["$schema", "$id", "$comment", "$defs", "title", "description", "examples", "default", "deprecated", "format"];
/// Keywords an object node may have for a missing property to be known absent: anything else
/// (`patternProperties`, `allOf`, `unevaluatedProperties`, ...) could let the key in after all.
const CLOSED_OBJECT: &[&str] =
    &["type", "properties", "required", "additionalProperties", "minProperties", "maxProperties"];
/// Deeper than our schemas ever nest: a `$ref` loop, not a schema to read.
const MAX_DEPTH: usize = 32;

/// The values a field may hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Domain {
    /// The field may be missing.
    pub absent: bool,
    /// Values it may take; all of them unless `open` or `unknown` add more.
    pub values: Vec<Value>,
    /// Families of values too many to list.
    pub open: Vec<Open>,
    /// The schema says something the walk does not read: any value may be there.
    pub unknown: bool,
}

/// Every value of one JSON type that a (sub)schema accepts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Open {
    pub kind: Kind,
    /// The subschema, with the root's `$defs` so that its references resolve on their own.
    pub schema: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Integer,
    Number,
}

impl Domain {
    pub fn unknown() -> Self {
        Domain { unknown: true, ..Domain::default() }
    }

    /// A field that never exists.
    pub fn missing() -> Self {
        Domain { absent: true, ..Domain::default() }
    }

    pub fn values(values: Vec<Value>) -> Self {
        Domain { values, ..Domain::default() }
    }

    pub fn string() -> Self {
        Domain {
            open: vec![Open { kind: Kind::String, schema: serde_json::json!({"type": "string"}) }],
            ..Domain::default()
        }
    }

    fn union(mut self, other: Domain) -> Self {
        self.absent |= other.absent;
        self.unknown |= other.unknown;
        for v in other.values {
            if !self.values.contains(&v) {
                self.values.push(v);
            }
        }
        self.open.extend(other.open);
        self
    }

    /// For messages: what the field holds, e.g. `one of "a", "b"` or `no such field`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.values.is_empty() {
            let shown: Vec<String> = self.values.iter().take(8).map(Value::to_string).collect();
            let more =
                if self.values.len() > 8 { format!(", … ({} values)", self.values.len()) } else { String::new() };
            parts.push(format!("one of {}{more}", shown.join(", ")));
        }
        for open in &self.open {
            let kind = match open.kind {
                Kind::String => "a string",
                Kind::Integer => "an integer",
                Kind::Number => "a number",
            };
            parts.push(format!("{kind} its schema allows"));
        }
        match (parts.is_empty(), self.absent) {
            (true, _) => "no such field".to_owned(),
            (false, true) => format!("{} or nothing", parts.join(" or ")),
            (false, false) => parts.join(" or "),
        }
    }
}

/// A data schema, read path by path.
pub(crate) struct Schema<'a> {
    root: &'a Value,
}

impl<'a> Schema<'a> {
    pub fn new(root: &'a Value) -> Self {
        Self { root }
    }

    /// What the field at `path` (keys below the data's root) can hold.
    pub fn domain(&self, path: &[String]) -> Domain {
        self.walk(self.root, path, 0)
    }

    fn walk(&self, node: &Value, path: &[String], depth: usize) -> Domain {
        let Value::Object(obj) = node else {
            // `true` accepts anything; `false` nothing (the field cannot exist).
            return if node == &Value::Bool(false) { Domain::missing() } else { Domain::unknown() };
        };
        if depth > MAX_DEPTH {
            return Domain::unknown();
        }
        // Each keyword alone accepts a superset of what the node accepts, so taking the most
        // telling one is safe: `const`, then `enum`, then `$ref`, then `anyOf`/`oneOf`, then `type`.
        if let Some(c) = obj.get("const") {
            return if path.is_empty() { Domain::values(vec![c.clone()]) } else { self.below_value(c, path) };
        }
        if let Some(Value::Array(values)) = obj.get("enum") {
            if path.is_empty() {
                return Domain::values(values.clone());
            }
            return values.iter().fold(Domain::default(), |d, v| d.union(self.below_value(v, path)));
        }
        if let Some(reference) = obj.get("$ref") {
            return match reference.as_str().and_then(|r| self.resolve(r)) {
                Some(target) => self.walk(target, path, depth + 1),
                None => Domain::unknown(),
            };
        }
        if let Some(Value::Array(alternatives)) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
            return alternatives.iter().fold(Domain::default(), |d, alt| d.union(self.walk(alt, path, depth + 1)));
        }
        let types: Vec<&str> = match obj.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return Domain::unknown(),
        };
        types.into_iter().fold(Domain::default(), |d, t| d.union(self.of_type(obj, t, path, depth)))
    }

    fn of_type(&self, obj: &Map<String, Value>, kind: &str, path: &[String], depth: usize) -> Domain {
        let open = |kind| Domain { open: vec![Open { kind, schema: self.standalone(obj) }], ..Domain::default() };
        match (kind, path.split_first()) {
            ("string", None) => open(Kind::String),
            ("integer", None) => open(Kind::Integer),
            ("number", None) => open(Kind::Number),
            ("boolean", None) => Domain::values(vec![Value::Bool(true), Value::Bool(false)]),
            ("null", None) => Domain::values(vec![Value::Null]),
            ("array", _) => {
                // A rule reads an array through its elements (arrays of objects flatten), and an
                // empty array is a value of its own that the engine decides.
                let items = obj.get("items").map_or_else(Domain::unknown, |i| self.walk(i, path, depth + 1));
                let may_be_empty = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0) == 0;
                match (may_be_empty, path.is_empty()) {
                    (true, true) => items.union(Domain::values(vec![Value::Array(Vec::new())])),
                    (true, false) => items.union(Domain::missing()),
                    (false, _) => items,
                }
            }
            ("object", Some((key, rest))) => {
                if let Some(property) = obj.get("properties").and_then(|p| p.get(key)) {
                    let mut domain = self.walk(property, rest, depth + 1);
                    let required = obj.get("required").and_then(Value::as_array);
                    domain.absent |= !required.is_some_and(|r| r.iter().any(|k| k.as_str() == Some(key.as_str())));
                    return domain;
                }
                let closed = obj.get("additionalProperties") == Some(&Value::Bool(false))
                    && obj.keys().all(|k| CLOSED_OBJECT.contains(&k.as_str()) || ANNOTATIONS.contains(&k.as_str()));
                if closed { Domain::missing() } else { Domain::unknown() }
            }
            // A leaf on an object: the engine matches leaves, and we do not guess how.
            ("object", None) => Domain::unknown(),
            // A scalar has no fields below it.
            ("string" | "integer" | "number" | "boolean" | "null", Some(_)) => Domain::missing(),
            _ => Domain::unknown(),
        }
    }

    /// Fields below a fixed value (a `const` or `enum` object).
    fn below_value(&self, value: &Value, path: &[String]) -> Domain {
        let mut at = value;
        for key in path {
            match at {
                Value::Object(map) => match map.get(key) {
                    Some(v) => at = v,
                    None => return Domain::missing(),
                },
                Value::Array(_) => return Domain::unknown(),
                _ => return Domain::missing(),
            }
        }
        Domain::values(vec![at.clone()])
    }

    /// `#/$defs/Name` (the only references our schemas make).
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }

    /// The node as a schema of its own: with the root's `$defs`, so its references resolve.
    fn standalone(&self, obj: &Map<String, Value>) -> Value {
        let mut schema = obj.clone();
        if let Some(defs) = self.root.get("$defs") {
            schema.insert("$defs".into(), defs.clone());
        }
        Value::Object(schema)
    }
}

/// Whether `value` is valid under `schema`; a schema that does not compile accepts anything.
pub(crate) fn accepts(schema: &Value, value: &Value) -> bool {
    jsonschema::validator_for(schema).map_or(true, |v| v.is_valid(value))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    fn catalog(name: &str) -> &'static Value {
        choreo_schemas::catalog::lookup(name).unwrap().schema()
    }

    #[test]
    fn enums_written_as_one_of_consts_are_listed() {
        let domain = Schema::new(catalog("SupportTriaged")).domain(&path("issues"));
        assert_eq!(domain.values.len(), 7, "{domain:?}");
        assert!(domain.values.contains(&json!("duplicate_charge")));
        assert!(!domain.absent && !domain.unknown && domain.open.is_empty());
    }

    #[test]
    fn optional_nullable_fields_may_be_absent_null_or_a_string() {
        let domain = Schema::new(catalog("SupportTriaged")).domain(&path("needed_by"));
        assert!(domain.absent);
        assert_eq!(domain.values, vec![Value::Null]);
        assert_eq!(domain.open.len(), 1);
        assert_eq!(domain.open[0].kind, Kind::String);
        assert!(accepts(&domain.open[0].schema, &json!("2026-12-01")));
    }

    #[test]
    fn a_field_the_closed_schema_does_not_have_is_missing() {
        let domain = Schema::new(catalog("SupportTriaged")).domain(&path("colour"));
        assert_eq!(domain, Domain::missing());
        // Below a scalar there is nothing either.
        assert_eq!(Schema::new(catalog("SupportTriaged")).domain(&path("order_id.x")), Domain::missing());
    }

    #[test]
    fn arrays_of_objects_are_read_through_their_elements_via_refs() {
        let domain = Schema::new(catalog("FulfilmentIssueResolved")).domain(&path("shipments.service_level"));
        assert!(domain.absent, "an empty array has no element");
        assert!(domain.values.contains(&json!("next_day")), "{domain:?}");
        let nullable = Schema::new(catalog("InventoryChecked")).domain(&path("alternative.available"));
        assert_eq!(nullable.values, vec![json!(true), json!(false)]);
        assert!(nullable.absent, "the alternative may be null or missing");
    }

    #[test]
    fn what_the_walk_cannot_read_is_unknown_not_missing() {
        let schema = json!({"type": "object", "additionalProperties": false,
                            "patternProperties": {"^x": {"type": "string"}}, "properties": {}});
        assert!(Schema::new(&schema).domain(&path("xy")).unknown);
        let open = json!({"type": "object", "properties": {}});
        assert!(Schema::new(&open).domain(&path("anything")).unknown);
        let no_type = json!({"properties": {"a": {"type": "string"}}});
        assert!(Schema::new(&no_type).domain(&path("a")).unknown);
    }

    #[test]
    fn descriptions_name_the_values() {
        assert_eq!(Domain::values(vec![json!("a"), json!("b")]).describe(), r#"one of "a", "b""#);
        assert_eq!(Domain::missing().describe(), "no such field");
    }
}
