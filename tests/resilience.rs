//! Resilience: bad input from the network, slow consumers, clock skew, durable resume,
//! and retries that stay fast; each fault on its own, against the in-process emulator.

mod common;

use common::*;
use connect_chatd::emulator::{CreatedChat, Emulator, EmulatorConfig, FaultSpec, Timing};
use connect_chatd::session::store::StateStore;
use connect_chatd::session::{SessionOutcome, SessionState, SupervisorConfig, ITEM_CHANNEL};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn malformed_frames_are_skipped_without_losing_the_socket() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    for frame in [
        "{not json",
        r#"{"topic":"aws/chat","content":{"Id":"not-a-string"}}"#,
        r#"{"topic":"aws/chat","content":"[1,2,3]"}"#,
        r#"{"topic":"aws/chat"}"#,
        r#"{"topic":"aws/brand-new-topic","content":{}}"#,
        r#"{}"#,
        "[]",
        r#"{"topic":"aws/subscribe","content":{"status":"failure"}}"#,
    ] {
        assert_eq!(emu.send_raw_frame(None, frame), 1);
    }
    emu.send_binary_frame(None, &[0, 159, 146, 150]);
    let m = agent_says(&emu, &chat, "after the garbage");
    let got = recv_until(&mut h, m.id.as_deref().unwrap()).await;
    assert_eq!(persisted(&got).last(), m.id.as_ref());
    let stats = h.stats();
    assert_eq!((stats.reconnects, stats.connections), (0, 1), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn oversized_frames_and_gateway_errors_reconnect_and_backfill() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    // Larger than the 256 KiB message limit.
    let huge = format!(
        r#"{{"topic":"aws/other","content":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    emu.send_raw_frame(None, &huge);
    let m1 = agent_says(&emu, &chat, "after the oversized frame");
    recv_until(&mut h, m1.id.as_deref().unwrap()).await;
    until_live(&mut h).await;
    emu.send_raw_frame(
        None,
        r#"{"message":"Forbidden","connectionId":"c1","requestId":"r1"}"#,
    );
    let m2 = agent_says(&emu, &chat, "after the gateway error");
    recv_until(&mut h, m2.id.as_deref().unwrap()).await;
    emu.end_chat(&chat.contact_id).unwrap();
    let rest = recv_all(&mut h).await;
    assert!(rest.last().unwrap().is_chat_ended());
    let stats = h.stats();
    assert!(stats.reconnects >= 2, "{stats:?}");
    assert_eq!(
        stats.delivered as usize,
        emu.transcript(&chat.contact_id).unwrap().len()
    );
}

#[tokio::test(start_paused = true)]
async fn subscribe_failures_are_retried_on_the_same_socket() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    emu.inject_fault(FaultSpec::fail("Subscribe", 500, 2));
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    assert_eq!(emu.stats().calls["Subscribe"], 3);
    assert_eq!(emu.stats().upgrades[&chat.participant_id], 1);
    // Three failures in a row: a new URL.
    emu.inject_fault(FaultSpec::fail("Subscribe", 500, 3));
    emu.drop_sockets(None);
    let m = agent_says(&emu, &chat, "later");
    recv_until(&mut h, m.id.as_deref().unwrap()).await;
    assert!(emu.stats().upgrades[&chat.participant_id] >= 3);
}

#[tokio::test(start_paused = true)]
async fn a_slow_upgrade_is_abandoned_for_a_fresh_url() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    emu.inject_fault(FaultSpec::slow("WebsocketUpgrade", Duration::from_secs(60), 1));
    let m = agent_says(&emu, &chat, "hello");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    recv_until(&mut h, m.id.as_deref().unwrap()).await;
    assert!(emu.stats().calls["CreateParticipantConnection"] >= 2);
}

#[tokio::test(start_paused = true)]
async fn first_connection_retries_stay_fast_under_throttling() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    // Ten throttled attempts in a row (StartChatContact wants a connection within 5 minutes).
    emu.inject_fault(FaultSpec::fail("CreateParticipantConnection", 429, 10));
    let started = tokio::time::Instant::now();
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(90), "connected after {took:?}");
    assert_eq!(emu.stats().calls["CreateParticipantConnection"], 11);
}

