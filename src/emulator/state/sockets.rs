//! The emulator's websockets as the state sees them: dials of presigned URLs checked
//! and registered (connect window, five per participant), subscribes answered, and
//! frames, drops, stalls and closes sent to a chosen set of sockets.

use super::{Outbound, SocketEntry, State};
use tokio::sync::mpsc;
use tokio::time::Instant;

impl State {
    pub(in crate::emulator) fn close_sockets(
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
}
