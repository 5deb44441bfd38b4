//! `POST /v1/events`: the three content modes of the CloudEvents HTTP binding 1.0.2 on a real
//! embedded bus — what reaches the bus, and each refusal with its status and problem type.

mod http_harness;

use http_harness::{Harness, placed, post, shipped};
use serde_json::{Value, json};

const PATH: &str = "/v1/events";
const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

async fn send_json(h: &Harness, content_type: &str, body: &Value) -> http_harness::Answer {
    let auth = h.service("backoffice");
    h.send(post(PATH, &[("authorization", &auth), ("content-type", content_type)], body.to_string())).await
}

#[tokio::test]
async fn a_structured_event_reaches_the_bus_as_sent() {
    let h = Harness::new().await;
    let answer = send_json(&h, STRUCTURED, &shipped(1)).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.body, json!({"event_ids": ["evt-1"]}));
    let events = h.delivered().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].to_json_value(), shipped(1));
}

#[tokio::test]
async fn media_types_are_matched_case_insensitively() {
    let h = Harness::new().await;
    let answer = send_json(&h, "Application/CloudEvents+JSON; charset=utf-8", &shipped(2)).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let batch = send_json(&h, "APPLICATION/CLOUDEVENTS-BATCH+JSON;charset=UTF-8", &json!([shipped(3)])).await;
    assert_eq!(batch.status, 202, "{batch:?}");
    let ids: Vec<String> = h.delivered().await.iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(ids, ["evt-2", "evt-3"]);
}

#[tokio::test]
async fn a_batch_of_ten_is_published_in_order_and_an_empty_batch_is_fine() {
    let h = Harness::new().await;
    let batch: Vec<Value> = (0..10).map(|i| if i % 2 == 0 { shipped(i) } else { placed(i) }).collect();
    let answer = send_json(&h, BATCH, &Value::Array(batch.clone())).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let sent: Vec<&str> = batch.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(answer.body["event_ids"], json!(sent));
    let delivered: Vec<String> = h.delivered().await.iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(delivered, sent);
    let empty = send_json(&h, BATCH, &json!([])).await;
    assert_eq!((empty.status.as_u16(), &empty.body), (202, &json!({"event_ids": []})));
}

#[tokio::test]
async fn a_batch_with_one_invalid_entry_publishes_nothing_and_points_at_it() {
    let h = Harness::new().await;
    let mut batch: Vec<Value> = (0..10).map(placed).collect();
    batch[3]["data"]["order_id"] = json!("1003");
    let answer = send_json(&h, BATCH, &Value::Array(batch)).await;
    assert_eq!((answer.status.as_u16(), answer.problem()), (422, "schema-violation"));
    assert_eq!(answer.errors(), [(Some(3), "/data/order_id".to_owned())]);
    assert!(h.delivered().await.is_empty(), "all or nothing");
    // The same for a fault against the spec rather than the schema: 400, its index, nothing sent.
    let mut batch: Vec<Value> = (0..4).map(shipped).collect();
    batch[2].as_object_mut().unwrap().remove("id");
    batch[3]["specversion"] = json!("0.3");
    let answer = send_json(&h, BATCH, &Value::Array(batch)).await;
    assert_eq!((answer.status.as_u16(), answer.problem()), (400, "malformed-request"));
    assert_eq!(answer.errors(), [(Some(2), "/id".to_owned()), (Some(3), "/specversion".to_owned())]);
    assert!(h.delivered().await.is_empty());
}

#[tokio::test]
async fn binary_mode_header_values_are_percent_decoded_and_content_type_is_datacontenttype() {
    let h = Harness::new().await;
    let auth = h.service("backoffice");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json; charset=utf-8"),
        ("ce-specversion", "1.0"),
        ("ce-id", "bin-1"),
        ("ce-source", "retail.backoffice"),
        ("ce-type", "ParcelScanned"),
        ("ce-time", "2026-01-05T10:00:00Z"),
        ("ce-subject", "Euro%20%e2%82%ac%20%F0%9F%98%80%2520"),
        ("ce-comment", r#""say \"hi\" now""#),
        ("CE-Region", "eu%2Dwest"),
    ];
    let answer = h.send(post(PATH, &headers, json!({"order_id": "o-1"}).to_string())).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let events = h.delivered().await;
    let event = &events[0];
    assert_eq!(event.id(), "bin-1");
    assert_eq!(event.subject(), Some("Euro € 😀%20"), "one round of decoding");
    assert_eq!(event.extension("comment").map(|v| v.to_string()), Some(r#"say "hi" now"#.to_owned()));
    assert_eq!(event.extension("region").map(|v| v.to_string()), Some("eu-west".to_owned()));
    assert_eq!(event.data_content_type(), Some("application/json; charset=utf-8"));
    assert_eq!(event.data(), Some(&json!({"order_id": "o-1"})));
}

#[tokio::test]
async fn binary_mode_breaches_of_the_spec_are_400() {
    let h = Harness::new().await;
    let auth = h.service("backoffice");
    let base = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "bin-2"),
        ("ce-source", "retail.backoffice"),
        ("ce-type", "ParcelScanned"),
    ];
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("ce-subject", "%C0%A0")], "/subject"),
        (&[("ce-subject", "50%")], "/subject"),
        (&[("ce-datacontenttype", "application/json")], "/datacontenttype"),
        (&[("ce-my-ext", "x")], "/my-ext"),
        (&[("ce-source", "retail backoffice")], "/source"),
    ];
    for (extra, pointer) in cases {
        let mut headers: Vec<(&str, &str)> =
            base.iter().filter(|(n, _)| extra.iter().all(|(e, _)| e != n)).copied().collect();
        headers.extend_from_slice(extra);
        let answer = h.send(post(PATH, &headers, "{}")).await;
        assert_eq!((answer.status.as_u16(), answer.problem()), (400, "malformed-request"), "{extra:?}: {answer:?}");
        assert_eq!(answer.errors(), [(None, pointer.to_owned())], "{extra:?}");
    }
    let no_version: Vec<_> = base.iter().filter(|(n, _)| *n != "ce-specversion").copied().collect();
    let answer = h.send(post(PATH, &no_version, "{}")).await;
    assert_eq!((answer.status.as_u16(), answer.problem()), (400, "malformed-request"));
    let mut text = base.to_vec();
    text[1] = ("content-type", "text/plain");
    let answer = h.send(post(PATH, &text, "hello")).await;
    assert_eq!((answer.status.as_u16(), answer.problem()), (415, "unsupported-media-type"));
    assert!(h.delivered().await.is_empty());
}

