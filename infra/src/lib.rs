//! The AWS SAM template of a Choreo deployment, synthesized from the agent folders
//! (`choreo infra synth`): the event bus and its archive; per agent its rule (the manifest's
//! pattern), SQS queue and dead-letter queue, function and event source mapping; the notifier's
//! rule and queue, its WebSocket API and functions; the ingest HTTP API; the DynamoDB tables;
//! and for each function only the permissions it needs. Adding an agent folder adds its
//! resources and changes nothing else.
//!
//! The template is JSON (CloudFormation reads it as it reads YAML), written with sorted keys so
//! that the same folders always give the same bytes.

use choreo_bus::api::RetryPolicy;
use choreo_bus::aws::queue_tags;
use choreo_consumers::manifest::Agent;
use choreo_consumers::runtime::retry_policy;
use serde_json::{Map, Value, json};

/// The functions' binaries, built by SAM with cargo-lambda (`BuildMethod: rust-cargolambda`).
pub const AGENT_BINARY: &str = "choreo-agent";
pub const INGEST_BINARY: &str = "choreo-ingest";
pub const NOTIFIER_BINARY: &str = "choreo-notifier";

/// What the template is made for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The custom event bus's name.
    pub bus_name: String,
    /// How long the archive keeps events, in days (0: forever).
    pub archive_retention_days: u32,
    /// Where the workspace is, from the template's folder (`CodeUri` of the functions).
    pub code_uri: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self { bus_name: "choreo".into(), archive_retention_days: 30, code_uri: "..".into() }
    }
}

/// How long an agent's function may run on one batch: the model's turns take their time.
const AGENT_TIMEOUT_S: u64 = 300;

