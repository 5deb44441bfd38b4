//! The notifier on AWS: API Gateway's WebSocket API in front, two Lambda handlers behind,
//! the state in DynamoDB ([`table`]). The same protocol as the local WebSocket (see the crate
//! docs), with what API Gateway changes:
//!
//! - **`$connect`** ([`AwsNotifier::socket`]): the token (query `token` or `Authorization:
//!   Bearer`) is checked there; a refusal is the handshake's HTTP answer: 401 for a bad token,
//!   403 for a token that is not a customer's. `after` (query) is kept with the connection.
//! - The server cannot speak before the connection is up, so the client speaks first:
//!   **`{"type":"hello"}`** on `$default` is answered with `ready` and every notification after
//!   `after` (or after the customer's last acknowledgement). `{"type":"ack","seq":N}` moves
//!   the acknowledgement forward, as locally.
//! - **A protocol error** (a frame that is not ours, an ack beyond the last notification) is
//!   answered with `{"type":"close","code":1002,"reason":…}` and the connection is deleted
//!   (API Gateway closes it; it does not let the server choose the close code).
//! - **`$disconnect`** forgets the connection.
//! - **Pushes** ([`AwsNotifier::push`]): the notifier's queue feeds a function; each event for
//!   a customer becomes a notification of theirs (one per CloudEvent `id`, numbered), posted
//!   with `PostToConnection` to each of that customer's connections, and to nobody else's. A
//!   connection that answers 410 Gone is deleted; one whose token has expired is closed
//!   (`DeleteConnection`) and deleted. A record whose store write failed is reported in
//!   `batchItemFailures` (retried by SQS, then dead-lettered by its redrive policy); a push
//!   that failed otherwise is not retried: the notification is stored, and the next `hello`
//!   sends it.

pub mod table;

use aws_config::SdkConfig;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use choreo_auth::Verifier;
use choreo_schemas::eventbridge::DeliveredEvent;

use crate::NotifierError;
use crate::protocol::{ClientFrame, close_code, ready};
use crate::store::Pending;
use crate::token::authenticate;
use table::{Connection, Table};

/// How a post to a connection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    Sent,
    /// 410: the client went away.
    Gone,
    Failed(String),
}

/// The notifier's handlers on AWS.
pub struct AwsNotifier {
    table: Table,
    verifier: Option<Verifier>,
    sockets: Option<aws_sdk_apigatewaymanagement::Client>,
}

impl AwsNotifier {
    /// The notifier over `table`; give it a verifier for the socket routes and an endpoint for
    /// posting to connections.
    pub fn new(table: Table) -> Self {
        Self { table, verifier: None, sockets: None }
    }

    /// Checks `$connect` tokens with `verifier`.
    #[must_use]
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Posts to connections of the WebSocket API stage at `endpoint`
    /// (`https://<api>.execute-api.<region>.amazonaws.com/<stage>`).
    #[must_use]
    pub fn with_endpoint(mut self, sdk: &SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk).endpoint_url(endpoint).build();
        self.sockets = Some(aws_sdk_apigatewaymanagement::Client::from_conf(config));
        self
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// A WebSocket route's event (`$connect`, `$disconnect`, `$default`), answered.
    pub async fn socket(&self, request: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let route = request.request_context.route_key.clone().unwrap_or_default();
        let Some(id) = request.request_context.connection_id.clone() else {
            return answer(400, "no connection id");
        };
        let outcome = match route.as_str() {
            "$connect" => self.connect(&id, &request).await,
            "$disconnect" => self.table.disconnect(&id, None).await.map(|()| answer(200, "")),
            _ => self.frame(&id, request.body.as_deref().unwrap_or("")).await,
        };
        outcome.unwrap_or_else(|e| {
            tracing::error!(connection = %id, %route, error = %e, "the notifier's store failed");
            answer(500, "the notification store failed")
        })
    }

