//! The outbound half: what a participant may send (messages, events, attachments),
//! checked before anything goes on the wire so bad input gets a clear error naming the
//! problem, and the attachment flow (StartAttachmentUpload → the presigned PUT with
//! exactly the returned headers → CompleteAttachmentUpload).
//!
//! Limits are the service model's: message content 1–16 384 characters; message types
//! `text/plain`, `text/markdown`, `application/json` and
//! `application/vnd.amazonaws.connect.message.interactive.response`; event types
//! typing, read and delivered receipts (receipts carry `{"messageId": ID}`);
//! attachments up to 20 MB of the file types Amazon Connect accepts.

use super::model::*;
use super::{ApiClient, ApiError};
use crate::secret::Secret;
use std::path::Path;

/// The most characters a message's content may have.
pub const MAX_CONTENT_CHARS: usize = 16_384;
/// The largest attachment the service takes.
pub const MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;

/// The message content types the service accepts.
pub const MESSAGE_CONTENT_TYPES: [&str; 4] = [
    "text/plain",
    "text/markdown",
    "application/json",
    "application/vnd.amazonaws.connect.message.interactive.response",
];

/// Attachment types Amazon Connect chat accepts, by file extension.
pub const ATTACHMENT_TYPES: [(&str, &str); 17] = [
    ("csv", "text/csv"),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("heic", "image/heic"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("mov", "video/quicktime"),
    ("mp4", "video/mp4"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("rtf", "application/rtf"),
    ("txt", "text/plain"),
    ("wav", "audio/wav"),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
];

/// Input the service would refuse, found before sending; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOutbound {
    #[error("content: a message must not be empty")]
    Empty,
    #[error("content: {chars} characters is over the limit of {MAX_CONTENT_CHARS}")]
    TooLong { chars: usize },
    #[error("content_type: {0:?} is not one of text/plain, text/markdown, application/json, application/vnd.amazonaws.connect.message.interactive.response")]
    MessageType(String),
    #[error("content_type: {0:?} is not an event type this client sends (typing, read, delivered)")]
    EventType(String),
    #[error("message_id: a {0} receipt needs the Id of the message it is for")]
    MissingMessageId(&'static str),
    #[error("attachment: {bytes} bytes is over the limit of {MAX_ATTACHMENT_BYTES}")]
    AttachmentTooLarge { bytes: u64 },
    #[error("attachment: an empty file cannot be attached")]
    AttachmentEmpty,
    #[error("attachment: {0}")]
    AttachmentType(String),
    #[error("attachment: the name {0:?} must be 1 to 256 characters without control characters")]
    AttachmentName(String),
}

/// A message's content, checked.
pub fn message(content_type: &str, content: &str) -> Result<SendMessageRequest, InvalidOutbound> {
    if !MESSAGE_CONTENT_TYPES.contains(&content_type) {
        return Err(InvalidOutbound::MessageType(content_type.to_string()));
    }
    if content.trim().is_empty() {
        return Err(InvalidOutbound::Empty);
    }
    let chars = content.chars().count();
    if chars > MAX_CONTENT_CHARS {
        return Err(InvalidOutbound::TooLong { chars });
    }
    Ok(SendMessageRequest {
        content_type: content_type.to_string(),
        content: content.to_string(),
        client_token: None,
    })
}

/// The events a participant sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Typing,
    Read,
    Delivered,
}

impl EventKind {
    pub fn content_type(self) -> &'static str {
        match self {
            EventKind::Typing => CONTENT_TYPE_TYPING,
            EventKind::Read => CONTENT_TYPE_READ,
            EventKind::Delivered => CONTENT_TYPE_DELIVERED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Typing => "typing",
            EventKind::Read => "read",
            EventKind::Delivered => "delivered",
        }
    }

    /// From its content type.
    pub fn from_content_type(ct: &str) -> Result<EventKind, InvalidOutbound> {
        [EventKind::Typing, EventKind::Read, EventKind::Delivered]
            .into_iter()
            .find(|k| k.content_type() == ct)
            .ok_or_else(|| InvalidOutbound::EventType(ct.to_string()))
    }
}

