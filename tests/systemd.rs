//! The daemon under systemd's notification protocol: the `run` binary with a real unix
//! datagram `NOTIFY_SOCKET` and `WATCHDOG_USEC`, against an in-process emulator. It
//! says `READY=1` once its configured sessions have subscribed, then `STATUS=` lines
//! and `WATCHDOG=1` pings at half the watchdog period; a SIGHUP is `RELOADING=1` …
//! `READY=1` (a configuration that does not load is refused and the old one stays; one
//! that does adds and removes sessions without touching the others' sockets); SIGTERM
//! is `STOPPING=1` and a clean exit.

mod common;

use common::daemon::{signal, terminate, unix_get, write_config};
use common::*;
use connect_chatd::emulator::{CreatedChat, Timing};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Waits (real time, bounded) until `f` holds for the messages so far.
async fn until(messages: &Mutex<Vec<String>>, what: &str, f: impl Fn(&[String]) -> bool) {
    for _ in 0..600 {
        if f(&messages.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {:?}", messages.lock().unwrap());
}

fn count(m: &[String], what: &str) -> usize {
    m.iter().filter(|x| *x == what).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_reload_stopping() {
    let emu = emulator(Timing::default()).await;
    let [one, two, three] = ["One", "Two", "Three"].map(|n| emu.create_chat(n));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("control.sock");
    write_config(dir.path(), &emu, &[("chat-1", &one), ("chat-2", &two)], "");
    let notify_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_connect-chatd"))
        .args([
            "run",
            "--config",
            dir.path().join("connect-chatd.toml").to_str().unwrap(),
        ])
        .env_remove("RUST_LOG")
        .env_remove("WATCHDOG_PID")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let collector = {
        let messages = messages.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                messages.lock().unwrap().extend(text.lines().map(str::to_string));
            }
        })
    };

    until(&messages, "READY and two watchdog pings", |m| {
        count(m, "READY=1") == 1 && count(m, "WATCHDOG=1") >= 2
    })
    .await;
    until(&messages, "a status with both sessions live", |m| {
        m.iter().any(|x| x.starts_with("STATUS=2 live"))
    })
    .await;
    let upgrades = |chat: &CreatedChat| {
        emu.stats()
            .upgrades
            .get(&chat.participant_id)
            .copied()
            .unwrap_or(0)
    };
    let two_upgrades = upgrades(&two);

    // A configuration that no longer loads: refused, the running one stays.
    std::fs::write(
        dir.path().join("connect-chatd.toml"),
        std::fs::read_to_string(dir.path().join("connect-chatd.toml")).unwrap() + "colour = \"red\"\n",
    )
    .unwrap();
    signal(&child, 1);
    until(&messages, "RELOADING then READY again", |m| {
        count(m, "RELOADING=1") == 1 && count(m, "READY=1") == 2
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "a bad configuration does not stop the daemon"
    );
    let list = unix_get(&sock, "/v1/sessions").await;
    assert!(
        list.contains(r#""name":"chat-1""#) && list.contains(r#""name":"chat-2""#),
        "{list}"
    );

    // chat-1 leaves the file, chat-3 joins, chat-2 stays as it was; the level changes.
    write_config(
        dir.path(),
        &emu,
        &[("chat-2", &two), ("chat-3", &three)],
        "[log]\nlevel = \"debug\"\n",
    );
    signal(&child, 1);
    until(&messages, "the second reload", |m| {
        count(m, "RELOADING=1") == 2 && count(m, "READY=1") == 3
    })
    .await;
    for _ in 0..400 {
        let list = unix_get(&sock, "/v1/sessions").await;
        if !list.contains(r#""name":"chat-1""#) && open_sockets(&emu, &one.participant_id) == 0 {
            let three_live = unix_get(&sock, "/v1/sessions/chat-3").await;
            if three_live.contains(r#""state":"live""#) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let three_view = unix_get(&sock, "/v1/sessions/chat-3").await;
    assert!(three_view.contains(r#""state":"live""#), "{three_view}");
    assert_eq!(
        open_sockets(&emu, &one.participant_id),
        0,
        "chat-1's socket closed"
    );
    assert!(
        unix_get(&sock, "/v1/sessions/chat-1").await.contains("404"),
        "chat-1 is no longer followed"
    );
    assert_eq!(upgrades(&two), two_upgrades, "chat-2 kept its socket");
    assert_eq!(open_sockets(&emu, &two.participant_id), 1);
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(log.contains("reload refused"), "the refusal is logged");
    assert!(log.contains("DEBUG"), "the new level is in force");

    terminate(&mut child, Duration::from_secs(30)).await;
    until(&messages, "STOPPING", |m| {
        m.last().map(String::as_str) == Some("STOPPING=1")
    })
    .await;
    collector.abort();

    let m = messages.lock().unwrap().clone();
    let first = |what: &str| m.iter().position(|x| x == what).unwrap();
    let readies: Vec<usize> = (0..m.len()).filter(|&i| m[i] == "READY=1").collect();
    let reloads: Vec<usize> = (0..m.len()).filter(|&i| m[i] == "RELOADING=1").collect();
    assert!(
        readies[0] < first("WATCHDOG=1"),
        "the watchdog starts once ready: {m:?}"
    );
    assert!(first("WATCHDOG=1") < reloads[0], "{m:?}");
    assert!(
        reloads[0] < readies[1] && readies[1] < reloads[1] && reloads[1] < readies[2],
        "{m:?}"
    );
    assert!(readies[2] < first("STOPPING=1"), "{m:?}");
    for x in &m {
        let known = ["READY=1", "WATCHDOG=1", "STOPPING=1", "RELOADING=1"].contains(&x.as_str())
            || x.starts_with("STATUS=")
            || x.starts_with("MONOTONIC_USEC=");
        assert!(known, "unexpected {x:?}");
    }
    let status_line = m.iter().find(|x| x.starts_with("STATUS=2 live")).unwrap();
    assert!(
        status_line.ends_with(" items") && status_line.contains("; "),
        "{status_line}"
    );
}
