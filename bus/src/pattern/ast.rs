//! A validated EventBridge event pattern: reading pattern text into fields, `$or` groups and
//! typed matchers, with every rule EventBridge enforces at `PutRule` and a message that names
//! the field path and what is wrong.

use std::borrow::Cow;
use std::fmt;

use super::PatternError;
use super::cidr::Cidr;
use super::json::{self, Json};
use super::number;
use super::wildcard::Wildcard;

/// EventBridge's limit on the size of an event pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 2048;
/// EventBridge's limit on the combinations an `$or` may produce.
pub const MAX_OR_COMBINATIONS: usize = 1000;
/// Alternatives a pattern may expand to once fields that take "a value or absent"
/// (`[…, {"exists": false}]`) are counted too: each doubles the `$or` combinations.
pub const MAX_ALTERNATIVES: usize = 4096;
/// Guard against wildcard patterns too complex to match fast: the `*` characters over all
/// wildcard operands (plain and anything-but) of one field.
pub const MAX_WILDCARDS_PER_FIELD: usize = 100;

/// A parsed, validated event pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    pub(crate) root: Obj,
}

#[derive(Debug, Clone)]
pub(crate) struct Obj {
    pub fields: Vec<Field>,
    /// Each `$or` at this level: its alternatives.
    pub ors: Vec<Vec<Obj>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub key: String,
    pub value: FieldValue,
}

#[derive(Debug, Clone)]
pub(crate) enum FieldValue {
    Obj(Obj),
    Leaf(Vec<Matcher>),
}

/// One element of a leaf array: the value matches the field when any element does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    Exact(Exact),
    Prefix { text: String, ignore_case: bool },
    Suffix { text: String, ignore_case: bool },
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(Range),
    Exists(bool),
    Cidr(Cidr),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Exact {
    String(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnythingBut {
    Strings(Vec<String>),
    Numbers(Vec<f64>),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    IgnoreCase(Vec<String>),
    Wildcard(Vec<Wildcard>),
}

/// A numeric range; `=` is a closed range of one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub lo: Option<(f64, bool)>,
    pub hi: Option<(f64, bool)>,
}

impl Range {
    #[inline]
    pub fn contains(&self, v: f64) -> bool {
        let lo_ok = match self.lo {
            None => true,
            Some((b, true)) => v >= b,
            Some((b, false)) => v > b,
        };
        lo_ok
            && match self.hi {
                None => true,
                Some((b, true)) => v <= b,
                Some((b, false)) => v < b,
            }
    }
}

impl Pattern {
    /// Reads and validates pattern text as `PutRule` would.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let chars = text.chars().count();
        if chars > MAX_PATTERN_CHARS {
            return Err(PatternError::TooLong { chars, limit: MAX_PATTERN_CHARS });
        }
        let doc = json::parse(text)?;
        let Json::Object(members) = doc else {
            return Err(PatternError::NotAnObject(doc.kind()));
        };
        let root = object(&members, &mut Vec::new())?;
        let count = combinations(&root, false);
        if count > MAX_OR_COMBINATIONS {
            return Err(PatternError::TooManyCombinations { count, limit: MAX_OR_COMBINATIONS });
        }
        let count = combinations(&root, true);
        if count > MAX_ALTERNATIVES {
            return Err(PatternError::TooManyAlternatives { count, limit: MAX_ALTERNATIVES });
        }
        Ok(Pattern { text: text.to_owned(), root })
    }

    /// The pattern text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many alternatives (`$or` combinations) the pattern stands for.
    pub fn combinations(&self) -> usize {
        combinations(&self.root, false)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

/// `$or` combinations; with `either`, also the doubling by value-or-absent fields.
fn combinations(o: &Obj, either: bool) -> usize {
    let mut n: usize = 1;
    for f in &o.fields {
        match &f.value {
            FieldValue::Obj(inner) => n = n.saturating_mul(combinations(inner, either)),
            FieldValue::Leaf(ms) if either && ms.len() > 1 && ms.contains(&Matcher::Exists(false)) => {
                n = n.saturating_mul(2);
            }
            FieldValue::Leaf(_) => {}
        }
    }
    for alts in &o.ors {
        let sum = alts.iter().fold(0usize, |acc, a| acc.saturating_add(combinations(a, either)));
        n = n.saturating_mul(sum);
    }
    n
}

fn path_text(path: &[String]) -> String {
    if path.is_empty() { "the top level".to_owned() } else { path.join(".") }
}

fn invalid(path: &[String], reason: impl Into<String>) -> PatternError {
    PatternError::Invalid { path: path_text(path), reason: reason.into() }
}

fn object(members: &[(Cow<'_, str>, Json<'_>)], path: &mut Vec<String>) -> Result<Obj, PatternError> {
    if members.is_empty() {
        return Err(invalid(path, "empty objects are not allowed"));
    }
    let mut obj = Obj { fields: Vec::new(), ors: Vec::new() };
    for (key, value) in members {
        path.push(key.to_string());
        if key == "$or" {
            obj.ors.push(or_group(value, path)?);
        } else {
            let v = match value {
                Json::Object(inner) => FieldValue::Obj(object(inner, path)?),
                Json::Array(items) => FieldValue::Leaf(leaf(items, path)?),
                other => {
                    return Err(invalid(
                        path,
                        format!("a field must be an object or an array of values, got {}", other.kind()),
                    ));
                }
            };
            obj.fields.push(Field { key: key.to_string(), value: v });
        }
        path.pop();
    }
    Ok(obj)
}

fn or_group(value: &Json<'_>, path: &mut Vec<String>) -> Result<Vec<Obj>, PatternError> {
    let Json::Array(items) = value else {
        return Err(invalid(path, format!("$or must be an array of at least 2 objects, got {}", value.kind())));
    };
    if items.len() < 2 {
        return Err(invalid(path, format!("$or must hold at least 2 objects, got {}", items.len())));
    }
    let mut alts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let last = path.pop().unwrap_or_default();
        path.push(format!("{last}[{i}]"));
        let Json::Object(members) = item else {
            return Err(invalid(path, format!("each $or alternative must be an object, got {}", item.kind())));
        };
        alts.push(object(members, path)?);
        path.pop();
        path.push(last);
    }
    Ok(alts)
}

fn leaf(items: &[Json<'_>], path: &[String]) -> Result<Vec<Matcher>, PatternError> {
    if items.is_empty() {
        return Err(invalid(path, "empty arrays are not allowed"));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            Json::Null => Matcher::Exact(Exact::Null),
            Json::Bool(b) => Matcher::Exact(Exact::Bool(*b)),
            Json::Number(t) => Matcher::Exact(Exact::Number(num(t, path)?)),
            Json::String(s) => Matcher::Exact(Exact::String(s.to_string())),
            Json::Array(_) => {
                return Err(invalid(
                    path,
                    "a match value must be a string, number, true, false, null or an operator object, got an array",
                ));
            }
            Json::Object(members) => operator(members, path)?,
        });
    }
    let stars: usize = out
        .iter()
        .map(|m| match m {
            Matcher::Wildcard(w) => w.stars(),
            Matcher::AnythingBut(AnythingBut::Wildcard(ws)) => ws.iter().map(Wildcard::stars).sum(),
            _ => 0,
        })
        .sum();
    if stars > MAX_WILDCARDS_PER_FIELD {
        return Err(PatternError::TooComplex { path: path_text(path), stars, limit: MAX_WILDCARDS_PER_FIELD });
    }
    Ok(out)
}

