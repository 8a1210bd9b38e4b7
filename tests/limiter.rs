//! The process-wide rate limiter under a reconnect storm, on tokio's paused clock: 500
//! sessions sharing one API client (as the daemon's sessions do) lose their sockets at
//! once, and get back through CreateParticipantConnection at the service's quota (6/s,
//! burst 9) without a 429, each with a fresh presigned URL, losing and repeating
//! nothing.

mod common;

use common::*;
use connect_chatd::api::limiter::RateLimiter;
use connect_chatd::api::{ApiClient, Endpoint, RetryPolicy};
use connect_chatd::emulator::Timing;
use connect_chatd::session::{SessionState, Supervisor, SupervisorConfig};
use std::time::Duration;

const SESSIONS: usize = 500;

#[tokio::test(start_paused = true)]
async fn five_hundred_sessions_dropped_at_once_reconnect_within_the_quota() {
    let emu = emulator(Timing::default()).await;
    let api = ApiClient::builder(Endpoint::from_url(&emu.endpoint()).unwrap())
        .retry(RetryPolicy::default())
        .rate_limiter(RateLimiter::service_defaults())
        .build()
        .unwrap();
    let chats: Vec<_> = (0..SESSIONS).map(|i| emu.create_chat(&format!("c{i}"))).collect();
    let mut sessions = Vec::new();
    for chat in &chats {
        let h = Supervisor::spawn(
            api.clone(),
            chat.participant_token.clone(),
            SupervisorConfig::default(),
        );
        let (items, task) = h.into_parts();
        sessions.push((task, spawn_collector(items)));
    }
    for (task, _) in &mut sessions {
        let mut state = task.state.clone();
        tokio::time::timeout(
            Duration::from_secs(600),
            state.wait_for(|s| *s == SessionState::Live),
        )
        .await
        .expect("every session comes up")
        .unwrap();
    }
    let first_wave = emu.stats().calls["CreateParticipantConnection"];
    assert_eq!(first_wave, SESSIONS as u64);

    // The outage: every socket drops at once, and each chat gets a message meanwhile.
    assert_eq!(emu.drop_sockets(None), SESSIONS);
    let during: Vec<_> = chats
        .iter()
        .map(|c| agent_says(&emu, c, "during the outage"))
        .collect();
    for (task, _) in &mut sessions {
        let mut state = task.state.clone();
        // Reconnecting (or already back): the storm is under way.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            state.wait_for(|s| *s != SessionState::Live),
        )
        .await;
    }
    for (task, _) in &mut sessions {
        let mut state = task.state.clone();
        tokio::time::timeout(
            Duration::from_secs(900),
            state.wait_for(|s| *s == SessionState::Live),
        )
        .await
        .expect("every session is live again")
        .unwrap();
    }
    let after: Vec<_> = chats.iter().map(|c| agent_says(&emu, c, "after")).collect();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let stats = emu.stats();
    let busiest = emu.max_calls_in_any_second("CreateParticipantConnection");
    assert!(
        busiest <= 9,
        "{busiest} CreateParticipantConnection calls in one second"
    );
    let calls = stats.calls["CreateParticipantConnection"];
    // One call per session per connection: no 429 was answered, nothing retried, no
    // URL dialled too late.
    assert_eq!(calls, 2 * SESSIONS as u64, "calls {calls}");
    for (i, (task, collector)) in sessions.into_iter().enumerate() {
        task.shutdown();
        task.join().await.expect("a clean stop");
        let got = collector.await.unwrap();
        let transcript = emu.transcript(&chats[i].contact_id).unwrap();
        assert_same_ids(&persisted(&got), &persisted(&transcript), "a session's Items");
        let ids = ids(&got);
        assert!(ids.contains(during[i].id.as_ref().unwrap()));
        assert!(ids.contains(after[i].id.as_ref().unwrap()));
    }
}
