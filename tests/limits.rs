//! Greedy and hostile control clients against an in-process daemon (loopback TCP, bearer
//! secret): hostile bodies and broken HTTP get a clear answer and change nothing, the
//! connection, stream and session caps answer JSON errors with `Retry-After`, slow and
//! idle connections are closed, and descriptors come back to their level.
//!
//! The deadlines here are real time (a paused clock would race the real sockets), kept
//! to a second or two; every wait is bounded generously and nothing asserts speed.

mod common;

use common::daemon::*;
use common::*;
use connect_chatd::daemon::Capacity;
use connect_chatd::emulator::Timing;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The address of a daemon's `http://IP:PORT` base.
fn addr(d: &Running) -> String {
    d.base.trim_start_matches("http://").to_string()
}

/// A request head with the bearer secret.
fn head(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {BEARER}\r\n{extra}\r\n")
}

/// Reads until the peer closes or `until` is in what was read (bounded in time).
async fn read_until(conn: &mut TcpStream, until: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if !until.is_empty() && String::from_utf8_lossy(&got).contains(until) {
                return;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `request` on a fresh connection and returns the answer, read until the
/// connection closes or the JSON body's end.
async fn exchange(d: &Running, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr(d)).await.unwrap();
    let _ = conn.write_all(request).await;
    read_until(&mut conn, "}}").await
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// Open descriptors of this process.
fn fds() -> usize {
    let (others, journal) = descriptors(std::process::id());
    others + journal
}

async fn healthy(d: &Running) {
    let (code, body) = d.call(reqwest::Method::GET, "/healthz", None).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));
}