/// The template for `agents`, as a JSON value with its keys sorted.
pub fn synth(agents: &[Agent], settings: &Settings) -> Value {
    let mut resources = Map::new();
    let mut add = |id: String, resource: Value| {
        resources.insert(id, resource);
    };
    add("EventBus".into(), json!({"Type": "AWS::Events::EventBus", "Properties": {"Name": settings.bus_name}}));
    add(
        "Archive".into(),
        json!({"Type": "AWS::Events::Archive", "Properties": {
            "ArchiveName": settings.bus_name,
            "Description": "Every event of the bus, for replays to an agent that failed",
            "SourceArn": {"Fn::GetAtt": ["EventBus", "Arn"]},
            "RetentionDays": settings.archive_retention_days,
        }}),
    );
    add("LedgerTable".into(), table("The agents' effect ledger, runs and cases (conditional writes)"));
    add("ConnectionsTable".into(), table("The notifier's WebSocket connections and customers' notifications"));

    for agent in agents {
        let id = logical_id(agent.name());
        let pattern: Value = serde_json::from_str(&agent.pattern).unwrap_or(Value::Null);
        for (suffix, resource) in subscription(&id, &agent.inbox(), pattern, &retry_policy(agent), AGENT_TIMEOUT_S) {
            add(format!("{id}{suffix}"), resource);
        }
        let concurrency = agent.manifest.concurrency.clamp(2, 1000);
        let mut policies = vec![
            json!({"SQSPollerPolicy": {"QueueName": {"Fn::GetAtt": [format!("{id}Queue"), "QueueName"]}}}),
            json!({"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": [format!("{id}DeadLetterQueue"), "QueueName"]}}}),
            json!({"EventBridgePutEventsPolicy": {"EventBusName": {"Ref": "EventBus"}}}),
            json!({"DynamoDBCrudPolicy": {"TableName": {"Ref": "LedgerTable"}}}),
        ];
        policies.push(queue_lookup(&[format!("{id}Queue"), format!("{id}DeadLetterQueue")]));
        policies.push(json!({"Statement": [{
            "Effect": "Allow",
            "Action": ["bedrock:InvokeModel"],
            "Resource": [
                {"Fn::Sub": "arn:${AWS::Partition}:bedrock:*::foundation-model/*"},
                {"Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/${ModelId}"},
            ],
        }]}));
        add(
            format!("{id}Function"),
            function(
                AGENT_BINARY,
                &settings.code_uri,
                &format!("The `{}` agent: {}", agent.name(), agent.manifest.description),
                AGENT_TIMEOUT_S,
                json!({"CHOREO_AGENT": agent.name(), "CHOREO_MODEL": {"Fn::Sub": "bedrock:${ModelId}"}}),
                policies,
                json!({"Queue": {"Type": "SQS", "Properties": {
                    "Queue": {"Fn::GetAtt": [format!("{id}Queue"), "Arn"]},
                    "BatchSize": 10,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "ScalingConfig": {"MaximumConcurrency": concurrency},
                }}}),
            ),
        );
    }

    let notifier_pattern: Value = serde_json::from_str(choreo_notifier::PATTERN).unwrap_or(Value::Null);
    for (suffix, resource) in
        subscription("Notifier", choreo_notifier::INBOX, notifier_pattern, &choreo_notifier::retry_policy(), 30)
    {
        add(format!("Notifier{suffix}"), resource);
    }
    for (id, resource) in notifier(&settings.code_uri) {
        add(id, resource);
    }
    add(
        "IngestFunction".into(),
        function(
            INGEST_BINARY,
            &settings.code_uri,
            "The ingest API: customers' requests and systems' events, checked and put on the bus",
            30,
            json!({"CHOREO_JWKS_URL": {"Ref": "JwksUrl"}, "CHOREO_TOKEN_ISSUER": {"Ref": "TokenIssuer"}}),
            vec![
                json!({"EventBridgePutEventsPolicy": {"EventBusName": {"Ref": "EventBus"}}}),
                // Its Idempotency-Key records.
                json!({"DynamoDBCrudPolicy": {"TableName": {"Ref": "LedgerTable"}}}),
            ],
            json!({"Api": {"Type": "HttpApi", "Properties": {"Path": "/v1/{proxy+}", "Method": "ANY"}}}),
        ),
    );

    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": "Choreo: event-driven agents on EventBridge. Synthesized by `choreo infra synth` from the agent folders; do not edit.",
        "Parameters": {
            "ModelId": {
                "Type": "String",
                "MinLength": 1,
                "Description": "The Bedrock model (or inference profile) id the agents call through Converse",
            },
            "JwksUrl": {
                "Type": "String",
                "AllowedPattern": "https://.+",
                "Description": "The JSON Web Key Set (https) of the issuer of customers' and services' tokens (a Cognito user pool's, an OIDC provider's); read by the ingest API and the notifier",
            },
            "TokenIssuer": {
                "Type": "String",
                "MinLength": 1,
                "Description": "The `iss` of the tokens the ingest API and the notifier accept (audience `choreo`)",
            },
        },
        "Globals": {"Function": {
            "Runtime": "provided.al2023",
            "Architectures": ["arm64"],
            "Handler": "bootstrap",
            "MemorySize": 512,
            "Environment": {"Variables": {
                "CHOREO_BUS": {"Ref": "EventBus"},
                "CHOREO_LEDGER_TABLE": {"Ref": "LedgerTable"},
                "CHOREO_CONNECTIONS_TABLE": {"Ref": "ConnectionsTable"},
            }},
        }},
        "Resources": resources,
        "Outputs": {
            "EventBusName": {"Value": {"Ref": "EventBus"}},
            "EventBusArn": {"Value": {"Fn::GetAtt": ["EventBus", "Arn"]}},
            "IngestUrl": {"Value": {"Fn::Sub": "https://${ServerlessHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/v1"}},
            "NotificationsUrl": {"Value": {"Fn::Sub": "wss://${NotificationsApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/live"}},
        },
    });
    sorted(template)
}

/// The template as its file holds it: pretty JSON, a newline at the end.
pub fn to_text(template: &Value) -> String {
    let mut text = serde_json::to_string_pretty(template).unwrap_or_default();
    text.push('\n');
    text
}

