//! The eleven Participant Service operations as the emulator performs them: bearer
//! checks, the model's validation rules and error codes, ClientToken idempotency,
//! transcript paging, attachments, authentication sessions and views.

use super::state::{
    new_id, new_token, Attachment, ConnectionTokenInfo, Outbound, PendingUrl, ServiceError, State,
};
use crate::api::model::*;
use crate::api::ErrorCode;
use crate::clock::format_timestamp;
use tokio::time::Instant;

impl State {
    pub fn create_participant_connection(
        &mut self,
        participant_token: &str,
        req: CreateParticipantConnectionRequest,
    ) -> Result<CreateParticipantConnectionResponse, ServiceError> {
        let p = self.participant_for_token(participant_token)?;
        let (pid, contact_id) = (p.id.clone(), p.contact_id.clone());
        if self.chats[&contact_id].ended {
            return Err(ServiceError::denied("The chat has ended"));
        }
        let types = req.connection_types.unwrap_or_default();
        if types.is_empty() {
            return Err(ServiceError::validation(
                "Type must name at least one connection type",
            ));
        }
        if let Some(bad) = types.iter().find(|t| matches!(t, ConnectionType::Unknown(_))) {
            return Err(ServiceError::validation(format!("Unknown connection type {bad}")));
        }
        let now = Instant::now();
        let wall = self.clock.now();
        let mut resp = CreateParticipantConnectionResponse::default();
        if types.contains(&ConnectionType::Websocket) {
            let key = new_token("");
            let expires = now + self.timing.connection_expiry;
            self.pending_urls.insert(
                key.clone(),
                PendingUrl {
                    participant_id: pid.clone(),
                    issued: now,
                    expires,
                },
            );
            let ws_base = self.base_url.replacen("http", "ws", 1);
            resp.websocket = Some(Websocket {
                url: crate::secret::PresignedUrl::new(format!(
                    "{ws_base}/websocket?X-Amz-Security-Token={key}&X-Amz-Expires={}&X-Amz-Signature={}",
                    self.timing.connect_window.as_secs(),
                    uuid::Uuid::new_v4().simple()
                )),
                connection_expiry: Timestamp(wall + self.timing.connection_expiry),
            });
        }
        if types.contains(&ConnectionType::ConnectionCredentials) {
            let token = new_token("ct-");
            self.connection_tokens.insert(
                token.clone(),
                ConnectionTokenInfo {
                    participant_id: pid.clone(),
                    expires: now + self.timing.token_expiry,
                },
            );
            resp.connection_credentials = Some(ConnectionCredentials {
                connection_token: crate::secret::Secret::new(token),
                expiry: Timestamp(wall + self.timing.token_expiry),
            });
        }
        if types.contains(&ConnectionType::WebrtcConnection) {
            let meeting = uuid::Uuid::new_v4().to_string();
            let media = |kind: &str| format!("{}/webrtc/{meeting}/{kind}", self.base_url);
            resp.webrtc_connection = Some(WebRtcConnection {
                attendee: Some(Attendee {
                    attendee_id: Some(new_id()),
                    join_token: Some(crate::secret::Secret::new(new_token("jt-"))),
                }),
                meeting: Some(WebRtcMeeting {
                    media_placement: Some(WebRtcMediaPlacement {
                        audio_host_url: Some(media("audio")),
                        audio_fallback_url: Some(media("audio-fallback")),
                        signaling_url: Some(media("signaling")),
                        event_ingestion_url: Some(media("events")),
                    }),
                    meeting_features: Some(MeetingFeaturesConfiguration {
                        audio: Some(AudioFeatures {
                            echo_reduction: Some(MeetingFeatureStatus::Available),
                        }),
                    }),
                    meeting_id: Some(meeting),
                }),
            });
        }
        if req.connect_participant == Some(true) {
            let ack = self.event_from(&pid, CONTENT_TYPE_CONNECTION_ACK, None);
            let _ = self.publish(&contact_id, ack);
        }
        Ok(resp)
    }