#[tokio::test]
async fn structured_breaches_of_the_spec_are_400() {
    let h = Harness::new().await;
    let mut upper = shipped(1);
    upper["myExtension"] = json!("x");
    let mut empty_type = shipped(2);
    empty_type["type"] = json!("");
    let mut both = shipped(3);
    both["data_base64"] = json!("AAAA");
    for (event, pointer) in [(upper, "/myExtension"), (empty_type, "/type"), (both, "/data_base64")] {
        let answer = send_json(&h, STRUCTURED, &event).await;
        assert_eq!((answer.status.as_u16(), answer.problem()), (400, "malformed-request"), "{answer:?}");
        assert_eq!(answer.errors(), [(None, pointer.to_owned())]);
    }
    let auth = h.service("backoffice");
    let not_json = h.send(post(PATH, &[("authorization", &auth), ("content-type", STRUCTURED)], "{oops")).await;
    assert_eq!((not_json.status.as_u16(), not_json.problem()), (400, "malformed-request"));
    let not_array = send_json(&h, BATCH, &shipped(4)).await;
    assert_eq!((not_array.status.as_u16(), not_array.problem()), (400, "malformed-request"));
    assert!(h.delivered().await.is_empty());
}

#[tokio::test]
async fn other_error_classes_have_their_status_and_type() {
    let h = Harness::new().await;
    let service = h.service("backoffice");
    let customer = h.customer("c-1001");
    let body = shipped(1).to_string();
    let none = h.send(post(PATH, &[("content-type", STRUCTURED)], body.clone())).await;
    assert_eq!((none.status.as_u16(), none.problem()), (401, "unauthorized"));
    let forbidden =
        h.send(post(PATH, &[("authorization", &customer), ("content-type", STRUCTURED)], body.clone())).await;
    assert_eq!((forbidden.status.as_u16(), forbidden.problem()), (403, "forbidden"));
    let plain =
        h.send(post(PATH, &[("authorization", &service), ("content-type", "application/json")], body.clone())).await;
    assert_eq!((plain.status.as_u16(), plain.problem()), (415, "unsupported-media-type"), "no ce- headers");
    let avro = h
        .send(post(PATH, &[("authorization", &service), ("content-type", "application/cloudevents+avro")], body))
        .await;
    assert_eq!((avro.status.as_u16(), avro.problem()), (415, "unsupported-media-type"));
    let mut big = shipped(2);
    big["data"]["pad"] = json!("x".repeat(300 * 1024));
    let event_too_large = send_json(&h, BATCH, &json!([shipped(1), big])).await;
    assert_eq!((event_too_large.status.as_u16(), event_too_large.problem()), (413, "payload-too-large"));
    assert_eq!(event_too_large.errors(), [(Some(1), String::new())]);
    let many: Vec<Value> = (0..5).map(|_| json!({"pad": "x".repeat(250 * 1024)})).collect();
    let body_too_large = send_json(&h, BATCH, &json!(many)).await;
    assert_eq!((body_too_large.status.as_u16(), body_too_large.problem()), (413, "payload-too-large"));
    assert!(h.delivered().await.is_empty());
}

#[tokio::test]
async fn an_unavailable_bus_is_503_with_retry_after_and_a_retry_is_accepted() {
    let h = Harness::with(|ingest| ingest.with_retry_after(std::time::Duration::from_millis(2500))).await;
    h.set_down(true);
    let batch = json!([shipped(1), shipped(2)]);
    let answer = send_json(&h, BATCH, &batch).await;
    assert_eq!((answer.status.as_u16(), answer.problem()), (503, "bus-unavailable"));
    assert_eq!(answer.headers["retry-after"], "3");
    assert_eq!(answer.body["accepted"], json!([]));
    assert!(h.delivered().await.is_empty());
    h.set_down(false);
    assert_eq!(send_json(&h, BATCH, &batch).await.status, 202);
    assert_eq!(h.delivered().await.len(), 2);
}
