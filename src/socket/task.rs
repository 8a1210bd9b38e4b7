//! One socket's task: the `select!` loop that reads frames (decoding chat Items and
//! replies), sends heartbeats and deep pings on their timer, honours a close request,
//! notices a half-open socket, and reports upward through the bounded channel — which,
//! when full, stops the reading (backpressure) rather than dropping anything.

use super::dial::Ws;
use super::frame::{self, Inbound};
use super::*;

pub(super) struct SocketTask {
    pub(super) id: u64,
    pub(super) ws: Ws,
    pub(super) tx: mpsc::Sender<SocketEvent>,
    pub(super) cfg: SocketConfig,
    /// Frames skipped as malformed (logged, never fatal).
    pub(super) malformed: u64,
}

/// What one received message means for the loop.
enum Step {
    Continue,
    Item(Box<Item>),
    Stop(CloseReason),
}

/// Replies owed by the server, and since when.
#[derive(Default)]
struct Awaiting {
    heartbeat: bool,
    ping: bool,
    since: Option<Instant>,
}

impl Awaiting {
    fn answered(&mut self) {
        if !self.heartbeat && !self.ping {
            self.since = None;
        }
    }
}

impl SocketTask {
    // Not an `async fn`, which would hold the task's state twice (as its argument and
    // as the local it moves into) for the whole life of the socket.
    pub(super) fn run(
        self,
        close_rx: oneshot::Receiver<()>,
        early: VecDeque<Box<Item>>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let (mut this, mut close_rx) = (self, close_rx);
        async move {
            let reason = this.serve(&mut close_rx, early).await;
            match &reason {
                CloseReason::Requested => debug!(socket = this.id, "websocket closed"),
                CloseReason::Server { code: 1000, .. } => {
                    info!(socket = this.id, reason = %reason, "websocket ended")
                }
                other => warn!(socket = this.id, reason = %other, "websocket ended"),
            }
            // Free the connection before waiting on a busy consumer.
            let SocketTask { ws, tx, .. } = this;
            drop(ws);
            let _ = Box::pin(tx.send(SocketEvent::Closed(Box::new(reason)))).await;
        }
    }

    /// Hands an Item to the supervisor. While the channel is full nothing is read from
    /// the socket (TCP flow control holds the rest on the server); a consumer that takes
    /// nothing for `slow_consumer_limit` costs the socket. Returns how long it waited.
    async fn forward(&mut self, item: Box<Item>) -> Result<Duration, CloseReason> {
        match self.tx.try_send(SocketEvent::Item(item)) {
            Ok(()) => Ok(Duration::ZERO),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(CloseReason::Requested),
            // Boxed: the wait (and its timer) is rare, and would otherwise make every
            // idle socket's task larger.
            Err(mpsc::error::TrySendError::Full(event)) => Box::pin(self.forward_when_room(event)).await,
        }
    }

