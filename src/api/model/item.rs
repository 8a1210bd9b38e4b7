//! A chat Item and the shapes nested in it (attachments, message metadata, receipts),
//! the exact JSON text it came off the wire as ([`WireJson`]), and the ContentTypes of
//! chat events. Unknown fields are kept, so a forwarded Item carries everything the
//! service sent.

use super::{ArtifactStatus, ChatItemType, MessageProcessingStatus, ParticipantRole};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use time::OffsetDateTime;

/// A chat Item, from a websocket frame or a transcript. Unknown fields are kept in
/// `extra` and written back out, so forwarding an Item loses nothing. (Decoding is
/// written by hand below: serde's `flatten` would buffer every field of every Item.)
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absolute_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub item_type: Option<ChatItemType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_role: Option<ParticipantRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentItem>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_metadata: Option<MessageMetadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related_contact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// The JSON text this Item was decoded from, when it came off the wire.
    #[serde(skip)]
    pub(crate) wire: WireJson,
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> serde::de::Visitor<'de> for ItemVisitor {
            type Value = Item;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a chat Item (a JSON object)")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                let mut item = Item::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "AbsoluteTime" => item.absolute_time = map.next_value()?,
                        "Content" => item.content = map.next_value()?,
                        "ContentType" => item.content_type = map.next_value()?,
                        "Id" => item.id = map.next_value()?,
                        "Type" => item.item_type = map.next_value()?,
                        "ParticipantId" => item.participant_id = map.next_value()?,
                        "DisplayName" => item.display_name = map.next_value()?,
                        "ParticipantRole" => item.participant_role = map.next_value()?,
                        "Attachments" => item.attachments = map.next_value()?,
                        "MessageMetadata" => item.message_metadata = map.next_value()?,
                        "RelatedContactId" => item.related_contact_id = map.next_value()?,
                        "ContactId" => item.contact_id = map.next_value()?,
                        _ => {
                            let value: Value = map.next_value()?;
                            item.extra.insert(key.into_owned(), value);
                        }
                    }
                }
                Ok(item)
            }
        }
        d.deserialize_map(ItemVisitor)
    }
}

/// The exact JSON text an Item was decoded from (a websocket frame's `content`, an
/// element of a transcript page), kept so that the Item can be written out again
/// without serialising it a second time. It is a cache of the Item's wire form, not
/// part of its value: equality, `Debug` and serde ignore it. Only text on one line is
/// kept (any JSON text is, unless the sender pretty-printed it).
#[derive(Clone, Default)]
pub struct WireJson(Option<Box<str>>);

impl WireJson {
    fn keep(text: Box<str>) -> WireJson {
        let one_line = memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_none();
        WireJson(one_line.then_some(text))
    }
}

impl PartialEq for WireJson {
    fn eq(&self, _: &WireJson) -> bool {
        true
    }
}

impl std::fmt::Debug for WireJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

/// Decodes a transcript page's Items, each keeping its own JSON text.
pub(super) fn items_from_wire<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Item>, D::Error> {
    let raw = Vec::<Box<serde_json::value::RawValue>>::deserialize(d)?;
    raw.into_iter()
        .map(|r| Item::from_wire(r.into()).map_err(serde::de::Error::custom))
        .collect()
}

/// ContentType prefix of chat events.
pub const EVENT_PREFIX: &str = "application/vnd.amazonaws.connect.event.";
pub const CONTENT_TYPE_CHAT_ENDED: &str = "application/vnd.amazonaws.connect.event.chat.ended";
pub const CONTENT_TYPE_TYPING: &str = "application/vnd.amazonaws.connect.event.typing";
pub const CONTENT_TYPE_DELIVERED: &str = "application/vnd.amazonaws.connect.event.message.delivered";
pub const CONTENT_TYPE_READ: &str = "application/vnd.amazonaws.connect.event.message.read";
pub const CONTENT_TYPE_CONNECTION_ACK: &str =
    "application/vnd.amazonaws.connect.event.connection.acknowledged";
pub const CONTENT_TYPE_JOINED: &str = "application/vnd.amazonaws.connect.event.participant.joined";
pub const CONTENT_TYPE_LEFT: &str = "application/vnd.amazonaws.connect.event.participant.left";

impl Item {
    /// Decodes an Item from its JSON text, keeping the text (see [`WireJson`]).
    pub fn from_wire(text: Box<str>) -> Result<Item, serde_json::Error> {
        let mut item: Item = serde_json::from_str(&text)?;
        item.wire = WireJson::keep(text);
        Ok(item)
    }

    /// The JSON text the Item was decoded from, if it came off the wire on one line.
    /// An Item changed after decoding should not be written out through it: callers
    /// that change Items build new ones (the emulator) or do not write them.
    pub fn wire_json(&self) -> Option<&str> {
        self.wire.0.as_deref()
    }

    /// True for the Item that ends a chat: `Type: CHAT_ENDED` or the chat-ended ContentType.
    pub fn is_chat_ended(&self) -> bool {
        self.item_type == Some(ChatItemType::ChatEnded)
            || self.content_type.as_deref() == Some(CONTENT_TYPE_CHAT_ENDED)
    }

    /// True for Items the service does not keep in the transcript (typing indicators,
    /// read/delivered receipts, connection acks): they can be delivered live only, and a
    /// transcript position can never start from one.
    pub fn is_ephemeral(&self) -> bool {
        let by_type = matches!(
            &self.item_type,
            Some(
                ChatItemType::Typing
                    | ChatItemType::MessageDelivered
                    | ChatItemType::MessageRead
                    | ChatItemType::ConnectionAck
            )
        ) || matches!(&self.item_type, Some(ChatItemType::Unknown(t)) if t == "MESSAGEMETADATA");
        let by_content_type = matches!(
            self.content_type.as_deref(),
            Some(
                CONTENT_TYPE_TYPING
                    | CONTENT_TYPE_DELIVERED
                    | CONTENT_TYPE_READ
                    | CONTENT_TYPE_CONNECTION_ACK
            )
        );
        by_type || by_content_type
    }

    /// `AbsoluteTime` parsed, if present and valid.
    pub fn absolute_time(&self) -> Option<OffsetDateTime> {
        self.absolute_time
            .as_deref()
            .and_then(|s| crate::clock::parse_timestamp(s).ok())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachmentItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ArtifactStatus>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts: Option<Vec<Receipt>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_processing_status: Option<MessageProcessingStatus>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Receipt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_participant_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