/// An event, checked: receipts need the message's Id (as `{"messageId": ID}`, given
/// either way).
pub fn event(
    kind: EventKind,
    message_id: Option<&str>,
    content: Option<&str>,
) -> Result<SendEventRequest, InvalidOutbound> {
    let content = match (kind, message_id, content) {
        (EventKind::Typing, _, c) => c.map(str::to_string),
        (_, Some(id), _) if !id.trim().is_empty() => Some(serde_json::json!({ "messageId": id }).to_string()),
        (_, _, Some(c)) if receipt_message_id(c).is_some() => Some(c.to_string()),
        (k, _, _) => return Err(InvalidOutbound::MissingMessageId(k.name())),
    };
    if let Some(c) = &content {
        let chars = c.chars().count();
        if chars > MAX_CONTENT_CHARS {
            return Err(InvalidOutbound::TooLong { chars });
        }
    }
    Ok(SendEventRequest {
        content_type: kind.content_type().to_string(),
        content,
        client_token: None,
    })
}

/// The `messageId` of a receipt's content.
pub fn receipt_message_id(content: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(content).ok()?;
    v.get("messageId")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The content type of an attachment: the one given, else from the file's extension;
/// either way one Amazon Connect accepts.
pub fn attachment_type(name: &str, given: Option<&str>) -> Result<String, InvalidOutbound> {
    if let Some(ct) = given {
        return if ATTACHMENT_TYPES.iter().any(|(_, t)| *t == ct) {
            Ok(ct.to_string())
        } else {
            Err(InvalidOutbound::AttachmentType(format!(
                "the content type {ct:?} is not one Amazon Connect accepts"
            )))
        };
    }
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    ATTACHMENT_TYPES
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, t)| t.to_string())
        .ok_or_else(|| {
            InvalidOutbound::AttachmentType(format!(
                "{name:?}: the file type .{ext} is not one Amazon Connect accepts (give --content-type for another name)"
            ))
        })
}

/// Checks an attachment's name and size before anything is sent.
pub fn attachment(name: &str, size: u64) -> Result<(), InvalidOutbound> {
    if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(InvalidOutbound::AttachmentName(name.to_string()));
    }
    if size == 0 {
        return Err(InvalidOutbound::AttachmentEmpty);
    }
    if size > MAX_ATTACHMENT_BYTES {
        return Err(InvalidOutbound::AttachmentTooLarge { bytes: size });
    }
    Ok(())
}

/// Why an attachment could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Invalid(#[from] InvalidOutbound),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("StartAttachmentUpload's answer has no {0}")]
    Missing(&'static str),
}

/// An attachment sent: its Id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attached {
    #[serde(rename = "AttachmentId")]
    pub attachment_id: String,
    #[serde(rename = "AttachmentName")]
    pub name: String,
    #[serde(rename = "ContentType")]
    pub content_type: String,
}

/// Sends `bytes` as the attachment `name`: StartAttachmentUpload, the PUT to the
/// presigned URL with exactly the headers the service returned, then
/// CompleteAttachmentUpload. `client_token` makes the start and the completion
/// idempotent (a fresh one per attachment when `None`).
pub async fn attach(
    api: &ApiClient,
    connection_token: &Secret,
    name: &str,
    content_type: &str,
    bytes: Vec<u8>,
    client_token: Option<String>,
) -> Result<Attached, AttachError> {
    attachment(name, bytes.len() as u64)?;
    let token = client_token.unwrap_or_else(super::client::new_client_token);
    let start = StartAttachmentUploadRequest {
        content_type: content_type.to_string(),
        attachment_size_in_bytes: bytes.len() as i64,
        attachment_name: name.to_string(),
        client_token: token.clone(),
    };
    let started = api.start_attachment_upload(connection_token, &start).await?;
    let id = started
        .attachment_id
        .ok_or(AttachError::Missing("AttachmentId"))?;
    let meta = started
        .upload_metadata
        .ok_or(AttachError::Missing("UploadMetadata"))?;
    let url = meta.url.ok_or(AttachError::Missing("UploadMetadata.Url"))?;
    put_presigned(api, &url, &meta.headers_to_include.unwrap_or_default(), bytes).await?;
    let complete = CompleteAttachmentUploadRequest {
        attachment_ids: vec![id.clone()],
        client_token: format!("{token}-complete"),
    };
    api.complete_attachment_upload(connection_token, &complete)
        .await?;
    Ok(Attached {
        attachment_id: id,
        name: name.to_string(),
        content_type: content_type.to_string(),
    })
}

