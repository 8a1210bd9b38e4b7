//! The eleven Participant Service operations as the emulator performs them: bearer
//! checks, the model's validation rules and error codes, ClientToken idempotency,
//! transcript paging, attachments, authentication sessions and views.
//!
//! Each is a method of [`State`](super::state::State), in a file per group:
//! `connection.rs` (CreateParticipantConnection, DisconnectParticipant),
//! `transcript.rs` (GetTranscript and its NextToken), `messages.rs` (SendMessage,
//! SendEvent), `attachments.rs` (StartAttachmentUpload, the upload, CompleteAttachmentUpload,
//! GetAttachment) and `views.rs` (GetAuthenticationUrl, CancelParticipantAuthentication,
//! DescribeView).

mod attachments;
mod connection;
mod messages;
mod transcript;
mod views;
