//! The websocket's JSON frames: what the client sends (subscribe, heartbeat, ping) and
//! how a received text frame is decoded. A chat frame's `content` is an Item encoded as
//! a JSON *string*, parsed a second time here.

use crate::api::model::Item;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

pub const SUBSCRIBE: &str = r#"{"topic":"aws/subscribe","content":{"topics":["aws/chat"]}}"#;
pub const HEARTBEAT: &str = r#"{"topic":"aws/heartbeat"}"#;
pub const PING: &str = r#"{"topic":"aws/ping"}"#;

/// A decoded server frame.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// An `aws/chat` Item.
    Chat(Box<Item>),
    /// The answer to a subscribe: `success` or not.
    SubscribeAck {
        success: bool,
        status: String,
    },
    HeartbeatReply,
    PingReply {
        status_code: Option<i64>,
    },
    /// A frame from the gateway in front of the service (`{"message":"Forbidden",…}`):
    /// the socket has failed.
    GatewayError {
        message: String,
    },
    /// A topic this client does not handle.
    Other {
        topic: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame has neither a topic nor a message")]
    NoTopic,
    #[error("aws/chat frame has no content")]
    NoContent,
    #[error("aws/chat content is not a JSON string: {0}")]
    ContentNotString(String),
    #[error("aws/chat content is not an Item: {0}")]
    BadItem(String),
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    message: Option<String>,
    #[serde(rename = "statusCode")]
    status_code: Option<i64>,
}

#[derive(Deserialize)]
struct AckContent {
    status: Option<String>,
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<Inbound, FrameError> {
    let raw: RawFrame = serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let Some(topic) = raw.topic else {
        return match raw.message {
            Some(message) => Ok(Inbound::GatewayError { message }),
            None => Err(FrameError::NoTopic),
        };
    };
    match topic.as_ref() {
        "aws/chat" => {
            let content = raw.content.ok_or(FrameError::NoContent)?;
            let inner: Cow<str> = serde_json::from_str(content.get())
                .map_err(|_| FrameError::ContentNotString(truncate(content.get())))?;
            let item = Item::from_wire(inner.into_owned().into_boxed_str())
                .map_err(|e| FrameError::BadItem(e.to_string()))?;
            Ok(Inbound::Chat(Box::new(item)))
        }
        "aws/subscribe" => {
            let status = raw
                .content
                .and_then(|c| serde_json::from_str::<AckContent>(c.get()).ok())
                .and_then(|c| c.status)
                .unwrap_or_default();
            Ok(Inbound::SubscribeAck {
                success: status == "success",
                status,
            })
        }
        "aws/heartbeat" => Ok(Inbound::HeartbeatReply),
        "aws/ping" => Ok(Inbound::PingReply {
            status_code: raw.status_code,
        }),
        other => Ok(Inbound::Other {
            topic: other.to_string(),
        }),
    }
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_kind_of_frame() {
        let chat = r#"{"topic":"aws/chat","contentType":"application/json","content":"{\"Id\":\"i1\",\"Type\":\"MESSAGE\",\"Content\":\"hé\"}"}"#;
        match decode(chat).unwrap() {
            Inbound::Chat(item) => {
                assert_eq!(item.id.as_deref(), Some("i1"));
                assert_eq!(item.content.as_deref(), Some("hé"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode(r#"{"topic":"aws/subscribe","content":{"status":"success","topics":["aws/chat"]}}"#)
                .unwrap(),
            Inbound::SubscribeAck {
                success: true,
                status: "success".into()
            }
        );
        assert_eq!(
            decode(r#"{"topic":"aws/subscribe","content":{"status":"failure"}}"#).unwrap(),
            Inbound::SubscribeAck {
                success: false,
                status: "failure".into()
            }
        );
        assert_eq!(decode(HEARTBEAT).unwrap(), Inbound::HeartbeatReply);
        assert_eq!(
            decode(r#"{"topic":"aws/ping","statusCode":200,"statusContent":"OK"}"#).unwrap(),
            Inbound::PingReply {
                status_code: Some(200)
            }
        );
        assert_eq!(
            decode(r#"{"message":"Forbidden","connectionId":"c","requestId":"r"}"#).unwrap(),
            Inbound::GatewayError {
                message: "Forbidden".into()
            }
        );
        assert_eq!(
            decode(r#"{"topic":"aws/typing2"}"#).unwrap(),
            Inbound::Other {
                topic: "aws/typing2".into()
            }
        );
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(matches!(decode("{not json"), Err(FrameError::NotJson(_))));
        assert_eq!(decode("{}"), Err(FrameError::NoTopic));
        assert_eq!(decode(r#"{"topic":"aws/chat"}"#), Err(FrameError::NoContent));
        assert!(matches!(
            decode(r#"{"topic":"aws/chat","content":{"Id":"x"}}"#),
            Err(FrameError::ContentNotString(_))
        ));
        assert!(matches!(
            decode(r#"{"topic":"aws/chat","content":"[1,2]"}"#),
            Err(FrameError::BadItem(_))
        ));
        assert!(matches!(decode(r#"[]"#), Err(FrameError::NotJson(_))));
    }
}
