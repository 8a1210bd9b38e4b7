//! One websocket to the service: dial a presigned URL with deliberate buffer sizes,
//! subscribe to `aws/chat` and wait for the ack, then run as a task that decodes chat
//! frames into Items, sends heartbeats and deep pings, and reports upward through a
//! bounded channel: [`SocketEvent::Item`] and, last of all, [`SocketEvent::Closed`] with
//! the reason.
//!
//! * **Backpressure, not overflow.** When the channel is full (the consumer is busy),
//!   the task stops reading the socket, so TCP flow control holds the rest on the
//!   server's side. Only a consumer that takes nothing for
//!   [`SocketConfig::slow_consumer_limit`] costs the socket (the supervisor then reads
//!   the gap from the transcript).
//! * **Half-open detection.** Every heartbeat interval an `aws/heartbeat` and an
//!   `aws/ping` go out; each reply has [`SocketConfig::heartbeat_timeout`] to come back.
//!   Only time spent reading counts: while the task itself is not reading (a busy
//!   consumer), or while other frames keep arriving, the deadline moves on, so a silent
//!   socket is noticed within one interval plus that timeout and a busy one never is.

mod dial;
pub mod frame;
mod task;
mod upgrade;

use task::SocketTask;

use crate::api::endpoint::{check_websocket_url, EndpointError};
use crate::api::model::Item;
use crate::egress::Egress;
use crate::secret::PresignedUrl;
use frame::Inbound;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval_at, sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::{debug, info, warn};

use dial::Ws;

#[derive(Debug, Clone, PartialEq)]
pub struct SocketConfig {
    /// Time allowed for TCP + TLS + the HTTP upgrade.
    pub dial_timeout: Duration,
    /// Time allowed for the subscribe ack.
    pub subscribe_timeout: Duration,
    /// Subscribes tried on one socket before giving it up (a `failure` status).
    pub subscribe_attempts: u32,
    /// Heartbeat and deep-ping interval.
    pub heartbeat_interval: Duration,
    /// Time a heartbeat or ping reply has to arrive, counting only time in which the
    /// task was reading and nothing at all arrived; then the socket is half-open.
    pub heartbeat_timeout: Duration,
    /// No frame at all for this long also means a dead socket (checked at each tick; at
    /// least two heartbeat intervals).
    pub idle_timeout: Duration,
    /// Events buffered between the socket task and the supervisor; when they are full,
    /// the task stops reading.
    pub event_capacity: usize,
    /// A consumer that takes no event for this long while the buffer is full costs the
    /// socket (`CloseReason::SlowConsumer`); the gap is then read from the transcript.
    pub slow_consumer_limit: Duration,
    /// Largest websocket message accepted (an Item is at most 16384 characters).
    pub max_message_size: usize,
    /// tungstenite's read buffer: it decides most of the memory of an idle socket. The
    /// transport reads ahead in 64 KiB (see `dial`), so a small one costs no system
    /// calls; a larger frame grows it.
    pub read_buffer_size: usize,
    /// Time allowed for the close handshake when we close.
    pub close_timeout: Duration,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            dial_timeout: Duration::from_secs(15),
            subscribe_timeout: Duration::from_secs(10),
            subscribe_attempts: 3,
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(30),
            event_capacity: 256,
            slow_consumer_limit: Duration::from_secs(60),
            max_message_size: 256 * 1024,
            read_buffer_size: 512,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a socket ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseReason {
    /// We asked, and the close handshake completed: every frame sent before it was read.
    Requested,
    /// The server sent a close frame.
    Server { code: u16, reason: String },
    /// The server (or the network) went away without a close frame, or a read failed.
    Error(String),
    /// A heartbeat or ping reply did not come back in time: half-open.
    Stalled,
    /// The gateway sent an error frame.
    Gateway(String),
    /// The consumer took nothing for [`SocketConfig::slow_consumer_limit`].
    SlowConsumer(Duration),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Requested => f.write_str("closed by us"),
            CloseReason::Server { code, reason } => {
                write!(f, "closed by the server ({code} {reason})")
            }
            CloseReason::Error(e) => write!(f, "lost: {e}"),
            CloseReason::Stalled => f.write_str("stalled: no heartbeat reply (half-open)"),
            CloseReason::Gateway(m) => write!(f, "gateway error frame: {m}"),
            CloseReason::SlowConsumer(d) => {
                write!(f, "consumer too slow: nothing taken for {d:?}")
            }
        }
    }
}

