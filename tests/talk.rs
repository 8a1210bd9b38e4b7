//! Talking back, exactly once: the `send`, `event`, `disconnect`, `attach` and
//! `attachment get` commands straight to the emulator, and the daemon's routes (with
//! `Idempotency-Key`, also across a restart), their 4xx errors, and the typing throttle.

mod common;

use common::daemon::*;
use common::*;
use connect_chatd::api::model::{ParticipantRole, StartAttachmentUploadRequest};
use connect_chatd::daemon::run::ConfiguredSession;
use connect_chatd::emulator::{CreatedChat, Emulator, FaultSpec, Timing};
use connect_chatd::session::History;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_connect-chatd");

/// Runs the binary to the end: (exit code, stdout, stderr).
async fn cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("RUST_LOG")
        .env_remove("CONNECT_PARTICIPANT_TOKEN")
        .env_remove("CONNECT_CHATD_CONFIG")
        .env_remove("CONNECT_CHATD_CONTROL")
        .env_remove("CONNECT_CHATD_STATE_DIR")
        .env_remove("CONNECT_CHATD_REGION")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("the binary runs");
    if let Some(text) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut i = child.stdin.take().unwrap();
        i.write_all(text.as_bytes()).await.unwrap();
        drop(i);
    }
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token_file(dir: &Path, chat: &CreatedChat) -> String {
    let p = dir.join(format!("{}.token", chat.participant_id));
    std::fs::write(&p, chat.participant_token.expose()).unwrap();
    p.to_str().unwrap().to_string()
}

