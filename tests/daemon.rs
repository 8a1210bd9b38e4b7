//! The daemon in-process against the emulator (real time, bounded waits): sessions from
//! the API and the configuration, isolation of a bad token, the control API's errors,
//! the journal holding every Item once in order, SSE streams resumed with
//! `Last-Event-ID` (also across a restart of the daemon), and the stdout consumer line.

mod common;

use common::daemon::*;
use common::*;
use connect_chatd::daemon::run::ConfiguredSession;
use connect_chatd::daemon::Daemon;
use connect_chatd::emulator::Timing;
use connect_chatd::journal::Journal;
use connect_chatd::secret::Secret;
use connect_chatd::session::History;
use serde_json::{json, Value};
use std::time::Duration;

fn journalled_ids(journal: &Journal, session: &str) -> Vec<String> {
    journal
        .entries_after(None, Some(session), 100_000)
        .unwrap()
        .into_iter()
        .filter_map(|e| e.item_id)
        .collect()
}

fn state_of(d: &Daemon, name: &str) -> String {
    d.get(name).map(|v| v.state.to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_from_the_api_once_per_token_with_clear_errors() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start_daemon(&emu, dir.path(), vec![]).await;
    let chat = emu.create_chat("Cleo");
    agent_says(&emu, &chat, "hello");
    let body = json!({"participant_token": chat.participant_token.expose(), "name": "cleo", "labels": {"crm": "42"}});
    let (status, created) = d
        .call(reqwest::Method::POST, "/v1/sessions", Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "cleo");
    assert_eq!(created["labels"]["crm"], "42");
    assert!(
        !created.to_string().contains(chat.participant_token.expose()),
        "no token in answers"
    );
    // The same token again (under another name even): the same session.
    let again = json!({"participant_token": chat.participant_token.expose(), "name": "other"});
    let (status, same) = d.call(reqwest::Method::POST, "/v1/sessions", Some(again)).await;
    assert_eq!((status, same["name"].clone()), (200, json!("cleo")));
    eventually("live", || state_of(&d.daemon, "cleo") == "live").await;
    let (status, list) = d.call(reqwest::Method::GET, "/v1/sessions", None).await;
    assert_eq!(status, 200);
    assert_eq!(d.call(reqwest::Method::GET, "/healthz", None).await.0, 200);
    assert_eq!(d.call(reqwest::Method::GET, "/readyz", None).await.0, 200);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    let (_, one) = d.call(reqwest::Method::GET, "/v1/sessions/cleo", None).await;
    for key in [
        "name",
        "state",
        "contact_id",
        "participant_id",
        "labels",
        "counters",
        "last_item_at",
        "last_error",
    ] {
        assert!(one.get(key).is_some(), "{key} in {one}");
    }
    assert_eq!(one["state"], "live");
    assert_eq!(one["contact_id"], chat.contact_id.as_str());
    for key in ["delivered", "backfilled", "duplicates", "reconnects", "renewals"] {
        assert!(one["counters"][key].is_u64(), "{key} in {one}");
    }

    // Errors, each with the one JSON shape.
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            d.http
                .post(d.url("/v1/sessions"))
                .bearer_auth(BEARER)
                .json(&json!({"participant_token": "t", "colour": "red"})),
            400,
            "colour",
        ),
        (
            d.http
                .post(d.url("/v1/sessions"))
                .bearer_auth(BEARER)
                .json(&json!({"participant_token": "t", "name": "bad name"})),
            400,
            "name",
        ),
        (
            d.http
                .post(d.url("/v1/sessions"))
                .bearer_auth(BEARER)
                .json(&json!({"participant_token": "t", "history": "some"})),
            400,
            "history",
        ),
        (
            d.http
                .post(d.url("/v1/sessions"))
                .bearer_auth(BEARER)
                .json(&json!({"name": "x"})),
            400,
            "participant_token",
        ),
        (
            d.http
                .post(d.url("/v1/sessions"))
                .json(&json!({"participant_token": "t"})),
            401,
            "bearer",
        ),
        (
            d.http
                .post(d.url("/v1/sessions"))
                .bearer_auth("wrong")
                .json(&json!({"participant_token": "t"})),
            401,
            "bearer",
        ),
        (
            d.http.get(d.url("/v1/sessions/nobody")).bearer_auth(BEARER),
            404,
            "nobody",
        ),
        (
            d.http.get(d.url("/v1/sessions/nobody/items")).bearer_auth(BEARER),
            404,
            "nobody",
        ),
        (
            d.http.put(d.url("/v1/sessions")).bearer_auth(BEARER),
            405,
            "method",
        ),
        (
            d.http
                .post(d.url("/v1/sessions"))
                .bearer_auth(BEARER)
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "json",
        ),
        (
            d.http
                .post(d.url("/v1/sessions"))
                .bearer_auth(BEARER)
                .header("content-type", "application/json")
                .body(vec![b' '; 100_000]),
            413,
            "bytes",
        ),
        (
            d.http
                .post(d.url("/v1/sessions"))
                .bearer_auth(BEARER)
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "invalid",
        ),
    ];
    for (req, want, mention) in cases {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
        assert_eq!(status, want, "{body}");
        let msg = body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(msg.contains(mention), "{want}: {msg:?} should mention {mention}");
    }

    // Removal: the socket is closed, the session leaves the registry, 404 after.
    let (status, _) = d.call(reqwest::Method::DELETE, "/v1/sessions/cleo", None).await;
    assert_eq!(status, 204);
    let (status, _) = d.call(reqwest::Method::GET, "/v1/sessions/cleo", None).await;
    assert_eq!(status, 404);
    eventually("socket closed", || {
        emu.stats()
            .open_sockets
            .get(&chat.participant_id)
            .copied()
            .unwrap_or(0)
            == 0
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_ends_its_own_session_and_no_other() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let good = emu.create_chat("Cleo");
    let sessions = vec![
        ConfiguredSession {
            name: "bad".into(),
            participant_token: Secret::new("not-a-token"),
            history: History::All,
            labels: Default::default(),
            receipts: false,
        },
        ConfiguredSession {
            name: "good".into(),
            participant_token: good.participant_token.clone(),
            history: History::All,
            labels: Default::default(),
            receipts: false,
        },
    ];
    let d = start_daemon(&emu, dir.path(), sessions).await;
    eventually("bad fails", || state_of(&d.daemon, "bad") == "failed").await;
    eventually("good live", || state_of(&d.daemon, "good") == "live").await;
    let bad = d.daemon.get("bad").unwrap();
    assert!(
        bad.last_error.as_deref().unwrap_or("").contains("token_rejected"),
        "{bad:?}"
    );
    let m = agent_says(&emu, &good, "still working");
    let journal = d.daemon.journal().clone();
    eventually("the good chat's Item journalled", || {
        journalled_ids(&journal, "good").contains(m.id.as_ref().unwrap())
    })
    .await;
    assert_eq!(state_of(&d.daemon, "good"), "live");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_and_a_resumed_sse_reader_get_every_item_once_across_a_restart() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let chat = emu.create_chat("Cleo");
    for i in 0..150 {
        agent_says(&emu, &chat, &format!("before {i}"));
    }
    let sessions = vec![ConfiguredSession {
        name: "cleo".into(),
        participant_token: chat.participant_token.clone(),
        history: History::All,
        labels: Default::default(),
        receipts: false,
    }];
    let d = start_daemon(&emu, dir.path(), sessions.clone()).await;
    eventually("live", || state_of(&d.daemon, "cleo") == "live").await;

    // An SSE reader from the start: reads some events, then goes away.
    let mut seen: Vec<String> = Vec::new();
    let last_id = read_sse(&d, "/v1/sessions/cleo/items?from=start", None, 100, &mut seen).await;
    for i in 0..50 {
        agent_says(&emu, &chat, &format!("during {i}"));
    }
    d.stop().await;
    for i in 0..50 {
        agent_says(&emu, &chat, &format!("while stopped {i}"));
    }

    // A new daemon on the same journal resumes the session after its last Item.
    let d = start_daemon(&emu, dir.path(), sessions).await;
    eventually("live again", || state_of(&d.daemon, "cleo") == "live").await;
    let end = emu.end_chat(&chat.contact_id).unwrap();
    eventually("ended", || state_of(&d.daemon, "cleo") == "ended").await;
    let transcript = ids(&emu.transcript(&chat.contact_id).unwrap());
    let journal = d.daemon.journal().clone();
    assert_same_ids(&journalled_ids(&journal, "cleo"), &transcript, "journal");

    // The reader resumes with Last-Event-ID, across the restart.
    let remaining = transcript.len() - seen.len();
    read_sse(
        &d,
        "/v1/sessions/cleo/items",
        Some(&last_id),
        remaining,
        &mut seen,
    )
    .await;
    assert_same_ids(&seen, &transcript, "SSE");
    assert_eq!(seen.last(), end.id.as_ref());

    // The all-sessions stream names each Item NAME/ID and wraps it.
    let mut all = Vec::new();
    read_sse(&d, "/v1/items?from=start", None, 3, &mut all).await;
    assert_eq!(all[0], format!("cleo/{}", transcript[0]));
    d.stop().await;
}

/// Reads `n` `event: item` events; returns the last `id:`. Data is checked to be the
/// Item whose Id the event carries.
async fn read_sse(
    d: &Running,
    path: &str,
    last_event_id: Option<&str>,
    n: usize,
    seen: &mut Vec<String>,
) -> String {
    use futures_util::StreamExt;
    let mut req = d.http.get(d.url(path)).bearer_auth(BEARER);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut last = String::new();
    let mut got = 0;
    let read = async {
        while got < n {
            let chunk = body.next().await.expect("the stream stays open").unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                let mut kind = None;
                for line in event.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = Some(v.trim().to_string());
                    }
                }
                let (Some(id), Some(data)) = (id, data) else {
                    continue;
                };
                assert_eq!(kind.as_deref(), Some("item"));
                let v: Value = serde_json::from_str(&data).unwrap();
                let item_id = v
                    .get("item")
                    .map(|i| &i["Id"])
                    .unwrap_or(&v["Id"])
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(id.ends_with(&item_id), "{id} vs {item_id}");
                seen.push(id.clone());
                last = id;
                got += 1;
                if got == n {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("events arrive");
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_configured_sessions_and_drops_those_no_longer_configured() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (emu.create_chat("One"), emu.create_chat("Two"));
    let configured = |name: &str, chat: &connect_chatd::emulator::CreatedChat| ConfiguredSession {
        name: name.into(),
        participant_token: chat.participant_token.clone(),
        history: History::All,
        labels: Default::default(),
        receipts: false,
    };
    let d = start_daemon(
        &emu,
        dir.path(),
        vec![configured("one", &one), configured("two", &two)],
    )
    .await;
    eventually("both live", || {
        state_of(&d.daemon, "one") == "live" && state_of(&d.daemon, "two") == "live"
    })
    .await;
    d.stop().await;
    let d = start_daemon(&emu, dir.path(), vec![configured("one", &one)]).await;
    eventually("one live", || state_of(&d.daemon, "one") == "live").await;
    assert_eq!(
        d.call(reqwest::Method::GET, "/v1/sessions/two", None).await.0,
        404
    );
    assert_eq!(
        emu.stats()
            .open_sockets
            .get(&two.participant_id)
            .copied()
            .unwrap_or(0),
        0
    );
    d.stop().await;
}

/// Polls `/readyz` (25 ms apart, `tries` times) until it answers `want`: its body.
async fn readyz_until(d: &Running, want: u16, tries: usize) -> Option<Value> {
    for _ in 0..tries {
        let (code, body) = d.call(reqwest::Method::GET, "/readyz", None).await;
        if code == want {
            return Some(body);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// `/readyz`: 503 until the configured session has subscribed, 200 once it is live,
/// 503 while it reconnects for longer than the grace, 200 again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_sessions() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Ready");
    let dir = tempfile::tempdir().unwrap();
    let session = ConfiguredSession {
        name: "watched".into(),
        participant_token: chat.participant_token.clone(),
        history: History::All,
        labels: Default::default(),
        receipts: false,
    };
    let d = start_daemon(&emu, dir.path(), vec![session]).await;
    d.daemon.set_readyz_grace(Duration::from_millis(300));
    assert!(
        readyz_until(&d, 200, 400).await.is_some(),
        "ready once the session has subscribed"
    );
    eventually("the session is live", || state_of(&d.daemon, "watched") == "live").await;

    // The socket drops and reconnecting fails for a while.
    emu.inject_fault(connect_chatd::emulator::FaultSpec::fail(
        "CreateParticipantConnection",
        500,
        4,
    ));
    emu.drop_sockets(Some(&chat.participant_id));
    let body = readyz_until(&d, 503, 400)
        .await
        .expect("503 while the session is not live beyond the grace");
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 session(s) not live"),
        "{body}"
    );
    assert!(
        readyz_until(&d, 200, 1200).await.is_some(),
        "ready again once the session is back"
    );
    eventually("the session is live again", || {
        state_of(&d.daemon, "watched") == "live"
    })
    .await;
    d.stop().await;
}