#[derive(Debug)]
pub enum SocketEvent {
    Item(Box<Item>),
    /// The last event of a socket (boxed: the channel allocates room for 32 events up
    /// front, and a pointer-sized event halves that for every socket).
    Closed(Box<CloseReason>),
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("invalid websocket URL: {0}")]
    Url(#[from] EndpointError),
    #[error("websocket dial failed: {0}")]
    Dial(String),
    #[error("websocket dial failed: {0}")]
    Proxy(#[from] crate::egress::ProxyError),
    /// The TLS handshake failed (an untrusted certificate names the problem, e.g.
    /// "invalid peer certificate: UnknownIssuer").
    #[error("websocket dial failed: {0}")]
    Tls(String),
    #[error("websocket upgrade refused with HTTP {0}")]
    Refused(u16),
    #[error("websocket dial timed out after {0:?}")]
    DialTimeout(Duration),
    #[error("no subscribe ack within {0:?}")]
    SubscribeTimeout(Duration),
    #[error("subscribe failed with status {0:?}")]
    SubscribeFailed(String),
    #[error("socket closed while subscribing: {0}")]
    Closed(String),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Frames smaller than this wait in tungstenite's write buffer until a flush (every
/// send flushes; only the heartbeat's `feed`s share one).
const WRITE_COALESCE: usize = 512;

/// When a socket's heartbeats tick: the first tick one period from now, rounded down to
/// a process-wide grid (a fraction of the period, at most 250 ms), so the ticks of
/// thousands of idle sockets fall together and one wake-up of the runtime serves many
/// of them instead of one each. Rounding down keeps every tick within a period of the
/// last, so a silent socket is still noticed within one interval plus the reply
/// deadline.
fn first_tick(now: Instant, period: Duration) -> Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = Instant::from_std(*ORIGIN.get_or_init(std::time::Instant::now));
    let grid = (period / 8).clamp(Duration::from_millis(1), Duration::from_millis(250));
    let due = now + period;
    let since = due.saturating_duration_since(origin).as_nanos();
    let early = u64::try_from(since % grid.as_nanos()).unwrap_or(0);
    due - Duration::from_nanos(early)
}

/// The supervisor's end of a socket task. Dropping it closes the socket.
#[derive(Debug)]
pub struct SocketHandle {
    pub id: u64,
    events: mpsc::Receiver<SocketEvent>,
    close: Option<oneshot::Sender<()>>,
}

impl SocketHandle {
    /// The next event; `None` after `Closed` has been received.
    pub async fn recv(&mut self) -> Option<SocketEvent> {
        self.events.recv().await
    }

    /// Asks for a clean close (code 1000). Frames already sent keep arriving, then
    /// `Closed(Requested)`.
    pub fn request_close(&mut self) {
        if let Some(tx) = self.close.take() {
            let _ = tx.send(());
        }
    }
}

/// Dials `url` directly, subscribes to `aws/chat`, and starts the socket's task.
pub async fn open(url: &PresignedUrl, cfg: &SocketConfig) -> Result<SocketHandle, SocketError> {
    open_via(url, cfg, &Egress::default()).await
}

/// [`open`] through `egress`'s proxies and trust (those of the session's API client).
pub async fn open_via(
    url: &PresignedUrl,
    cfg: &SocketConfig,
    egress: &Egress,
) -> Result<SocketHandle, SocketError> {
    let parsed = check_websocket_url(url.expose())?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_size)
        // Small frames wait for a flush, so a heartbeat and a ping leave in one write.
        .write_buffer_size(WRITE_COALESCE)
        .max_write_buffer_size(cfg.max_message_size * 2)
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size));
    debug!(socket = id, url = %url, "dialling");
    let dialling = tokio::time::Instant::now();
    let dialled = dial::dial(url, &parsed, ws_config, egress, cfg.dial_timeout);
    let dialled = timeout(cfg.dial_timeout, dialled)
        .await
        .map_err(|_| SocketError::DialTimeout(cfg.dial_timeout))
        .and_then(|r| r);
    let metrics = crate::metrics::global();
    metrics
        .websocket_connect
        .observe(dialling.elapsed().as_secs_f64());
    if dialled.is_err() {
        metrics.websocket_connect_failures.inc();
    }
    let mut ws = dialled?;

    let mut early = VecDeque::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        ws.send(Message::text(frame::SUBSCRIBE))
            .await
            .map_err(|e| SocketError::Closed(e.to_string()))?;
        let ack = timeout(cfg.subscribe_timeout, wait_for_ack(&mut ws, &mut early))
            .await
            .map_err(|_| SocketError::SubscribeTimeout(cfg.subscribe_timeout))??;
        match ack {
            Ok(()) => break,
            Err(status) if attempt < cfg.subscribe_attempts => {
                warn!(socket = id, %status, attempt, "subscribe failed; trying again");
            }
            Err(status) => {
                let _ = ws.close(None).await;
                return Err(SocketError::SubscribeFailed(status));
            }
        }
    }
    info!(socket = id, "websocket subscribed");

    let (tx, rx) = mpsc::channel(cfg.event_capacity.max(1));
    let (close_tx, close_rx) = oneshot::channel();
    let task = SocketTask {
        id,
        ws,
        tx,
        cfg: cfg.clone(),
        malformed: 0,
    };
    tokio::spawn(tracing::Instrument::in_current_span(task.run(close_rx, early)));
    Ok(SocketHandle {
        id,
        events: rx,
        close: Some(close_tx),
    })
}

/// Reads until the subscribe ack. Ok(Ok) on success, Ok(Err(status)) on a failure status.
async fn wait_for_ack(
    ws: &mut Ws,
    early: &mut VecDeque<Box<Item>>,
) -> Result<Result<(), String>, SocketError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match frame::decode(t.as_str()) {
                Ok(Inbound::SubscribeAck { success: true, .. }) => return Ok(Ok(())),
                Ok(Inbound::SubscribeAck { status, .. }) => return Ok(Err(status)),
                Ok(Inbound::Chat(item)) => early.push_back(item),
                Ok(Inbound::GatewayError { message }) => return Err(SocketError::Closed(message)),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "skipping a malformed frame while subscribing"),
            },
            Some(Ok(Message::Close(f))) => {
                return Err(SocketError::Closed(
                    f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default(),
                ))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(SocketError::Closed(e.to_string())),
            None => return Err(SocketError::Closed("end of stream".into())),
        }
    }
}

#[cfg(test)]
mod tests;
