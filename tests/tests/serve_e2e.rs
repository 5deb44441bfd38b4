//! `choreo serve` end to end, as a customer sees it: a request over HTTP, the agents at work on
//! the bus, the notifications on a real WebSocket — for that customer only, in order, resumed
//! exactly once after a disconnect — and a graceful stop.

use choreo_tests::customer::*;
use choreo_tests::served::Served;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_http_is_answered_on_the_customers_socket_only() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let (alice, bob) = (served.customer_token("c-1001"), served.customer_token("c-1002"));
    let mut alice_socket = connect(&served, &alice, None).await;
    let mut bob_socket = connect(&served, &bob, None).await;

    let message = "I was charged twice, and only the headphones arrived. I need it all by tomorrow.";
    let (status, accepted) = submit(&served, &alice, "alice-1", "o-1001", message).await;
    assert_eq!(status, 202, "{accepted}");
    let case = accepted["case_id"].as_str().expect("a case id").to_string();

    // The same request again with the same key: the same case, nothing new on the bus.
    let (again_status, again) = submit(&served, &alice, "alice-1", "o-1001", message).await;
    assert_eq!(again_status, 202, "{again}");
    assert_eq!(again["case_id"], accepted["case_id"]);
    assert_eq!(again["event_id"], accepted["event_id"]);

    let alice_saw = until_case_ends(&mut alice_socket, &case).await;
    let kinds = events(&alice_saw);
    assert_eq!(kinds.last(), Some(&"OrderSupportCompleted"), "{kinds:?}");
    for expected in ["SupportTriaged", "PaymentIssueResolved", "FulfilmentIssueResolved"] {
        assert!(kinds.contains(&expected), "{expected} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "OrderSupportCompleted").count(), 1, "{kinds:?}");
    let numbers = seqs(&alice_saw);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers not consecutive: {numbers:?}");
    let answer = alice_saw.last().unwrap()["data"]["answer"].as_str().unwrap();
    assert!(answer.contains("refund"), "{answer}");

    // Bob was connected all along. The first thing he receives is about his own case, so
    // nothing of Alice's case ever reached him.
    let (status, bobs) = submit(&served, &bob, "bob-1", "o-1002", "One item of my order is missing.").await;
    assert_eq!(status, 202, "{bobs}");
    let first = next_notification(&mut bob_socket).await;
    assert_eq!(first["case"], bobs["case_id"], "Bob received a notification that is not his: {first}");
    assert_eq!(first["seq"], 1);

    // Bob cannot submit about Alice's order: the customer comes from the token, and the
    // agents act only on what the token's customer owns.
    let (status, theirs) = submit(&served, &bob, "bob-2", "o-1001", "Refund me.").await;
    assert_eq!(status, 202, "accepted for triage: {theirs}");

    let (code, lines) = served.stop();
    assert_eq!(code, Some(0), "choreo serve did not stop cleanly: {lines:?}");
    assert!(lines.iter().any(|l| l == "choreo serve: stopped"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_gets_the_rest_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let token = served.customer_token("c-1003");
    let mut socket = connect(&served, &token, None).await;
    let (status, accepted) = submit(&served, &token, "k-1", "o-1003", "I was charged twice for this order.").await;
    assert_eq!(status, 202, "{accepted}");
    let case = accepted["case_id"].as_str().unwrap().to_string();

    // The first notification arrives, is acknowledged, and the client goes away mid-case.
    let first = next_notification(&mut socket).await;
    assert_eq!(first["case"], case.as_str());
    let first_seq = first["seq"].as_u64().unwrap();
    ack(&mut socket, first_seq).await;
    close(socket).await;

    // Back with the last number it acknowledged: the rest, each once, nothing before.
    let mut socket = connect(&served, &token, Some(first_seq)).await;
    let rest = until_case_ends(&mut socket, &case).await;
    let numbers = seqs(&rest);
    assert_eq!(numbers[0], first_seq + 1, "{numbers:?}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    let mut all = vec![first["event"].as_str().unwrap()];
    all.extend(events(&rest));
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "a notification came twice: {all:?}");
    assert_eq!(all.last(), Some(&"OrderSupportCompleted"));
    close(socket).await;

    // Everything was acknowledged: a reconnect without a number resumes after the stored
    // acknowledgement, so the next notification is a new one.
    let mut socket = connect(&served, &token, None).await;
    let (status, second) = submit(&served, &token, "k-2", "o-1003", "Charged twice again?").await;
    assert_eq!(status, 202, "{second}");
    let next = next_notification(&mut socket).await;
    assert_eq!(next["seq"].as_u64(), Some(numbers.last().unwrap() + 1), "{next}");
    assert_eq!(next["case"], second["case_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_get_a_close_reason() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let service = served.token(&["--service", "backoffice"]);
    for (token, code, reason) in [("not-a-token", 4401, "malformed token"), (service.as_str(), 4403, "customer")] {
        let mut socket = connect(&served, token, None).await;
        let close = loop {
            match tokio::time::timeout(WAIT, socket.next()).await.expect("no close within the wait") {
                Some(Ok(Message::Close(Some(frame)))) => break frame,
                Some(Ok(Message::Close(None))) | None => panic!("closed without a reason"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("WebSocket error instead of a close frame: {e}"),
            }
        };
        assert_eq!(u16::from(close.code), code, "{token}: {close:?}");
        assert!(close.reason.contains(reason), "{token}: {close:?}");
    }
    // And the page is served, with its script.
    let page = reqwest::get(format!("{}/", served.base)).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert!(page.text().await.unwrap().contains("/app.js"));
}

#[test]
fn a_port_in_use_is_a_clear_error_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&dir.path().join("first"));
    let second = dir.path().join("second");
    let out = choreo_tests::choreo()
        .args(["serve", "--addr", &served.host, "--data-dir"])
        .arg(&second)
        .output()
        .expect("run choreo serve");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("listen on {}", served.host)), "{stderr}");
    assert!(!second.exists(), "the data directory was created before the port was taken");
}