fn num(text: &str, path: &[String]) -> Result<f64, PatternError> {
    number::parse_finite(text)
        .ok_or_else(|| invalid(path, format!("number {text} is out of the range of a 64-bit float")))
}

fn single<'j, 'a>(
    members: &'j [(Cow<'a, str>, Json<'a>)],
    path: &[String],
    what: &str,
) -> Result<(&'j str, &'j Json<'a>), PatternError> {
    match members {
        [] => Err(invalid(path, format!("{what} is empty; it needs exactly one operator"))),
        [(k, v)] => Ok((k.as_ref(), v)),
        _ => {
            let keys: Vec<String> = members.iter().map(|(k, _)| format!("\"{k}\"")).collect();
            Err(invalid(path, format!("{what} must have exactly one key, got {}", keys.join(", "))))
        }
    }
}

fn string_operand<'j>(op: &str, v: &'j Json<'_>, path: &[String]) -> Result<&'j str, PatternError> {
    match v {
        Json::String(s) => Ok(s.as_ref()),
        other => Err(invalid(path, format!("\"{op}\" needs a string, got {}", other.kind()))),
    }
}

fn operator(members: &[(Cow<'_, str>, Json<'_>)], path: &[String]) -> Result<Matcher, PatternError> {
    let (op, v) = single(members, path, "a match expression")?;
    Ok(match op {
        "prefix" | "suffix" => {
            let (text, ignore_case) = match v {
                Json::Object(inner) => {
                    let (k, iv) = single(inner, path, &format!("\"{op}\" expression"))?;
                    if k != "equals-ignore-case" {
                        return Err(invalid(
                            path,
                            format!(
                                "unsupported \"{op}\" operator \"{k}\"; only \"equals-ignore-case\" may be nested in it"
                            ),
                        ));
                    }
                    (string_operand("equals-ignore-case", iv, path)?, true)
                }
                other => (string_operand(op, other, path)?, false),
            };
            let text = text.to_owned();
            if op == "prefix" { Matcher::Prefix { text, ignore_case } } else { Matcher::Suffix { text, ignore_case } }
        }
        "equals-ignore-case" => Matcher::EqualsIgnoreCase(string_operand(op, v, path)?.to_owned()),
        "wildcard" => Matcher::Wildcard(wildcard(string_operand(op, v, path)?, path)?),
        "exists" => match v {
            Json::Bool(b) => Matcher::Exists(*b),
            other => return Err(invalid(path, format!("\"exists\" needs true or false, got {}", other.kind()))),
        },
        "cidr" => {
            let text = string_operand(op, v, path)?;
            Matcher::Cidr(Cidr::parse(text).map_err(|e| invalid(path, format!("\"cidr\" {e}")))?)
        }
        "numeric" => Matcher::Numeric(numeric(v, path)?),
        "anything-but" => Matcher::AnythingBut(anything_but(v, path)?),
        other => {
            return Err(invalid(
                path,
                format!(
                    "unknown operator \"{other}\"; expected one of prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists, cidr"
                ),
            ));
        }
    })
}