/// A CloudFormation logical id from an agent's name: `payments` → `Payments`,
/// `gift-wrap` → `GiftWrap`.
pub fn logical_id(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// A subscriber's rule, queue, dead-letter queue and their access policy, as `put_targets`
/// makes them on the AWS backend (the same redrive policy and `choreo:*` tags).
fn subscription(id: &str, inbox: &str, pattern: Value, policy: &RetryPolicy, timeout_s: u64) -> Vec<(String, Value)> {
    let dead = format!("{inbox}-dlq");
    let rule_arn =
        format!("arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/${{EventBus}}/{inbox}");
    let tags: Vec<Value> = queue_tags(policy, &dead, "", inbox)
        .into_iter()
        .map(|(key, value)| match key.as_str() {
            "choreo:rule-arn" => json!({"Key": key, "Value": {"Fn::Sub": rule_arn}}),
            _ => json!({"Key": key, "Value": value}),
        })
        .collect();
    let send = json!({
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::Sub": rule_arn}}},
    });
    let mut to_queue = send.clone();
    to_queue["Resource"] = json!({"Fn::GetAtt": [format!("{id}Queue"), "Arn"]});
    let mut to_dead = send;
    to_dead["Resource"] = json!({"Fn::GetAtt": [format!("{id}DeadLetterQueue"), "Arn"]});
    vec![
        (
            "DeadLetterQueue".into(),
            json!({"Type": "AWS::SQS::Queue", "Properties": {"QueueName": dead, "MessageRetentionPeriod": 1_209_600}}),
        ),
        (
            "Queue".into(),
            json!({"Type": "AWS::SQS::Queue", "Properties": {
                "QueueName": inbox,
                // SQS's advice: six times the function's timeout.
                "VisibilityTimeout": timeout_s * 6,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [format!("{id}DeadLetterQueue"), "Arn"]},
                    "maxReceiveCount": (policy.maximum_retry_attempts + 1).clamp(1, 1000),
                },
                "Tags": tags,
            }}),
        ),
        (
            "QueuePolicy".into(),
            json!({"Type": "AWS::SQS::QueuePolicy", "Properties": {
                "Queues": [{"Ref": format!("{id}Queue")}, {"Ref": format!("{id}DeadLetterQueue")}],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [to_queue, to_dead]},
            }}),
        ),
        (
            "Rule".into(),
            json!({"Type": "AWS::Events::Rule", "Properties": {
                "Name": inbox,
                "EventBusName": {"Ref": "EventBus"},
                "EventPattern": pattern,
                "State": "ENABLED",
                "Targets": [{
                    "Id": inbox,
                    "Arn": {"Fn::GetAtt": [format!("{id}Queue"), "Arn"]},
                    "RetryPolicy": {
                        "MaximumRetryAttempts": policy.maximum_retry_attempts,
                        "MaximumEventAgeInSeconds": policy.maximum_event_age.as_secs(),
                    },
                    "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [format!("{id}DeadLetterQueue"), "Arn"]}},
                }],
            }}),
        ),
    ]
}

