//! A faithful local Participant Service: all eleven operations with the model's shapes
//! and error codes, the websocket (connect window, subscribe/ack, `aws/chat` frames with
//! a string `content`, heartbeat and ping replies, closing at ConnectionExpiry, five
//! sockets per participant, no replay), and an admin side to script chats and inject
//! faults. Used by the tests, the demo and anyone without AWS access.
//!
//! It shares the model types with the client, never the client logic, so a bug in one
//! cannot hide behind the same bug in the other.

mod http;
mod operations;
mod state;
mod tls;
mod ws;

pub use state::{ServiceError, Stats};

use crate::api::model::{ChatItemType, Item, ParticipantRole};
use crate::clock::Clock;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use state::State;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// The service's timing, all adjustable while running.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// How long a presigned websocket URL may wait before it is dialled (100 s).
    pub connect_window: Duration,
    /// How long after CreateParticipantConnection the websocket is closed.
    pub connection_expiry: Duration,
    /// How long a ConnectionToken lives (1 day).
    pub token_expiry: Duration,
    /// Open websockets allowed per participant (5).
    pub max_sockets_per_participant: usize,
    /// Frames queued for one socket before the emulator gives up on a reader that does
    /// not keep up and drops its socket (4096). A large queue plays a server that holds
    /// a burst for a slow reader (TCP flow control) instead of dropping it.
    pub socket_queue: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_window: Duration::from_secs(100),
            connection_expiry: Duration::from_secs(3600),
            token_expiry: Duration::from_secs(24 * 3600),
            max_sockets_per_participant: 5,
            socket_queue: 4096,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    pub timing: Timing,
    /// How far the emulated service's clock is from this machine's (clock-skew tests).
    pub clock_offset: time::Duration,
    /// Serve TLS (`https://`, presigned URLs `wss://`) with a certificate for
    /// `localhost`/`127.0.0.1` from a CA generated at start ([`Emulator::ca_pem`]).
    pub tls: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            timing: Timing::default(),
            clock_offset: time::Duration::ZERO,
            tls: false,
        }
    }
}

/// Ways a real service has been seen to misbehave, played on demand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct Quirks {
    /// FORWARD GetTranscript pages keep returning a NextToken at the end of the
    /// transcript (the loop the official mobile SDKs had to guard against).
    pub endless_next_token: bool,
}

/// Make the next `count` calls of `operation` fail with `status` (429, 500, 403, …),
/// after stalling `delay_ms`; a status below 400 only stalls (a slow answer or upgrade).
/// Besides the eleven API operation names, `WebsocketUpgrade` fails or slows dials of
/// presigned URLs and `Subscribe` answers subscribes with a failure status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaultSpec {
    pub operation: String,
    pub status: u16,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub delay_ms: u64,
}

impl FaultSpec {
    /// The next `count` calls of `operation` fail with `status`.
    pub fn fail(operation: &str, status: u16, count: u32) -> FaultSpec {
        FaultSpec {
            operation: operation.to_string(),
            status,
            count,
            delay_ms: 0,
        }
    }

    /// The next `count` calls of `operation` succeed after `delay`.
    pub fn slow(operation: &str, delay: Duration, count: u32) -> FaultSpec {
        FaultSpec {
            operation: operation.to_string(),
            status: 200,
            count,
            delay_ms: delay.as_millis() as u64,
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EmulatorError {
    #[error("no chat {0}")]
    UnknownChat(String),
    #[error("no participant {0}")]
    UnknownParticipant(String),
    #[error("chat {0} has ended")]
    ChatEnded(String),
    #[error("{0}")]
    Invalid(String),
}

/// A chat created through the admin side, with its customer participant.
#[derive(Debug, Clone)]
pub struct CreatedChat {
    pub contact_id: String,
    pub participant_id: String,
    pub participant_token: Secret,
}

pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough test state; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The emulator without a listener, for the fuzz targets (`fuzz/`): its router, to
/// which requests go straight (no socket), a chat, and the parser of what a client
/// sends on a websocket. Not an API.
#[doc(hidden)]
pub struct Offline {
    shared: Arc<Shared>,
    router: axum::Router,
    _stop: watch::Sender<bool>,
    pub chat: CreatedChat,
}

impl Offline {
    pub fn new() -> Offline {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(
                Clock::new(),
                Timing::default(),
                "http://emulator.invalid".into(),
            )),
        });
        let (contact_id, participant_id, token) = shared
            .lock()
            .create_chat(None, "fuzz".into())
            .expect("a new chat id is unique");
        let (stop, stopped) = watch::channel(false);
        Offline {
            router: http::router(shared.clone(), stopped),
            shared,
            _stop: stop,
            chat: CreatedChat {
                contact_id,
                participant_id,
                participant_token: Secret::new(token),
            },
        }
    }

    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The emulator's answer to a text frame a client sent on socket `socket`.
    pub fn socket_frame(&self, socket: u64, text: &str) -> Option<String> {
        ws::answer(&self.shared, socket, text)
    }
}

impl Default for Offline {
    fn default() -> Self {
        Offline::new()
    }
}