    pub fn get_transcript(
        &mut self,
        token: &str,
        req: GetTranscriptRequest,
    ) -> Result<GetTranscriptResponse, ServiceError> {
        let p = self.participant_for_connection(token)?;
        let contact_id = p.contact_id.clone();
        if let Some(c) = &req.contact_id {
            if c != &contact_id {
                return Err(ServiceError::validation(format!(
                    "ContactId {c} is not this participant's contact"
                )));
            }
        }
        let max = match req.max_results {
            None | Some(0) => 10,
            Some(n @ 1..=100) => n as usize,
            Some(n) => {
                return Err(ServiceError::validation(format!(
                    "MaxResults {n} is not within 0..=100"
                )))
            }
        };
        let forward = match req.scan_direction {
            None | Some(ScanDirection::Backward) => false,
            Some(ScanDirection::Forward) => true,
            Some(ScanDirection::Unknown(s)) => {
                return Err(ServiceError::validation(format!("Unknown ScanDirection {s}")))
            }
        };
        let descending = match req.sort_order {
            None | Some(SortKey::Ascending) => false,
            Some(SortKey::Descending) => true,
            Some(SortKey::Unknown(s)) => {
                return Err(ServiceError::validation(format!("Unknown SortOrder {s}")))
            }
        };
        let items = &self.chats[&contact_id].items;
        let len = items.len();
        // `start` is the first index to return (forward), or the last one (backward).
        let start: Option<usize> = if let Some(tok) = &req.next_token {
            Some(decode_next_token(tok, &contact_id, forward)?)
        } else if let Some(sp) = &req.start_position {
            let set = [
                sp.id.is_some(),
                sp.absolute_time.is_some(),
                sp.most_recent.is_some(),
            ];
            if set.iter().filter(|b| **b).count() > 1 {
                return Err(ServiceError::validation(
                    "StartPosition takes only one of Id, AbsoluteTime, MostRecent",
                ));
            }
            if let Some(id) = &sp.id {
                let i = items
                    .iter()
                    .position(|it| it.id.as_deref() == Some(id))
                    .ok_or_else(|| {
                        ServiceError::validation(format!("StartPosition Id {id} is not in this transcript"))
                    })?;
                Some(i)
            } else if let Some(t) = &sp.absolute_time {
                let t = crate::clock::parse_timestamp(t).map_err(|_| {
                    ServiceError::validation(format!("StartPosition AbsoluteTime {t:?} is not ISO 8601"))
                })?;
                let after = items.partition_point(|it| it.absolute_time().is_some_and(|a| a < t));
                if forward {
                    Some(after)
                } else {
                    let upto = items.partition_point(|it| it.absolute_time().is_some_and(|a| a <= t));
                    upto.checked_sub(1).or(Some(usize::MAX))
                }
            } else if let Some(n) = sp.most_recent {
                if !(0..=100).contains(&n) {
                    return Err(ServiceError::validation(format!(
                        "MostRecent {n} is not within 0..=100"
                    )));
                }
                if forward {
                    Some(len.saturating_sub(n as usize))
                } else {
                    len.checked_sub(1)
                }
            } else {
                None
            }
        } else {
            None
        };
        let (mut page, next): (Vec<Item>, Option<usize>) = if forward {
            let from = start.unwrap_or(0).min(len);
            let to = (from + max).min(len);
            let more = to < len || self.quirks.endless_next_token;
            (items[from..to].to_vec(), more.then_some(to))
        } else {
            match start.or(len.checked_sub(1)) {
                Some(last) if last != usize::MAX && len > 0 => {
                    let last = last.min(len - 1);
                    let first = (last + 1).saturating_sub(max);
                    (items[first..=last].to_vec(), first.checked_sub(1))
                }
                _ => (Vec::new(), None),
            }
        };
        if descending {
            page.reverse();
        }
        Ok(GetTranscriptResponse {
            initial_contact_id: Some(contact_id.clone()),
            transcript: page,
            next_token: next.map(|i| encode_next_token(&contact_id, forward, i)),
        })
    }

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

    pub fn disconnect_participant(
        &mut self,
        token: &str,
        _req: DisconnectParticipantRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let (pid, contact_id) = self.live_participant_for_connection(token)?;
        let left = self.event_from(&pid, CONTENT_TYPE_LEFT, None);
        let _ = self.publish(&contact_id, left);
        let customer = self.participants[&pid].role == ParticipantRole::Customer;
        if let Some(p) = self.participants.get_mut(&pid) {
            p.left = true;
        }
        self.close_sockets(
            |s| s.participant_id == pid,
            || Outbound::Close(1000, "participant disconnected"),
        );
        if customer {
            let _ = self.end_chat(&contact_id);
        }
        Ok(EmptyResponse {})
    }

