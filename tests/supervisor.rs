//! The session supervisor against the in-process emulator, on tokio's paused clock:
//! exact Item Ids and order across drops, expiry renewals and the end of the chat.

mod common;

use common::*;
use connect_chatd::api::model::CONTENT_TYPE_TYPING;
use connect_chatd::emulator::{FaultSpec, Timing};
use connect_chatd::session::{History, SessionError, SessionOutcome, SupervisorConfig};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn basic_chat_with_history_all() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let m1 = agent_says(&emu, &chat, "hello");
    let m2 = agent_says(&emu, &chat, "how can I help?");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    let early = recv_until(&mut h, m2.id.as_deref().unwrap()).await;
    until_live(&mut h).await;
    agent_types(&emu, &chat);
    let m3 = agent_says(&emu, &chat, "still there?");
    emu.end_chat(&chat.contact_id).unwrap();
    let rest = recv_all(&mut h).await;
    assert_eq!(h.join().await.unwrap(), SessionOutcome::ChatEnded);

    let all: Vec<_> = early.into_iter().chain(rest).collect();
    let transcript = emu.transcript(&chat.contact_id).unwrap();
    assert_eq!(
        persisted(&all),
        ids(&transcript),
        "every persisted Item once, in order"
    );
    assert!(
        all.iter()
            .any(|i| i.content_type.as_deref() == Some(CONTENT_TYPE_TYPING)),
        "live typing delivered"
    );
    assert!(all.last().unwrap().is_chat_ended());
    assert!(ids(&all).contains(m1.id.as_ref().unwrap()) && ids(&all).contains(m3.id.as_ref().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn history_none_prints_only_what_arrives_after_start() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    agent_says(&emu, &chat, "before 1");
    agent_says(&emu, &chat, "before 2");
    let mut h = start(
        &emu,
        &chat,
        SupervisorConfig {
            history: History::None,
            ..Default::default()
        },
    );
    until_live(&mut h).await;
    let after = agent_says(&emu, &chat, "after");
    let end = emu.end_chat(&chat.contact_id).unwrap();
    let got = recv_all(&mut h).await;
    assert_eq!(ids(&got), vec![after.id.unwrap(), end.id.unwrap()]);
}

#[tokio::test(start_paused = true)]
async fn drops_with_messages_in_the_gaps_lose_nothing() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    for round in 0..5 {
        agent_says(&emu, &chat, &format!("live {round}"));
        assert_eq!(emu.drop_sockets(Some(&chat.participant_id)), 1);
        // Published while no socket is subscribed: only the transcript has these.
        tokio::task::yield_now().await;
        agent_says(&emu, &chat, &format!("gap {round} a"));
        agent_says(&emu, &chat, &format!("gap {round} b"));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    emu.end_chat(&chat.contact_id).unwrap();
    let got = recv_all(&mut h).await;
    let stats = h.stats();
    assert_eq!(h.join().await.unwrap(), SessionOutcome::ChatEnded);
    let transcript = emu.transcript(&chat.contact_id).unwrap();
    assert_eq!(
        persisted(&got),
        ids(&transcript),
        "0 lost, 0 duplicated, in order"
    );
    assert!(stats.reconnects >= 5, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn short_connection_expiry_renews_make_before_break() {
    let emu = emulator(Timing {
        connection_expiry: Duration::from_secs(15),
        ..Default::default()
    })
    .await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    let (items, session) = h.into_parts();
    let collector = spawn_collector(items);
    // A message every second for two minutes.
    for n in 0..120 {
        agent_says(&emu, &chat, &format!("tick {n}"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    emu.end_chat(&chat.contact_id).unwrap();
    let got = collector.await.unwrap();
    let stats = session.stats.snapshot();
    session.join().await.unwrap();
    let transcript = emu.transcript(&chat.contact_id).unwrap();
    assert_eq!(
        persisted(&got),
        ids(&transcript),
        "0 lost, 0 duplicated, in order"
    );
    assert!(stats.renewals >= 7, "{stats:?}");
    assert_eq!(
        stats.reconnects, 0,
        "renewals never fell back to a reconnect: {stats:?}"
    );
    let max_open = emu.stats().max_open_sockets[&chat.participant_id];
    assert!(max_open <= 2, "at most two sockets at once, saw {max_open}");
}

#[tokio::test(start_paused = true)]
async fn expired_connect_window_fetches_a_fresh_url() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    // The first dial is refused as a stale URL would be.
    emu.inject_fault(FaultSpec::fail("WebsocketUpgrade", 403, 1));
    let m = agent_says(&emu, &chat, "hi");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    recv_until(&mut h, m.id.as_deref().unwrap()).await;
    until_live(&mut h).await;
    assert_eq!(emu.stats().calls["CreateParticipantConnection"], 2);
}

#[tokio::test(start_paused = true)]
async fn a_url_older_than_the_window_is_not_dialled() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    // GetTranscript (the --history none anchor, between create and dial) is slow to
    // succeed: by the time it does, the (shortened) window has passed.
    emu.inject_fault(FaultSpec::fail("GetTranscript", 500, 2));
    let cfg = SupervisorConfig {
        history: History::None,
        connect_window: Duration::from_millis(150),
        connect_margin: Duration::ZERO,
        ..Default::default()
    };
    let mut h = start(&emu, &chat, cfg);
    until_live(&mut h).await;
    let stats = emu.stats();
    assert!(
        stats.calls["CreateParticipantConnection"] >= 2,
        "{:?}",
        stats.calls
    );
    assert_eq!(
        stats.upgrades[&chat.participant_id], 1,
        "the stale URL was never dialled"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_token_is_rejected_without_retrying() {
    let emu = emulator(Timing::default()).await;
    let mut chat = emu.create_chat("Cleo");
    chat.participant_token = connect_chatd::secret::Secret::new("not-a-token");
    let h = start(&emu, &chat, SupervisorConfig::default());
    let err = h.join().await.unwrap_err();
    assert!(matches!(err, SessionError::TokenRejected(_)), "{err}");
    assert_eq!(emu.stats().calls["CreateParticipantConnection"], 1);
}

#[tokio::test(start_paused = true)]
async fn chat_ended_during_reconnect_finishes_cleanly() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    let m = agent_says(&emu, &chat, "bye");
    // Throttle the reconnect so the chat ends while the client is away.
    emu.inject_fault(FaultSpec::fail("CreateParticipantConnection", 429, 4));
    emu.drop_sockets(None);
    tokio::task::yield_now().await;
    let end = emu.end_chat(&chat.contact_id).unwrap();
    let got = recv_all(&mut h).await;
    assert_eq!(h.join().await.unwrap(), SessionOutcome::ChatEnded);
    let got_ids = ids(&got);
    assert!(
        got_ids.ends_with(&[m.id.unwrap(), end.id.unwrap()]),
        "{got_ids:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_and_server_errors_are_retried() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    for (op, status, count) in [("CreateParticipantConnection", 429, 5), ("GetTranscript", 500, 4)] {
        emu.inject_fault(FaultSpec::fail(op, status, count));
    }
    let m = agent_says(&emu, &chat, "hi");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    recv_until(&mut h, m.id.as_deref().unwrap()).await;
    until_live(&mut h).await;
    let calls = emu.stats().calls;
    assert!(calls["CreateParticipantConnection"] >= 6, "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn half_open_socket_is_detected_and_replaced() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    assert_eq!(emu.stall_sockets(None), 1);
    let lost = agent_says(&emu, &chat, "sent into the void");
    let got = recv_until(&mut h, lost.id.as_deref().unwrap()).await;
    assert_eq!(persisted(&got).last(), lost.id.as_ref());
    assert_eq!(h.stats().reconnects, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_a_slow_backfill() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    emu.inject_fault(FaultSpec::slow("GetTranscript", Duration::from_secs(600), 1));
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    h.state
        .wait_for(|s| *s == connect_chatd::session::SessionState::Backfilling)
        .await
        .unwrap();
    let asked = tokio::time::Instant::now();
    h.shutdown();
    assert_eq!(h.join().await.unwrap(), SessionOutcome::Shutdown);
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "took {:?}",
        asked.elapsed()
    );
    // The socket was closed, not left behind.
    assert_sockets_closed(&emu, &chat.participant_id, Duration::from_millis(10)).await;
}