fn wildcard(text: &str, path: &[String]) -> Result<Wildcard, PatternError> {
    Wildcard::parse(text).map_err(|e| invalid(path, format!("\"wildcard\" {e}")))
}

fn numeric(v: &Json<'_>, path: &[String]) -> Result<Range, PatternError> {
    let Json::Array(items) = v else {
        return Err(invalid(path, format!("\"numeric\" needs an array of operator/number pairs, got {}", v.kind())));
    };
    if items.is_empty() {
        return Err(invalid(path, "\"numeric\" array is empty"));
    }
    if items.len() > 4 {
        return Err(invalid(
            path,
            format!("\"numeric\" takes at most 2 operator/number pairs, got {} elements", items.len()),
        ));
    }
    let mut range = Range { lo: None, hi: None };
    let mut equals = false;
    let mut i = 0;
    while i < items.len() {
        let op = match &items[i] {
            Json::String(s) => s.as_ref(),
            other => {
                return Err(invalid(
                    path,
                    format!("\"numeric\" expects an operator at position {i}, got {}", other.kind()),
                ));
            }
        };
        if !matches!(op, "=" | "<" | "<=" | ">" | ">=") {
            return Err(invalid(path, format!("\"numeric\" operator \"{op}\" is not one of =, <, <=, >, >=")));
        }
        let value = match items.get(i + 1) {
            Some(Json::Number(t)) => num(t, path)?,
            Some(other) => {
                return Err(invalid(
                    path,
                    format!("\"numeric\" operator \"{op}\" needs a number, got {}", other.kind()),
                ));
            }
            None => return Err(invalid(path, format!("\"numeric\" operator \"{op}\" needs a number after it"))),
        };
        let first = i == 0;
        match op {
            "=" if first && items.len() == 2 => {
                range.lo = Some((value, true));
                range.hi = Some((value, true));
                equals = true;
            }
            "=" => return Err(invalid(path, "\"numeric\" \"=\" cannot be combined with another operator")),
            ">" | ">=" if first => range.lo = Some((value, op == ">=")),
            ">" | ">=" => return Err(invalid(path, format!("\"numeric\" lower bound \"{op}\" must come first"))),
            _ if range.hi.is_none() && (first || range.lo.is_some()) => range.hi = Some((value, op == "<=")),
            _ => return Err(invalid(path, format!("\"numeric\" upper bound \"{op}\" must come last"))),
        }
        i += 2;
    }
    if let (Some((lo, _)), Some((hi, _))) = (range.lo, range.hi)
        && !equals
        && lo >= hi
    {
        return Err(invalid(path, format!("\"numeric\" lower bound {lo} must be less than upper bound {hi}")));
    }
    Ok(range)
}