#[tokio::test(start_paused = true)]
async fn throttled_renewals_keep_the_old_socket_and_lose_nothing() {
    let emu = emulator(Timing {
        connection_expiry: Duration::from_secs(120),
        ..Default::default()
    })
    .await;
    let chat = emu.create_chat("Cleo");
    let h = start(&emu, &chat, SupervisorConfig::default());
    let (items, session) = h.into_parts();
    let collector = spawn_collector(items);
    let mut state = session.state.clone();
    state.wait_for(|s| *s == SessionState::Live).await.unwrap();
    emu.inject_fault(FaultSpec::fail("CreateParticipantConnection", 429, 6));
    for n in 0..240 {
        agent_says(&emu, &chat, &format!("m{n}"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    emu.end_chat(&chat.contact_id).unwrap();
    let got = collector.await.unwrap();
    assert_eq!(persisted(&got), ids(&emu.transcript(&chat.contact_id).unwrap()));
    let stats = session.stats.snapshot();
    assert!(stats.renewals >= 2, "{stats:?}");
    session.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_bounds_memory_and_loses_nothing() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    // Nobody reads while 2000 messages arrive.
    for n in 0..2000 {
        agent_says(&emu, &chat, &format!("burst {n}"));
        if n % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(h.items.len() <= ITEM_CHANNEL, "the Item channel is bounded");
    emu.end_chat(&chat.contact_id).unwrap();
    let got = recv_all(&mut h).await;
    let stats = h.stats();
    assert!(
        stats.reconnects >= 1,
        "the overflowing socket was given up: {stats:?}"
    );
    assert!(
        stats.backfilled >= 1000,
        "the gap came from the transcript: {stats:?}"
    );
    assert_eq!(
        persisted(&got),
        ids(&emu.transcript(&chat.contact_id).unwrap()),
        "0 lost, 0 duplicated"
    );
}

async fn skewed_emulator(offset_minutes: i64) -> Emulator {
    init_logs();
    Emulator::start(EmulatorConfig {
        timing: Timing {
            connection_expiry: Duration::from_secs(60),
            ..Default::default()
        },
        clock_offset: time::Duration::minutes(offset_minutes),
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn clock_skew_does_not_delay_or_rush_renewals() {
    for offset in [-20, 20] {
        let emu = skewed_emulator(offset).await;
        let chat = emu.create_chat("Cleo");
        let h = start(&emu, &chat, SupervisorConfig::default());
        let (items, session) = h.into_parts();
        let collector = spawn_collector(items);
        for n in 0..10 {
            agent_says(&emu, &chat, &format!("m{n}"));
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        emu.end_chat(&chat.contact_id).unwrap();
        let got = collector.await.unwrap();
        assert_eq!(persisted(&got), ids(&emu.transcript(&chat.contact_id).unwrap()));
        let stats = session.stats.snapshot();
        // 5 minutes with a 60 s ConnectionExpiry: renewed in time (no expiry-driven
        // reconnect), and not in a rush either.
        assert_eq!(stats.reconnects, 0, "offset {offset} min: {stats:?}");
        assert!(
            (4..=8).contains(&stats.renewals),
            "offset {offset} min: {stats:?}"
        );
    }
}

/// Runs `tail` with the state directory until it has written one new message, then
/// kills it the way SIGKILL would: no clean shutdown.
async fn tail_until_killed(emu: &Emulator, chat: &CreatedChat, store: &StateStore, out: &SharedOutput) {
    let first = run_tail(
        emu,
        &chat.participant_token,
        store,
        out,
        SupervisorConfig::default(),
    );
    let m1 = agent_says(emu, chat, "one");
    out.wait_for(m1.id.as_deref().unwrap()).await;
    first.abort();
    let _ = first.await;
}

#[tokio::test(start_paused = true)]
async fn a_killed_tail_resumes_from_its_state_dir_without_gap_or_duplicate() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path().join("state"), &chat.participant_token).unwrap();
    let out = SharedOutput::default();
    tail_until_killed(&emu, &chat, &store, &out).await;
    for n in 0..5 {
        agent_says(&emu, &chat, &format!("while down {n}"));
    }
    let second = run_tail(
        &emu,
        &chat.participant_token,
        &store,
        &out,
        SupervisorConfig {
            history: connect_chatd::session::History::None,
            ..Default::default()
        },
    );
    let m2 = agent_says(&emu, &chat, "after restart");
    out.wait_for(m2.id.as_deref().unwrap()).await;
    emu.end_chat(&chat.contact_id).unwrap();
    assert_eq!(second.await.unwrap().unwrap(), SessionOutcome::ChatEnded);
    assert_eq!(ids(&out.items()), ids(&emu.transcript(&chat.contact_id).unwrap()));
}

#[tokio::test(start_paused = true)]
async fn a_chat_that_ended_while_down_is_finished_from_the_saved_token() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), &chat.participant_token).unwrap();
    let out = SharedOutput::default();
    tail_until_killed(&emu, &chat, &store, &out).await;
    agent_says(&emu, &chat, "missed");
    emu.end_chat(&chat.contact_id).unwrap();
    // CreateParticipantConnection now says 403; the saved ConnectionToken still reads
    // the transcript, so this is an ended chat, not a bad token.
    let second = run_tail(
        &emu,
        &chat.participant_token,
        &store,
        &out,
        SupervisorConfig::default(),
    );
    assert_eq!(second.await.unwrap().unwrap(), SessionOutcome::ChatEnded);
    assert_eq!(ids(&out.items()), ids(&emu.transcript(&chat.contact_id).unwrap()));
}

#[tokio::test(start_paused = true)]
async fn corrupt_state_falls_back_to_a_full_backfill() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    agent_says(&emu, &chat, "history");
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), &chat.participant_token).unwrap();
    std::fs::write(store.path(), b"\x00\x01 definitely not json").unwrap();
    let out = SharedOutput::default();
    let cfg = SupervisorConfig {
        history: connect_chatd::session::History::None,
        ..Default::default()
    };
    let run = run_tail(&emu, &chat.participant_token, &store, &out, cfg);
    let m = agent_says(&emu, &chat, "live");
    out.wait_for(m.id.as_deref().unwrap()).await;
    emu.end_chat(&chat.contact_id).unwrap();
    assert_eq!(run.await.unwrap().unwrap(), SessionOutcome::ChatEnded);
    assert_eq!(ids(&out.items()), ids(&emu.transcript(&chat.contact_id).unwrap()));
    // And the state is good again.
    assert!(matches!(
        store.load(),
        connect_chatd::session::store::Loaded::Resumed(_)
    ));
}
