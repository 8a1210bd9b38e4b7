//! The Participant Service's request and response shapes, from its public JSON model
//! (`connectparticipant-2018-09-07`). Field names are the API's PascalCase ones.
//!
//! Enums keep an `Unknown(String)` case so a value the model does not list yet (the
//! service already sends `MESSAGEMETADATA` on websockets) parses and passes through.
//! [`Item`] and its nested shapes keep unknown fields too, so a forwarded Item carries
//! every field the service sent. Shared with the emulator: shapes, never client logic.
//!
//! `item.rs` holds the Item and its nested shapes, `operations.rs` the requests and
//! responses of the eleven operations; both are re-exported here, so every shape is
//! `api::model::Name`. The open enums and [`Timestamp`] are defined in this file.

mod item;
mod operations;

pub use item::*;
pub use operations::*;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
