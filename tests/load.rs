//! Exactly once under load, on tokio's paused clock: a slow consumer during sustained
//! publishing, bursts, a consumer that stops reading for longer than the heartbeat,
//! half-open detection, the first reconnect, paging that never ends by itself, and a
//! 403 in the middle of a backfill.

mod common;

use common::*;
use connect_chatd::api::model::Item;
use connect_chatd::emulator::{FaultSpec, Quirks, Timing};
use connect_chatd::session::{History, SessionOutcome, SessionState, SupervisorConfig};
use connect_chatd::socket::SocketConfig;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Ids of `got` against the transcript: (duplicates, out of order, missing).
fn exactly_once_report(got: &[Item], transcript: &[Item]) -> (usize, usize, usize) {
    let position: std::collections::HashMap<&str, usize> = transcript
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.id.as_deref().map(|id| (id, i)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let (mut duplicates, mut out_of_order, mut last) = (0, 0, None);
    for item in got.iter().filter(|i| !i.is_ephemeral()) {
        let id = item.id.as_deref().expect("every Item has an Id");
        if !seen.insert(id) {
            duplicates += 1;
            continue;
        }
        let p = position[id];
        if last.is_some_and(|l| p < l) {
            out_of_order += 1;
        }
        last = Some(p);
    }
    (duplicates, out_of_order, position.len() - seen.len())
}

/// Reads Items like a consumer that stops for `pause` once it has read each of `at`.
fn slow_consumer(
    mut items: connect_chatd::session::ItemReceiver,
    pauses: Vec<(usize, Duration)>,
) -> tokio::task::JoinHandle<Vec<Item>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(item) = items.recv().await {
            got.push(item);
            if let Some((_, pause)) = pauses.iter().find(|(at, _)| *at == got.len()) {
                sleep(*pause).await;
            }
        }
        got
    })
}

/// The failure of issue 9: sustained fast publishing, a consumer that stops twice (the
/// second time during the long backfill after the first), an Id memory far smaller than
/// the overlap. Before the fix this repeated thousands of Items and moved the cursor back.
#[tokio::test(start_paused = true)]
async fn sustained_publishing_into_a_slow_consumer_delivers_each_item_once_in_order() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let cfg = SupervisorConfig {
        recent_ids: 16,
        socket: SocketConfig {
            event_capacity: 32,
            slow_consumer_limit: Duration::from_secs(2),
            ..Default::default()
        },
        ..Default::default()
    };
    let h = start(&emu, &chat, cfg);
    let mut state = h.state.clone();
    state.wait_for(|s| *s == SessionState::Live).await.unwrap();
    let (items, session) = h.into_parts();
    let consumer = slow_consumer(
        items,
        vec![(1000, Duration::from_secs(5)), (4000, Duration::from_secs(5))],
    );
    // 12 000 Items over 12 s: far more than the socket, the emulator's queue (4096) and
    // the Id memory hold while the consumer stops. The first stop costs the socket; the
    // second comes during the long backfill after it, while the new socket queues.
    for _ in 0..1200 {
        for _ in 0..10 {
            agent_says(&emu, &chat, "a line of a long, fast chat");
        }
        sleep(Duration::from_millis(10)).await;
    }
    emu.end_chat(&chat.contact_id).unwrap();
    let stats = session.stats.clone();
    assert_eq!(session.join().await.unwrap(), SessionOutcome::ChatEnded);
    let got = consumer.await.unwrap();
    assert!(stats.snapshot().reconnects >= 2, "{:?}", stats.snapshot());
    let transcript = emu.transcript(&chat.contact_id).unwrap();
    assert_eq!(
        exactly_once_report(&got, &transcript),
        (0, 0, 0),
        "(duplicates, out of order, missing)"
    );
    assert!(got.last().unwrap().is_chat_ended());
}

#[tokio::test(start_paused = true)]
async fn a_burst_the_consumer_absorbs_costs_no_reconnect() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    let (items, session) = h.into_parts();
    // A consumer that writes somewhere slow: 1 ms every 100 Items.
    let pauses = (1..=40).map(|k| (k * 100, Duration::from_millis(1))).collect();
    let consumer = slow_consumer(items, pauses);
    // Far more than the socket's 256 events, in one go (the emulator queues up to 4096).
    for _ in 0..4000 {
        agent_says(&emu, &chat, "burst");
    }
    emu.end_chat(&chat.contact_id).unwrap();
    assert_eq!(session.join().await.unwrap(), SessionOutcome::ChatEnded);
    let got = consumer.await.unwrap();
    assert_eq!(
        exactly_once_report(&got, &emu.transcript(&chat.contact_id).unwrap()),
        (0, 0, 0)
    );
    let s = session_stats(&emu, &chat);
    assert_eq!(s, 1, "one websocket for the whole burst");
}

