//! One method per Participant Service operation, each a typed request and response over
//! [`ApiClient::call`] (which adds the bearer, the ClientToken, retries and limits).

use super::{new_client_token, ApiClient, Operation};
use crate::api::error::ApiError;
use crate::api::model::*;
use crate::secret::Secret;

impl ApiClient {
    pub async fn create_participant_connection(
        &self,
        participant_token: &Secret,
        request: &CreateParticipantConnectionRequest,
    ) -> Result<CreateParticipantConnectionResponse, ApiError> {
        self.call(
            Operation::CreateParticipantConnection,
            None,
            participant_token,
            Some(request),
        )
        .await
    }

    pub async fn get_transcript(
        &self,
        connection_token: &Secret,
        request: &GetTranscriptRequest,
    ) -> Result<GetTranscriptResponse, ApiError> {
        self.call(Operation::GetTranscript, None, connection_token, Some(request))
            .await
    }

    /// Sends a message. A missing `ClientToken` is filled with a fresh UUID, the same
    /// for every retry of this call.
    pub async fn send_message(
        &self,
        connection_token: &Secret,
        request: &SendMessageRequest,
    ) -> Result<SendMessageResponse, ApiError> {
        let mut request = request.clone();
        request.client_token.get_or_insert_with(new_client_token);
        self.call(Operation::SendMessage, None, connection_token, Some(&request))
            .await
    }

    /// Sends an event (typing, read/delivered receipt, connection ack), with a stable
    /// `ClientToken` as [`send_message`](Self::send_message).
    pub async fn send_event(
        &self,
        connection_token: &Secret,
        request: &SendEventRequest,
    ) -> Result<SendEventResponse, ApiError> {
        let mut request = request.clone();
        request.client_token.get_or_insert_with(new_client_token);
        self.call(Operation::SendEvent, None, connection_token, Some(&request))
            .await
    }

    pub async fn disconnect_participant(
        &self,
        connection_token: &Secret,
        request: &DisconnectParticipantRequest,
    ) -> Result<EmptyResponse, ApiError> {
        let mut request = request.clone();
        request.client_token.get_or_insert_with(new_client_token);
        self.call(
            Operation::DisconnectParticipant,
            None,
            connection_token,
            Some(&request),
        )
        .await
    }

    pub async fn start_attachment_upload(
        &self,
        connection_token: &Secret,
        request: &StartAttachmentUploadRequest,
    ) -> Result<StartAttachmentUploadResponse, ApiError> {
        let mut request = request.clone();
        if request.client_token.is_empty() {
            request.client_token = new_client_token();
        }
        self.call(
            Operation::StartAttachmentUpload,
            None,
            connection_token,
            Some(&request),
        )
        .await
    }

    pub async fn complete_attachment_upload(
        &self,
        connection_token: &Secret,
        request: &CompleteAttachmentUploadRequest,
    ) -> Result<EmptyResponse, ApiError> {
        let mut request = request.clone();
        if request.client_token.is_empty() {
            request.client_token = new_client_token();
        }
        self.call(
            Operation::CompleteAttachmentUpload,
            None,
            connection_token,
            Some(&request),
        )
        .await
    }

    pub async fn get_attachment(
        &self,
        connection_token: &Secret,
        request: &GetAttachmentRequest,
    ) -> Result<GetAttachmentResponse, ApiError> {
        self.call(Operation::GetAttachment, None, connection_token, Some(request))
            .await
    }

    pub async fn get_authentication_url(
        &self,
        connection_token: &Secret,
        request: &GetAuthenticationUrlRequest,
    ) -> Result<GetAuthenticationUrlResponse, ApiError> {
        self.call(
            Operation::GetAuthenticationUrl,
            None,
            connection_token,
            Some(request),
        )
        .await
    }

    pub async fn cancel_participant_authentication(
        &self,
        connection_token: &Secret,
        request: &CancelParticipantAuthenticationRequest,
    ) -> Result<EmptyResponse, ApiError> {
        self.call(
            Operation::CancelParticipantAuthentication,
            None,
            connection_token,
            Some(request),
        )
        .await
    }

    pub async fn describe_view(
        &self,
        connection_token: &Secret,
        view_token: &str,
    ) -> Result<DescribeViewResponse, ApiError> {
        self.call::<(), _>(Operation::DescribeView, Some(view_token), connection_token, None)
            .await
    }
}
