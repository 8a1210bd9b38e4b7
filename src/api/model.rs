//! The Participant Service's request and response shapes, from its public JSON model
//! (`connectparticipant-2018-09-07`). Field names are the API's PascalCase ones.
//!
//! Enums keep an `Unknown(String)` case so a value the model does not list yet (the
//! service already sends `MESSAGEMETADATA` on websockets) parses and passes through.
//! [`Item`] and its nested shapes keep unknown fields too, so a forwarded Item carries
//! every field the service sent. Shared with the emulator: shapes, never client logic.

use crate::secret::{PresignedUrl, Secret};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use time::OffsetDateTime;

/// Declares a string enum with an `Unknown(String)` catch-all.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            /// A value this version does not know; kept verbatim.
            Unknown(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Unknown(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($wire => Self::$variant,)*
                    other => Self::Unknown(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok(Self::from(s.as_ref()))
            }
        }
    };
}

open_enum!(
    /// `ConnectionType`
    ConnectionType {
        Websocket = "WEBSOCKET",
        ConnectionCredentials = "CONNECTION_CREDENTIALS",
        WebrtcConnection = "WEBRTC_CONNECTION",
    }
);
open_enum!(
    /// `ChatItemType`
    ChatItemType {
        Typing = "TYPING",
        ParticipantJoined = "PARTICIPANT_JOINED",
        ParticipantLeft = "PARTICIPANT_LEFT",
        ChatEnded = "CHAT_ENDED",
        TransferSucceeded = "TRANSFER_SUCCEEDED",
        TransferFailed = "TRANSFER_FAILED",
        Message = "MESSAGE",
        Event = "EVENT",
        Attachment = "ATTACHMENT",
        ConnectionAck = "CONNECTION_ACK",
        MessageDelivered = "MESSAGE_DELIVERED",
        MessageRead = "MESSAGE_READ",
    }
);
open_enum!(
    /// `ParticipantRole`
    ParticipantRole {
        Agent = "AGENT",
        Customer = "CUSTOMER",
        System = "SYSTEM",
        CustomBot = "CUSTOM_BOT",
        Supervisor = "SUPERVISOR",
    }
);
open_enum!(
    /// `ScanDirection`
    ScanDirection { Forward = "FORWARD", Backward = "BACKWARD" }
);
open_enum!(
    /// `SortKey` (GetTranscript's `SortOrder`)
    SortKey { Descending = "DESCENDING", Ascending = "ASCENDING" }
);
open_enum!(
    /// `ArtifactStatus`
    ArtifactStatus { Approved = "APPROVED", Rejected = "REJECTED", InProgress = "IN_PROGRESS" }
);
open_enum!(
    /// `MessageProcessingStatus`
    MessageProcessingStatus { Processing = "PROCESSING", Failed = "FAILED", Rejected = "REJECTED" }
);
open_enum!(
    /// `MeetingFeatureStatus`
    MeetingFeatureStatus { Available = "AVAILABLE", Unavailable = "UNAVAILABLE" }
);

/// An ISO-8601 timestamp field (`ConnectionExpiry`, `Expiry`, `UrlExpiry`), parsed as
/// RFC 3339 and written back in the service's form (UTC, milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub OffsetDateTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::clock::format_timestamp(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::clock::parse_timestamp(&s)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {s:?}: {e}")))
    }
}

