//! Who publishes what: each producer's events and each agent's completions and escalations, with
//! the delivered EventBridge event a rule would see (built from the event's example) and what
//! each field of it can hold.

use std::path::Path;

use choreo_schemas::catalog;
use serde_json::{Value, json};

use super::domain::{Domain, Schema, accepts};

/// Whom a producer's events act for: the envelope's `authtype` and `authid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `app_user`, and the customer's id.
    Customer,
    /// `service_account`, and this id.
    Service(String),
}

/// Who published an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Emitter {
    /// A producer, by its index in [`super::World::producers`].
    Producer(usize),
    /// An agent, by its index among the agents checked.
    Agent(usize),
}

/// One kind of event one emitter publishes.
#[derive(Debug, Clone)]
pub(crate) struct Emission {
    pub event: String,
    pub emitter: Emitter,
    /// The CloudEvent `source`.
    pub source: String,
    /// `None` for agents: they carry over the auth context of the event they answer.
    pub auth: Option<Auth>,
    /// The data schema, when there is one.
    pub schema: Option<Value>,
    /// The delivered EventBridge event built from the example, when the example is valid.
    pub delivered: Option<String>,
}

impl Emission {
    pub fn new(event: &str, emitter: Emitter, source: &str, auth: Option<Auth>, schema: Option<Value>) -> Self {
        Emission { event: event.to_owned(), emitter, source: source.to_owned(), auth, schema, delivered: None }
    }

    /// Builds the delivered event from `examples/<Event>.json`, or else from a skeleton of the
    /// schema; only from data the schema accepts, so that a match is evidence.
    pub fn with_example(mut self, examples: &Path) -> Self {
        let Some(schema) = &self.schema else { return self };
        let example = std::fs::read_to_string(examples.join(format!("{}.json", self.event)))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .filter(|data| accepts(schema, data))
            .or_else(|| skeleton(schema, schema, 0).filter(|data| accepts(schema, data)));
        self.delivered = example.map(|data| self.deliver(data));
        self
    }

    fn deliver(&self, data: Value) -> String {
        let (authtype, authid) = match &self.auth {
            Some(Auth::Service(id)) => ("service_account", id.as_str()),
            // Agents mostly act for the customer whose case it is.
            Some(Auth::Customer) | None => ("app_user", "c-1001"),
        };
        let subject = data.get("order_id").and_then(Value::as_str).map(|o| format!("orders/{o}"));
        json!({
            "version": "0",
            "id": "00000000-0000-0000-0000-000000000000",
            "detail-type": self.event,
            "source": self.source,
            "account": "000000000000",
            "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "specversion": "1.0",
                "id": "01JDQ5X8Y7Z6W5V4T3S2R1Q0PN",
                "source": self.source,
                "type": self.event,
                "subject": subject,
                "time": "2026-01-01T00:00:00Z",
                "datacontenttype": "application/json",
                "dataschema": catalog::schema_id(&self.event, 1),
                "correlationid": "01JDQ5X8Y7Z6W5V4T3S2R1Q0PN",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "authtype": authtype,
                "authid": authid,
                "data": data,
            },
        })
        .to_string()
    }

    /// What the field at `path` of the delivered event can hold.
    pub fn domain(&self, path: &[String]) -> Domain {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        match keys.as_slice() {
            ["detail-type"] | ["detail", "type"] => Domain::values(vec![self.event.clone().into()]),
            ["source"] | ["detail", "source"] => Domain::values(vec![self.source.clone().into()]),
            ["version"] => Domain::values(vec!["0".into()]),
            ["detail", "specversion"] => Domain::values(vec!["1.0".into()]),
            ["detail", "datacontenttype"] => Domain::values(vec!["application/json".into()]),
            ["id" | "account" | "time" | "region"] => Domain::string(),
            ["replay-name"] => Domain { absent: true, ..Domain::string() },
            ["detail", "authtype"] => match &self.auth {
                Some(Auth::Customer) => Domain::values(vec!["app_user".into()]),
                Some(Auth::Service(_)) => Domain::values(vec!["service_account".into()]),
                None => Domain::unknown(),
            },
            ["detail", "authid"] => match &self.auth {
                Some(Auth::Customer) => Domain::string(),
                Some(Auth::Service(id)) => Domain::values(vec![id.clone().into()]),
                None => Domain::unknown(),
            },
            ["detail", "data", _, ..] => match &self.schema {
                Some(schema) => Schema::new(schema).domain(&path[2..]),
                None => Domain::unknown(),
            },
            // The delivered shape has exactly these top-level fields.
            [first, ..] if !TOP_LEVEL.contains(first) => Domain::missing(),
            // Other CloudEvent attributes and extensions (unknown ones are kept), `resources`.
            _ => Domain::unknown(),
        }
    }
}