/// The PUT of an attachment's bytes to its presigned URL, with exactly `headers`. The
/// URL's query (its signature) never appears in an error.
pub async fn put_presigned(
    api: &ApiClient,
    url: &crate::secret::PresignedUrl,
    headers: &std::collections::BTreeMap<String, String>,
    bytes: Vec<u8>,
) -> Result<(), ApiError> {
    const OP: &str = "AttachmentUpload";
    let mut req = api.http().put(url.expose()).body(bytes);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.map_err(|e| transport(OP, e))?;
    presigned_status(OP, url, resp).await.map(drop)
}

/// The GET of an attachment's bytes from its presigned URL.
pub async fn get_presigned(api: &ApiClient, url: &crate::secret::PresignedUrl) -> Result<Vec<u8>, ApiError> {
    const OP: &str = "AttachmentDownload";
    let resp = api
        .http()
        .get(url.expose())
        .send()
        .await
        .map_err(|e| transport(OP, e))?;
    let resp = presigned_status(OP, url, resp).await?;
    let bytes = resp.bytes().await.map_err(|e| transport(OP, e))?;
    Ok(bytes.to_vec())
}

fn transport(operation: &'static str, e: reqwest::Error) -> ApiError {
    super::transport::error(operation, e)
}

async fn presigned_status(
    operation: &'static str,
    url: &crate::secret::PresignedUrl,
    resp: reqwest::Response,
) -> Result<reqwest::Response, ApiError> {
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(ApiError::Service {
        operation,
        status,
        code: super::ErrorCode::from_status(status),
        message: format!(
            "{} answered: {}",
            url.redacted(),
            body.chars().take(300).collect::<String>()
        ),
        request_id: None,
    })
}

/// A name to save a downloaded attachment under that stays inside its directory: the
/// last path component of `name`, control characters and separators replaced, never
/// `.`/`..` or empty.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_control() || c == ':' { '_' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '.') {
        "attachment".to_string()
    } else {
        trimmed.chars().take(255).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked() {
        assert!(message("text/plain", "hello").is_ok());
        assert_eq!(message("text/plain", "  "), Err(InvalidOutbound::Empty));
        assert!(matches!(
            message("text/html", "x"),
            Err(InvalidOutbound::MessageType(_))
        ));
        let long = "é".repeat(MAX_CONTENT_CHARS + 1);
        assert_eq!(
            message("text/plain", &long),
            Err(InvalidOutbound::TooLong {
                chars: MAX_CONTENT_CHARS + 1
            })
        );
        assert!(message("text/plain", &"é".repeat(MAX_CONTENT_CHARS)).is_ok());
    }

    #[test]
    fn receipts_need_a_message_id() {
        let read = event(EventKind::Read, Some("m-1"), None).unwrap();
        assert_eq!(
            receipt_message_id(read.content.as_deref().unwrap()).as_deref(),
            Some("m-1")
        );
        assert!(event(EventKind::Delivered, None, Some(r#"{"messageId":"m-2"}"#)).is_ok());
        assert_eq!(
            event(EventKind::Read, None, None),
            Err(InvalidOutbound::MissingMessageId("read"))
        );
        assert!(event(EventKind::Typing, None, None).unwrap().content.is_none());
        assert!(matches!(
            EventKind::from_content_type("text/plain"),
            Err(InvalidOutbound::EventType(_))
        ));
    }

    #[test]
    fn attachments_are_checked_before_upload() {
        assert_eq!(attachment_type("report.PDF", None).unwrap(), "application/pdf");
        assert!(attachment_type("tool.exe", None).is_err());
        assert!(attachment_type("x.bin", Some("image/png")).is_ok());
        assert!(attachment_type("x.bin", Some("application/x-evil")).is_err());
        assert!(attachment("a.txt", MAX_ATTACHMENT_BYTES + 1).is_err());
        assert!(attachment("a.txt", 0).is_err());
        assert!(attachment("bad\nname.txt", 3).is_err());
        assert!(attachment("a.txt", 3).is_ok());
    }

    #[test]
    fn downloaded_names_stay_in_their_directory() {
        for (name, want) in [
            ("../../etc/passwd", "passwd"),
            ("/abs/path/x.png", "x.png"),
            ("..", "attachment"),
            ("", "attachment"),
            ("a\u{0}b\nc.txt", "a_b_c.txt"),
            ("c:\\windows\\evil.txt", "evil.txt"),
            ("ok name.pdf", "ok name.pdf"),
        ] {
            assert_eq!(safe_file_name(name), want, "{name:?}");
        }
    }
}
