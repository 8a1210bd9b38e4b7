//! The emulator's state: chats, participants, tokens, presigned URLs, open sockets,
//! injected faults and call counters, behind one mutex that is never held across an
//! `.await`. Every API operation and admin action is a method here, so the HTTP layer
//! and the library API share one implementation.

use super::{EmulatorError, FaultSpec, Timing};
use crate::api::model::*;
use crate::api::ErrorCode;
use crate::clock::{format_timestamp, Clock};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
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

    // ------------------------------------------------------------ admin side

    pub fn create_chat(
        &mut self,
        contact_id: Option<String>,
        display_name: String,
    ) -> Result<(String, String, String), EmulatorError> {
        let contact_id = contact_id.unwrap_or_else(new_id);
        if self.chats.contains_key(&contact_id) {
            return Err(EmulatorError::Invalid(format!(
                "chat {contact_id} exists already"
            )));
        }
        self.chats.insert(
            contact_id.clone(),
            Chat {
                items: Vec::new(),
                last_time: None,
                ended: false,
                participants: Vec::new(),
                attachments: 0,
            },
        );
        let (pid, token) = self.add_participant(&contact_id, display_name, ParticipantRole::Customer)?;
        Ok((contact_id, pid, token))
    }

    pub fn add_participant(
        &mut self,
        contact_id: &str,
        display_name: String,
        role: ParticipantRole,
    ) -> Result<(String, String), EmulatorError> {
        let chat = self.chat_mut(contact_id)?;
        if chat.ended {
            return Err(EmulatorError::ChatEnded(contact_id.to_string()));
        }
        let pid = new_id();
        let token = new_token("pt-");
        chat.participants.push(pid.clone());
        self.participants.insert(
            pid.clone(),
            Participant {
                id: pid.clone(),
                contact_id: contact_id.to_string(),
                display_name,
                role,
                left: false,
            },
        );
        self.participant_tokens.insert(token.clone(), pid.clone());
        let joined = self.event_from(&pid, CONTENT_TYPE_JOINED, None);
        self.publish(contact_id, joined)?;
        Ok((pid, token))
    }

    /// The participant in this chat with this name and role, added if there is none.
    pub fn participant_named(
        &mut self,
        contact_id: &str,
        display_name: &str,
        role: &ParticipantRole,
    ) -> Result<String, EmulatorError> {
        let chat = self.chat_mut(contact_id)?;
        let existing = chat.participants.clone().into_iter().find(|p| {
            self.participants
                .get(p)
                .is_some_and(|p| !p.left && p.display_name == display_name && &p.role == role)
        });
        match existing {
            Some(p) => Ok(p),
            None => Ok(self
                .add_participant(contact_id, display_name.to_string(), role.clone())?
                .0),
        }
    }

    fn chat_mut(&mut self, contact_id: &str) -> Result<&mut Chat, EmulatorError> {
        self.chats
            .get_mut(contact_id)
            .ok_or_else(|| EmulatorError::UnknownChat(contact_id.to_string()))
    }

    pub fn transcript_of(&self, contact_id: &str) -> Result<Vec<Item>, EmulatorError> {
        self.chats
            .get(contact_id)
            .map(|c| c.items.clone())
            .ok_or_else(|| EmulatorError::UnknownChat(contact_id.to_string()))
    }

    /// An Item from a participant, not yet published.
    pub fn item_from(
        &self,
        pid: &str,
        item_type: ChatItemType,
        content_type: &str,
        content: Option<String>,
    ) -> Item {
        let p = self.participants.get(pid);
        Item {
            item_type: Some(item_type),
            content_type: Some(content_type.to_string()),
            content,
            participant_id: Some(pid.to_string()),
            display_name: p.map(|p| p.display_name.clone()),
            participant_role: p.map(|p| p.role.clone()),
            ..Default::default()
        }
    }

    pub fn event_from(&self, pid: &str, content_type: &str, content: Option<String>) -> Item {
        self.item_from(pid, ChatItemType::Event, content_type, content)
    }

    /// Stamps an Item (Id, AbsoluteTime strictly after the previous one, ContactId),
    /// keeps it in the transcript unless it is ephemeral, and sends it to every
    /// subscribed socket of the chat. Nothing is replayed to sockets that subscribe later.
    pub fn publish(&mut self, contact_id: &str, mut item: Item) -> Result<Item, EmulatorError> {
        let now = self.clock.now();
        let chat = self.chat_mut(contact_id)?;
        if chat.ended {
            return Err(EmulatorError::ChatEnded(contact_id.to_string()));
        }
        let mut at = now
            .replace_nanosecond((now.nanosecond() / 1_000_000) * 1_000_000)
            .unwrap_or(now);
        if let Some(last) = chat.last_time {
            if at <= last {
                at = last + time::Duration::milliseconds(1);
            }
        }
        chat.last_time = Some(at);
        item.id = Some(new_id());
        item.absolute_time = Some(format_timestamp(at));
        item.contact_id = Some(contact_id.to_string());
        item.extra.insert("InitialContactId".into(), contact_id.into());
        if !item.is_ephemeral() {
            chat.items.push(item.clone());
        }
        if item.is_chat_ended() {
            chat.ended = true;
        }
        let participants = chat.participants.clone();
        let frame = serde_json::json!({
            "topic": "aws/chat",
            "contentType": "application/json",
            "content": serde_json::to_string(&item).expect("an Item always serialises"),
        })
        .to_string();
        let mut overflowed = Vec::new();
        for (id, s) in self.sockets.iter() {
            if s.subscribed
                && participants.contains(&s.participant_id)
                && s.tx.try_send(Outbound::Text(frame.clone())).is_err()
            {
                overflowed.push(*id);
            }
        }
        for id in overflowed {
            tracing::warn!(socket = id, "emulator: socket queue full, dropping the socket");
            self.sockets.remove(&id);
        }
        Ok(item)
    }

    pub fn end_chat(&mut self, contact_id: &str) -> Result<Item, EmulatorError> {
        let chat = self.chat_mut(contact_id)?;
        if chat.ended {
            return Err(EmulatorError::ChatEnded(contact_id.to_string()));
        }
        let item = Item {
            item_type: Some(ChatItemType::Event),
            content_type: Some(CONTENT_TYPE_CHAT_ENDED.to_string()),
            participant_role: Some(ParticipantRole::System),
            display_name: Some("SYSTEM_MESSAGE".into()),
            ..Default::default()
        };
        let item = self.publish(contact_id, item)?;
        let participants = self.chats[contact_id].participants.clone();
        self.close_sockets(
            |s| participants.contains(&s.participant_id),
            || Outbound::Close(1000, "chat ended"),
        );
        Ok(item)
    }

    pub(super) fn close_sockets(
        &mut self,
        which: impl Fn(&SocketEntry) -> bool,
        what: impl Fn() -> Outbound,
    ) -> usize {
        let mut n = 0;
        for s in self.sockets.values() {
            if which(s) {
                // A full queue means the socket is being dropped anyway.
                let _ = s.tx.try_send(what());
                n += 1;
            }
        }
        n
    }

    pub fn drop_sockets(&mut self, pid: Option<&str>) -> usize {
        self.close_sockets(|s| pid.is_none_or(|p| p == s.participant_id), || Outbound::Drop)
    }

    pub fn stall_sockets(&mut self, pid: Option<&str>) -> usize {
        self.close_sockets(|s| pid.is_none_or(|p| p == s.participant_id), || Outbound::Stall)
    }

    pub fn send_raw(&mut self, pid: Option<&str>, frame: &str) -> usize {
        self.close_sockets(
            |s| s.subscribed && pid.is_none_or(|p| p == s.participant_id),
            || Outbound::Text(frame.to_string()),
        )
    }

    pub fn send_binary(&mut self, pid: Option<&str>, frame: &[u8]) -> usize {
        self.close_sockets(
            |s| s.subscribed && pid.is_none_or(|p| p == s.participant_id),
            || Outbound::Binary(frame.to_vec()),
        )
    }

    pub fn add_fault(&mut self, fault: FaultSpec) {
        self.faults
            .entry(fault.operation.clone())
            .or_default()
            .push_back(fault);
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The most calls of `operation` that came within any one second (of the last
    /// [`CALL_LOG`] calls).
    pub fn max_calls_in_any_second(&self, operation: &str) -> usize {
        let Some(times) = self.call_times.get(operation) else {
            return 0;
        };
        let times: Vec<_> = times.iter().copied().collect();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= std::time::Duration::from_secs(1) {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.expired_token_uses = self.expired_token_uses.get();
        stats.open_sockets.clear();
        for s in self.sockets.values() {
            *stats.open_sockets.entry(s.participant_id.clone()).or_default() += 1;
        }
        stats
    }

    // -------------------------------------------------------- request plumbing

    /// Counts a call and takes the injected fault due for it: how long to stall first,
    /// and the error to answer with (none for a fault whose status is a success, which
    /// only slows the call down).
    pub fn begin_call(&mut self, operation: &str) -> (Duration, Result<(), ServiceError>) {
        *self.stats.calls.entry(operation.to_string()).or_default() += 1;
        let times = self.call_times.entry(operation.to_string()).or_default();
        if times.len() == CALL_LOG {
            times.pop_front();
        }
        times.push_back(tokio::time::Instant::now());
        let Some(front) = self.faults.get_mut(operation).and_then(|q| q.front_mut()) else {
            return (Duration::ZERO, Ok(()));
        };
        let (status, delay) = (front.status, Duration::from_millis(front.delay_ms));
        front.count = front.count.saturating_sub(1);
        if front.count == 0 {
            self.faults.get_mut(operation).map(|q| q.pop_front());
        }
        if status < 400 {
            return (delay, Ok(()));
        }
        let code = ErrorCode::from_status(status);
        let message = match status {
            429 => "Rate exceeded".to_string(),
            500 => "Internal server error (injected)".to_string(),
            _ => format!("Injected fault {status}"),
        };
        (delay, Err(ServiceError::new(code, message)))
    }

    pub fn participant_for_token(&self, token: &str) -> Result<&Participant, ServiceError> {
        let pid = self
            .participant_tokens
            .get(token)
            .ok_or_else(|| ServiceError::denied("Invalid participant token"))?;
        let p = &self.participants[pid];
        if p.left {
            return Err(ServiceError::denied("The participant has left the chat"));
        }
        Ok(p)
    }

    pub fn participant_for_connection(&self, token: &str) -> Result<&Participant, ServiceError> {
        let info = self
            .connection_tokens
            .get(token)
            .ok_or_else(|| ServiceError::denied("Invalid connection token"))?;
        if Instant::now() >= info.expires {
            self.expired_token_uses.set(self.expired_token_uses.get() + 1);
            return Err(ServiceError::denied("The connection token has expired"));
        }
        let p = &self.participants[&info.participant_id];
        if p.left {
            return Err(ServiceError::denied("The participant has left the chat"));
        }
        Ok(p)
    }

    pub(super) fn live_participant_for_connection(
        &self,
        token: &str,
    ) -> Result<(String, String), ServiceError> {
        let p = self.participant_for_connection(token)?;
        if self.chats[&p.contact_id].ended {
            return Err(ServiceError::denied("The chat has ended"));
        }
        Ok((p.id.clone(), p.contact_id.clone()))
    }

    /// Runs `act` once per participant, operation and ClientToken: a retry with the same
    /// token gets the first answer again instead of acting twice.
    pub(super) fn once<T: serde::Serialize + serde::de::DeserializeOwned>(
        &mut self,
        pid: &str,
        op: &'static str,
        client_token: Option<&String>,
        act: impl FnOnce(&mut Self) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let key = client_token.map(|t| (pid.to_string(), op, t.clone()));
        if let Some(previous) = key.as_ref().and_then(|k| self.idempotent.get(k)) {
            return Ok(serde_json::from_value(previous.clone()).expect("stored from the same type"));
        }
        let answer = act(self)?;
        if let Some(k) = key {
            self.idempotent
                .insert(k, serde_json::to_value(&answer).expect("answers serialise"));
        }
        Ok(answer)
    }

    // ----------------------------------------------------------- the websocket

    /// Checks a dial of a presigned URL (after the `WebsocketUpgrade` fault check, which
    /// the caller makes so it can stall outside the lock); on success registers the socket and returns its
    /// id, the instant its connection expires, and the receiver of what it must send.
    pub fn open_socket(
        &mut self,
        url_token: &str,
    ) -> Result<(u64, Instant, mpsc::Receiver<Outbound>), (u16, &'static str)> {
        let pending = self.pending_urls.get(url_token).ok_or((403, "Forbidden"))?;
        let now = Instant::now();
        if now > pending.issued + self.timing.connect_window || now >= pending.expires {
            return Err((403, "Forbidden"));
        }
        let pid = pending.participant_id.clone();
        let expires = pending.expires;
        let p = &self.participants[&pid];
        if p.left || self.chats[&p.contact_id].ended {
            return Err((403, "Forbidden"));
        }
        let open = self.sockets.values().filter(|s| s.participant_id == pid).count();
        if open >= self.timing.max_sockets_per_participant {
            return Err((429, "Too many connections"));
        }
        let id = self.next_socket;
        self.next_socket += 1;
        let (tx, rx) = mpsc::channel(self.timing.socket_queue.max(1));
        self.sockets.insert(
            id,
            SocketEntry {
                participant_id: pid.clone(),
                subscribed: false,
                tx,
            },
        );
        let max = self.stats.max_open_sockets.entry(pid.clone()).or_default();
        *max = (*max).max(open + 1);
        *self.stats.upgrades.entry(pid).or_default() += 1;
        Ok((id, expires, rx))
    }

    /// Handles a subscribe on a socket; the answer is the ack frame to send.
    pub fn subscribe(&mut self, socket: u64, topics_ok: bool) -> String {
        let failed = self.begin_call("Subscribe").1.is_err();
        let ok = topics_ok && !failed;
        if ok {
            if let Some(s) = self.sockets.get_mut(&socket) {
                s.subscribed = true;
            }
        }
        serde_json::json!({
            "topic": "aws/subscribe",
            "content": if ok {
                serde_json::json!({"status": "success", "topics": ["aws/chat"]})
            } else {
                serde_json::json!({"status": "failure"})
            }
        })
        .to_string()
    }

    pub fn close_socket(&mut self, socket: u64) {
        self.sockets.remove(&socket);
    }

    pub fn set_timing(&mut self, timing: Timing) {
        self.timing = timing;
    }
}
