//! The webhook consumer against a local receiver that fails (500), times out, answers
//! 429 with `Retry-After`, rejects one Item with 400 and recovers: nothing lost, order
//! kept per session, the rejected Item in the dead-letter file, every request's
//! signature checked by the receiver as the README tells receivers to.

mod common;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::daemon::*;
use common::*;
use connect_chatd::daemon::run::ConfiguredSession;
use connect_chatd::emulator::Timing;
use connect_chatd::secret::Secret;
use connect_chatd::session::History;
use connect_chatd::sink::consumer::{Common, ConsumerConfig, TargetConfig};
use connect_chatd::sink::webhook::{signature, WebhookConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "webhook-secret";

#[derive(Default)]
struct Receiver {
    requests: usize,
    /// (session, Item Id) of every accepted request, repeats included.
    accepted: Vec<(String, String)>,
    bad_signatures: usize,
}

async fn hook(
    state: axum::extract::State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let n = {
        let mut r = state.lock().unwrap();
        r.requests += 1;
        r.requests
    };
    match n {
        1 => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        // Taken, but answered after the daemon's timeout: the daemon sends it again.
        2 => tokio::time::sleep(Duration::from_millis(1500)).await,
        3 => return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response(),
        _ => {}
    }
    // The receiver's check, as documented: HMAC-SHA256 of "TIMESTAMP.BODY", and a
    // recent timestamp.
    let ts: u64 = headers["x-connect-chatd-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let good = headers["x-connect-chatd-signature"].to_str().unwrap()
        == signature(SECRET.as_bytes(), ts, body.as_bytes())
        && now.abs_diff(ts) < 300;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut r = state.lock().unwrap();
    if !good {
        r.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if v["item"]["Content"] == "reject me" {
        return (StatusCode::BAD_REQUEST, "no thanks").into_response();
    }
    assert_eq!(
        headers["idempotency-key"].to_str().unwrap(),
        v["item"]["Id"].as_str().unwrap()
    );
    assert!(v["contact_id"].is_string());
    r.accepted.push((
        v["session"].as_str().unwrap().to_string(),
        v["item"]["Id"].as_str().unwrap().to_string(),
    ));
    StatusCode::OK.into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_slow_and_throttling_receiver_gets_every_item_once_in_order() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Arc::new(Mutex::new(Receiver::default()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let chats = [emu.create_chat("A"), emu.create_chat("B")];
    let sessions: Vec<ConfiguredSession> = ["a", "b"]
        .iter()
        .zip(&chats)
        .map(|(name, chat)| ConfiguredSession {
            name: name.to_string(),
            participant_token: chat.participant_token.clone(),
            history: History::All,
            labels: Default::default(),
            receipts: false,
        })
        .collect();
    let dead_letters = dir.path().join("dead-letters/webhook-crm.jsonl");
    let consumer = ConsumerConfig {
        common: Common {
            name: "crm".into(),
            kind: "webhook",
            sessions: None,
            owned_in: None,
            dead_letters: dead_letters.clone(),
        },
        target: TargetConfig::Webhook(WebhookConfig {
            url: format!("http://{addr}/hook").parse().unwrap(),
            secret: Secret::new(SECRET),
            timeout: Duration::from_secs(1),
            name: "crm".into(),
        }),
    };
    let d = start_daemon_with(&emu, dir.path(), sessions, vec![consumer]).await;
    let mut rejected = None;
    for i in 0..15 {
        for chat in &chats {
            let text = if i == 7 && chat.contact_id == chats[1].contact_id {
                "reject me".to_string()
            } else {
                format!("m{i}")
            };
            let item = agent_says(&emu, chat, &text);
            if text == "reject me" {
                rejected = item.id;
            }
        }
    }
    let rejected = rejected.unwrap();
    let journal = d.daemon.journal().clone();
    let expected = |session: &str| -> Vec<String> {
        journal
            .entries_after(None, Some(session), 10_000)
            .unwrap()
            .into_iter()
            .filter_map(|e| e.item_id)
            .filter(|id| *id != rejected)
            .collect()
    };
    // Every transcript Item is journalled...
    eventually("journalled", || {
        chats.iter().zip(["a", "b"]).all(|(chat, name)| {
            let t = persisted(&emu.transcript(&chat.contact_id).unwrap());
            let got: Vec<String> = journal
                .entries_after(None, Some(name), 10_000)
                .unwrap()
                .into_iter()
                .filter_map(|e| e.item_id)
                .collect();
            t.iter().all(|id| got.contains(id))
        })
    })
    .await;
    // ... and reaches the receiver (after the 500, the timeout and the 429).
    let delivered = |session: &str| -> Vec<String> {
        let r = receiver.lock().unwrap();
        let mut seen = Vec::new();
        for (s, id) in &r.accepted {
            if s == session && !seen.contains(id) {
                seen.push(id.clone());
            }
        }
        seen
    };
    for _ in 0..600 {
        if delivered("a") == expected("a") && delivered("b") == expected("b") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in ["a", "b"] {
        assert_same_ids(&delivered(s), &expected(s), s);
    }
    let unique = delivered("a").len() + delivered("b").len();
    let (bad_signatures, accepted) = {
        let r = receiver.lock().unwrap();
        (r.bad_signatures, r.accepted.len())
    };
    assert_eq!(bad_signatures, 0);
    let repeats = accepted - unique;
    assert!(repeats <= 1, "only the timed-out request comes twice ({repeats})");
    let letters = std::fs::read_to_string(&dead_letters).expect("a dead-letter file");
    assert_eq!(letters.lines().count(), 1);
    let letter: serde_json::Value = serde_json::from_str(letters.lines().next().unwrap()).unwrap();
    assert_eq!(letter["item"]["Id"], rejected.as_str());
    assert!(letter["reason"].as_str().unwrap().contains("400"));
    d.stop().await;
}
