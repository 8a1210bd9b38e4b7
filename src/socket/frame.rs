//! The websocket's JSON frames: what the client sends (subscribe, heartbeat, ping) and
//! how a received text frame is decoded. A chat frame's `content` is an Item encoded as
//! a JSON *string*, parsed a second time here.

use crate::api::model::Item;
use serde::Deserialize;
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
    #[error("aws/chat content is not a JSON string but {0}")]
    ContentNotString(String),
    #[error("aws/chat content is not an Item: {0}")]
    BadItem(String),
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    topic: Option<Cow<'a, str>>,
    content: Option<Content>,
    message: Option<String>,
    #[serde(rename = "statusCode")]
    status_code: Option<i64>,
}

/// A frame's `content`, read in the same pass as the frame: a chat Item is a JSON
/// string (unescaped once, straight into the buffer the Item keeps), an ack an object
/// of which only `status` matters.
enum Content {
    Text(String),
    Object {
        status: Option<String>,
    },
    Null,
    /// Anything else, by its JSON kind (for the error message).
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> serde::de::Visitor<'de> for ContentVisitor {
            type Value = Content;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Content, A::Error> {
                let mut status = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "status" {
                        status = map.next_value::<Option<String>>().ok().flatten();
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Content::Object { status })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Content::Other("an array"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Content, E> {
                Ok(Content::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Content, E> {
                Ok(Content::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Content, E> {
                Ok(Content::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Content, E> {
                Ok(Content::Other("a number"))
            }
            fn visit_unit<E>(self) -> Result<Content, E> {
                Ok(Content::Null)
            }
        }
        d.deserialize_any(ContentVisitor)
    }
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
        "aws/chat" => match raw.content {
            None | Some(Content::Null) => Err(FrameError::NoContent),
            Some(Content::Text(inner)) => {
                let item = Item::from_wire(inner.into_boxed_str())
                    .map_err(|e| FrameError::BadItem(e.to_string()))?;
                Ok(Inbound::Chat(Box::new(item)))
            }
            Some(Content::Object { .. }) => Err(FrameError::ContentNotString("an object".into())),
            Some(Content::Other(kind)) => Err(FrameError::ContentNotString(kind.into())),
        },
        "aws/subscribe" => {
            let status = match raw.content {
                Some(Content::Object { status }) => status.unwrap_or_default(),
                _ => String::new(),
            };
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
