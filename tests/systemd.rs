//! The daemon under systemd's notification protocol: the `run` binary with a real unix
//! datagram `NOTIFY_SOCKET` and `WATCHDOG_USEC`, against an in-process emulator. It
//! says `READY=1` once its configured session has subscribed, then `STATUS=` lines and
//! `WATCHDOG=1` pings at half the watchdog period, and `STOPPING=1` on SIGTERM before
//! a clean exit.

mod common;

use common::*;
use connect_chatd::emulator::Timing;
use std::process::Stdio;
use std::time::Duration;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_stopping() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Notified");
    let dir = tempfile::tempdir().unwrap();
    let config = common::daemon::one_session_config(dir.path(), &emu, &chat, "chat-1", "");
    let notify_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_connect-chatd"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env_remove("WATCHDOG_PID")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Every message, in order, until the daemon has exited (or a generous bound).
    let mut messages: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut terminated = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), notify.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    messages.push(line.to_string());
                }
            }
            Ok(Err(e)) => panic!("notify socket: {e}"),
            Err(_) => {}
        }
        let pings = messages.iter().filter(|m| *m == "WATCHDOG=1").count();
        if !terminated && pings >= 3 {
            // SAFETY: a signal to our own child.
            unsafe { kill(child.id().unwrap() as i32, 15) };
            terminated = true;
        }
        if terminated {
            if let Ok(Some(status)) = child.try_wait() {
                assert_eq!(status.code(), Some(0), "a clean exit on SIGTERM");
                break;
            }
        }
    }
    assert!(terminated, "three watchdog pings within the bound: {messages:?}");
    let at = |m: &str| {
        messages
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m} missing from {messages:?}"))
    };
    let ready = at("READY=1");
    let live = messages
        .iter()
        .position(|m| m.starts_with("STATUS=") && m.contains("1 live"))
        .unwrap_or_else(|| panic!("no STATUS with the live session in {messages:?}"));
    let first_ping = at("WATCHDOG=1");
    let stopping = at("STOPPING=1");
    assert!(ready < first_ping, "the watchdog starts once ready: {messages:?}");
    assert!(
        first_ping < stopping && live < stopping && ready < stopping,
        "{messages:?}"
    );
    assert_eq!(
        messages.last().map(String::as_str),
        Some("STOPPING=1"),
        "{messages:?}"
    );
    for m in &messages {
        assert!(
            m == "READY=1" || m == "WATCHDOG=1" || m == "STOPPING=1" || m.starts_with("STATUS="),
            "unexpected {m:?}"
        );
    }
    // The status line's shape.
    assert!(
        messages[live].ends_with(" items") && messages[live].contains("; "),
        "{}",
        messages[live]
    );
}
