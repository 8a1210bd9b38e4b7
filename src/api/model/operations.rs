//! The requests and responses of the eleven operations, grouped as the API groups them:
//! connection, transcript, messages and events, disconnect, attachments,
//! authentication and views.

use super::item::items_from_wire;
use super::{
    ConnectionType, Item, MeetingFeatureStatus, MessageProcessingStatus, ScanDirection, SortKey, Timestamp,
};
use crate::secret::{PresignedUrl, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
