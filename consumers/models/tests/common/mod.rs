//! The wire tests' parts: a real HTTP server on 127.0.0.1:0 answering scripted replies and keeping
//! every request it got, the conversation both clients are driven with, and a deadline.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};
use choreo_models::{ContentBlock, Message, ModelRequest, Role, ToolResult, ToolResultStatus, ToolSpec, ToolUse};
use serde_json::{Value, json};

/// One scripted answer of the server.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Never answer (the client's timeout is under test).
    hang: bool,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self::raw(status, &body.to_string()).header("content-type", "application/json")
    }

    pub fn raw(status: u16, body: &str) -> Self {
        Self { status, headers: Vec::new(), body: body.to_owned(), hang: false }
    }

    pub fn hang() -> Self {
        Self { hang: true, ..Self::raw(200, "") }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Script {
    replies: Vec<Reply>,
    requests: Mutex<Vec<Captured>>,
}

/// A server answering the n-th request with the n-th reply, the last one once they run out.
pub struct Server {
    pub url: String,
    script: Arc<Script>,
}

impl Server {
    pub async fn start(replies: Vec<Reply>) -> Self {
        assert!(!replies.is_empty(), "a server needs at least one reply");
        let script = Arc::new(Script { replies, requests: Mutex::new(Vec::new()) });
        let app = Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url: format!("http://{addr}"), script }
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.script.requests.lock().expect("requests lock").clone()
    }

    /// The one request the server got.
    pub fn only_request(&self) -> Captured {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request, got {requests:#?}");
        requests[0].clone()
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let reply = {
        let mut requests = script.requests.lock().expect("requests lock");
        requests.push(Captured { method, path: uri.path().to_owned(), headers, body });
        script.replies[(requests.len() - 1).min(script.replies.len() - 1)].clone()
    };
    if reply.hang {
        std::future::pending::<()>().await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(reply.body)).expect("a valid scripted reply")
}

/// An address nothing listens on.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    drop(listener);
    format!("http://{addr}")
}

/// Awaits `future`, failing the test if it takes longer than a few seconds.
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future).await.expect("the call answered within 10 s")
}

pub const SYSTEM: &str = "You resolve payment issues.";

pub fn list_charges_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"customer_id": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
        "required": ["customer_id"],
        "additionalProperties": false
    })
}

/// The first turn: the system prompt, one tool, the customer's complaint.
pub fn first_turn() -> ModelRequest {
    ModelRequest {
        agent: "payments".to_owned(),
        system: SYSTEM.to_owned(),
        messages: vec![Message::user_text("Customer c_1 says they were charged twice.")],
        tools: vec![ToolSpec {
            name: "payments.list_charges".to_owned(),
            description: "List a customer's charges.".to_owned(),
            input_schema: list_charges_schema(),
        }],
        max_tokens: 512,
    }
}

/// The second turn: the model's tool uses, answered by one result and one error.
pub fn second_turn() -> ModelRequest {
    let mut request = first_turn();
    request.messages.push(Message {
        role: Role::Assistant,
        content: vec![
            ContentBlock::Text("Let me look at the charges.".to_owned()),
            ContentBlock::ToolUse(ToolUse {
                tool_use_id: "tooluse_1".to_owned(),
                name: "payments.list_charges".to_owned(),
                input: json!({"customer_id": "c_1", "limit": 10}),
            }),
            ContentBlock::ToolUse(ToolUse {
                tool_use_id: "tooluse_2".to_owned(),
                name: "payments.list_charges".to_owned(),
                input: json!({"customer_id": "c_404"}),
            }),
        ],
    });
    request.messages.push(Message {
        role: Role::User,
        content: vec![
            ContentBlock::ToolResult(ToolResult {
                tool_use_id: "tooluse_1".to_owned(),
                content: json!({"charges": [{"id": "ch_1", "amount": 1250, "fee": -0.5}]}),
                status: ToolResultStatus::Success,
            }),
            ContentBlock::ToolResult(ToolResult {
                tool_use_id: "tooluse_2".to_owned(),
                content: json!("no customer c_404"),
                status: ToolResultStatus::Error,
            }),
        ],
    });
    request
}