/// The notifier on API Gateway: a WebSocket API whose `$connect` (the token checked there),
/// `$disconnect` and `$default` (`hello`, acknowledgements) go to one function, and a function fed by
/// the notifier's queue that pushes with `PostToConnection`.
fn notifier(code_uri: &str) -> Vec<(String, Value)> {
    let endpoint = json!({"Fn::Sub": "https://${NotificationsApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/live"});
    let socket_env = json!({
        "CHOREO_JWKS_URL": {"Ref": "JwksUrl"},
        "CHOREO_TOKEN_ISSUER": {"Ref": "TokenIssuer"},
        "CHOREO_NOTIFIER_ROLE": "socket",
        "CHOREO_WEBSOCKET_ENDPOINT": endpoint,
    });
    let push_env = json!({"CHOREO_NOTIFIER_ROLE": "push", "CHOREO_WEBSOCKET_ENDPOINT": endpoint});
    let manage = json!({"Statement": [{
        "Effect": "Allow",
        "Action": ["execute-api:ManageConnections"],
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${NotificationsApi}/live/POST/@connections/*"},
    }]});
    let crud = json!({"DynamoDBCrudPolicy": {"TableName": {"Ref": "ConnectionsTable"}}});
    let route = |key: &str| {
        json!({"Type": "AWS::ApiGatewayV2::Route", "Properties": {
            "ApiId": {"Ref": "NotificationsApi"},
            "RouteKey": key,
            "Target": {"Fn::Join": ["/", ["integrations", {"Ref": "NotificationsIntegration"}]]},
        }})
    };
    vec![
        (
            "NotificationsApi".into(),
            json!({"Type": "AWS::ApiGatewayV2::Api", "Properties": {
                "Name": "choreo-notifications",
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": "$request.body.type",
            }}),
        ),
        (
            "NotificationsIntegration".into(),
            json!({"Type": "AWS::ApiGatewayV2::Integration", "Properties": {
                "ApiId": {"Ref": "NotificationsApi"},
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${NotifierSocketFunction.Arn}/invocations"},
            }}),
        ),
        ("NotificationsConnectRoute".into(), route("$connect")),
        ("NotificationsDisconnectRoute".into(), route("$disconnect")),
        ("NotificationsDefaultRoute".into(), route("$default")),
        (
            "NotificationsStage".into(),
            json!({"Type": "AWS::ApiGatewayV2::Stage", "Properties": {
                "ApiId": {"Ref": "NotificationsApi"},
                "StageName": "live",
                "AutoDeploy": true,
            }}),
        ),
        (
            "NotificationsInvokePermission".into(),
            json!({"Type": "AWS::Lambda::Permission", "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": "NotifierSocketFunction"},
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${NotificationsApi}/*"},
            }}),
        ),
        (
            "NotifierSocketFunction".into(),
            function(
                NOTIFIER_BINARY,
                code_uri,
                "The notifier's WebSocket routes: $connect checks the customer's token, $default takes acknowledgements",
                30,
                socket_env,
                vec![crud.clone(), manage.clone()],
                json!({}),
            ),
        ),
        (
            "NotifierPushFunction".into(),
            serial(function(
                NOTIFIER_BINARY,
                code_uri,
                "Pushes customer-facing completions to their customer's connections (410 Gone drops a connection)",
                30,
                push_env,
                vec![
                    json!({"SQSPollerPolicy": {"QueueName": {"Fn::GetAtt": ["NotifierQueue", "QueueName"]}}}),
                    crud,
                    manage,
                ],
                json!({"Queue": {"Type": "SQS", "Properties": {
                    "Queue": {"Fn::GetAtt": ["NotifierQueue", "Arn"]},
                    "BatchSize": 10,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                }}}),
            )),
        ),
    ]
}

/// One invocation at a time: a customer's notifications are numbered and pushed in the order
/// the queue hands them over, never two batches at once.
fn serial(mut function: Value) -> Value {
    function["Properties"]["ReservedConcurrentExecutions"] = json!(1);
    function
}

/// A function of the workspace's binary `binary`, built by SAM with cargo-lambda.
fn function(
    binary: &str,
    code_uri: &str,
    description: &str,
    timeout_s: u64,
    environment: Value,
    policies: Vec<Value>,
    events: Value,
) -> Value {
    let mut properties = json!({
        "CodeUri": code_uri,
        "Description": description,
        "Timeout": timeout_s,
        "Environment": {"Variables": environment},
        "Policies": policies,
    });
    if events.as_object().is_some_and(|e| !e.is_empty()) {
        properties["Events"] = events;
    }
    json!({
        "Type": "AWS::Serverless::Function",
        "Metadata": {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": binary}},
        "Properties": properties,
    })
}

/// Looking a queue up by name and reading its tags (the AWS backend's `queue`).
fn queue_lookup(queues: &[String]) -> Value {
    let arns: Vec<Value> = queues.iter().map(|q| json!({"Fn::GetAtt": [q, "Arn"]})).collect();
    json!({"Statement": [{
        "Effect": "Allow",
        "Action": ["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ListQueueTags"],
        "Resource": arns,
    }]})
}

/// A DynamoDB table keyed by `pk` and `sk`, paid per request, its items expiring at `expires`.
fn table(description: &str) -> Value {
    json!({"Type": "AWS::DynamoDB::Table", "Metadata": {"Description": description}, "Properties": {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": true},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
    }})
}

/// The same value with every object's keys in order (serde_json's map keeps insertion order
/// when `preserve_order` is on anywhere in the build).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
