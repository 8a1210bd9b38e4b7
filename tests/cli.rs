//! The `connect-chatd` binary run as a child process against an in-process emulator:
//! exit codes, the stdout contract, signals, and secrets kept out of the logs.

mod common;

use common::*;
use connect_chatd::emulator::{Emulator, Timing};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_connect-chatd");

fn token_file(dir: &tempfile::TempDir, token: &str) -> PathBuf {
    let p = dir.path().join(format!("token-{}", token.trim().len()));
    std::fs::write(&p, format!("{token}\n")).unwrap();
    p
}

fn tail_cmd(emu: &Emulator, token: &PathBuf) -> Command {
    let mut c = Command::new(BIN);
    c.arg("tail")
        .arg("--endpoint")
        .arg(emu.endpoint())
        .arg("--participant-token-file")
        .arg(token)
        .env_remove("RUST_LOG")
        .env_remove("CONNECT_PARTICIPANT_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Waits (real time, bounded) until the participant has a subscribed socket.
async fn until_subscribed(emu: &Emulator, pid: &str) {
    for _ in 0..500 {
        if open_sockets(emu, pid) > 0 {
            // The subscribe ack follows the upgrade by a round trip.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the child never connected");
}

/// True if `text` holds `prefix` followed by 16 or more hex digits (an emulator token).
fn contains_token(text: &str, prefix: &str) -> bool {
    text.match_indices(prefix).any(|(i, _)| {
        text[i + prefix.len()..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .count()
            >= 16
    })
}

async fn finish(child: Child) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("child exits")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn tail_prints_one_json_line_per_item_and_exits_0_at_chat_end() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    agent_says(&emu, &chat, "first");
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(&dir, chat.participant_token.expose());
    let child = tail_cmd(&emu, &tok)
        .arg("--log-level")
        .arg("trace")
        .spawn()
        .unwrap();
    until_subscribed(&emu, &chat.participant_id).await;
    agent_says(&emu, &chat, "second\nwith a newline");
    emu.end_chat(&chat.contact_id).unwrap();
    let (code, stdout, stderr) = finish(child).await;
    assert_eq!(code, 0, "stderr: {stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let transcript = emu.transcript(&chat.contact_id).unwrap();
    let printed: Vec<_> = lines
        .iter()
        .map(|v| v["Id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(printed, ids(&transcript), "oldest first, each once");
    // Customer joined, agent joined, "first", then the live message.
    assert_eq!(lines[3]["Content"], "second\nwith a newline");
    assert_eq!(
        lines[3]["InitialContactId"],
        chat.contact_id.as_str(),
        "unknown fields are kept"
    );
    // Even at TRACE, no token or presigned query string reaches the logs.
    assert!(!stderr.contains(chat.participant_token.expose()));
    assert!(!contains_token(&stderr, "ct-"), "connection token in logs");
    assert!(!stderr.contains("X-Amz-Security-Token="), "presigned URL in logs");
}

#[tokio::test]
async fn rejected_token_exits_77_without_retrying() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(&dir, "pt-not-a-real-token");
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = finish(tail_cmd(&emu, &tok).spawn().unwrap()).await;
    assert_eq!(code, 77, "stderr: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(stdout.is_empty());
    assert!(stderr.contains("participant token was rejected"), "{stderr}");
    assert!(!stderr.contains("pt-not-a-real-token"));
    assert_eq!(emu.stats().calls["CreateParticipantConnection"], 1);
}

#[tokio::test]
async fn configuration_errors_exit_78_naming_the_option() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(&dir, "pt-x");
    let empty = token_file(&dir, " ");
    let (ep, tok, empty) = (
        emu.endpoint(),
        tok.display().to_string(),
        empty.display().to_string(),
    );
    let tf = "--participant-token-file";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["tail", "--endpoint", &ep], tf),
        (vec!["tail", "--endpoint", &ep, tf, "/nonexistent/t"], tf),
        (vec!["tail", "--endpoint", &ep, tf, &empty], "empty"),
        (
            vec!["tail", "--endpoint", "http://192.0.2.1", tf, &tok],
            "--endpoint",
        ),
        (vec!["tail", "--region", "Mars 1", tf, &tok], "--region"),
        (
            vec!["tail", "--endpoint", &ep, tf, &tok, "--history", "some"],
            "--history",
        ),
        (
            vec!["tail", "--endpoint", &ep, tf, &tok, "--heartbeat-interval", "0"],
            "--heartbeat-interval",
        ),
        (vec!["tail", tf, &tok], "--region"),
        (vec!["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN)
            .args(&args)
            .env_remove("CONNECT_PARTICIPANT_TOKEN")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?} should mention {needle}: {stderr}"
        );
    }
    assert!(
        emu.stats().calls.is_empty(),
        "no configuration error reached the service"
    );
    let help = Command::new(BIN).args(["tail", "--help"]).output().await.unwrap();
    assert_eq!(help.status.code(), Some(0));
}

#[tokio::test]
async fn token_from_the_environment() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let out = Command::new(BIN)
        .args([
            "connect",
            "--endpoint",
            &emu.endpoint(),
            "--type",
            "websocket,connection-credentials,webrtc",
            "--connect-participant",
        ])
        .env("CONNECT_PARTICIPANT_TOKEN", chat.participant_token.expose())
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["Websocket"]["Url"]
        .as_str()
        .unwrap()
        .starts_with("ws://127.0.0.1:"));
    assert!(v["ConnectionCredentials"]["ConnectionToken"]
        .as_str()
        .unwrap()
        .starts_with("ct-"));
    assert!(v["WebRTCConnection"]["Meeting"]["MeetingId"].is_string());
    assert!(v["WebRTCConnection"]["Attendee"]["JoinToken"].is_string());
}

#[tokio::test]
async fn closed_stdout_ends_the_program_quietly() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(&dir, chat.participant_token.expose());
    let mut child = tail_cmd(&emu, &tok).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // `| head -1`: read one line, then close the pipe.
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with('{'));
    drop(lines);
    for n in 0..5 {
        agent_says(&emu, &chat, &format!("nobody reads this {n}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _, stderr) = finish(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn sigterm_closes_the_socket_and_exits_0() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(&dir, chat.participant_token.expose());
    let child = tail_cmd(&emu, &tok).spawn().unwrap();
    until_subscribed(&emu, &chat.participant_id).await;
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let (code, stdout, stderr) = finish(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "the joined event, then nothing");
    assert_sockets_closed(&emu, &chat.participant_id, Duration::from_millis(20)).await;
}