/// The fields of a delivered EventBridge event.
const TOP_LEVEL: &[&str] =
    &["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail", "replay-name"];

/// The smallest data a schema could accept: required properties, first alternatives, lower
/// bounds. Checked against the schema before it is used.
fn skeleton(node: &Value, root: &Value, depth: usize) -> Option<Value> {
    if depth > 16 {
        return None;
    }
    let obj = node.as_object()?;
    if let Some(c) = obj.get("const") {
        return Some(c.clone());
    }
    if let Some(first) = obj.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return Some(first.clone());
    }
    if let Some(target) = obj.get("$ref").and_then(Value::as_str).and_then(|r| root.pointer(r.strip_prefix('#')?)) {
        return skeleton(target, root, depth + 1);
    }
    if let Some(first) = obj.get("anyOf").or_else(|| obj.get("oneOf")).and_then(|a| a.as_array()?.first()) {
        return skeleton(first, root, depth + 1);
    }
    let kind = match obj.get("type")? {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ => return None,
    };
    let min = |key| obj.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(match kind {
        "object" => {
            let mut map = serde_json::Map::new();
            for key in obj.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                map.insert(key.to_owned(), skeleton(obj.get("properties")?.get(key)?, root, depth + 1)?);
            }
            Value::Object(map)
        }
        "array" if min("minItems") == 0 => json!([]),
        "array" => json!([skeleton(obj.get("items")?, root, depth + 1)?]),
        "string" => "x".repeat(usize::try_from(min("minLength")).ok()?.max(1)).into(),
        "integer" | "number" => obj.get("minimum").cloned().unwrap_or(json!(0)),
        "boolean" => false.into(),
        _ => Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples")
    }

    fn emission(event: &str, auth: Option<Auth>) -> Emission {
        let schema = catalog::lookup(event).map(|e| e.schema().clone());
        Emission::new(event, Emitter::Producer(0), "retail.test", auth, schema).with_example(&examples())
    }

    #[test]
    fn catalog_examples_become_delivered_events() {
        let placed = emission("OrderSupportPlaced", Some(Auth::Customer));
        let delivered: Value = serde_json::from_str(placed.delivered.as_deref().unwrap()).unwrap();
        assert_eq!(delivered["detail-type"], "OrderSupportPlaced");
        assert_eq!(delivered["detail"]["data"]["channel"], "web");
        assert_eq!(delivered["detail"]["authtype"], "app_user");
        assert_eq!(delivered["detail"]["subject"], "orders/o-1001");
    }

    #[test]
    fn events_without_an_example_get_a_valid_skeleton() {
        let schema = json!({"type": "object", "additionalProperties": false,
            "required": ["order_id", "code", "amount_minor", "kind"],
            "properties": {"order_id": {"type": "string"}, "code": {"type": "string", "minLength": 6},
                           "amount_minor": {"type": "integer", "minimum": 1},
                           "kind": {"enum": ["voucher", "points"]}, "note": {"type": "string"}}});
        let data = skeleton(&schema, &schema, 0).unwrap();
        assert_eq!(data, json!({"order_id": "x", "code": "xxxxxx", "amount_minor": 1, "kind": "voucher"}));
        let voucher = Emission::new("VoucherGranted", Emitter::Agent(0), "agents.loyalty", None, Some(schema))
            .with_example(&examples());
        assert!(voucher.delivered.unwrap().contains("xxxxxx"));
    }

    #[test]
    fn envelope_fields_hold_what_the_emitter_sets() {
        let shipped = emission("OrderShipped", Some(Auth::Service("backoffice".into())));
        let at = |p: &str| shipped.domain(&p.split('.').map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(at("detail-type").values, vec![json!("OrderShipped")]);
        assert_eq!(at("detail.authtype").values, vec![json!("service_account")]);
        assert_eq!(at("detail.authid").values, vec![json!("backoffice")]);
        assert_eq!(at("colour"), Domain::missing());
        assert!(at("detail.budgethops").unknown);
        assert!(at("detail.data.service_level").values.contains(&json!("next_day")));
        let completion = Emission::new("SupportTriaged", Emitter::Agent(0), "agents.support", None, None);
        assert!(completion.domain(&["detail".into(), "authtype".into()]).unknown);
    }
}