// ---------------------------------------------------------------- chat items

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
fn items_from_wire<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Item>, D::Error> {
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

// ------------------------------------------------- CreateParticipantConnection

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateParticipantConnectionRequest {
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub connection_types: Option<Vec<ConnectionType>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_participant: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateParticipantConnectionResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<Websocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_credentials: Option<ConnectionCredentials>,
    #[serde(rename = "WebRTCConnection", skip_serializing_if = "Option::is_none")]
    pub webrtc_connection: Option<WebRtcConnection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Websocket {
    pub url: PresignedUrl,
    pub connection_expiry: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionCredentials {
    pub connection_token: Secret,
    pub expiry: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebRtcConnection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendee: Option<Attendee>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting: Option<WebRtcMeeting>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attendee {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendee_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_token: Option<Secret>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebRtcMeeting {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_placement: Option<WebRtcMediaPlacement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_features: Option<MeetingFeaturesConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebRtcMediaPlacement {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_host_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_fallback_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signaling_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_ingestion_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingFeaturesConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioFeatures>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AudioFeatures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_reduction: Option<MeetingFeatureStatus>,
}

// ------------------------------------------------------------- GetTranscript

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetTranscriptRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_direction: Option<ScanDirection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<SortKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_position: Option<StartPosition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartPosition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absolute_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub most_recent: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetTranscriptResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_contact_id: Option<String>,
    #[serde(default, deserialize_with = "items_from_wire")]
    pub transcript: Vec<Item>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

// ----------------------------------------------------- SendMessage / SendEvent

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendMessageRequest {
    pub content_type: String,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendMessageResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absolute_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_metadata: Option<MessageProcessingMetadata>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageProcessingMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_processing_status: Option<MessageProcessingStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendEventRequest {
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendEventResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absolute_time: Option<String>,
}

// ------------------------------------------------------ DisconnectParticipant

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DisconnectParticipantRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// The empty response of DisconnectParticipant, CompleteAttachmentUpload and
/// CancelParticipantAuthentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmptyResponse {}

// ------------------------------------------------------------------ attachments

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartAttachmentUploadRequest {
    pub content_type: String,
    pub attachment_size_in_bytes: i64,
    pub attachment_name: String,
    pub client_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartAttachmentUploadResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_metadata: Option<UploadMetadata>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<PresignedUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_expiry: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers_to_include: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompleteAttachmentUploadRequest {
    pub attachment_ids: Vec<String>,
    pub client_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAttachmentRequest {
    pub attachment_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_expiry_in_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAttachmentResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<PresignedUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_expiry: Option<Timestamp>,
    pub attachment_size_in_bytes: i64,
}

// ------------------------------------------------------------- authentication

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAuthenticationUrlRequest {
    pub session_id: String,
    pub redirect_uri: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAuthenticationUrlResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CancelParticipantAuthenticationRequest {
    pub session_id: String,
}

// ------------------------------------------------------------------ DescribeView

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeViewResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<View>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct View {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ViewContent>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ViewContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_and_fields_pass_through() {
        let raw = r#"{"AbsoluteTime":"2026-11-25T12:00:00.123Z","Id":"a","Type":"MESSAGEMETADATA","ParticipantRole":"ROBOT","MessageMetadata":{"MessageId":"m","Receipts":[{"ReadTimestamp":"x","Novel":1}]},"Brand":"new"}"#;
        let item: Item = serde_json::from_str(raw).unwrap();
        assert_eq!(
            item.item_type,
            Some(ChatItemType::Unknown("MESSAGEMETADATA".into()))
        );
        assert_eq!(
            item.participant_role,
            Some(ParticipantRole::Unknown("ROBOT".into()))
        );
        assert!(item.is_ephemeral());
        let back: Value = serde_json::to_value(&item).unwrap();
        let orig: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn items_decode_every_known_field_and_keep_the_rest() {
        let raw = r#"{"AbsoluteTime":"t","Content":"c","ContentType":"text/plain","Id":"i","Type":"ATTACHMENT","ParticipantId":"p","DisplayName":"d","ParticipantRole":"AGENT","Attachments":[{"AttachmentId":"a","Status":"APPROVED","X":1}],"MessageMetadata":{"MessageId":"m"},"RelatedContactId":"r","ContactId":"k","Esc\"aped":"v\n","Null":null,"Nested":{"a":[1,2]}}"#;
        let item: Item = serde_json::from_str(raw).unwrap();
        assert_eq!(item.id.as_deref(), Some("i"));
        assert_eq!(item.item_type, Some(ChatItemType::Attachment));
        assert_eq!(item.related_contact_id.as_deref(), Some("r"));
        assert_eq!(item.contact_id.as_deref(), Some("k"));
        assert_eq!(item.attachments.as_ref().unwrap()[0].extra["X"], 1);
        assert_eq!(item.extra["Esc\"aped"], "v\n");
        assert_eq!(item.extra["Null"], Value::Null);
        let back: Value = serde_json::to_value(&item).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(raw).unwrap());
        // Absent and null known fields are both None.
        let empty: Item = serde_json::from_str(r#"{"Id":null}"#).unwrap();
        assert_eq!(empty, Item::default());
        for bad in [r#"[]"#, r#""x""#, r#"{"Id":5}"#, r#"{"Type":[]}"#] {
            assert!(serde_json::from_str::<Item>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn transcript_items_keep_their_own_text() {
        let raw = r#"{"InitialContactId":"c","Transcript":[{"Id":"a","Type":"MESSAGE"},{"Type":"EVENT","Id":"b","New":true}],"NextToken":"n"}"#;
        let page: GetTranscriptResponse = serde_json::from_slice(raw.as_bytes()).unwrap();
        let texts: Vec<_> = page.transcript.iter().map(|i| i.wire_json().unwrap()).collect();
        assert_eq!(
            texts,
            [
                r#"{"Id":"a","Type":"MESSAGE"}"#,
                r#"{"Type":"EVENT","Id":"b","New":true}"#
            ]
        );
        assert_eq!(page.transcript[1].extra["New"], true);
        assert!(serde_json::from_str::<GetTranscriptResponse>(r#"{"Transcript":[1]}"#).is_err());
    }

    #[test]
    fn chat_end_is_recognised_by_type_or_content_type() {
        let a: Item = serde_json::from_str(r#"{"Type":"CHAT_ENDED"}"#).unwrap();
        let b: Item = serde_json::from_str(&format!(
            r#"{{"Type":"EVENT","ContentType":"{CONTENT_TYPE_CHAT_ENDED}"}}"#
        ))
        .unwrap();
        let c: Item = serde_json::from_str(r#"{"Type":"MESSAGE"}"#).unwrap();
        assert!(a.is_chat_ended() && b.is_chat_ended() && !c.is_chat_ended());
    }

    #[test]
    fn connection_response_parses_timestamps_and_hides_secrets() {
        let raw = r#"{"Websocket":{"Url":"wss://x/?sig=abc","ConnectionExpiry":"2026-11-25T13:00:00.000Z"},"ConnectionCredentials":{"ConnectionToken":"ct-secret","Expiry":"2026-11-26T12:00:00.000Z"}}"#;
        let r: CreateParticipantConnectionResponse = serde_json::from_str(raw).unwrap();
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("ct-secret") && !dbg.contains("abc"), "{dbg}");
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::from_str::<Value>(raw).unwrap()
        );
        assert!(serde_json::from_str::<Websocket>(r#"{"Url":"u","ConnectionExpiry":"soon"}"#).is_err());
    }
}
