//! The frames of the WebSocket protocol and its close codes (see the crate docs).

use serde::Deserialize;

/// The close codes the server uses.
pub mod close_code {
    /// Normal closure (the client closed).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame or request the protocol does not allow.
    pub const PROTOCOL: u16 = 1002;
    /// A binary frame.
    pub const UNSUPPORTED: u16 = 1003;
    /// The store failed.
    pub const INTERNAL: u16 = 1011;
    /// The token is missing, malformed, forged, unknown or expired.
    pub const UNAUTHENTICATED: u16 = 4401;
    /// The token is valid but not a customer's.
    pub const FORBIDDEN: u16 = 4403;
    /// Nothing was heard from the client for too long.
    pub const TIMEOUT: u16 = 4408;
}

/// The most bytes a close reason may have (RFC 6455: 125 for the payload, 2 for the code).
const MAX_REASON: usize = 123;

/// A close frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    /// A close frame; a reason too long is cut at a character boundary.
    pub fn new(code: u16, reason: impl Into<String>) -> Close {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON - 3;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str("...");
        }
        Close { code, reason }
    }

    pub fn protocol(reason: impl Into<String>) -> Close {
        Close::new(close_code::PROTOCOL, reason)
    }
}

/// A frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ClientFrame {
    /// Acknowledges every notification up to and including `seq`.
    Ack { seq: u64 },
    /// The client's first word where the server cannot speak first (API Gateway); answered
    /// with `ready` and what follows. Locally, where the server spoke first, it changes nothing.
    Hello,
}

impl ClientFrame {
    /// Reads a text frame; a frame that is not one of ours is a protocol error, named.
    pub fn parse(text: &str) -> Result<ClientFrame, Close> {
        serde_json::from_str(text).map_err(|e| Close::protocol(format!("malformed frame: {e}")))
    }
}

/// The hello: who is connected and after which sequence number notifications follow.
pub(crate) fn ready(customer: &str, after: u64) -> String {
    serde_json::json!({"type": "ready", "customer": customer, "after": after}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_acks_and_names_what_is_wrong() {
        assert_eq!(ClientFrame::parse(r#"{"type":"ack","seq":3}"#), Ok(ClientFrame::Ack { seq: 3 }));
        let bad = |text: &str| ClientFrame::parse(text).unwrap_err();
        assert_eq!(bad("nope").code, close_code::PROTOCOL);
        assert!(bad("nope").reason.starts_with("malformed frame: "), "{}", bad("nope").reason);
        assert_eq!(ClientFrame::parse(r#"{"type":"hello"}"#), Ok(ClientFrame::Hello));
        assert!(bad(r#"{"type":"bye"}"#).reason.contains("unknown variant `bye`"));
        assert!(bad(r#"{"type":"ack","seq":-1}"#).reason.contains("malformed frame"));
        assert!(bad(r#"{"type":"ack"}"#).reason.contains("missing field `seq`"));
    }

    #[test]
    fn long_reasons_are_cut_to_fit_a_close_frame() {
        let close = Close::new(close_code::PROTOCOL, "é".repeat(100));
        assert!(close.reason.len() <= MAX_REASON);
        assert!(close.reason.ends_with("..."));
        assert_eq!(Close::new(4401, "token expired").reason, "token expired");
    }
}
