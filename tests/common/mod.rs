//! Helpers shared by the integration tests: an in-process emulator on 127.0.0.1:0 and a
//! client pointed at it.
#![allow(dead_code)]

pub mod daemon;
pub mod nats;

use connect_chatd::api::model::{Item, ParticipantRole};
use connect_chatd::api::{ApiClient, Endpoint, RetryPolicy};
use connect_chatd::cli::tail::{tail, TailError};
use connect_chatd::emulator::{CreatedChat, Emulator, EmulatorConfig, Timing};
use connect_chatd::secret::Secret;
use connect_chatd::session::store::StateStore;
use connect_chatd::session::{SessionHandle, SessionOutcome, SessionState, Supervisor, SupervisorConfig};
use connect_chatd::sink::{Sink, SinkError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub async fn emulator(timing: Timing) -> Emulator {
    init_logs();
    Emulator::start(EmulatorConfig {
        timing,
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

pub fn client(emu: &Emulator) -> ApiClient {
    ApiClient::builder(Endpoint::from_url(&emu.endpoint()).unwrap())
        .retry(RetryPolicy::default())
        .build()
        .unwrap()
}

pub fn agent_says(emu: &Emulator, chat: &CreatedChat, text: &str) -> Item {
    emu.publish_message(&chat.contact_id, "Ana", ParticipantRole::Agent, text)
        .expect("publish")
}

/// The agent starts typing (an ephemeral event).
pub fn agent_types(emu: &Emulator, chat: &CreatedChat) -> Item {
    emu.publish_event(
        &chat.contact_id,
        "Ana",
        ParticipantRole::Agent,
        connect_chatd::api::model::CONTENT_TYPE_TYPING,
    )
    .expect("publish")
}

pub fn ids(items: &[Item]) -> Vec<String> {
    items.iter().filter_map(|i| i.id.clone()).collect()
}

/// The persisted (transcript) Items among `items`.
pub fn persisted(items: &[Item]) -> Vec<String> {
    ids(&items
        .iter()
        .filter(|i| !i.is_ephemeral())
        .cloned()
        .collect::<Vec<_>>())
}

/// Logs to the test's output when `TEST_LOG` is set (e.g. `TEST_LOG=debug`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

pub fn start(emu: &Emulator, chat: &CreatedChat, cfg: SupervisorConfig) -> SessionHandle {
    init_logs();
    Supervisor::spawn(client(emu), chat.participant_token.clone(), cfg)
}

/// Waits (in paused time) until the session reports `Live`.
pub async fn until_live(h: &mut SessionHandle) {
    tokio::time::timeout(
        Duration::from_secs(600),
        h.state.wait_for(|s| *s == SessionState::Live),
    )
    .await
    .expect("session goes live")
    .expect("state channel open");
}

/// Receives Items until one with this Id arrives; returns all received.
pub async fn recv_until(h: &mut SessionHandle, id: &str) -> Vec<Item> {
    let mut got = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(3600), h.items.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {id}; got {:?}", ids(&got)))
            .unwrap_or_else(|| panic!("session ended before {id}; got {:?}", ids(&got)));
        let done = item.id.as_deref() == Some(id);
        got.push(item);
        if done {
            return got;
        }
    }
}

/// Receives every remaining Item until the session closes its channel.
pub async fn recv_all(h: &mut SessionHandle) -> Vec<Item> {
    let mut got = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(3 * 3600), h.items.recv())
        .await
        .expect("session finishes")
    {
        got.push(item);
    }
    got
}

/// Reads Items in a task of its own (as a real consumer would) until the session ends.
pub fn spawn_collector(
    mut items: connect_chatd::session::ItemReceiver,
) -> tokio::task::JoinHandle<Vec<Item>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(item) = items.recv().await {
            got.push(item);
        }
        got
    })
}

/// Asserts that two Id sequences are equal, reporting where they first part.
pub fn assert_same_ids(got: &[String], expected: &[String], what: &str) {
    if got == expected {
        return;
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    let lo = at.saturating_sub(2);
    panic!(
        "{what}: sequences part at index {at} (got {} Ids, expected {}):\n  got      {:?}\n  expected {:?}",
        got.len(),
        expected.len(),
        &got[lo..(at + 3).min(got.len())],
        &expected[lo..(at + 3).min(expected.len())],
    );
}

/// Output that outlives a killed `tail`, like a file stdout was appended to.
#[derive(Clone, Default)]
pub struct SharedOutput(Arc<Mutex<Vec<Item>>>);

impl Sink for SharedOutput {
    async fn push(&mut self, item: &Item) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(item.clone());
        Ok(())
    }
}

impl SharedOutput {
    pub fn items(&self) -> Vec<Item> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (in paused time) until an Item with this Id has been written.
    pub async fn wait_for(&self, id: &str) {
        for _ in 0..10_000 {
            if self.items().iter().any(|i| i.id.as_deref() == Some(id)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{id} never arrived");
    }
}

/// Runs `tail` with a state directory in a task of its own (abort it to play SIGKILL).
pub fn run_tail(
    emu: &Emulator,
    token: &Secret,
    store: &StateStore,
    out: &SharedOutput,
    cfg: SupervisorConfig,
) -> tokio::task::JoinHandle<Result<SessionOutcome, TailError>> {
    let (api, token, store, mut out) = (client(emu), token.clone(), store.clone(), out.clone());
    tokio::spawn(async move { tail(api, token, cfg, &mut out, Some(&store), std::future::pending()).await })
}

/// Sockets the emulator holds open for a participant.
pub fn open_sockets(emu: &Emulator, participant_id: &str) -> usize {
    emu.stats().open_sockets.get(participant_id).copied().unwrap_or(0)
}

/// Polls (100 times, `step` apart) until the participant has no socket open.
pub async fn assert_sockets_closed(emu: &Emulator, participant_id: &str, step: Duration) {
    for _ in 0..100 {
        if open_sockets(emu, participant_id) == 0 {
            return;
        }
        tokio::time::sleep(step).await;
    }
    panic!("the socket was left open");
}