fn post_session(body: &[u8]) -> Vec<u8> {
    let mut r = head(
        "POST",
        "/v1/sessions",
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ),
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_clear_errors_and_change_nothing() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let capacity = Capacity {
        max_body: 1 << 20,
        ..Capacity::default()
    };
    let d = start_daemon_within(&emu, dir.path(), vec![], vec![], capacity).await;

    // 16 MiB announced and sent: refused once the limit is passed, not read into memory.
    let mut conn = TcpStream::connect(addr(&d)).await.unwrap();
    let big = 16 << 20;
    conn.write_all(
        head(
            "POST",
            "/v1/sessions",
            &format!("content-type: application/json\r\ncontent-length: {big}\r\n"),
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..big / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await;
    writer.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), 413, "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");

    // Nested 100 000 deep (within this daemon's 1 MiB body limit), as the whole body
    // and inside a field: a 400 naming what is wrong, no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let answer = exchange(&d, &post_session(deep.as_bytes())).await;
    assert_eq!(status(&answer), 400, "{answer}");
    let nested = format!(
        r#"{{"participant_token":"t","labels":{}1{}}}"#,
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    let answer = exchange(&d, &post_session(nested.as_bytes())).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains(r#""code":"bad_request""#), "{answer}");

    // Invalid UTF-8 inside a string.
    let answer = exchange(&d, &post_session(b"{\"participant_token\":\"\xff\xfe\"}")).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains(r#""code":"bad_request""#), "{answer}");

    let (code, list) = d.call(reqwest::Method::GET, "/v1/sessions", None).await;
    assert_eq!((code, list["sessions"].as_array().map(Vec::len)), (200, Some(0)));
    healthy(&d).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_http_is_answered_and_closed() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start_daemon(&emu, dir.path(), vec![]).await;

    // Not HTTP at all.
    let answer = exchange(&d, b"\x16\x03\x01\x02\x00hello there\r\n\r\n").await;
    assert_eq!(status(&answer), 400, "{answer}");
    // A 1 MiB request line: over the head bound, never buffered whole.
    let line = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(1 << 20));
    let answer = exchange(&d, line.as_bytes()).await;
    assert!([400, 414, 431].contains(&status(&answer)), "{answer}");
    // 10 000 headers.
    let many: String = (0..10_000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = exchange(&d, head("GET", "/v1/sessions", &many).as_bytes()).await;
    assert!([400, 431].contains(&status(&answer)), "{answer}");
    // Bad chunking.
    let mut bad = head(
        "POST",
        "/v1/sessions",
        "content-type: application/json\r\ntransfer-encoding: chunked\r\n",
    );
    bad.push_str("zz\r\n{}\r\n0\r\n\r\n");
    let answer = exchange(&d, bad.as_bytes()).await;
    assert_eq!(status(&answer), 400, "{answer}");

    healthy(&d).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_session_caps_answer_with_retry_after() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let capacity = Capacity {
        max_streams: 2,
        max_sessions: 1,
        ..Capacity::default()
    };
    let d = start_daemon_within(&emu, dir.path(), vec![], vec![], capacity).await;

    let open_stream = || async {
        let mut conn = TcpStream::connect(addr(&d)).await.unwrap();
        conn.write_all(head("GET", "/v1/items", "").as_bytes())
            .await
            .unwrap();
        let answer = read_until(&mut conn, "\r\n\r\n").await;
        (conn, answer)
    };
    let (first, a) = open_stream().await;
    assert_eq!(status(&a), 200, "{a}");
    let (_second, a) = open_stream().await;
    assert_eq!(status(&a), 200, "{a}");
    let mut third = TcpStream::connect(addr(&d)).await.unwrap();
    third
        .write_all(head("GET", "/v1/items", "").as_bytes())
        .await
        .unwrap();
    let a = read_until(&mut third, "}}").await;
    assert_eq!(status(&a), 429, "{a}");
    assert!(a.contains(r#""code":"too_many_streams""#), "{a}");
    assert!(a.to_ascii_lowercase().contains("retry-after: 5"), "{a}");
    // A stream that ends gives its place back.
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        let (conn, a) = open_stream().await;
        if status(&a) == 200 {
            reopened = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "the closed stream's place came back");

    // Sessions: one allowed, the second refused, the first again returned as held.
    let chats = [emu.create_chat("A"), emu.create_chat("B")];
    let body = |i: usize| serde_json::json!({"participant_token": chats[i].participant_token.expose()});
    let (code, _) = d.call(reqwest::Method::POST, "/v1/sessions", Some(body(0))).await;
    assert_eq!(code, 201);
    let resp = d
        .http
        .post(d.url("/v1/sessions"))
        .bearer_auth(BEARER)
        .json(&body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "30");
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "too_many_sessions");
    let (code, _) = d.call(reqwest::Method::POST, "/v1/sessions", Some(body(0))).await;
    assert_eq!(code, 200, "a held token is still answered with its session");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_idle_connections_are_capped_then_closed() {
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let capacity = Capacity {
        max_connections: 256,
        idle_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(1),
        ..Capacity::default()
    };
    let d = start_daemon_within(&emu, dir.path(), vec![], vec![], capacity).await;
    let before = fds();

    // 400 connections at once, each asking once and then idling: 256 are served, the
    // rest refused with a JSON 503 and closed.
    let mut conns = Vec::new();
    for _ in 0..400 {
        conns.push(TcpStream::connect(addr(&d)).await.unwrap());
    }
    let mut answers = Vec::new();
    for c in &mut conns {
        c.write_all(head("GET", "/healthz", "").as_bytes()).await.unwrap();
    }
    for c in &mut conns {
        answers.push(read_until(c, "}").await);
    }
    let served = answers.iter().filter(|a| status(a) == 200).count();
    let refused: Vec<_> = answers.iter().filter(|a| status(a) == 503).collect();
    assert_eq!((served, refused.len()), (256, 144));
    assert!(
        refused[0].contains(r#""code":"too_many_connections""#),
        "{}",
        refused[0]
    );
    assert!(
        refused[0].to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        refused[0]
    );

    // Idle past idle_timeout: the daemon closes every one of them.
    for c in &mut conns {
        let rest = read_until(c, "").await;
        assert!(rest.is_empty(), "nothing more than the close: {rest:?}");
    }
    drop(conns);
    eventually("descriptors back to their level", || fds() <= before).await;

    // A slowloris head, one byte at a time, is cut off after header_timeout.
    let mut slow = TcpStream::connect(addr(&d)).await.unwrap();
    let request = head("GET", "/healthz", "");
    let mut cut = false;
    for b in request.as_bytes() {
        if slow.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "a head trickling for longer than header_timeout is dropped");

    // A stream open for longer than idle_timeout is not idle: it still delivers.
    let chat = emu.create_chat("Streamed");
    let body = serde_json::json!({"participant_token": chat.participant_token.expose(), "name": "s"});
    let (code, _) = d.call(reqwest::Method::POST, "/v1/sessions", Some(body)).await;
    assert_eq!(code, 201);
    let mut stream = TcpStream::connect(addr(&d)).await.unwrap();
    stream
        .write_all(head("GET", "/v1/sessions/s/items", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(status(&read_until(&mut stream, "\r\n\r\n").await), 200);
    eventually("the session is live", || {
        d.daemon.get("s").is_some_and(|v| v.state == "live")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let item = agent_says(&emu, &chat, "still there?");
    let got = read_until(&mut stream, item.id.as_deref().unwrap()).await;
    assert!(got.contains("still there?"), "{got}");
    d.stop().await;
}

/// The `run` binary's resident memory, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A process's open descriptors: (the journal's files apart, the journal's files).
fn descriptors(pid: u32) -> (usize, usize) {
    let targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    let journal = targets.iter().filter(|t| t.contains("journal.sqlite3")).count();
    (targets.len() - journal, journal)
}

/// 20 SSE readers that never read while 20 000 Items arrive: the daemon's memory grows
/// by a bounded amount (each reader is fed from the journal at its own pace, never
/// buffered whole), stdout still gets every Item, and the descriptors come back once
/// the readers go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_never_read_cost_bounded_memory_and_slow_nothing() {
    const ITEMS: usize = 20_000;
    // `STALLED_READERS=0` gives the same run's baseline, for the README's figure.
    let readers: usize = std::env::var("STALLED_READERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let emu = emulator(Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("control.sock");
    let chat = emu.create_chat("Busy");
    let config = write_config(dir.path(), &emu, &[("busy", &chat)], "stdout = true\n");
    let stdout_path = dir.path().join("stdout.jsonl");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_connect-chatd"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    for _ in 0..800 {
        if sock.exists()
            && unix_get(&sock, "/v1/sessions/busy")
                .await
                .contains(r#""state":"live""#)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(unix_get(&sock, "/v1/sessions/busy")
        .await
        .contains(r#""state":"live""#));
    let (rss_before, before) = (rss_kib(pid), descriptors(pid));

    let mut stalled = Vec::new();
    for _ in 0..readers {
        let mut c = tokio::net::UnixStream::connect(&sock).await.unwrap();
        c.write_all(b"GET /v1/items?from=start HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        stalled.push(c); // and never read
    }
    let mut last = None;
    for i in 0..ITEMS {
        last = agent_says(&emu, &chat, &format!("message {i} {}", "x".repeat(100))).id;
        if i % 1000 == 999 {
            tokio::task::yield_now().await;
        }
    }
    let last = last.unwrap();
    let mut peak = 0;
    let mut delivered = false;
    for _ in 0..2400 {
        peak = peak.max(rss_kib(pid));
        if std::fs::read_to_string(&stdout_path).unwrap().contains(&last) {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(delivered, "stdout got every Item while the readers stalled");
    let lines = std::fs::read_to_string(&stdout_path).unwrap();
    let messages = lines.lines().filter(|l| l.contains("\"message ")).count();
    assert_eq!(messages, ITEMS, "each message once on stdout");
    let rss_after = rss_kib(pid);
    let growth = peak.max(rss_after).saturating_sub(rss_before);
    eprintln!(
        "{readers} stalled readers, {ITEMS} Items: RSS {rss_before} KiB -> peak {peak} KiB, after {rss_after} KiB \
         (growth {growth} KiB, {} KiB per reader)",
        growth / readers.max(1) as u64
    );
    // The Items alone are ~3.5 MiB of JSON a reader; buffering them per reader would
    // cost 70 MiB and more.
    assert!(growth < 48 * 1024, "RSS grew by {growth} KiB");

    drop(stalled);
    // Every reader's socket closes; the journal's read pool may keep a few connections
    // open (up to 4 idle, three descriptors each: database, WAL, shared memory) beside
    // what the journal held before.
    let journal_bound = before.1 + 4 * 3;
    let mut after = descriptors(pid);
    for _ in 0..400 {
        after = descriptors(pid);
        if after.0 <= before.0 && after.1 <= journal_bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!("descriptors (other, journal): {before:?} before the readers, {after:?} after");
    assert!(
        after.0 <= before.0 && after.1 <= journal_bound,
        "{before:?} -> {after:?}"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