fn anything_but(v: &Json<'_>, path: &[String]) -> Result<AnythingBut, PatternError> {
    Ok(match v {
        Json::String(s) => AnythingBut::Strings(vec![s.to_string()]),
        Json::Number(t) => AnythingBut::Numbers(vec![num(t, path)?]),
        Json::Array(items) => {
            if items.is_empty() {
                return Err(invalid(path, "\"anything-but\" list is empty"));
            }
            if items.iter().all(|i| matches!(i, Json::String(_))) {
                AnythingBut::Strings(strings(items, path, "anything-but")?)
            } else if items.iter().all(|i| matches!(i, Json::Number(_))) {
                let mut ns = Vec::with_capacity(items.len());
                for i in items {
                    if let Json::Number(t) = i {
                        ns.push(num(t, path)?);
                    }
                }
                AnythingBut::Numbers(ns)
            } else {
                return Err(invalid(path, "\"anything-but\" list must hold only strings or only numbers"));
            }
        }
        Json::Object(members) => {
            let (op, inner) = single(members, path, "\"anything-but\" expression")?;
            match op {
                "prefix" | "suffix" => {
                    let list = string_list(inner, path, op)?;
                    if list.iter().any(String::is_empty) {
                        return Err(invalid(path, format!("\"anything-but\" \"{op}\" must not be empty")));
                    }
                    if op == "prefix" { AnythingBut::Prefix(list) } else { AnythingBut::Suffix(list) }
                }
                "equals-ignore-case" => AnythingBut::IgnoreCase(string_list(inner, path, op)?),
                "wildcard" => {
                    let list = string_list(inner, path, op)?;
                    AnythingBut::Wildcard(list.iter().map(|w| wildcard(w, path)).collect::<Result<_, _>>()?)
                }
                other => {
                    return Err(invalid(
                        path,
                        format!(
                            "unsupported \"anything-but\" operator \"{other}\"; expected prefix, suffix, equals-ignore-case or wildcard"
                        ),
                    ));
                }
            }
        }
        other => {
            return Err(invalid(
                path,
                format!("\"anything-but\" needs a string, a number or a list of them, got {}", other.kind()),
            ));
        }
    })
}

fn string_list(v: &Json<'_>, path: &[String], op: &str) -> Result<Vec<String>, PatternError> {
    match v {
        Json::String(s) => Ok(vec![s.to_string()]),
        Json::Array(items) if !items.is_empty() => strings(items, path, op),
        Json::Array(_) => Err(invalid(path, format!("\"{op}\" list is empty"))),
        other => Err(invalid(path, format!("\"{op}\" needs a string or a list of strings, got {}", other.kind()))),
    }
}

fn strings(items: &[Json<'_>], path: &[String], op: &str) -> Result<Vec<String>, PatternError> {
    items
        .iter()
        .map(|i| match i {
            Json::String(s) => Ok(s.to_string()),
            other => Err(invalid(path, format!("\"{op}\" list must hold only strings, got {}", other.kind()))),
        })
        .collect()
}

/// A number as pattern JSON, compactly: `1e300`, not 301 digits.
struct Num(f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0.abs();
        if a != 0.0 && !(1e-6..1e16).contains(&a) { write!(f, "{:e}", self.0) } else { write!(f, "{}", self.0) }
    }
}

