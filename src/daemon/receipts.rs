//! Receipts the way the official clients send them, per session.
//!
//! * With `receipts` on, every incoming message (a `MESSAGE` Item of another
//!   participant, journalled in this run, not part of a new session's first history)
//!   gets a *delivered* receipt about 300 ms later — dropped if a *read* receipt for it
//!   went meanwhile (through the control API).
//! * Each message gets at most one receipt of each kind (the last 4096 remembered).
//! * Receipts are throttled: one batch per 5 s window (the first goes at once), each
//!   call through the process-wide rate limiter.
//! * Receipts never block or delay the delivery of Items: incoming messages are handed
//!   to the receipts task with a non-blocking send (when its queue is full, that
//!   message gets no automatic receipt).

use crate::api::outbound::{self, EventKind};
use crate::api::ApiClient;
use crate::session::Credentials;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

/// How long a delivered receipt waits for a read receipt to make it moot.
pub const DELIVERED_DELAY: Duration = Duration::from_millis(300);
/// One batch of receipts per window.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Message Ids remembered per kind.
const REMEMBERED: usize = 4096;
/// Incoming messages waiting for the receipts task.
const QUEUE: usize = 1024;

/// A bounded set of recent message Ids.
#[derive(Debug, Default)]
struct Recent {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// What a session has sent: receipts by kind, and the Ids of its own messages.
#[derive(Debug, Default)]
pub struct Sent {
    read: Recent,
    delivered: Recent,
    own: Recent,
}

impl Sent {
    /// Records a receipt that went out; false if one of that kind went before.
    pub fn mark(&mut self, kind: EventKind, message_id: &str) -> bool {
        match kind {
            EventKind::Read => self.read.insert(message_id),
            EventKind::Delivered => self.delivered.insert(message_id),
            EventKind::Typing => true,
        }
    }

    pub fn has(&self, kind: EventKind, message_id: &str) -> bool {
        match kind {
            EventKind::Read => self.read.contains(message_id),
            EventKind::Delivered => self.delivered.contains(message_id),
            EventKind::Typing => false,
        }
    }

    /// A message this participant sent (through the daemon).
    pub fn own_message(&mut self, id: &str) {
        self.own.insert(id);
    }

    pub fn is_own(&self, id: &str) -> bool {
        self.own.contains(id)
    }
}

/// The handle the session's runner offers incoming messages to.
pub struct Receipts {
    tx: mpsc::Sender<String>,
}

impl Receipts {
    /// Starts the receipts task of a session; it ends when the handle is dropped.
    pub fn spawn(
        api: ApiClient,
        credentials: watch::Receiver<Option<Credentials>>,
        sent: Arc<Mutex<Sent>>,
    ) -> Receipts {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(tracing::Instrument::in_current_span(run(
            api,
            credentials,
            sent,
            rx,
        )));
        Receipts { tx }
    }

    /// An incoming message: a delivered receipt is due in [`DELIVERED_DELAY`]. Never
    /// waits.
    pub fn offer(&self, message_id: &str) {
        if self.tx.try_send(message_id.to_string()).is_err() {
            tracing::debug!(
                message_id,
                "the receipts queue is full; no automatic receipt for this message"
            );
        }
    }
}

async fn run(
    api: ApiClient,
    credentials: watch::Receiver<Option<Credentials>>,
    sent: Arc<Mutex<Sent>>,
    mut rx: mpsc::Receiver<String>,
) {
    let mut pending: VecDeque<(String, Instant)> = VecDeque::new();
    let mut window_opens = Instant::now();
    let mut open = true;
    while open || !pending.is_empty() {
        let wake = pending.front().map(|(_, due)| (*due).max(window_opens));
        tokio::select! {
            id = rx.recv(), if open => match id {
                Some(id) => pending.push_back((id, Instant::now() + DELIVERED_DELAY)),
                None => open = false,
            },
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                let now = Instant::now();
                let mut batch = Vec::new();
                while pending.front().is_some_and(|(_, due)| *due <= now) {
                    let (id, _) = pending.pop_front().expect("a front");
                    let s = sent.lock().expect("receipts lock");
                    // Checked again now: the echo of a message this daemon sent can
                    // arrive before SendMessage has answered with its Id.
                    if !s.has(EventKind::Read, &id) && !s.has(EventKind::Delivered, &id) && !s.is_own(&id) {
                        batch.push(id);
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                window_opens = now + WINDOW;
                let token = credentials.borrow().as_ref().map(|c| c.token.clone());
                let Some(token) = token else { continue };
                for id in batch {
                    let request = outbound::event(EventKind::Delivered, Some(&id), None).expect("a valid receipt");
                    match api.send_event(&token, &request).await {
                        Ok(_) => {
                            sent.lock().expect("receipts lock").mark(EventKind::Delivered, &id);
                        }
                        Err(e) => tracing::debug!(message_id = %id, error = %e, "a delivered receipt failed"),
                    }
                }
            }
        }
    }
}
