//! `connect-chatd demo`: the embedded emulator, a scripted agent conversation with a
//! forced socket drop and a short ConnectionExpiry, tailed by a real session and shown
//! readably, ending with a summary that checks delivery against the transcript.

use crate::api::model::*;
use crate::api::{ApiClient, Endpoint};
use crate::emulator::{Emulator, EmulatorConfig, Timing};
use crate::session::{SessionState, Supervisor, SupervisorConfig};
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;
use tokio::time::sleep;

/// The demo's result, also printed as its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub delivered: usize,
    pub reconnects: u64,
    pub refreshes: u64,
    pub lost: usize,
    pub duplicates: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "summary: {} items delivered, {} reconnects, {} refreshes, lost {}, duplicates {}",
            self.delivered, self.reconnects, self.refreshes, self.lost, self.duplicates
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo's emulator could not start: {0}")]
    Emulator(#[from] std::io::Error),
    #[error("the demo's session failed: {0}")]
    Session(String),
}

/// Runs the demo, writing the conversation to `out`. `pace` scales every pause (1 = real time).
pub async fn run(pace: f64, out: &mut (dyn Write + Send)) -> Result<Summary, DemoError> {
    let pace = if pace.is_finite() && pace >= 0.0 {
        pace
    } else {
        1.0
    };
    let wait = |secs: f64| sleep(Duration::from_secs_f64(secs * pace));
    let expiry = Duration::from_secs_f64((8.0 * pace).max(2.0));
    let emu = Emulator::start(EmulatorConfig {
        timing: Timing {
            connection_expiry: expiry,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let chat = emu.create_chat("You");
    let _ = writeln!(
        out,
        "connect-chatd demo: an emulated Amazon Connect chat at {} (ConnectionExpiry {}s)",
        emu.endpoint(),
        expiry.as_secs_f64()
    );
    let endpoint = Endpoint::from_url(&emu.endpoint()).map_err(|e| DemoError::Session(e.to_string()))?;
    let api = ApiClient::builder(endpoint)
        .build()
        .map_err(|e| DemoError::Session(e.to_string()))?;
    let handle = Supervisor::spawn(
        api.clone(),
        chat.participant_token.clone(),
        SupervisorConfig::default(),
    );
    let (mut items, session) = handle.into_parts();
    let mut state = session.state.clone();

    // The agent's side, scripted.
    let script = {
        let contact = chat.contact_id.clone();
        let token = chat.participant_token.clone();
        let emu = &emu;
        async move {
            let agent = |text: &str| {
                let _ = emu.publish_message(&contact, "Ana", ParticipantRole::Agent, text);
            };
            let typing = || {
                let _ = emu.publish_event(&contact, "Ana", ParticipantRole::Agent, CONTENT_TYPE_TYPING);
            };
            wait(0.5).await;
            let _ = emu.add_participant(&contact, "Ana", ParticipantRole::Agent);
            wait(0.5).await;
            typing();
            wait(0.7).await;
            agent("Hi, I'm Ana. How can I help you today?");
            wait(1.0).await;
            // The customer answers through the API, as a client would.
            let creds = api
                .create_participant_connection(
                    &token,
                    &CreateParticipantConnectionRequest {
                        connection_types: Some(vec![ConnectionType::ConnectionCredentials]),
                        connect_participant: None,
                    },
                )
                .await
                .ok()
                .and_then(|r| r.connection_credentials);
            let customer = |text: &'static str| {
                let (api, creds) = (&api, &creds);
                async move {
                    if let Some(c) = creds {
                        let message = SendMessageRequest {
                            content_type: "text/plain".into(),
                            content: text.into(),
                            client_token: None,
                        };
                        let _ = api.send_message(&c.connection_token, &message).await;
                    }
                }
            };
            customer("My parcel hasn't arrived.").await;
            wait(1.0).await;
            typing();
            wait(0.8).await;
            agent("Sorry to hear that. Let me look it up.");
            wait(1.0).await;
            // The network drops; two messages are published while nobody listens.
            emu.drop_sockets(None);
            agent("I can see it left the depot this morning.");
            agent("It should reach you before 6pm.");
            wait(4.0).await;
            customer("Great, thanks!").await;
            wait(4.0).await;
            agent("Anything else I can do for you?");
            wait(1.5).await;
            agent("Have a nice day!");
            wait(0.5).await;
            let _ = emu.end_chat(&contact);
        }
    };

    let show = async {
        let mut seen = HashSet::new();
        let mut delivered = Vec::new();
        let mut duplicates = 0;
        let mut last_state = SessionState::Starting;
        loop {
            tokio::select! {
                item = items.recv() => {
                    let Some(item) = item else { break };
                    if let Some(id) = &item.id {
                        if !seen.insert(id.clone()) {
                            duplicates += 1;
                        }
                    }
                    let _ = writeln!(out, "{}", render(&item));
                    delivered.push(item);
                }
                Ok(()) = state.changed() => {
                    let now = state.borrow_and_update().clone();
                    match (&last_state, &now) {
                        (_, SessionState::Reconnecting { .. }) if !matches!(last_state, SessionState::Reconnecting { .. }) => {
                            let _ = writeln!(out, "           · connection lost: reconnecting, then backfilling from the transcript");
                        }
                        (_, SessionState::Renewing) => {
                            let _ = writeln!(out, "           · ConnectionExpiry near: renewing make-before-break");
                        }
                        _ => {}
                    }
                    last_state = now;
                }
            }
        }
        (delivered, duplicates)
    };

    let ((delivered, duplicates), ()) = tokio::join!(show, script);
    let stats = session.stats.snapshot();
    session
        .join()
        .await
        .map_err(|e| DemoError::Session(e.to_string()))?;
    let transcript = emu.transcript(&chat.contact_id).unwrap_or_default();
    let got: HashSet<_> = delivered.iter().filter_map(|i| i.id.clone()).collect();
    let lost = transcript
        .iter()
        .filter(|i| i.id.as_ref().is_some_and(|id| !got.contains(id)))
        .count();
    emu.shutdown().await;
    let summary = Summary {
        delivered: delivered.len(),
        reconnects: stats.reconnects,
        refreshes: stats.renewals,
        lost,
        duplicates,
    };
    let _ = writeln!(out, "{summary}");
    Ok(summary)
}

/// One Item as a line for people.
pub fn render(item: &Item) -> String {
    let time = item
        .absolute_time()
        .map(|t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()))
        .unwrap_or_else(|| "--:--:--".into());
    let who = item.display_name.as_deref().unwrap_or("?");
    let role = item.participant_role.as_ref().map(|r| r.as_str()).unwrap_or("");
    let ct = item.content_type.as_deref().unwrap_or("");
    let text = match (&item.item_type, ct) {
        (_, CONTENT_TYPE_CHAT_ENDED) | (Some(ChatItemType::ChatEnded), _) => {
            "── the chat has ended".to_string()
        }
        (_, CONTENT_TYPE_JOINED) => format!("── {who} ({role}) joined"),
        (_, CONTENT_TYPE_LEFT) => format!("── {who} ({role}) left"),
        (_, CONTENT_TYPE_TYPING) => format!("   {who} is typing…"),
        (Some(ChatItemType::Message), _) => {
            format!("{who}: {}", item.content.as_deref().unwrap_or(""))
        }
        (Some(ChatItemType::Attachment), _) => {
            let names: Vec<_> = item
                .attachments
                .iter()
                .flatten()
                .filter_map(|a| a.attachment_name.clone())
                .collect();
            format!("{who} sent {}", names.join(", "))
        }
        (t, ct) => format!("[{} {ct}] {who}", t.as_ref().map(|t| t.as_str()).unwrap_or("?")),
    };
    format!("[{time}] {text}")
}