    async fn forward_when_room(&mut self, event: SocketEvent) -> Result<Duration, CloseReason> {
        let started = Instant::now();
        let limit = self.cfg.slow_consumer_limit;
        match timeout(limit, self.tx.send(event)).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            // The supervisor let go of this socket.
            Ok(Err(_)) => Err(CloseReason::Requested),
            Err(_) => Err(CloseReason::SlowConsumer(limit)),
        }
    }

    async fn serve(
        &mut self,
        close_rx: &mut oneshot::Receiver<()>,
        early: VecDeque<Box<Item>>,
    ) -> CloseReason {
        for item in early {
            if let Err(reason) = self.forward(item).await {
                return reason;
            }
        }
        let period = self.cfg.heartbeat_interval;
        let reply_timeout = self
            .cfg
            .heartbeat_timeout
            .min(period)
            .max(Duration::from_millis(1));
        let mut ticks = interval_at(first_tick(Instant::now(), period), period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut awaiting = Awaiting::default();
        // One timer for the reply deadline, re-armed lazily: frames move `last_read`, and
        // the timer only checks, when it fires, whether anything arrived meanwhile.
        let reply_timer = sleep_until(Instant::now() + period);
        tokio::pin!(reply_timer);
        let mut last_read = Instant::now();
        let idle_timeout = self.cfg.idle_timeout.max(period * 2);
        loop {
            tokio::select! {
                // A dropped handle counts as a close request too.
                // Boxed, as is every rare path, to keep the idle task small.
                _ = &mut *close_rx => return Box::pin(self.close_cleanly()).await,
                msg = self.ws.next() => {
                    last_read = Instant::now();
                    let was_awaiting = awaiting.since.is_some();
                    let step = self.on_message(msg, &mut awaiting);
                    if was_awaiting && awaiting.since.is_none() {
                        // Both replies are in: push the deadline out of the way, or its
                        // expiry would wake this (idle) task for nothing.
                        reply_timer.as_mut().reset(last_read + period * 4);
                    }
                    match step {
                        Step::Continue => {}
                        Step::Item(item) => match self.forward(item).await {
                            Ok(waited) if waited.is_zero() => {}
                            // Time spent not reading is not the socket's silence.
                            Ok(_) => last_read = Instant::now(),
                            Err(reason) => return reason,
                        },
                        Step::Stop(reason) => return reason,
                    }
                }
                _ = &mut reply_timer, if awaiting.since.is_some() => {
                    let since = awaiting.since.unwrap_or(last_read).max(last_read);
                    if since.elapsed() >= reply_timeout {
                        debug!(
                            socket = self.id,
                            heartbeat = awaiting.heartbeat,
                            ping = awaiting.ping,
                            silent = ?since.elapsed(),
                            "no heartbeat or ping reply in time"
                        );
                        return CloseReason::Stalled;
                    }
                    reply_timer.as_mut().reset(since + reply_timeout);
                }
                _ = ticks.tick() => {
                    if last_read.elapsed() >= idle_timeout {
                        debug!(socket = self.id, idle = ?last_read.elapsed(), "no frame at all");
                        return CloseReason::Stalled;
                    }
                    if awaiting.since.is_some() {
                        // A reply is late but frames are still arriving: the deadline
                        // is running; do not pile up more requests.
                        continue;
                    }
                    // Both frames in one write; a send that cannot finish within a period
                    // is as dead as a missing reply.
                    let beat = async {
                        self.ws.feed(Message::text(frame::HEARTBEAT)).await?;
                        self.ws.feed(Message::text(frame::PING)).await?;
                        self.ws.flush().await
                    };
                    match Box::pin(timeout(period, beat)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return CloseReason::Error(e.to_string()),
                        Err(_) => return CloseReason::Stalled,
                    }
                    let now = Instant::now();
                    awaiting = Awaiting { heartbeat: true, ping: true, since: Some(now) };
                    reply_timer.as_mut().reset(now + reply_timeout);
                }
            }
        }
    }

    fn on_message(&mut self, msg: Option<Result<Message, WsError>>, awaiting: &mut Awaiting) -> Step {
        match msg {
            Some(Ok(Message::Text(t))) => match frame::decode(t.as_str()) {
                Ok(Inbound::Chat(item)) => return Step::Item(item),
                Ok(Inbound::HeartbeatReply) => {
                    awaiting.heartbeat = false;
                    awaiting.answered();
                }
                Ok(Inbound::PingReply { status_code }) => {
                    if status_code.is_some_and(|c| c != 200) {
                        warn!(socket = self.id, ?status_code, "deep ping answered with an error");
                    }
                    awaiting.ping = false;
                    awaiting.answered();
                }
                Ok(Inbound::GatewayError { message }) => return Step::Stop(CloseReason::Gateway(message)),
                Ok(Inbound::SubscribeAck { success, status }) => {
                    if !success {
                        warn!(socket = self.id, %status, "unexpected subscribe failure on a live socket");
                    }
                }
                Ok(Inbound::Other { topic }) => {
                    debug!(socket = self.id, %topic, "ignoring a frame of an unknown topic")
                }
                Err(e) => self.note_malformed(&e.to_string(), t.len()),
            },
            Some(Ok(Message::Binary(b))) => self.note_malformed("binary frame", b.len()),
            Some(Ok(Message::Close(f))) => {
                let (code, reason) = f
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return Step::Stop(CloseReason::Server { code, reason });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Step::Stop(CloseReason::Error(e.to_string())),
            None => {
                return Step::Stop(CloseReason::Error(
                    "connection closed without a close frame".into(),
                ))
            }
        }
        Step::Continue
    }

    /// Malformed input is logged (the first few at warn, then at debug) and skipped.
    fn note_malformed(&mut self, what: &str, len: usize) {
        self.malformed += 1;
        if self.malformed <= 3 {
            warn!(
                socket = self.id,
                error = what,
                bytes = len,
                "skipping a malformed frame"
            );
        } else {
            debug!(
                socket = self.id,
                error = what,
                bytes = len,
                "skipping a malformed frame"
            );
        }
    }

    /// Sends close 1000 and keeps forwarding Items until the server's close arrives, so a
    /// make-before-break switch loses nothing that was sent on this socket.
    async fn close_cleanly(&mut self) -> CloseReason {
        let frame = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        if let Err(e) = self.ws.send(frame).await {
            return CloseReason::Error(format!("close failed: {e}"));
        }
        let close_timeout = self.cfg.close_timeout;
        let mut awaiting = Awaiting::default();
        let drain = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(_))) | None => return CloseReason::Requested,
                    Some(Err(WsError::ConnectionClosed)) => return CloseReason::Requested,
                    msg => match self.on_message(msg, &mut awaiting) {
                        Step::Continue => {}
                        Step::Item(item) => {
                            if let Err(reason) = self.forward(item).await {
                                return reason;
                            }
                        }
                        Step::Stop(reason) => return reason,
                    },
                }
            }
        };
        match timeout(close_timeout, drain).await {
            Ok(r) => r,
            Err(_) => CloseReason::Error("close handshake timed out".into()),
        }
    }
}