    pub fn start_attachment_upload(
        &mut self,
        token: &str,
        req: StartAttachmentUploadRequest,
    ) -> Result<StartAttachmentUploadResponse, ServiceError> {
        let (pid, contact_id) = self.live_participant_for_connection(token)?;
        if req.attachment_name.is_empty() || req.attachment_name.len() > 256 {
            return Err(ServiceError::validation(
                "AttachmentName must be 1 to 256 characters",
            ));
        }
        if req.client_token.is_empty() {
            return Err(ServiceError::validation("ClientToken is required"));
        }
        if req.attachment_size_in_bytes < 1 {
            return Err(ServiceError::validation(
                "AttachmentSizeInBytes must be at least 1",
            ));
        }
        self.once(&pid, "StartAttachmentUpload", Some(&req.client_token), |st| {
            if req.attachment_size_in_bytes > 20 * 1024 * 1024 {
                return Err(ServiceError::new(
                    ErrorCode::ServiceQuotaExceeded,
                    "Attachments are limited to 20 MB",
                ));
            }
            let chat = st.chats.get_mut(&contact_id).expect("participant's chat exists");
            if chat.attachments >= 5 {
                return Err(ServiceError::new(
                    ErrorCode::ServiceQuotaExceeded,
                    "A chat takes at most 5 attachments",
                ));
            }
            chat.attachments += 1;
            let id = new_id();
            st.attachments.insert(
                id.clone(),
                Attachment {
                    contact_id,
                    name: req.attachment_name.clone(),
                    content_type: req.content_type.clone(),
                    size: req.attachment_size_in_bytes,
                    uploaded: None,
                    completed_with: None,
                },
            );
            let expiry = st.clock.now() + time::Duration::minutes(5);
            Ok(StartAttachmentUploadResponse {
                attachment_id: Some(id.clone()),
                upload_metadata: Some(UploadMetadata {
                    url: Some(crate::secret::PresignedUrl::new(format!(
                        "{}/attachments/{id}?X-Amz-Signature={}",
                        st.base_url,
                        uuid::Uuid::new_v4().simple()
                    ))),
                    url_expiry: Some(Timestamp(expiry)),
                    headers_to_include: Some(
                        [("Content-Type".to_string(), req.content_type.clone())]
                            .into_iter()
                            .collect(),
                    ),
                }),
            })
        })
    }

    /// The upload itself (the presigned PUT): like a store checking a signature, it
    /// refuses a body whose size or `Content-Type` is not the one that was signed.
    pub fn upload_attachment(
        &mut self,
        id: &str,
        content_type: Option<&str>,
        body: axum::body::Bytes,
    ) -> Result<(), ServiceError> {
        let a = self
            .attachments
            .get_mut(id)
            .ok_or_else(|| ServiceError::new(ErrorCode::ResourceNotFound, "No such attachment"))?;
        if content_type != Some(a.content_type.as_str()) {
            return Err(ServiceError::new(
                ErrorCode::AccessDenied,
                format!("SignatureDoesNotMatch: Content-Type must be {}", a.content_type),
            ));
        }
        if body.len() as i64 != a.size {
            return Err(ServiceError::validation(format!(
                "the body has {} bytes; {} were announced",
                body.len(),
                a.size
            )));
        }
        a.uploaded = Some(body);
        Ok(())
    }

    pub fn attachment_bytes(&self, id: &str) -> Option<axum::body::Bytes> {
        self.attachments.get(id).and_then(|a| a.uploaded.clone())
    }

    pub fn complete_attachment_upload(
        &mut self,
        token: &str,
        req: CompleteAttachmentUploadRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let (pid, contact_id) = self.live_participant_for_connection(token)?;
        if req.attachment_ids.is_empty() || req.client_token.is_empty() {
            return Err(ServiceError::validation(
                "AttachmentIds and ClientToken are required",
            ));
        }
        for id in &req.attachment_ids {
            let a = self
                .attachments
                .get(id)
                .filter(|a| a.contact_id == contact_id)
                .ok_or_else(|| ServiceError::validation(format!("Attachment {id} is not in this chat")))?;
            match &a.completed_with {
                Some(t) if t == &req.client_token => return Ok(EmptyResponse {}),
                Some(_) => {
                    return Err(ServiceError::new(
                        ErrorCode::Conflict,
                        format!("Attachment {id} was completed already"),
                    ))
                }
                None => {}
            }
            if a.uploaded.is_none() {
                return Err(ServiceError::new(
                    ErrorCode::Conflict,
                    format!("Attachment {id} has not been uploaded"),
                ));
            }
        }
        let mut attachments = Vec::new();
        for id in &req.attachment_ids {
            let a = self.attachments.get_mut(id).expect("checked above");
            a.completed_with = Some(req.client_token.clone());
            attachments.push(AttachmentItem {
                content_type: Some(a.content_type.clone()),
                attachment_id: Some(id.clone()),
                attachment_name: Some(a.name.clone()),
                status: Some(ArtifactStatus::Approved),
                ..Default::default()
            });
        }
        let mut item = self.item_from(
            &pid,
            ChatItemType::Attachment,
            &attachments[0].content_type.clone().unwrap_or_default(),
            None,
        );
        item.attachments = Some(attachments);
        self.publish(&contact_id, item)
            .map_err(|_| ServiceError::denied("The chat has ended"))?;
        Ok(EmptyResponse {})
    }