    async fn connect(
        &self,
        id: &str,
        request: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, NotifierError> {
        let Some(verifier) = &self.verifier else {
            return Ok(answer(500, "no token verifier configured"));
        };
        let header = request.headers.get("authorization").and_then(|v| v.to_str().ok());
        let customer = match authenticate(verifier, header, request.query_string_parameters.first("token")) {
            Ok(customer) => customer,
            Err(close) => {
                let status = if close.code == close_code::FORBIDDEN { 403 } else { 401 };
                return Ok(answer(status, &close.reason));
            }
        };
        let after = match request.query_string_parameters.first("after").map(str::parse::<u64>) {
            None => None,
            Some(Ok(after)) => Some(after),
            Some(Err(_)) => return Ok(answer(400, "`after` is not a sequence number")),
        };
        let connection =
            Connection { id: id.to_owned(), customer: customer.id, after, expires: customer.exp.unwrap_or(0) };
        self.table.connect(&connection).await?;
        Ok(answer(200, ""))
    }

    /// A frame from a connection: `hello` or `ack`.
    async fn frame(&self, id: &str, text: &str) -> Result<ApiGatewayProxyResponse, NotifierError> {
        let Some(connection) = self.table.connection(id).await? else {
            return Ok(answer(410, "unknown connection"));
        };
        let customer = connection.customer.as_str();
        let (last, acked) = self.table.cursor(customer).await?;
        match ClientFrame::parse(text) {
            Ok(ClientFrame::Hello) => {
                let after = connection.after.unwrap_or(acked);
                if after > last {
                    self.protocol_error(
                        id,
                        customer,
                        &format!("after {after} is beyond the last notification ({last})"),
                    )
                    .await?;
                    return Ok(answer(200, ""));
                }
                if self.post(id, ready(customer, after)).await == Posted::Sent {
                    for (_, frame) in self.table.after(customer, after).await? {
                        if self.post(id, frame).await != Posted::Sent {
                            break;
                        }
                    }
                }
            }
            Ok(ClientFrame::Ack { seq }) if seq > last => {
                self.protocol_error(id, customer, &format!("ack {seq} is beyond the last notification sent ({last})"))
                    .await?;
            }
            Ok(ClientFrame::Ack { seq }) => self.table.ack(customer, seq).await?,
            Err(close) => self.protocol_error(id, customer, &close.reason).await?,
        }
        Ok(answer(200, ""))
    }

    /// Says why, closes the connection and forgets it.
    async fn protocol_error(&self, id: &str, customer: &str, reason: &str) -> Result<(), NotifierError> {
        let frame = serde_json::json!({"type": "close", "code": close_code::PROTOCOL, "reason": reason}).to_string();
        self.post(id, frame).await;
        self.close(id, customer).await
    }

    /// Closes connection `id` at API Gateway and forgets it.
    async fn close(&self, id: &str, customer: &str) -> Result<(), NotifierError> {
        if let Some(sockets) = &self.sockets
            && let Err(e) = sockets.delete_connection().connection_id(id).send().await
        {
            tracing::debug!(connection = %id, error = %e, "DeleteConnection failed (gone already?)");
        }
        self.table.disconnect(id, Some(customer)).await
    }

    /// Posts `frame` to connection `id`.
    pub async fn post(&self, id: &str, frame: String) -> Posted {
        let Some(sockets) = &self.sockets else {
            return Posted::Failed("no WebSocket endpoint configured (CHOREO_WEBSOCKET_ENDPOINT)".into());
        };
        match sockets.post_to_connection().connection_id(id).data(Blob::new(frame)).send().await {
            Ok(_) => Posted::Sent,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Posted::Gone,
            Err(e) => Posted::Failed(format!(
                "PostToConnection `{id}`: {}",
                aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e)
            )),
        }
    }

    /// A batch of the notifier's queue: each record's event notified to its customer and
    /// pushed to their connections; answers the records to retry.
    pub async fn push(&self, batch: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in batch.records {
            if let Err(e) = self.push_one(&record).await {
                let id = record.message_id.clone().unwrap_or_default();
                tracing::warn!(message = %id, error = %e, "a notification is left for SQS to retry");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn push_one(&self, record: &SqsMessage) -> Result<(), String> {
        let body = record.body.as_deref().unwrap_or("");
        let event: DeliveredEvent = serde_json::from_str(body).map_err(|e| format!("not an EventBridge event: {e}"))?;
        let envelope = event.into_delivery().map_err(|e| format!("no CloudEvent: {e}"))?.envelope;
        // Not for a customer: nothing to push, nothing to retry.
        let Some(pending) = Pending::of(&envelope) else { return Ok(()) };
        let Some(seq) = self.table.notify(&pending).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let frame = pending.frame(seq);
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        for (id, expires) in self.table.connections_of(pending.customer()).await.map_err(|e| e.to_string())? {
            if expires <= now {
                let reason = serde_json::json!({"type": "close", "code": close_code::UNAUTHENTICATED, "reason": "token expired"});
                self.post(&id, reason.to_string()).await;
                self.close(&id, pending.customer()).await.map_err(|e| e.to_string())?;
                continue;
            }
            match self.post(&id, frame.clone()).await {
                Posted::Sent => {}
                Posted::Gone => {
                    self.table.disconnect(&id, Some(pending.customer())).await.map_err(|e| e.to_string())?
                }
                Posted::Failed(why) => {
                    tracing::warn!(connection = %id, seq, %why, "a push failed; the next hello sends it")
                }
            }
        }
        Ok(())
    }
}

/// A route's answer: `status`, and a plain text body.
fn answer(status: i64, body: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    if !body.is_empty() {
        response.body = Some(Body::Text(body.to_owned()));
    }
    response
}
