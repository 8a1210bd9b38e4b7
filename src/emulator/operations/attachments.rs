//! Attachments: StartAttachmentUpload (size and count quotas, the presigned PUT), the
//! upload itself, CompleteAttachmentUpload (publishing the ATTACHMENT Item) and
//! GetAttachment.

use crate::api::model::*;
use crate::api::ErrorCode;
use crate::emulator::state::{new_id, Attachment, ServiceError, State};

impl State {
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
}