/// How many transcript messages have this content.
fn posted(emu: &Emulator, chat: &CreatedChat, content: &str) -> usize {
    emu.transcript(&chat.contact_id)
        .unwrap()
        .iter()
        .filter(|i| i.content.as_deref() == Some(content))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_sends_messages_events_and_attachments() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let chat = emu.create_chat("Cleo");
    let token = token_file(dir.path(), &chat);
    let state = dir.path().join("state");
    let endpoint = emu.endpoint();
    let base = [
        "--endpoint",
        &endpoint,
        "--participant-token-file",
        &token,
        "--state-dir",
        state.to_str().unwrap(),
    ];
    // The command (`attachment get` is two words), then the target, then the rest.
    let with = |extra: &[&str]| -> Vec<String> {
        let words = if extra[0] == "attachment" { 2 } else { 1 };
        let mut v: Vec<String> = extra[..words].iter().map(|s| s.to_string()).collect();
        v.extend(base.iter().map(|s| s.to_string()));
        v.extend(extra[words..].iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>, stdin: Option<&'static str>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&refs, stdin).await
    };

    // A 429 first: retried with the same ClientToken, posted once.
    emu.inject_fault(FaultSpec::fail("SendMessage", 429, 1));
    let (code, out, err) = run(with(&["send", "hello there"]), None).await;
    assert_eq!(code, 0, "{err}");
    let sent: Value = serde_json::from_str(&out).unwrap();
    assert!(
        sent["Id"].is_string() && sent["AbsoluteTime"].is_string(),
        "{out}"
    );
    assert_eq!(posted(&emu, &chat, "hello there"), 1);
    assert!(!err.contains(chat.participant_token.expose()));
    // From stdin, markdown, with the saved ConnectionToken (no second connection).
    let (code, _, err) = run(
        with(&["send", "--content-type", "text/markdown", "-"]),
        Some("**bold**\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(posted(&emu, &chat, "**bold**"), 1);
    assert_eq!(
        emu.stats().calls["CreateParticipantConnection"],
        1,
        "the saved token is reused"
    );
    // The same idempotency key twice posts once.
    for _ in 0..2 {
        let (code, _, err) = run(with(&["send", "--idempotency-key", "k-1", "only once"]), None).await;
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(posted(&emu, &chat, "only once"), 1);

    // Bad input: exit 78, the problem named, nothing sent.
    for (args, mention) in [
        (vec!["send", "--content-type", "text/html", "x"], "content_type"),
        (vec!["send", "   "], "empty"),
        (vec!["event", "read"], "message_id"),
    ] {
        let (code, _, err) = run(with(&args), None).await;
        assert_eq!(code, 78, "{args:?}: {err}");
        assert!(err.contains(mention), "{args:?}: {err}");
    }
    let long = "x".repeat(16_385);
    let (code, _, err) = run(with(&["send", &long]), None).await;
    assert_eq!(code, 78);
    assert!(err.contains("16384"), "{err}");

    // Events.
    let agent = emu
        .publish_message(&chat.contact_id, "Ana", ParticipantRole::Agent, "from the agent")
        .unwrap();
    let (code, _, err) = run(with(&["event", "typing"]), None).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(
        with(&["event", "read", "--message-id", agent.id.as_deref().unwrap()]),
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");

    // An attachment round trip, and a hostile AttachmentName that stays in its directory.
    let file = dir.path().join("report.txt");
    std::fs::write(&file, b"the bytes of the report").unwrap();
    let (code, out, err) = run(with(&["attach", file.to_str().unwrap()]), None).await;
    assert_eq!(code, 0, "{err}");
    let attached: Value = serde_json::from_str(&out).unwrap();
    let id = attached["AttachmentId"].as_str().unwrap().to_string();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let (code, out, err) = run(
        with(&["attachment", "get", &id, "-o", downloads.to_str().unwrap()]),
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let saved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(saved["Path"], downloads.join("report.txt").to_str().unwrap());
    assert_eq!(
        std::fs::read(downloads.join("report.txt")).unwrap(),
        b"the bytes of the report"
    );
    for (bad, mention) in [("empty.txt", "empty"), ("tool.exe", "exe")] {
        let p = dir.path().join(bad);
        std::fs::write(&p, if bad == "empty.txt" { &b""[..] } else { &b"MZ"[..] }).unwrap();
        let (code, _, err) = run(with(&["attach", p.to_str().unwrap()]), None).await;
        assert_eq!(code, 78, "{bad}: {err}");
        assert!(err.contains(mention), "{bad}: {err}");
    }
    let hostile = hostile_attachment(&emu, &chat).await;
    let (code, out, err) = run(
        with(&["attachment", "get", &hostile, "-o", downloads.to_str().unwrap()]),
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let saved: Value = serde_json::from_str(&out).unwrap();
    let path = std::path::PathBuf::from(saved["Path"].as_str().unwrap());
    assert_eq!(
        path.parent().unwrap(),
        downloads,
        "{path:?} stays in the download directory"
    );
    assert!(!dir.path().join("escaped.txt").exists());

    // Disconnect.
    let (code, _, err) = run(with(&["disconnect"]), None).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(with(&["send", "after leaving"]), None).await;
    assert_eq!(code, 1);
    assert!(err.contains("ended"), "{err}");
}

/// An attachment named `../escaped.txt` (with a control character), completed.
async fn hostile_attachment(emu: &Emulator, chat: &CreatedChat) -> String {
    let api = client(emu);
    let resp = api
        .create_participant_connection(
            &chat.participant_token,
            &connect_chatd::api::model::CreateParticipantConnectionRequest {
                connection_types: Some(vec![
                    connect_chatd::api::model::ConnectionType::ConnectionCredentials,
                ]),
                connect_participant: None,
            },
        )
        .await
        .unwrap();
    let token = resp.connection_credentials.unwrap().connection_token;
    let started = api
        .start_attachment_upload(
            &token,
            &StartAttachmentUploadRequest {
                content_type: "text/plain".into(),
                attachment_size_in_bytes: 3,
                attachment_name: "../esc\u{7}aped.txt".into(),
                client_token: String::new(),
            },
        )
        .await
        .unwrap();
    let meta = started.upload_metadata.unwrap();
    connect_chatd::api::outbound::put_presigned(
        &api,
        &meta.url.unwrap(),
        &meta.headers_to_include.unwrap(),
        b"abc".to_vec(),
    )
    .await
    .unwrap();
    let id = started.attachment_id.unwrap();
    api.complete_attachment_upload(
        &token,
        &connect_chatd::api::model::CompleteAttachmentUploadRequest {
            attachment_ids: vec![id.clone()],
            client_token: String::new(),
        },
    )
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_sends_once_per_idempotency_key_even_across_a_restart() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let chat = emu.create_chat("Cleo");
    let sessions = vec![ConfiguredSession {
        name: "cleo".into(),
        participant_token: chat.participant_token.clone(),
        history: History::All,
        labels: Default::default(),
        receipts: false,
    }];
    let d = start_daemon(&emu, dir.path(), sessions.clone()).await;
    eventually("live", || d.daemon.get("cleo").is_some_and(|v| v.state == "live")).await;
    let post = |d: &Running, path: &str, body: Value, key: Option<&str>| {
        let mut req = d.http.post(d.url(path)).bearer_auth(BEARER).json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send()
    };
    let resp = post(
        &d,
        "/v1/sessions/cleo/messages",
        json!({"content": "once"}),
        Some("key-1"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let first: Value = resp.json().await.unwrap();
    let resp = post(
        &d,
        "/v1/sessions/cleo/messages",
        json!({"content": "once"}),
        Some("key-1"),
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    assert_eq!(resp.json::<Value>().await.unwrap(), first);
    d.stop().await;
    let d = start_daemon(&emu, dir.path(), sessions).await;
    eventually("live again", || {
        d.daemon.get("cleo").is_some_and(|v| v.state == "live")
    })
    .await;
    let resp = post(
        &d,
        "/v1/sessions/cleo/messages",
        json!({"content": "once"}),
        Some("key-1"),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        first,
        "the same answer after a restart"
    );
    assert_eq!(posted(&emu, &chat, "once"), 1);

    // A 429 on the way is retried, still one post.
    emu.inject_fault(FaultSpec::fail("SendMessage", 429, 2));
    let resp = post(
        &d,
        "/v1/sessions/cleo/messages",
        json!({"content": "through 429s", "content_type": "text/plain"}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(posted(&emu, &chat, "through 429s"), 1);

    // Typing: at most one per 10 s.
    let typing = json!({"content_type": "application/vnd.amazonaws.connect.event.typing"});
    let a: Value = post(&d, "/v1/sessions/cleo/events", typing.clone(), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = post(&d, "/v1/sessions/cleo/events", typing, None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(a["Id"].is_string(), "{a}");
    assert_eq!(b["Throttled"], true, "{b}");
    // A read receipt.
    let agent = agent_says(&emu, &chat, "please read");
    let receipt = json!({"content_type": "application/vnd.amazonaws.connect.event.message.read",
                         "content": json!({"messageId": agent.id}).to_string()});
    assert_eq!(
        post(&d, "/v1/sessions/cleo/events", receipt, None)
            .await
            .unwrap()
            .status(),
        200
    );

    // Attachments: a path the daemon reads, and the body itself.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"notes").unwrap();
    let resp = post(
        &d,
        "/v1/sessions/cleo/attachments",
        json!({"path": file}),
        Some("att-1"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let raw = d
        .http
        .post(d.url("/v1/sessions/cleo/attachments?name=pic.png"))
        .bearer_auth(BEARER)
        .header("content-type", "image/png")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let attached: Value = raw.json().await.unwrap();
    assert_eq!(attached["ContentType"], "image/png");

    // Every 4xx names its problem.
    let cases = [
        (
            "/v1/sessions/cleo/messages",
            json!({"content": "x".repeat(16_385)}),
            400,
            "16384",
        ),
        ("/v1/sessions/cleo/messages", json!({"content": ""}), 400, "empty"),
        (
            "/v1/sessions/cleo/messages",
            json!({"content": "x", "content_type": "text/html"}),
            400,
            "content_type",
        ),
        ("/v1/sessions/cleo/messages", json!({"text": "x"}), 400, "content"),
        (
            "/v1/sessions/cleo/events",
            json!({"content_type": "text/plain"}),
            400,
            "content_type",
        ),
        (
            "/v1/sessions/cleo/events",
            json!({"content_type": "application/vnd.amazonaws.connect.event.message.read"}),
            400,
            "message",
        ),
        (
            "/v1/sessions/cleo/attachments",
            json!({"path": "/nonexistent/file.txt"}),
            400,
            "path",
        ),
        (
            "/v1/sessions/nobody/messages",
            json!({"content": "x"}),
            404,
            "nobody",
        ),
    ];
    for (path, body, want, mention) in cases {
        let resp = post(&d, path, body, None).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path}");
        let v: Value = resp.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(msg.contains(mention), "{path}: {msg}");
    }

    // Disconnect, then the chat is over for this participant.
    assert_eq!(
        post(&d, "/v1/sessions/cleo/disconnect", json!({}), None)
            .await
            .unwrap()
            .status(),
        200
    );
    eventually("ended", || {
        d.daemon.get("cleo").is_some_and(|v| v.state == "ended")
    })
    .await;
    let resp = post(&d, "/v1/sessions/cleo/messages", json!({"content": "late"}), None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_receipts_are_delayed_deduplicated_throttled_and_never_for_own_messages() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (auto, quiet) = (emu.create_chat("Auto"), emu.create_chat("Quiet"));
    let session = |name: &str, chat: &CreatedChat, receipts: bool| ConfiguredSession {
        name: name.into(),
        participant_token: chat.participant_token.clone(),
        history: History::All,
        labels: Default::default(),
        receipts,
    };
    let d = start_daemon(
        &emu,
        dir.path(),
        vec![session("auto", &auto, true), session("quiet", &quiet, false)],
    )
    .await;
    eventually("live", || {
        ["auto", "quiet"]
            .iter()
            .all(|n| d.daemon.get(n).is_some_and(|v| v.state == "live"))
    })
    .await;
    let events = || emu.stats().calls.get("SendEvent").copied().unwrap_or(0);

    // The first incoming message: a delivered receipt about 300 ms later.
    agent_says(&emu, &auto, "m1");
    agent_says(&emu, &quiet, "to the quiet one");
    eventually("the first receipt", || events() == 1).await;
    // Two more at once, and a message of our own: the window of 5 s holds them back.
    agent_says(&emu, &auto, "m2");
    let m3 = agent_says(&emu, &auto, "m3");
    let own = d
        .http
        .post(d.url("/v1/sessions/auto/messages"))
        .bearer_auth(BEARER)
        .json(&json!({"content": "my own"}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    // A read receipt for m3 through the API goes at once and makes its delivered one moot.
    let read = json!({"content_type": "application/vnd.amazonaws.connect.event.message.read",
                      "content": json!({"messageId": m3.id}).to_string()});
    let resp = d
        .http
        .post(d.url("/v1/sessions/auto/events"))
        .bearer_auth(BEARER)
        .json(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let again: Value = d
        .http
        .post(d.url("/v1/sessions/auto/events"))
        .bearer_auth(BEARER)
        .json(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["Duplicate"], true, "one read receipt per message");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        events(),
        2,
        "the first receipt and the read receipt; the rest wait for the window"
    );
    // After the window: m2's delivered receipt only (not m3's, not our own message's).
    eventually("the second batch", || events() == 3).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(events(), 3);
    d.stop().await;
}
