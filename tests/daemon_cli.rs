//! The daemon as users run it: the `connect-chatd run` binary against an in-process
//! emulator, driven with `connect-chatd sessions …` and `stream` over its unix socket;
//! `check-config`; and a SIGKILL mid-stream followed by a restart, after which the
//! journal holds every Item of every session exactly once, in order.

mod common;

use common::*;
use connect_chatd::emulator::{CreatedChat, Emulator, Timing};
use connect_chatd::journal::{Journal, JournalSettings};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_connect-chatd");

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("RUST_LOG")
        .env_remove("CONNECT_CHATD_CONFIG")
        .env_remove("CONNECT_CHATD_CONTROL")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs a client command to the end: (exit code, stdout, stderr).
async fn client(args: &[&str]) -> (i32, String, String) {
    let out = command(args).output().await.expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A configuration with these (name, chat) sessions; returns its path.
fn write_config(dir: &Path, emu: &Emulator, sessions: &[(&str, &CreatedChat)], stdout: bool) -> PathBuf {
    common::daemon::write_config(dir, emu, sessions, &format!("stdout = {stdout}\n"))
}

fn start(config: &Path) -> Child {
    command(&["run", "--config", config.to_str().unwrap()])
        .spawn()
        .expect("the daemon starts")
}

fn control(dir: &Path) -> String {
    format!("unix:{}", dir.join("control.sock").display())
}

/// Polls `sessions list` (real time, bounded) until every named session is in `state`.
async fn until_state(dir: &Path, names: &[&str], state: &str) -> Value {
    let ctl = control(dir);
    let mut last = String::new();
    for _ in 0..400 {
        let (code, out, err) = client(&["sessions", "--control", &ctl, "list"]).await;
        if code == 0 {
            let v: Value = serde_json::from_str(&out).unwrap();
            let all = names.iter().all(|n| {
                v["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["name"] == *n && s["state"] == state)
            });
            if all {
                return v;
            }
            last = out;
        } else {
            last = err;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{names:?} never {state}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_stream_against_a_running_daemon() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let configured = emu.create_chat("Cleo");
    let config = write_config(dir.path(), &emu, &[("cfg", &configured)], false);
    let mut daemon = start(&config);
    until_state(dir.path(), &["cfg"], "live").await;
    let ctl = control(dir.path());
    // A second daemon on the same state directory refuses to start.
    let second = command(&["run", "--config", config.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another connect-chatd is running"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("control.sock"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the control socket is private");

    // Add a chat at run time; the same token again gives the same session.
    let chat = emu.create_chat("Dora");
    let token = dir.path().join("dora.token");
    std::fs::write(&token, chat.participant_token.expose()).unwrap();
    let tok = token.to_str().unwrap();
    let (code, out, err) = client(&[
        "sessions",
        "--control",
        &ctl,
        "add",
        "--participant-token-file",
        tok,
        "--name",
        "dora",
        "--label",
        "crm=42",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let added: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (added["name"].as_str(), added["labels"]["crm"].as_str()),
        (Some("dora"), Some("42"))
    );
    assert!(!out.contains(chat.participant_token.expose()));
    let (code, out, _) = client(&[
        "sessions",
        "--control",
        &ctl,
        "add",
        "--participant-token-file",
        tok,
        "--name",
        "again",
    ])
    .await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["name"], "dora");
    until_state(dir.path(), &["cfg", "dora"], "live").await;
    // The configuration file is enough to find the daemon.
    let (code, out, _) = client(&["sessions", "--config", config.to_str().unwrap(), "show", "dora"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["contact_id"],
        chat.contact_id.as_str()
    );

    // `stream NAME --from-start`: one Item per line, the history first, then live.
    let first = agent_says(&emu, &chat, "one");
    let mut stream = command(&["stream", "--control", &ctl, "dora", "--from-start"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(stream.stdout.take().unwrap()).lines();
    let second = agent_says(&emu, &chat, "two");
    let mut seen = Vec::new();
    while !seen.contains(second.id.as_ref().unwrap()) {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("Items arrive")
            .unwrap()
            .expect("the stream stays open");
        let item: Value = serde_json::from_str(&line).unwrap();
        seen.push(item["Id"].as_str().unwrap().to_string());
    }
    stream.kill().await.unwrap();
    let transcript = persisted(&emu.transcript(&chat.contact_id).unwrap());
    assert_same_ids(&seen, &transcript, "stream --from-start");
    // `stream --after ID` resumes right after that Item; without a name, every
    // session's Items come wrapped with their session's name.
    let mut stream = command(&[
        "stream",
        "--control",
        &ctl,
        "--after",
        &format!("dora/{}", first.id.as_ref().unwrap()),
    ])
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(stream.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the next Item arrives")
        .unwrap()
        .unwrap();
    let wrapped: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(wrapped["session"], "dora");
    assert_eq!(wrapped["item"]["Id"], second.id.clone().unwrap().as_str());
    stream.kill().await.unwrap();

    // Talking back through the daemon, once per idempotency key.
    for _ in 0..2 {
        let (code, out, err) = client(&[
            "send",
            "--session",
            "dora",
            "--control",
            &ctl,
            "--idempotency-key",
            "cli-1",
            "hi from the cli",
        ])
        .await;
        assert_eq!(code, 0, "{err}");
        assert!(
            serde_json::from_str::<Value>(&out).unwrap()["Id"].is_string(),
            "{out}"
        );
    }
    let sent = emu
        .transcript(&chat.contact_id)
        .unwrap()
        .iter()
        .filter(|i| i.content.as_deref() == Some("hi from the cli"))
        .count();
    assert_eq!(sent, 1);
    let (code, _, err) = client(&["event", "typing", "--session", "dora", "--control", &ctl]).await;
    assert_eq!(code, 0, "{err}");

    // Errors: an unknown session (1, the daemon's JSON error on stderr), no daemon (69).
    let (code, _, err) = client(&["sessions", "--control", &ctl, "show", "nobody"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not_found") && err.contains("404"), "{err}");
    let nowhere = format!("unix:{}", dir.path().join("nowhere.sock").display());
    let (code, _, _) = client(&["sessions", "--control", &nowhere, "list"]).await;
    assert_eq!(code, 69);

    // Removal closes the socket; the session is gone.
    let (code, _, err) = client(&["sessions", "--control", &ctl, "remove", "dora"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = client(&["sessions", "--control", &ctl, "show", "dora"]).await;
    assert_eq!(code, 1);
    common::daemon::terminate(&mut daemon, Duration::from_secs(20)).await;
    assert!(
        !dir.path().join("control.sock").exists(),
        "the socket file is removed on exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_loses_and_repeats_nothing() {
    let emu = std::sync::Arc::new(emulator(Timing::default()).await);
    let dir = tempfile::tempdir().unwrap();
    let chats: Vec<CreatedChat> = (0..3).map(|i| emu.create_chat(&format!("c{i}"))).collect();
    let names = ["a", "b", "c"];
    let sessions: Vec<(&str, &CreatedChat)> = names.iter().copied().zip(chats.iter()).collect();
    let config = write_config(dir.path(), &emu, &sessions, true);

    // A publisher that keeps every chat busy through the kill and the restart.
    let publishing = {
        let emu = emu.clone();
        let chats = chats.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                for chat in &chats {
                    agent_says(&emu, chat, &format!("m{i}"));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut daemon = start(&config);
    let first_lines = drain(&mut daemon);
    until_state(dir.path(), &names, "live").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    daemon.kill().await.unwrap(); // SIGKILL: no shutdown, no last commit
    let _ = daemon.wait().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut daemon = start(&config);
    let second_lines = drain(&mut daemon);
    until_state(dir.path(), &names, "live").await;
    publishing.await.unwrap();
    for chat in &chats {
        emu.end_chat(&chat.contact_id).unwrap();
    }
    let listed = until_state(dir.path(), &names, "ended").await;
    common::daemon::terminate(&mut daemon, Duration::from_secs(20)).await;
    let resumed: u64 = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["counters"]["delivered"].as_u64().unwrap())
        .sum();
    assert!(resumed > 0);

    let journal = Journal::open(&dir.path().join("state"), JournalSettings::default()).unwrap();
    for (name, chat) in sessions.iter().copied() {
        let journalled: Vec<String> = journal
            .entries_after(None, Some(name), 1_000_000)
            .unwrap()
            .into_iter()
            .filter_map(|e| e.item_id)
            .collect();
        let transcript = persisted(&emu.transcript(&chat.contact_id).unwrap());
        assert!(transcript.len() > 400, "{}", transcript.len());
        assert_same_ids(&journalled, &transcript, name);
    }
    // The stdout consumer went on after the last line it wrote: every Item is there,
    // a few at most twice (the batch written just before the kill).
    let mut lines = first_lines.await.unwrap();
    lines.extend(second_lines.await.unwrap());
    let mut per_item = std::collections::HashMap::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        let key = format!(
            "{}/{}",
            v["session"].as_str().unwrap(),
            v["item"]["Id"].as_str().unwrap()
        );
        *per_item.entry(key).or_insert(0) += 1;
    }
    for (name, chat) in &sessions {
        for id in persisted(&emu.transcript(&chat.contact_id).unwrap()) {
            assert!(
                per_item.contains_key(&format!("{name}/{id}")),
                "{name}/{id} on stdout"
            );
        }
    }
    let repeated = per_item.values().filter(|n| **n > 1).count();
    assert!(repeated <= 256, "{repeated} lines repeated");
}

/// Collects the daemon's stdout lines until it exits.
fn drain(child: &mut Child) -> tokio::task::JoinHandle<Vec<String>> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        let mut got = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            got.push(line);
        }
        got
    })
}

#[tokio::test]
async fn check_config_validates_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "endpoint = \"http://127.0.0.1:9\"\nstate_dir = \"/tmp/x\"\n",
    )
    .unwrap();
    let (code, out, err) = client(&["check-config", "--config", good.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "journal.fsync: batch"), "{out}");
    let bad = dir.path().join("bad.toml");
    for (text, key) in [
        ("[journal]\nfsync = \"sometimes\"\n", "journal.fsync"),
        ("[journal]\ncolour = 1\n", "journal.colour"),
        ("heartbeat_interval = \"soon\"\n", "heartbeat_interval"),
    ] {
        std::fs::write(&bad, format!("endpoint = \"http://127.0.0.1:9\"\n{text}")).unwrap();
        let (code, _, err) = client(&["check-config", "--config", bad.to_str().unwrap()]).await;
        assert_eq!(code, 78, "{err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains(bad.to_str().unwrap()), "the source is named: {err}");
    }
}