fn session_stats(
    emu: &connect_chatd::emulator::Emulator,
    chat: &connect_chatd::emulator::CreatedChat,
) -> u64 {
    emu.stats()
        .upgrades
        .get(&chat.participant_id)
        .copied()
        .unwrap_or(0)
}

/// A 3000-Item burst (held by the server, not dropped) into a consumer that stops for
/// `pause` after 500 Items; returns the websocket upgrades it took, after checking that
/// every Item came once, in order.
async fn burst_into_a_consumer_that_stops(cfg: SupervisorConfig, pause: Duration) -> u64 {
    let emu = emulator(Timing {
        socket_queue: 100_000,
        ..Default::default()
    })
    .await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, cfg);
    until_live(&mut h).await;
    let (items, session) = h.into_parts();
    let consumer = slow_consumer(items, vec![(500, pause)]);
    for _ in 0..3000 {
        agent_says(&emu, &chat, "burst");
    }
    sleep(pause + Duration::from_secs(5)).await;
    emu.end_chat(&chat.contact_id).unwrap();
    assert_eq!(session.join().await.unwrap(), SessionOutcome::ChatEnded);
    let got = consumer.await.unwrap();
    assert_eq!(
        exactly_once_report(&got, &emu.transcript(&chat.contact_id).unwrap()),
        (0, 0, 0)
    );
    session_stats(&emu, &chat)
}

/// A consumer that stops reading for 40 s (longer than the heartbeat interval, its
/// reply deadline and the idle timeout): the socket stops reading too, and its
/// deadlines do not count that time, so nothing looks half-open.
#[tokio::test(start_paused = true)]
async fn a_consumer_that_stops_reading_is_not_mistaken_for_a_dead_socket() {
    let upgrades =
        burst_into_a_consumer_that_stops(SupervisorConfig::default(), Duration::from_secs(40)).await;
    assert_eq!(upgrades, 1, "no reconnect");
}

/// A consumer that takes nothing for longer than `slow_consumer_limit` costs the socket,
/// and the transcript fills the gap.
#[tokio::test(start_paused = true)]
async fn a_consumer_stopped_past_the_limit_costs_one_socket_and_nothing_else() {
    let cfg = SupervisorConfig {
        socket: SocketConfig {
            slow_consumer_limit: Duration::from_secs(20),
            ..Default::default()
        },
        ..Default::default()
    };
    let upgrades = burst_into_a_consumer_that_stops(cfg, Duration::from_secs(30)).await;
    assert_eq!(upgrades, 2, "exactly one reconnect");
}

/// A silent (half-open) socket is noticed within one heartbeat interval plus the reply
/// deadline: at most 13 s with the defaults, whatever the phase of the heartbeat.
#[tokio::test(start_paused = true)]
async fn a_silent_socket_is_noticed_within_an_interval_and_the_reply_deadline() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    for phase_ms in [0u64, 2500, 7300, 9900] {
        sleep(Duration::from_millis(phase_ms)).await;
        let t = Instant::now();
        emu.stall_sockets(None);
        h.state.wait_for(|s| *s != SessionState::Live).await.unwrap();
        let noticed = t.elapsed();
        assert!(noticed <= Duration::from_secs(13), "noticed after {noticed:?}");
        assert!(
            noticed >= Duration::from_secs(3),
            "the reply has its deadline: {noticed:?}"
        );
        until_live(&mut h).await;
    }
    // Nothing lost meanwhile.
    let m = agent_says(&emu, &chat, "still here");
    recv_until(&mut h, m.id.as_deref().unwrap()).await;
}

/// After a live socket drops, the reconnect goes out at once: resubscribed and the gap
/// backfilled within 100 ms. A second drop soon after waits for the backoff.
#[tokio::test(start_paused = true)]
async fn the_first_reconnect_after_a_live_socket_goes_out_at_once() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let mut h = start(&emu, &chat, SupervisorConfig::default());
    until_live(&mut h).await;
    sleep(Duration::from_secs(60)).await;

    let t = Instant::now();
    emu.drop_sockets(None);
    let gap = agent_says(&emu, &chat, "said while no socket was subscribed");
    recv_until(&mut h, gap.id.as_deref().unwrap()).await;
    until_live(&mut h).await;
    let live = agent_says(&emu, &chat, "the first live Item after the gap");
    recv_until(&mut h, live.id.as_deref().unwrap()).await;
    assert!(
        t.elapsed() <= Duration::from_millis(100),
        "recovered in {:?}",
        t.elapsed()
    );

    // Dropped again a moment later: now the backoff applies (no tight loop).
    let t = Instant::now();
    emu.drop_sockets(None);
    let gap = agent_says(&emu, &chat, "second gap");
    recv_until(&mut h, gap.id.as_deref().unwrap()).await;
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "backed off only {:?}",
        t.elapsed()
    );
    emu.end_chat(&chat.contact_id).unwrap();
    recv_all(&mut h).await;
    assert_eq!(h.join().await.unwrap(), SessionOutcome::ChatEnded);
}

