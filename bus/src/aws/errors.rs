//! AWS SDK failures made into [`BusError`]s that name the service, the call and the resource,
//! and say whether trying again can help.

use std::error::Error as StdError;

// The same types serve both SDKs (they re-export smithy's).
use aws_sdk_eventbridge::config::http::HttpResponse;
use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};

use crate::api::{BusError, ServiceFailure};

/// The error codes that mean "slow down" or "the service failed": worth another try.
const RETRYABLE: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "AWS.SimpleQueueService.ServiceUnavailable",
];

/// A failed call of either SDK.
pub type Failed<E> = SdkError<E, HttpResponse>;

/// What an operation's own error type offers.
pub trait ServiceError: ProvideErrorMetadata + StdError + Send + Sync + 'static {}
impl<E: ProvideErrorMetadata + StdError + Send + Sync + 'static> ServiceError for E {}

/// One call to a service, about one resource.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    service: &'static str,
    operation: &'static str,
    resource: &'a str,
}

impl<'a> Call<'a> {
    /// A call to another AWS service (DynamoDB, API Gateway), for the same errors.
    pub fn new(service: &'static str, operation: &'static str, resource: &'a str) -> Self {
        Self { service, operation, resource }
    }

    pub fn events(operation: &'static str, resource: &'a str) -> Self {
        Self { service: "EventBridge", operation, resource }
    }

    pub fn sqs(operation: &'static str, resource: &'a str) -> Self {
        Self { service: "SQS", operation, resource }
    }

    /// The call failed: the service's code and message, or why no answer came.
    pub fn fail<E: ServiceError>(&self, e: Failed<E>) -> BusError {
        let (code, message, retryable) = match &e {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
                let code = e.code().unwrap_or("Unknown").to_owned();
                let message = e.message().map(str::to_owned).unwrap_or_else(|| chain(&e));
                let retryable = RETRYABLE.contains(&code.as_str()) || status(&e).is_some_and(|s| s >= 500);
                (code, message, retryable)
            }
            SdkError::TimeoutError(_) => ("Timeout".to_owned(), chain(&e), true),
            SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => ("Unreachable".to_owned(), chain(&e), true),
            // No credentials, no region, a request the SDK could not build: trying again
            // cannot help until the configuration changes.
            _ => {
                let why = chain(&e);
                if why.contains("identity") || why.contains("credentials") {
                    let hint = "no usable AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                                AWS_PROFILE, or run with a role)";
                    ("NoCredentials".to_owned(), format!("{hint}: {why}"), false)
                } else {
                    ("Config".to_owned(), why, false)
                }
            }
        };
        self.failure(code, message, retryable)
    }

    /// The failure as one line (`<service> <operation>: <code>: <message>`) and whether
    /// another try may help: for stores of other crates that name their resource themselves.
    pub fn describe<E: ServiceError>(&self, e: Failed<E>) -> (String, bool) {
        match self.fail(e) {
            BusError::Service(f) => (format!("{} {}: {}: {}", f.service, f.operation, f.code, f.message), f.retryable),
            other => (other.to_string(), other.is_retryable()),
        }
    }

    /// A failure of this call with the service's `code` and `message`.
    pub fn failure(&self, code: String, message: String, retryable: bool) -> BusError {
        BusError::Service(Box::new(ServiceFailure {
            service: self.service.to_owned(),
            operation: self.operation.to_owned(),
            resource: self.resource.to_owned(),
            code,
            message,
            retryable,
        }))
    }

    /// The service answered something this backend cannot read.
    pub fn odd(&self, what: &str) -> BusError {
        self.failure("UnexpectedAnswer".to_owned(), what.to_owned(), false)
    }
}

/// The service's error code, if the service answered.
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => e.code(),
        _ => None,
    }
}

/// The service's message, if the service answered.
pub fn message<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => e.message(),
        _ => None,
    }
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The error and its causes on one line: the SDK's top-level message alone ("dispatch
/// failure") does not say what failed.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