impl fmt::Display for Matcher {
    /// Renders the matcher back as pattern JSON, for explanations.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let list = |v: &[String]| format!("[{}]", v.iter().map(|s| q(s)).collect::<Vec<_>>().join(","));
        match self {
            Matcher::Exact(Exact::String(s)) => write!(f, "{}", q(s)),
            Matcher::Exact(Exact::Number(n)) => write!(f, "{}", Num(*n)),
            Matcher::Exact(Exact::Bool(b)) => write!(f, "{b}"),
            Matcher::Exact(Exact::Null) => write!(f, "null"),
            Matcher::Prefix { text, ignore_case: false } => write!(f, "{{\"prefix\":{}}}", q(text)),
            Matcher::Prefix { text, ignore_case: true } => {
                write!(f, "{{\"prefix\":{{\"equals-ignore-case\":{}}}}}", q(text))
            }
            Matcher::Suffix { text, ignore_case: false } => write!(f, "{{\"suffix\":{}}}", q(text)),
            Matcher::Suffix { text, ignore_case: true } => {
                write!(f, "{{\"suffix\":{{\"equals-ignore-case\":{}}}}}", q(text))
            }
            Matcher::EqualsIgnoreCase(s) => write!(f, "{{\"equals-ignore-case\":{}}}", q(s)),
            Matcher::Wildcard(w) => write!(f, "{{\"wildcard\":{}}}", q(w.text())),
            Matcher::Exists(b) => write!(f, "{{\"exists\":{b}}}"),
            Matcher::Cidr(c) => write!(f, "{{\"cidr\":{}}}", q(c.text())),
            Matcher::Numeric(r) => {
                let mut parts = Vec::new();
                match (r.lo, r.hi) {
                    (Some(lo), Some(hi)) if lo == hi => parts.push(format!("\"=\",{}", Num(lo.0))),
                    _ => {
                        if let Some((v, inc)) = r.lo {
                            parts.push(format!("\"{}\",{}", if inc { ">=" } else { ">" }, Num(v)));
                        }
                        if let Some((v, inc)) = r.hi {
                            parts.push(format!("\"{}\",{}", if inc { "<=" } else { "<" }, Num(v)));
                        }
                    }
                }
                write!(f, "{{\"numeric\":[{}]}}", parts.join(","))
            }
            Matcher::AnythingBut(ab) => match ab {
                AnythingBut::Strings(v) => write!(f, "{{\"anything-but\":{}}}", list(v)),
                AnythingBut::Numbers(v) => {
                    write!(
                        f,
                        "{{\"anything-but\":[{}]}}",
                        v.iter().map(|n| Num(*n).to_string()).collect::<Vec<_>>().join(",")
                    )
                }
                AnythingBut::Prefix(v) => write!(f, "{{\"anything-but\":{{\"prefix\":{}}}}}", list(v)),
                AnythingBut::Suffix(v) => write!(f, "{{\"anything-but\":{{\"suffix\":{}}}}}", list(v)),
                AnythingBut::IgnoreCase(v) => write!(f, "{{\"anything-but\":{{\"equals-ignore-case\":{}}}}}", list(v)),
                AnythingBut::Wildcard(v) => {
                    let texts: Vec<String> = v.iter().map(|w| w.text().to_owned()).collect();
                    write!(f, "{{\"anything-but\":{{\"wildcard\":{}}}}}", list(&texts))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Pattern::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn messages_name_the_field_and_the_problem() {
        assert_eq!(
            err(r#"{"detail":{"state":"x"}}"#),
            "at detail.state: a field must be an object or an array of values, got a string"
        );
        assert_eq!(
            err(r#"{"a":[{"anything-but":["x",1]}]}"#),
            "at a: \"anything-but\" list must hold only strings or only numbers"
        );
        assert_eq!(
            err(r#"{"a":[{"numeric":[">",5,"<",5]}]}"#),
            "at a: \"numeric\" lower bound 5 must be less than upper bound 5"
        );
        assert_eq!(
            err(r#"{"$or":[{"a":["x"]},{"b":"y"}]}"#),
            "at $or[1].b: a field must be an object or an array of values, got a string"
        );
        assert_eq!(err("[1]"), "a pattern must be a JSON object, got an array");
    }

    #[test]
    fn enforces_eventbridge_limits() {
        let long = format!("{{\"a\":[\"{}\"]}}", "x".repeat(2100));
        assert!(matches!(Pattern::parse(&long), Err(PatternError::TooLong { .. })));
        // 11 * 10 * 10 = 1100 combinations.
        let alts = |k: &str, n: usize| (0..n).map(|i| format!("{{\"{k}\":[{i}]}}")).collect::<Vec<_>>().join(",");
        let many = format!(
            "{{\"x\":{{\"$or\":[{}]}},\"y\":{{\"$or\":[{}]}},\"z\":{{\"$or\":[{}]}}}}",
            alts("a", 11),
            alts("b", 10),
            alts("c", 10)
        );
        assert!(matches!(Pattern::parse(&many), Err(PatternError::TooManyCombinations { count: 1100, .. })));
        let either: Vec<String> = (0..13).map(|i| format!("\"f{i}\":[1,{{\"exists\":false}}]")).collect();
        let either = format!("{{{}}}", either.join(","));
        assert!(matches!(Pattern::parse(&either), Err(PatternError::TooManyAlternatives { count: 8192, .. })));
        let stars = format!("{{\"a\":[{{\"wildcard\":\"{}\"}}]}}", "x*".repeat(101));
        assert!(matches!(Pattern::parse(&stars), Err(PatternError::TooComplex { .. })));
    }

    #[test]
    fn accepts_every_operator() {
        let p = Pattern::parse(
            r#"{"a":["x",1,true,null,{"prefix":"p"},{"suffix":{"equals-ignore-case":"S"}},{"equals-ignore-case":"e"},
                {"wildcard":"a*b"},{"anything-but":{"prefix":"q"}},{"numeric":[">",0,"<=",5]},{"exists":true},
                {"cidr":"10.0.0.0/8"}],"$or":[{"b":["1"]},{"c":{"d":["2"]}}]}"#,
        )
        .unwrap();
        assert_eq!(p.combinations(), 2);
    }
}
