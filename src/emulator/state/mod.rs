//! The emulator's state: chats, participants, tokens, presigned URLs, open sockets,
//! injected faults and call counters, behind one mutex that is never held across an
//! `.await`. Every API operation and admin action is a method here, so the HTTP layer
//! and the library API share one implementation.
//!
//! The methods are grouped by concern: `chats.rs` (the admin side: chats,
//! participants, publishing), `calls.rs` (faults, counters, stats, bearer checks,
//! idempotency) and `sockets.rs` (dials, subscribes, frames to sockets); the API
//! operations are in `../operations/`.

mod calls;
mod chats;
mod sockets;

use super::{FaultSpec, Timing};
use crate::api::model::*;
use crate::api::ErrorCode;
use crate::clock::Clock;
use std::collections::{HashMap, VecDeque};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the state tells one socket task to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send this text frame.
    Text(String),
    /// Send this binary frame.
    Binary(Vec<u8>),
    /// Vanish: stop without a close frame.
    Drop,
    /// Go half-open: read and discard everything, send nothing.
    Stall,
    /// Send a close frame and stop.
    Close(u16, &'static str),
}

/// A service error: the code and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError {
            code,
            message: message.into(),
        }
    }
    pub(super) fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }
    pub(super) fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AccessDenied, message)
    }
}

pub(crate) struct Chat {
    /// The persisted Items, in order: the transcript.
    pub items: Vec<Item>,
    last_time: Option<OffsetDateTime>,
    pub ended: bool,
    pub participants: Vec<String>,
    pub(super) attachments: usize,
}

pub(crate) struct Participant {
    pub id: String,
    pub contact_id: String,
    pub display_name: String,
    pub role: ParticipantRole,
    pub left: bool,
}

pub(super) struct ConnectionTokenInfo {
    pub(super) participant_id: String,
    pub(super) expires: Instant,
}

pub(crate) struct PendingUrl {
    pub participant_id: String,
    pub issued: Instant,
    pub expires: Instant,
}

pub(crate) struct SocketEntry {
    pub participant_id: String,
    pub subscribed: bool,
    tx: mpsc::Sender<Outbound>,
}

pub(super) struct Attachment {
    pub(super) contact_id: String,
    pub(super) name: String,
    pub(super) content_type: String,
    pub(super) size: i64,
    /// The bytes of the presigned PUT, as a store would keep them.
    pub(super) uploaded: Option<axum::body::Bytes>,
    pub(super) completed_with: Option<String>,
}

/// Counters the tests read.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Stats {
    /// Calls per operation (including rejected ones).
    pub calls: HashMap<String, u64>,
    /// Currently open sockets per participant.
    pub open_sockets: HashMap<String, usize>,
    /// The most sockets a participant ever had open at once.
    pub max_open_sockets: HashMap<String, usize>,
    /// Successful websocket upgrades per participant.
    pub upgrades: HashMap<String, u64>,
    /// Calls rejected because their ConnectionToken had expired.
    pub expired_token_uses: u64,
}

/// Calls remembered per operation for [`State::max_calls_in_any_second`].
pub const CALL_LOG: usize = 16_384;

pub(crate) struct State {
    pub clock: Clock,
    pub timing: Timing,
    pub base_url: String,
    pub(super) chats: HashMap<String, Chat>,
    pub(super) participants: HashMap<String, Participant>,
    participant_tokens: HashMap<String, String>,
    pub(super) connection_tokens: HashMap<String, ConnectionTokenInfo>,
    pub(super) pending_urls: HashMap<String, PendingUrl>,
    sockets: HashMap<u64, SocketEntry>,
    next_socket: u64,
    faults: HashMap<String, VecDeque<FaultSpec>>,
    /// Misbehaviour of a real service, played on demand.
    pub(super) quirks: super::Quirks,
    stats: Stats,
    /// When the latest calls of each operation came (the last [`CALL_LOG`]), by the
    /// emulator's clock, for tests of client-side rate limits.
    call_times: HashMap<String, VecDeque<tokio::time::Instant>>,
    /// Calls made with an expired ConnectionToken (counted from `&self` checks).
    expired_token_uses: std::cell::Cell<u64>,
    idempotent: HashMap<(String, &'static str, String), serde_json::Value>,
    pub(super) attachments: HashMap<String, Attachment>,
    pub(super) auth_sessions: HashMap<String, String>,
}

pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) fn new_token(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl State {
    pub fn new(clock: Clock, timing: Timing, base_url: String) -> Self {
        State {
            clock,
            timing,
            base_url,
            chats: HashMap::new(),
            participants: HashMap::new(),
            participant_tokens: HashMap::new(),
            connection_tokens: HashMap::new(),
            pending_urls: HashMap::new(),
            sockets: HashMap::new(),
            next_socket: 1,
            faults: HashMap::new(),
            quirks: super::Quirks::default(),
            stats: Stats::default(),
            call_times: HashMap::new(),
            expired_token_uses: std::cell::Cell::new(0),
            idempotent: HashMap::new(),
            attachments: HashMap::new(),
            auth_sessions: HashMap::new(),
        }
    }

    pub fn set_timing(&mut self, timing: Timing) {
        self.timing = timing;
    }
}
