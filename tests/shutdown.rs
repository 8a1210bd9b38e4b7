//! SIGTERM ends the daemon within `shutdown_timeout` even when every step of its
//! shutdown would wait longer: sockets that never answer the close frame (stalled by the
//! emulator) and a stdout nobody reads (its pipe full). It still exits 0, and what was
//! committed stays in the journal for the next run.

mod common;

use common::daemon::*;
use common::*;
use connect_chatd::emulator::Timing;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_shutdown_timeout_when_nothing_cooperates() {
    let emu = emulator(Timing::default()).await;
    let chats: Vec<_> = (0..3).map(|i| emu.create_chat(&format!("S{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let sessions: Vec<(String, &connect_chatd::emulator::CreatedChat)> = chats
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("s{i}"), c))
        .collect();
    let named: Vec<(&str, &connect_chatd::emulator::CreatedChat)> =
        sessions.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let config = write_config(dir.path(), &emu, &named, "stdout = true\nshutdown_timeout = 1\n");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_connect-chatd"))
        .args(["run", "--config", config.to_str().unwrap(), "--log-level", "warn"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        // Piped and never read: once the pipe is full, the stdout consumer blocks.
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let sock = dir.path().join("control.sock");
    eventually_async("every session live", || async {
        let body = if tokio::net::UnixStream::connect(&sock).await.is_ok() {
            unix_get(&sock, "/v1/sessions").await
        } else {
            String::new()
        };
        body.matches("\"state\":\"live\"").count() == 3
    })
    .await;
    // Far more than a pipe holds (64 KiB): 600 Items of about 1 KiB.
    let text = "x".repeat(900);
    for i in 0..600 {
        agent_says(&emu, &chats[i % 3], &format!("{i} {text}"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for c in &chats {
        emu.stall_sockets(Some(&c.participant_id));
    }
    let asked = Instant::now();
    signal(&child, 15);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the daemon exits")
        .unwrap();
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "a clean exit");
    // Unbounded, the close handshakes (5 s each) and the stdout drain (5 s) would take
    // far longer than the one second asked for; a slow machine gets a wide margin.
    assert!(took < Duration::from_secs(4), "exited {took:?} after SIGTERM");
    let _ = child.stdout.take();
}

async fn eventually_async<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
