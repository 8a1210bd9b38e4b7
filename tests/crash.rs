//! Crash consistency under random kills: the `connect-chatd run` binary, with four busy
//! chats on an in-process emulator, is SIGKILLed at 30 seeded random moments — during
//! start-up, while sessions backfill, right after bursts (while the journal commits and
//! the SSE stream and stdout are writing) — and restarted each time. After every kill
//! the database passes `PRAGMA integrity_check` and each session's journal is a prefix
//! of its transcript. At the end the journal, stdout (appended to a regular file across
//! all runs) and an SSE reader of `GET /v1/items` that resumed with `Last-Event-ID`
//! across every restart each hold every Item of the transcripts exactly once, in order.
//!
//! The kill schedule comes from `CRASH_SEED` (printed at the start); the moments are
//! real time, so a seed replays the schedule, not the daemon's exact state at each kill.
//! `CRASH_KILLS` changes the number of kills (30).
//!
//! ```sh
//! CRASH_SEED=7 CRASH_KILLS=200 cargo test --release --test crash -- --nocapture
//! ```

mod common;

use common::*;
use connect_chatd::api::model::Item;
use connect_chatd::emulator::{CreatedChat, Emulator, Timing};
use connect_chatd::journal::{Journal, JournalSettings};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_connect-chatd");
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A configuration with these (name, chat) sessions and `stdout = true`; returns its path.
fn write_config(dir: &Path, emu: &Emulator, chats: &[CreatedChat]) -> PathBuf {
    let sessions: Vec<(&str, &CreatedChat)> = NAMES.iter().copied().zip(chats).collect();
    common::daemon::write_config(dir, emu, &sessions, "stdout = true\n")
}

fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// The daemon, its stdout appended to `stdout.jsonl` and its log to `daemon.log`.
fn start(dir: &Path, config: &Path, run: usize) -> Child {
    use std::io::Write;
    let mut log = append(&dir.join("daemon.log"));
    writeln!(log, "===== run {run}").unwrap();
    Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env_remove("CONNECT_CHATD_CONFIG")
        .env_remove("CONNECT_CHATD_CONTROL")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env(
            "RUST_LOG",
            std::env::var("CRASH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(append(&dir.join("stdout.jsonl"))))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("the daemon starts")
}

/// Waits (bounded) until the control socket accepts a connection.
async fn until_listening(sock: &Path) {
    for _ in 0..3000 {
        if tokio::net::UnixStream::connect(sock).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the daemon never listened on {}", sock.display());
}

/// What the SSE reader got: complete events (`id`, `data`), and the answers other than
/// 200 it was given (none expected but refused connections while the daemon is down).
#[derive(Default)]
struct Sse {
    events: Vec<(String, String)>,
    refused: Vec<String>,
    connections: usize,
}

/// Follows `GET /v1/items` over the unix socket, from the start, then after every drop
/// (a kill) again with `Last-Event-ID` set to the last complete event's id.
fn follow_sse(sock: PathBuf, got: Arc<Mutex<Sse>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let last = got.lock().unwrap().events.last().map(|e| e.0.clone());
            let _ = read_sse(&sock, last, &got).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

async fn read_sse(sock: &Path, last: Option<String>, got: &Mutex<Sse>) -> Result<(), String> {
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::get(if last.is_some() {
        "/v1/items"
    } else {
        "/v1/items?from=start"
    })
    .header("host", "connect-chatd");
    if let Some(id) = &last {
        req = req.header("last-event-id", id.as_str());
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if status != 200 {
        let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = format!("{status} after {last:?}: {}", String::from_utf8_lossy(&text));
        got.lock().unwrap().refused.push(text.clone());
        return Err(text);
    }
    got.lock().unwrap().connections += 1;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(chunk) = frame.data_ref() else { continue };
        buf.extend_from_slice(chunk);
        // Only complete events (ended by a blank line) count.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let block = String::from_utf8(block).map_err(|e| e.to_string())?;
            let (mut id, mut data) = (None, Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                }
            }
            if let Some(id) = id {
                got.lock().unwrap().events.push((id, data.join("\n")));
            }
        }
    }
    Ok(())
}

/// `PRAGMA integrity_check` of the journal (after a kill, before anything reopens it),
/// and each session's persisted Items in journal order. `None` before the first run
/// created the file.
fn check_database(path: &Path) -> Option<HashMap<String, Vec<String>>> {
    use rusqlite::OpenFlags;
    if !path.exists() {
        return None;
    }
    let db = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    let rows: Vec<String> = db
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, ["ok"], "PRAGMA integrity_check");
    let has_items: bool = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'items'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        > 0;
    let mut per: HashMap<String, Vec<String>> = HashMap::new();
    if has_items {
        let mut q = db
            .prepare(
                "SELECT session, item_id FROM items WHERE ephemeral = 0 AND item_id IS NOT NULL ORDER BY seq",
            )
            .unwrap();
        let rows = q
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap();
        for row in rows {
            let (session, id) = row.unwrap();
            per.entry(session).or_default().push(id);
        }
    }
    Some(per)
}

/// Splits wrapped lines (`{"session": NAME, "item": {…}}`) into each session's
/// persisted Item Ids, and counts repeats of any `NAME/ID` (ephemeral ones too).
fn per_session<'a>(
    wrapped: impl Iterator<Item = &'a str>,
    what: &str,
) -> (HashMap<String, Vec<String>>, usize, usize) {
    let mut per: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen = HashSet::new();
    let (mut all, mut repeats) = (0, 0);
    for text in wrapped {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text:?}"));
        let session = v["session"].as_str().unwrap().to_string();
        let item: Item = serde_json::from_value(v["item"].clone()).unwrap();
        all += 1;
        let Some(id) = item.id.clone() else { continue };
        if !seen.insert(format!("{session}/{id}")) {
            repeats += 1;
        }
        if !item.is_ephemeral() {
            per.entry(session).or_default().push(id);
        }
    }
    (per, all, repeats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_lose_and_repeat_nothing() {
    let seed = env_or("CRASH_SEED", 16);
    let kills = env_or("CRASH_KILLS", 30) as usize;
    eprintln!("crash: CRASH_SEED={seed} CRASH_KILLS={kills}");
    let began = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let emu = Arc::new(emulator(Timing::default()).await);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let chats: Vec<CreatedChat> = NAMES
        .iter()
        .map(|n| emu.create_chat(&format!("customer-{n}")))
        .collect();
    let config = write_config(dir, &emu, &chats);
    let sock = dir.join("control.sock");
    let db = dir.join("state").join(connect_chatd::journal::FILE_NAME);

    // An agent on every chat, all the time: one message every 1–8 ms on a random chat,
    // now and then a burst of 20–60.
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (emu, chats, on) = (emu.clone(), chats.clone(), publishing.clone());
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15);
        tokio::spawn(async move {
            let mut n = 0u64;
            while on.load(Ordering::Relaxed) {
                let burst = if rng.u8(..50) == 0 { rng.usize(20..60) } else { 1 };
                for _ in 0..burst {
                    agent_says(&emu, &chats[rng.usize(..chats.len())], &format!("m{n}"));
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(rng.u64(1..8))).await;
            }
            n
        })
    };
    let sse = Arc::new(Mutex::new(Sse::default()));
    let reader = follow_sse(sock.clone(), sse.clone());
    let transcript = |chat: &CreatedChat| persisted(&emu.transcript(&chat.contact_id).unwrap());

    let mut bursts = 0u64;
    for run in 0..kills {
        let mut daemon = start(dir, &config, run);
        let how = rng.u8(..8);
        match how {
            // At any moment of start-up: opening the journal, resuming, connecting.
            0 => tokio::time::sleep(Duration::from_millis(rng.u64(20..400))).await,
            // Right after a burst on every chat: mid-commit, mid-stream, mid-write.
            1..=3 => {
                until_listening(&sock).await;
                tokio::time::sleep(Duration::from_millis(rng.u64(50..400))).await;
                let n = rng.usize(50..300);
                for i in 0..n {
                    agent_says(&emu, &chats[i % chats.len()], &format!("burst{run}-{i}"));
                }
                bursts += n as u64;
                tokio::time::sleep(Duration::from_millis(rng.u64(0..40))).await;
            }
            // Under the steady traffic.
            _ => {
                until_listening(&sock).await;
                tokio::time::sleep(Duration::from_millis(rng.u64(20..400))).await;
            }
        }
        daemon.start_kill().unwrap(); // SIGKILL
        let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
            .await
            .expect("a killed daemon exits")
            .unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "run {run}: killed, not exited ({status})"
        );
        if let Some(journalled) = check_database(&db) {
            for (name, chat) in NAMES.iter().zip(&chats) {
                let got = journalled.get(*name).cloned().unwrap_or_default();
                let truth = transcript(chat);
                assert!(
                    got.len() <= truth.len(),
                    "run {run}: {name} journalled more than the transcript"
                );
                assert_same_ids(
                    &got,
                    &truth[..got.len()],
                    &format!("run {run}: journal of {name}"),
                );
            }
        }
    }

    // The last run: no more messages; it catches up and is stopped cleanly.
    publishing.store(false, Ordering::Relaxed);
    let published = publisher.await.unwrap() + bursts;
    let mut daemon = start(dir, &config, kills);
    let truth: HashMap<&str, Vec<String>> = NAMES.iter().copied().zip(chats.iter().map(transcript)).collect();
    let total: usize = truth.values().map(Vec::len).sum();
    let stdout_text = || std::fs::read_to_string(dir.join("stdout.jsonl")).unwrap_or_default();
    let mut settled = false;
    for _ in 0..1200 {
        let on_stdout = per_session(stdout_text().lines(), "stdout").0;
        let sse_count = {
            let got = sse.lock().unwrap();
            per_session(got.events.iter().map(|e| e.1.as_str()), "sse").0
        };
        let count = |m: &HashMap<String, Vec<String>>| m.values().map(Vec::len).sum::<usize>();
        if count(&on_stdout) >= total && count(&sse_count) >= total {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        settled,
        "stdout and the SSE reader never caught up (see {})",
        dir.display()
    );
    common::daemon::terminate(&mut daemon, Duration::from_secs(30)).await;
    reader.abort();
    check_database(&db).expect("the journal exists");

    // The journal.
    let journal = Journal::open(&dir.join("state"), JournalSettings::default()).unwrap();
    for (name, ids) in &truth {
        let journalled: Vec<String> = journal
            .entries_after(None, Some(name), 10_000_000)
            .unwrap()
            .into_iter()
            .filter(|e| !serde_json::from_str::<Item>(&e.json).unwrap().is_ephemeral())
            .filter_map(|e| e.item_id)
            .collect();
        assert_same_ids(&journalled, ids, &format!("journal of {name}"));
    }
    // stdout, across all runs: whole lines only, each Item once.
    let text = stdout_text();
    assert!(text.ends_with('\n'), "stdout ends with a whole line");
    let (on_stdout, stdout_lines, stdout_repeats) = per_session(text.lines(), "stdout");
    // The SSE reader, across all its reconnections.
    let got = std::mem::take(&mut *sse.lock().unwrap());
    for (id, data) in &got.events {
        let v: Value = serde_json::from_str(data).unwrap();
        let named = format!(
            "{}/{}",
            v["session"].as_str().unwrap(),
            v["item"]["Id"].as_str().unwrap_or("")
        );
        assert_eq!(id, &named, "an event's id is NAME/ID");
    }
    let (on_sse, sse_events, sse_repeats) = per_session(got.events.iter().map(|e| e.1.as_str()), "sse");
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let reconciled = log.lines().filter(|l| l.contains("stdout already held")).count();
    let torn = log
        .lines()
        .filter(|l| l.contains("stdout already held") && l.contains("completed_torn_line=true"))
        .count();
    eprintln!("crash: {reconciled} restarts found unsaved lines at the end of stdout ({torn} a torn line)");
    eprintln!(
        "crash: seed {seed}: {kills} SIGKILLs survived, {total} transcript Items ({published} published) \
         checked in the journal, {stdout_lines} stdout lines ({stdout_repeats} repeated), {sse_events} SSE events \
         over {} connections ({sse_repeats} repeated), in {:.1} s",
        got.connections,
        began.elapsed().as_secs_f64()
    );
    assert!(
        got.refused.is_empty(),
        "the SSE stream refused a resume: {:?}",
        got.refused
    );
    for (name, ids) in &truth {
        let none = Vec::new();
        assert_same_ids(
            on_stdout.get(*name).unwrap_or(&none),
            ids,
            &format!("stdout of {name}"),
        );
        assert_same_ids(on_sse.get(*name).unwrap_or(&none), ids, &format!("SSE of {name}"));
    }
    assert_eq!(stdout_repeats, 0, "lines repeated on stdout");
    assert_eq!(sse_repeats, 0, "events repeated on the SSE stream");
    assert!(total > 1000, "enough traffic: {total} Items");
}