    pub fn get_attachment(
        &mut self,
        token: &str,
        req: GetAttachmentRequest,
    ) -> Result<GetAttachmentResponse, ServiceError> {
        let p = self.participant_for_connection(token)?;
        let contact_id = p.contact_id.clone();
        let expiry_s = req.url_expiry_in_seconds.unwrap_or(300);
        if !(5..=300).contains(&expiry_s) {
            return Err(ServiceError::validation(
                "UrlExpiryInSeconds must be within 5..=300",
            ));
        }
        let a = self
            .attachments
            .get(&req.attachment_id)
            .filter(|a| a.contact_id == contact_id && a.completed_with.is_some())
            .ok_or_else(|| {
                ServiceError::validation(format!("Attachment {} is not available", req.attachment_id))
            })?;
        Ok(GetAttachmentResponse {
            url: Some(crate::secret::PresignedUrl::new(format!(
                "{}/attachments/{}?X-Amz-Signature={}",
                self.base_url,
                req.attachment_id,
                uuid::Uuid::new_v4().simple()
            ))),
            url_expiry: Some(Timestamp(self.clock.now() + time::Duration::seconds(expiry_s))),
            attachment_size_in_bytes: a.size,
        })
    }

    pub fn get_authentication_url(
        &mut self,
        token: &str,
        req: GetAuthenticationUrlRequest,
    ) -> Result<GetAuthenticationUrlResponse, ServiceError> {
        let (pid, _) = self.live_participant_for_connection(token)?;
        if req.session_id.len() != 36 {
            return Err(ServiceError::validation("SessionId must be 36 characters"));
        }
        if req.redirect_uri.is_empty() || req.redirect_uri.len() > 1024 {
            return Err(ServiceError::validation(
                "RedirectUri must be 1 to 1024 characters",
            ));
        }
        self.auth_sessions.insert(req.session_id.clone(), pid);
        Ok(GetAuthenticationUrlResponse {
            authentication_url: Some(format!(
                "{}/authenticate?session={}&redirect_uri={}",
                self.base_url,
                req.session_id,
                url_encode(&req.redirect_uri)
            )),
        })
    }

    pub fn cancel_participant_authentication(
        &mut self,
        token: &str,
        req: CancelParticipantAuthenticationRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let (pid, _) = self.live_participant_for_connection(token)?;
        match self.auth_sessions.get(&req.session_id) {
            Some(owner) if owner == &pid => {
                self.auth_sessions.remove(&req.session_id);
                Ok(EmptyResponse {})
            }
            _ => Err(ServiceError::validation(format!(
                "No authentication session {}",
                req.session_id
            ))),
        }
    }

    pub fn describe_view(
        &mut self,
        token: &str,
        view_token: &str,
    ) -> Result<DescribeViewResponse, ServiceError> {
        self.participant_for_connection(token)?;
        let known = ["interactive-list", "cards", "confirmation"];
        if !known.contains(&view_token) {
            return Err(ServiceError::new(
                ErrorCode::ResourceNotFound,
                format!("View {view_token} not found"),
            ));
        }
        Ok(DescribeViewResponse {
            view: Some(View {
                id: Some(view_token.to_string()),
                arn: Some(format!(
                    "arn:aws:connect:us-east-1:000000000000:instance/emulator/view/{view_token}"
                )),
                name: Some(view_token.to_string()),
                version: Some(1),
                content: Some(ViewContent {
                    input_schema: Some(r#"{"type":"object"}"#.to_string()),
                    template: Some(r#"{"Head":{},"Body":{}}"#.to_string()),
                    actions: Some(vec!["ActionSelected".into(), "Cancel".into()]),
                }),
            }),
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

fn encode_next_token(contact_id: &str, forward: bool, index: usize) -> String {
    use base64::Engine;
    let dir = if forward { "F" } else { "B" };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1|{contact_id}|{dir}|{index}"))
}

fn decode_next_token(token: &str, contact_id: &str, forward: bool) -> Result<usize, ServiceError> {
    use base64::Engine;
    let bad = || ServiceError::validation("Invalid NextToken");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<&str> = raw.split('|').collect();
    let dir = if forward { "F" } else { "B" };
    match parts.as_slice() {
        ["v1", c, d, i] if *c == contact_id && *d == dir => i.parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