/// A service that keeps handing out a NextToken at the end of the transcript: the
/// backfill stops once a page brings nothing new and so does the page asked again from
/// the cursor, and the session goes live.
#[tokio::test(start_paused = true)]
async fn paging_ends_when_the_service_never_stops_handing_out_next_tokens() {
    let emu = emulator(Timing::default()).await;
    emu.set_quirks(Quirks {
        endless_next_token: true,
    });
    let chat = emu.create_chat("Cleo");
    for i in 0..250 {
        agent_says(&emu, &chat, &format!("history {i}"));
    }
    let h = start(&emu, &chat, SupervisorConfig::default());
    let mut state = h.state.clone();
    let (items, session) = h.into_parts();
    let collector = spawn_collector(items);
    tokio::time::timeout(
        Duration::from_secs(60),
        state.wait_for(|s| *s == SessionState::Live),
    )
    .await
    .expect("the backfill ends by itself")
    .unwrap();
    // Three pages of Items, one that brings nothing new, and one more from the cursor.
    assert_eq!(emu.stats().calls["GetTranscript"], 5);
    let live = agent_says(&emu, &chat, "live");
    emu.end_chat(&chat.contact_id).unwrap();
    assert_eq!(session.join().await.unwrap(), SessionOutcome::ChatEnded);
    let got = collector.await.unwrap();
    assert_eq!(
        exactly_once_report(&got, &emu.transcript(&chat.contact_id).unwrap()),
        (0, 0, 0)
    );
    assert!(ids(&got).contains(live.id.as_ref().unwrap()));
}

/// One backfill makes at most `max_backfill_pages` calls, even against a service whose
/// pages keep bringing something new; the session then reconnects (with backoff) and
/// the next backfill goes on from the cursor, so nothing is skipped.
#[tokio::test(start_paused = true)]
async fn one_backfill_makes_a_bounded_number_of_calls() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    for i in 0..1000 {
        agent_says(&emu, &chat, &format!("history {i}"));
    }
    let cfg = SupervisorConfig {
        max_backfill_pages: 3,
        ..Default::default()
    };
    let h = start(&emu, &chat, cfg);
    let mut state = h.state.clone();
    let (items, session) = h.into_parts();
    let collector = spawn_collector(items);
    state.wait_for(|s| *s == SessionState::Live).await.unwrap();
    let calls = emu.stats().calls;
    let (pages, connects) = (calls["GetTranscript"], calls["CreateParticipantConnection"]);
    assert!(
        connects >= 4,
        "1001 Items at 300 a backfill: {connects} connections"
    );
    assert!(pages <= 3 * connects, "{pages} pages in {connects} backfills");
    let live = agent_says(&emu, &chat, "live");
    emu.end_chat(&chat.contact_id).unwrap();
    assert_eq!(session.join().await.unwrap(), SessionOutcome::ChatEnded);
    let got = collector.await.unwrap();
    assert_eq!(
        exactly_once_report(&got, &emu.transcript(&chat.contact_id).unwrap()),
        (0, 0, 0)
    );
    assert!(ids(&got).contains(live.id.as_ref().unwrap()));
}

/// The chat ends while the first backfill runs: page 2 answers 403. The session was
/// subscribed (the token is good), so this is the end of the chat: what the transcript
/// still gives is delivered, the end Item last, and the outcome is ChatEnded (exit 0),
/// not a rejected token (exit 77).
#[tokio::test(start_paused = true)]
async fn a_403_in_the_middle_of_a_backfill_of_a_live_chat_means_it_ended() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    for i in 0..250 {
        agent_says(&emu, &chat, &format!("history {i}"));
    }
    emu.inject_fault(FaultSpec::fail("GetTranscript", 200, 1));
    emu.inject_fault(FaultSpec {
        delay_ms: 2000,
        ..FaultSpec::fail("GetTranscript", 403, 1)
    });
    let mut h = start(
        &emu,
        &chat,
        SupervisorConfig {
            history: History::All,
            ..Default::default()
        },
    );
    let first_page = h.items.recv().await.unwrap();
    assert!(first_page.id.is_some());
    // Page 2 is on its way (and will be refused); the chat ends meanwhile.
    sleep(Duration::from_millis(500)).await;
    emu.end_chat(&chat.contact_id).unwrap();
    let mut got = vec![first_page];
    got.extend(recv_all(&mut h).await);
    assert_eq!(h.join().await.unwrap(), SessionOutcome::ChatEnded);
    assert_eq!(
        exactly_once_report(&got, &emu.transcript(&chat.contact_id).unwrap()),
        (0, 0, 0)
    );
    assert!(
        got.last().unwrap().is_chat_ended(),
        "the end Item is delivered last"
    );
}
