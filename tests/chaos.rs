//! The chaos soak: a seeded schedule of faults against the in-process emulator on
//! tokio's paused clock — random drops, half-open stalls, 429/500 bursts, slow
//! upgrades and a SIGKILL-style restart from the state directory, with messages
//! published at random moments including during every gap — over days of chat with a
//! one-hour ConnectionExpiry and a one-day ConnectionToken.
//!
//! `cargo test` runs 48 simulated hours with a fixed seed. A longer soak, by hand:
//! `CHAOS_SEED=7 CHAOS_HOURS=168 cargo test --release --test chaos -- --nocapture`.

mod common;

use common::*;
use connect_chatd::api::model::ParticipantRole;
use connect_chatd::emulator::{Emulator, FaultSpec, Timing};
use connect_chatd::session::store::StateStore;
use connect_chatd::session::{SessionOutcome, SupervisorConfig};
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::{sleep, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(start_paused = true)]
async fn chaos_soak_loses_and_duplicates_nothing() {
    let seed = env_or("CHAOS_SEED", 20261125);
    let hours = env_or("CHAOS_HOURS", 48);
    let mut rng = fastrand::Rng::with_seed(seed);
    let emu = emulator(Timing {
        connection_expiry: Duration::from_secs(3600),
        token_expiry: Duration::from_secs(24 * 3600),
        ..Default::default()
    })
    .await;
    let chat = emu.create_chat("Cleo");
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), &chat.participant_token).unwrap();
    let out = SharedOutput::default();
    let mut running = run_tail(
        &emu,
        &chat.participant_token,
        &store,
        &out,
        SupervisorConfig::default(),
    );

    let started = Instant::now();
    let end = started + Duration::from_secs(hours * 3600);
    let restart_at = started + Duration::from_secs(rng.u64(hours * 900..=hours * 2700));
    let mut restarted = false;
    let mut counts = [0u32; 8];
    let mut n = 0u64;
    let mut say = |emu: &Emulator| {
        n += 1;
        emu.publish_message(
            &chat.contact_id,
            "Ana",
            ParticipantRole::Agent,
            &format!("message {n}"),
        )
        .unwrap();
    };
    while Instant::now() < end {
        sleep(Duration::from_secs(rng.u64(1..=900))).await;
        let pid = Some(chat.participant_id.as_str());
        if !restarted && Instant::now() >= restart_at {
            // SIGKILL: the process vanishes mid-chat; messages keep coming; systemd
            // restarts it a few seconds later with the same state directory.
            running.abort();
            let _ = running.await;
            for _ in 0..rng.u32(1..=4) {
                say(&emu);
            }
            sleep(Duration::from_secs(5)).await;
            running = run_tail(
                &emu,
                &chat.participant_token,
                &store,
                &out,
                SupervisorConfig::default(),
            );
            restarted = true;
            counts[7] += 1;
            continue;
        }
        let roll = rng.u32(0..100);
        match roll {
            0..=44 => {
                for _ in 0..rng.u32(1..=3) {
                    say(&emu);
                }
                counts[0] += 1;
            }
            45..=56 => {
                emu.drop_sockets(pid);
                for _ in 0..rng.u32(1..=3) {
                    say(&emu);
                }
                counts[1] += 1;
            }
            57..=63 => {
                emu.stall_sockets(pid);
                for _ in 0..rng.u32(1..=3) {
                    say(&emu);
                }
                counts[2] += 1;
            }
            64..=70 => {
                emu.inject_fault(FaultSpec::fail(
                    "CreateParticipantConnection",
                    429,
                    rng.u32(1..=6),
                ));
                emu.drop_sockets(pid);
                say(&emu);
                counts[3] += 1;
            }
            71..=76 => {
                let status = if rng.bool() { 500 } else { 429 };
                emu.inject_fault(FaultSpec::fail("GetTranscript", status, rng.u32(1..=5)));
                emu.drop_sockets(pid);
                say(&emu);
                counts[4] += 1;
            }
            77..=80 => {
                let delay = Duration::from_secs(rng.u64(1..=30));
                emu.inject_fault(FaultSpec::slow("WebsocketUpgrade", delay, 1));
                emu.drop_sockets(pid);
                say(&emu);
                counts[5] += 1;
            }
            81..=85 => {
                agent_types(&emu, &chat);
                counts[6] += 1;
            }
            _ => {} // a quiet spell
        }
    }
    say(&emu);
    emu.end_chat(&chat.contact_id).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(3600), running)
        .await
        .expect("the session ends after the chat")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, SessionOutcome::ChatEnded);

    let delivered = out.items();
    let transcript = emu.transcript(&chat.contact_id).unwrap();
    let stats = emu.stats();
    eprintln!(
        "chaos seed {seed}, {hours} h: {} messages, {} delivered; messages/drops/stalls/429s/transcript faults/slow upgrades/typing/restarts = {counts:?}; CreateParticipantConnection calls: {}",
        transcript.len(),
        delivered.len(),
        stats.calls["CreateParticipantConnection"],
    );
    assert_same_ids(
        &persisted(&delivered),
        &ids(&transcript),
        "0 lost, order preserved",
    );
    let all = ids(&delivered);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        all.len(),
        "0 duplicated"
    );
    assert!(
        counts.iter().all(|c| *c > 0),
        "every fault happened at least once: {counts:?}"
    );
    assert!(
        stats.max_open_sockets[&chat.participant_id] <= 2,
        "at most two sockets at once: {:?}",
        stats.max_open_sockets
    );
    assert_eq!(
        stats.expired_token_uses, 0,
        "the ConnectionToken was always renewed before it expired"
    );
    // A one-hour ConnectionExpiry: at least one new connection per hour of chat.
    assert!(stats.calls["CreateParticipantConnection"] >= hours);
}
