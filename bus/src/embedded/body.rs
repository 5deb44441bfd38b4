//! The delivered event, written as text once when the event is put: exactly EventBridge's
//! shape and key order. What rules match is byte for byte what consumers receive.

use chrono::{DateTime, SecondsFormat, Utc};

use super::Names;

const ID_PREFIX: &str = r#"{"version":"0","id":""#;

/// The delivered event for a put entry. `detail` is already checked to be a JSON object.
pub(crate) fn build(
    names: &Names,
    id: &str,
    source: &str,
    detail_type: &str,
    time: DateTime<Utc>,
    resources: &[String],
    detail: &str,
) -> String {
    let mut out = String::with_capacity(ID_PREFIX.len() + 200 + source.len() + detail_type.len() + detail.len());
    out.push_str(ID_PREFIX);
    out.push_str(id);
    out.push_str(r#"","detail-type":"#);
    push_str(&mut out, detail_type);
    out.push_str(r#","source":"#);
    push_str(&mut out, source);
    out.push_str(r#","account":"#);
    push_str(&mut out, &names.account);
    out.push_str(r#","time":""#);
    out.push_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true));
    out.push_str(r#"","region":"#);
    push_str(&mut out, &names.region);
    out.push_str(r#","resources":["#);
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, r);
    }
    out.push_str(r#"],"detail":"#);
    out.push_str(detail.trim_matches([' ', '\t', '\n', '\r']));
    out.push('}');
    out
}

/// The same event as a replay delivers it: a new `id` and `replay-name` added. Answers `None`
/// for text the bus did not write.
pub(crate) fn replayed(body: &str, new_id: &str, replay_name: &str) -> Option<String> {
    let rest = body.strip_prefix(ID_PREFIX)?;
    let end = rest.find('"')?;
    let after = rest[end..].strip_suffix('}')?;
    let mut out = String::with_capacity(body.len() + replay_name.len() + 32);
    out.push_str(ID_PREFIX);
    out.push_str(new_id);
    out.push_str(after);
    out.push_str(r#","replay-name":"#);
    push_str(&mut out, replay_name);
    out.push('}');
    Some(out)
}

fn push_str(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    let quoted = serde_json::to_string(s).unwrap_or_default();
    out.push_str(&quoted);
}

#[cfg(test)]
mod tests {
    use choreo_schemas::eventbridge::DeliveredEvent;

    use super::*;

    fn names() -> Names {
        Names { bus: "choreo".into(), account: "123456789012".into(), region: "eu-west-1".into() }
    }

    #[test]
    fn body_is_eventbridge_s_delivered_event_in_its_key_order() {
        let time = DateTime::parse_from_rfc3339("2024-11-29T10:15:00.750Z").unwrap().to_utc();
        let body = build(
            &names(),
            "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "retail.\"api\"",
            "OrderSupportPlaced",
            time,
            &["arn:aws:s3:::b".into()],
            " {\"a\": [1, 2]}\n",
        );
        let keys: Vec<String> = crate::json::members(body.as_bytes()).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"]
        );
        let event: DeliveredEvent = serde_json::from_str(&body).unwrap();
        assert_eq!(event.event.source, "retail.\"api\"");
        assert_eq!(event.event.time.unwrap().to_rfc3339(), "2024-11-29T10:15:00+00:00");
        assert!(body.contains(r#""time":"2024-11-29T10:15:00Z""#), "{body}");
        assert!(body.ends_with(r#""detail":{"a": [1, 2]}}"#), "{body}");
        assert_eq!(event.replay_name, None);

        let again = replayed(&body, "0e0b9d3c-1111-4222-8333-944455556666", "fix-payments").unwrap();
        let event: DeliveredEvent = serde_json::from_str(&again).unwrap();
        assert_eq!(event.event.id.as_deref(), Some("0e0b9d3c-1111-4222-8333-944455556666"));
        assert_eq!(event.replay_name.as_deref(), Some("fix-payments"));
        assert_eq!(event.event.detail, serde_json::json!({"a": [1, 2]}));
        assert!(replayed("{\"other\":1}", "x", "y").is_none());
    }
}
