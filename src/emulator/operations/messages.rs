//! SendMessage and SendEvent: the content rules of each, ClientToken idempotency, and
//! receipts (read/delivered events), which travel as MESSAGEMETADATA Items.

use crate::api::model::*;
use crate::api::ErrorCode;
use crate::clock::format_timestamp;
use crate::emulator::state::{ServiceError, State};

impl State {
    pub fn send_message(
        &mut self,
        token: &str,
        req: SendMessageRequest,
    ) -> Result<SendMessageResponse, ServiceError> {
        let (pid, contact_id) = self.live_participant_for_connection(token)?;
        validate_content(&req.content_type, Some(&req.content), true)?;
        self.once(&pid, "SendMessage", req.client_token.as_ref(), |st| {
            let item = st.item_from(
                &pid,
                ChatItemType::Message,
                &req.content_type,
                Some(req.content.clone()),
            );
            let item = st
                .publish(&contact_id, item)
                .map_err(|_| ServiceError::denied("The chat has ended"))?;
            Ok(SendMessageResponse {
                id: item.id,
                absolute_time: item.absolute_time,
                message_metadata: None,
            })
        })
    }

    pub fn send_event(
        &mut self,
        token: &str,
        req: SendEventRequest,
    ) -> Result<SendEventResponse, ServiceError> {
        let (pid, contact_id) = self.live_participant_for_connection(token)?;
        validate_content(&req.content_type, req.content.as_ref(), false)?;
        self.once(&pid, "SendEvent", req.client_token.as_ref(), |st| {
            let ct = req.content_type.as_str();
            let item = if ct == CONTENT_TYPE_READ || ct == CONTENT_TYPE_DELIVERED {
                // Receipts travel as MESSAGEMETADATA Items, as the official clients expect.
                let message_id = req
                    .content
                    .as_deref()
                    .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
                    .and_then(|v| v.get("messageId").and_then(|m| m.as_str()).map(str::to_string))
                    .ok_or_else(|| {
                        ServiceError::validation("A receipt's Content must be {\"messageId\":\"…\"}")
                    })?;
                let known = st.chats[&contact_id]
                    .items
                    .iter()
                    .any(|i| i.id.as_deref() == Some(message_id.as_str()));
                if !known {
                    return Err(ServiceError::new(
                        ErrorCode::Conflict,
                        format!("Message {message_id} is not in this chat"),
                    ));
                }
                let now = format_timestamp(st.clock.now());
                let receipt = Receipt {
                    recipient_participant_id: Some(pid.clone()),
                    read_timestamp: (ct == CONTENT_TYPE_READ).then(|| now.clone()),
                    delivered_timestamp: Some(now),
                    ..Default::default()
                };
                let mut item = st.item_from(&pid, ChatItemType::Unknown("MESSAGEMETADATA".into()), ct, None);
                item.content_type = None;
                item.message_metadata = Some(MessageMetadata {
                    message_id: Some(message_id),
                    receipts: Some(vec![receipt]),
                    ..Default::default()
                });
                item
            } else {
                st.event_from(&pid, ct, req.content.clone())
            };
            let item = st
                .publish(&contact_id, item)
                .map_err(|_| ServiceError::denied("The chat has ended"))?;
            Ok(SendEventResponse {
                id: item.id,
                absolute_time: item.absolute_time,
            })
        })
    }
}

fn validate_content(content_type: &str, content: Option<&String>, message: bool) -> Result<(), ServiceError> {
    if content_type.is_empty() || content_type.len() > 100 {
        return Err(ServiceError::validation(
            "ContentType must be 1 to 100 characters",
        ));
    }
    if message {
        let allowed = [
            "text/plain",
            "text/markdown",
            "application/json",
            "application/vnd.amazonaws.connect.message.interactive.response",
        ];
        if !allowed.contains(&content_type) {
            return Err(ServiceError::validation(format!(
                "ContentType {content_type} is not supported for messages"
            )));
        }
    } else if !content_type.starts_with(EVENT_PREFIX) {
        return Err(ServiceError::validation(format!(
            "ContentType {content_type} is not an event type"
        )));
    }
    match content {
        Some(c) if c.is_empty() || c.chars().count() > 16384 => {
            Err(ServiceError::validation("Content must be 1 to 16384 characters"))
        }
        None if message => Err(ServiceError::validation("Content is required")),
        _ => Ok(()),
    }
}