/// A running emulator. Dropping it (or [`shutdown`](Self::shutdown)) stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The PEM of the CA that signed the server's certificate (TLS only).
    ca_pem: Option<String>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Binds `config.listen` (port 0 for a free one) and serves in the background.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let server_tls = match config.tls {
            true => Some(tls::generate(addr.ip()).map_err(std::io::Error::other)?),
            false => None,
        };
        let scheme = if config.tls { "https" } else { "http" };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(
                Clock::new().shifted(config.clock_offset),
                config.timing,
                format!("{scheme}://{addr}"),
            )),
        });
        let ca_pem = server_tls.as_ref().map(|t| t.ca_pem.clone());
        let (stop, stopped) = watch::channel(false);
        let app = http::router(shared.clone(), stopped.clone());
        let mut stopped_rx = stopped;
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped_rx.wait_for(|s| *s).await;
            };
            // No Nagle: small frames written back to back must not wait for a delayed
            // ACK (40 ms on Linux), which a client would read as a stalling server.
            let served = match server_tls {
                Some(t) => match tls::TlsListener::new(listener, t.config) {
                    Ok(listener) => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
                    Err(e) => Err(e),
                },
                None => {
                    use axum::serve::ListenerExt;
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
                }
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "emulator server failed");
            }
        });
        tracing::info!(%addr, tls = ca_pem.is_some(), "emulator listening");
        Ok(Emulator {
            shared,
            addr,
            ca_pem,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give the client as its endpoint (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// With TLS: the PEM of the CA that signed the server's certificate (what a
    /// client's `ca_file` holds).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn create_chat(&self, customer_name: &str) -> CreatedChat {
        let (contact_id, participant_id, token) = self
            .shared
            .lock()
            .create_chat(None, customer_name.to_string())
            .expect("a new chat id is unique");
        CreatedChat {
            contact_id,
            participant_id,
            participant_token: Secret::new(token),
        }
    }

    /// Adds a participant (an agent, a supervisor…) and returns its id and ParticipantToken.
    pub fn add_participant(
        &self,
        contact_id: &str,
        display_name: &str,
        role: ParticipantRole,
    ) -> Result<(String, Secret), EmulatorError> {
        let (pid, token) = self
            .shared
            .lock()
            .add_participant(contact_id, display_name.to_string(), role)?;
        Ok((pid, Secret::new(token)))
    }

    /// Publishes a text message as `display_name` in `role` (added to the chat if new).
    pub fn publish_message(
        &self,
        contact_id: &str,
        display_name: &str,
        role: ParticipantRole,
        content: &str,
    ) -> Result<Item, EmulatorError> {
        self.publish(
            contact_id,
            display_name,
            role,
            ChatItemType::Message,
            "text/plain",
            Some(content),
        )
    }

    /// Publishes an event (typing, …) as `display_name` in `role`.
    pub fn publish_event(
        &self,
        contact_id: &str,
        display_name: &str,
        role: ParticipantRole,
        content_type: &str,
    ) -> Result<Item, EmulatorError> {
        self.publish(
            contact_id,
            display_name,
            role,
            ChatItemType::Event,
            content_type,
            None,
        )
    }

    pub fn publish(
        &self,
        contact_id: &str,
        display_name: &str,
        role: ParticipantRole,
        item_type: ChatItemType,
        content_type: &str,
        content: Option<&str>,
    ) -> Result<Item, EmulatorError> {
        let mut st = self.shared.lock();
        let pid = st.participant_named(contact_id, display_name, &role)?;
        let item = st.item_from(&pid, item_type, content_type, content.map(str::to_string));
        st.publish(contact_id, item)
    }

    pub fn end_chat(&self, contact_id: &str) -> Result<Item, EmulatorError> {
        self.shared.lock().end_chat(contact_id)
    }

    /// The persisted transcript of a chat.
    pub fn transcript(&self, contact_id: &str) -> Result<Vec<Item>, EmulatorError> {
        self.shared.lock().transcript_of(contact_id)
    }

    pub fn inject_fault(&self, fault: FaultSpec) {
        self.shared.lock().add_fault(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().clear_faults();
    }

    pub fn set_quirks(&self, quirks: Quirks) {
        self.shared.lock().quirks = quirks;
    }

    /// Drops sockets abruptly (no close frame); all of them when `participant` is None.
    pub fn drop_sockets(&self, participant: Option<&str>) -> usize {
        self.shared.lock().drop_sockets(participant)
    }

    /// Makes sockets half-open: they stay connected but answer nothing.
    pub fn stall_sockets(&self, participant: Option<&str>) -> usize {
        self.shared.lock().stall_sockets(participant)
    }

    /// Sends a raw text frame (malformed JSON, unknown topics…) to subscribed sockets.
    pub fn send_raw_frame(&self, participant: Option<&str>, frame: &str) -> usize {
        self.shared.lock().send_raw(participant, frame)
    }

    /// Sends a binary frame to subscribed sockets.
    pub fn send_binary_frame(&self, participant: Option<&str>, frame: &[u8]) -> usize {
        self.shared.lock().send_binary(participant, frame)
    }

    pub fn timing(&self) -> Timing {
        self.shared.lock().timing
    }

    /// Changes the timing for URLs and tokens issued from now on.
    pub fn set_timing(&self, timing: Timing) {
        self.shared.lock().set_timing(timing);
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// The most calls of `operation` (e.g. `"CreateParticipantConnection"`) received
    /// within any one second, over the last 16 384 calls of it.
    pub fn max_calls_in_any_second(&self, operation: &str) -> usize {
        self.shared.lock().max_calls_in_any_second(operation)
    }

    /// Stops the server and closes every socket.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop_now(&self) {
        let _ = self.stop.send(true);
        self.shared.lock().drop_sockets(None);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop_now();
    }
}
