//! Speed and memory of the client, each as a ratio against a baseline measured in the
//! same run (so a slow or busy machine changes both sides alike):
//!
//! 1. frame decoding: `frame::decode` (one pass over the frame, the Item decoded from
//!    the unescaped content) against parsing both layers into `serde_json::Value`;
//! 2. end-to-end throughput in process: emulator → websocket → socket task →
//!    supervisor (dedup, cursor) → Item channel, against a raw tokio-tungstenite reader
//!    that only counts the same frames;
//! 3. bursts: 100 000 Items published as fast as the emulator can into the
//!    `connect-chatd tail` binary writing into a pipe, against the official web client
//!    (amazon-connect-chatjs in Node, `interop/chatjs/burst.js`) and a raw reader on the
//!    same emulator, rounds alternating; also the tail's CPU time per Item, a reader that
//!    pauses 20 s halfway through a burst (reconnects, losses), and the time from a
//!    dropped socket to the first live Item after the backfilled gap;
//! 4. memory per idle subscribed session, against a raw tokio-tungstenite connection
//!    with the default configuration.
//!
//! Run: `cargo bench --bench pipeline` (about two minutes; `-- decode` or `-- burst`
//! for one part). The chatjs baseline needs `npm ci` in `interop/chatjs` (which
//! `bash interop/run` does); without it that row is skipped.

mod common;

use common::{median, publish, raw_rate};
use connect_chatd::api::model::ParticipantRole;
use connect_chatd::api::{ApiClient, Endpoint};
use connect_chatd::emulator::{CreatedChat, Emulator, EmulatorConfig};
use connect_chatd::session::{SessionState, Supervisor, SupervisorConfig};
use connect_chatd::socket::frame;
use futures_util::{SinkExt, StreamExt};
use std::hint::black_box;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn sample_frame() -> String {
    let item = serde_json::json!({
        "AbsoluteTime": "2026-11-25T12:00:00.123Z", "Content": "Hello, how can I help you today? ".repeat(3),
        "ContentType": "text/plain", "Id": "4d3c2b1a-0000-4000-8000-123456789abc", "Type": "MESSAGE",
        "ParticipantId": "5e4d3c2b-0000-4000-8000-123456789abc", "DisplayName": "Ana",
        "ParticipantRole": "AGENT", "ContactId": "6f5e4d3c-0000-4000-8000-123456789abc",
        "InitialContactId": "6f5e4d3c-0000-4000-8000-123456789abc"
    });
    serde_json::json!({"topic": "aws/chat", "contentType": "application/json", "content": item.to_string()})
        .to_string()
}

/// Rounds per measurement; baseline and ours alternate so that a change in machine load
/// touches both, and the median is reported.
const ROUNDS: usize = 5;

fn bench_decode() {
    let text = sample_frame();
    let n = 100_000;
    let time = |f: &dyn Fn(&str)| {
        let t = Instant::now();
        for _ in 0..n {
            f(black_box(&text));
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let (mut baseline, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        baseline.push(time(&|t| {
            let outer: serde_json::Value = serde_json::from_str(t).unwrap();
            let inner: serde_json::Value = serde_json::from_str(outer["content"].as_str().unwrap()).unwrap();
            black_box(inner);
        }));
        ours.push(time(&|t| {
            black_box(frame::decode(t).unwrap());
        }));
    }
    let (baseline, ours) = (median(baseline), median(ours));
    println!(
        "decode: frame::decode {ours:.0} ns/frame, two serde_json::Value parses {baseline:.0} ns/frame: {:.2}x the baseline's speed",
        baseline / ours
    );
}

async fn chat_with_url(emu: &Emulator) -> (CreatedChat, String) {
    let chat = emu.create_chat("Bench");
    let url = common::websocket_url(&common::api(&emu.endpoint()), &chat.participant_token).await;
    (chat, url)
}

/// Items/s of a full session (history none, so only the published Items count).
async fn session_rate(emu: &Emulator, api: &ApiClient, n: usize) -> f64 {
    let chat = emu.create_chat("Bench");
    let cfg = SupervisorConfig {
        history: connect_chatd::session::History::None,
        ..Default::default()
    };
    let mut h = Supervisor::spawn(api.clone(), chat.participant_token.clone(), cfg);
    h.state.wait_for(|s| *s == SessionState::Live).await.unwrap();
    let t = Instant::now();
    let (mut items, session) = h.into_parts();
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            items.recv().await.unwrap();
        }
    });
    publish(emu, &chat, n).await;
    reader.await.unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let stats = session.stats.snapshot();
    assert_eq!(
        stats.reconnects, 0,
        "the measurement must not include a reconnect"
    );
    session.shutdown();
    let _ = session.join().await;
    rate
}

/// What one burst into `connect-chatd tail` → pipe did.
struct Burst {
    rate: f64,
    /// Websocket upgrades beyond the first: reconnects.
    reconnects: u64,
    duplicates: usize,
    out_of_order: usize,
    missing: usize,
    /// CPU time of the `tail` process (user + system) per Item, in microseconds.
    cpu_us_per_item: f64,
}

/// User + system CPU seconds a process has used so far (Linux `/proc`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    ticks as f64 / 100.0
}

/// Reads a child's stdout on a thread of its own, keeping every byte and counting lines;
/// `wait_lines(n)` returns when `n` lines have arrived, or after `limit`.
/// Lines counted so far and every byte read, with a condition to wait on.
type Lines = Arc<(Mutex<(usize, Vec<u8>)>, Condvar)>;

struct LineReader {
    lines: Lines,
    pause: Arc<Mutex<Option<(usize, Duration)>>>,
}

impl LineReader {
    fn spawn(mut out: impl std::io::Read + Send + 'static) -> LineReader {
        let lines = std::sync::Arc::new((
            std::sync::Mutex::new((0usize, Vec::new())),
            std::sync::Condvar::new(),
        ));
        let pause: std::sync::Arc<std::sync::Mutex<Option<(usize, Duration)>>> = Default::default();
        let (l, p) = (lines.clone(), pause.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let count = {
                    let (m, cv) = &*l;
                    let mut g = m.lock().unwrap();
                    g.0 += buf[..n].iter().filter(|b| **b == b'\n').count();
                    g.1.extend_from_slice(&buf[..n]);
                    cv.notify_all();
                    g.0
                };
                let due = p.lock().unwrap().filter(|(at, _)| count >= *at);
                if let Some((_, d)) = due {
                    *p.lock().unwrap() = None;
                    std::thread::sleep(d);
                }
            }
        });
        LineReader { lines, pause }
    }

    /// After `after` lines, stop reading for `pause` (a slow reader).
    fn pause_after(&self, after: usize, pause: Duration) {
        *self.pause.lock().unwrap() = Some((after, pause));
    }

    fn wait_lines(&self, n: usize, limit: Duration) -> bool {
        let (m, cv) = &*self.lines;
        let g = m.lock().unwrap();
        let (g, timeout) = cv.wait_timeout_while(g, limit, |g| g.0 < n).unwrap();
        drop(g);
        !timeout.timed_out()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.0.lock().unwrap().1).into_owned()
    }
}

/// Duplicates, Items out of transcript order and Items missing in `tail`'s output,
/// against the emulator's transcript.
fn check_output(out: &str, transcript: &[connect_chatd::api::model::Item]) -> (usize, usize, usize) {
    let position: std::collections::HashMap<&str, usize> = transcript
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.id.as_deref().map(|id| (id, i)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let (mut duplicates, mut out_of_order, mut last) = (0, 0, None);
    for line in out.lines() {
        let item: connect_chatd::api::model::Item =
            serde_json::from_str(line).expect("tail prints JSON lines");
        let Some(id) = item.id else { continue };
        if !seen.insert(id.clone()) {
            duplicates += 1;
            continue;
        }
        if let Some(&p) = position.get(id.as_str()) {
            if last.is_some_and(|l| p < l) {
                out_of_order += 1;
            }
            last = Some(p);
        }
    }
    let missing = position.keys().filter(|id| !seen.contains(**id)).count();
    (duplicates, out_of_order, missing)
}

/// `n` Items published as fast as the emulator can to a `connect-chatd tail --history
/// none` process whose stdout is a pipe read by a thread here; the rate is measured from
/// the first publish to the last line read. With `pause`, the reader stops for that long
/// after half the burst.
async fn tail_burst(emu: &Emulator, n: usize, pause: Option<Duration>) -> Burst {
    let chat = emu.create_chat("Bench");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_connect-chatd"))
        .args([
            "tail",
            "--endpoint",
            &emu.endpoint(),
            "--history",
            "all",
            "--log-level",
            "warn",
        ])
        .env("CONNECT_PARTICIPANT_TOKEN", chat.participant_token.expose())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let reader = Arc::new(LineReader::spawn(child.stdout.take().unwrap()));
    // The emulator runs on this thread: wait for lines on another.
    let wait_lines = |n: usize, limit: Duration| {
        let r = reader.clone();
        async move {
            tokio::task::spawn_blocking(move || r.wait_lines(n, limit))
                .await
                .unwrap()
        }
    };
    // Live once the first Item (the chat's start) is printed.
    emu.publish_message(&chat.contact_id, "Ana", ParticipantRole::Agent, "warm-up")
        .unwrap();
    assert!(
        wait_lines(1, Duration::from_secs(20)).await,
        "tail printed nothing"
    );
    let before = emu.transcript(&chat.contact_id).unwrap().len();
    let cpu_before = cpu_seconds(child.id());
    if let Some(p) = pause {
        reader.pause_after(before + n / 2, p);
    }
    let t = Instant::now();
    publish(emu, &chat, n).await;
    let wait = pause.unwrap_or_default() + Duration::from_secs(120);
    let complete = wait_lines(before + n, wait).await;
    let elapsed = t.elapsed();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let _ = child.kill();
    let _ = child.wait();
    let transcript = emu.transcript(&chat.contact_id).unwrap();
    let (duplicates, out_of_order, missing) = check_output(&reader.text(), &transcript);
    assert!(
        complete || missing > 0,
        "incomplete output must show as missing Items"
    );
    let upgrades = emu
        .stats()
        .upgrades
        .get(&chat.participant_id)
        .copied()
        .unwrap_or(0);
    Burst {
        rate: n as f64 / elapsed.as_secs_f64(),
        reconnects: upgrades.saturating_sub(1),
        duplicates,
        out_of_order,
        missing,
        cpu_us_per_item: cpu * 1e6 / n as f64,
    }
}

/// The official web client, amazon-connect-chatjs in Node (`interop/chatjs/burst.js`),
/// receiving the same burst from the same emulator: Items/s from the first publish to
/// its report of the last message. `None` when node or the npm packages are missing.
async fn chatjs_burst(emu: &Emulator, n: usize) -> Option<f64> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/chatjs");
    if !std::path::Path::new(dir)
        .join("node_modules/amazon-connect-chatjs")
        .exists()
    {
        return None;
    }
    let chat = emu.create_chat("Bench");
    let mut child = std::process::Command::new("node")
        .arg(format!("{dir}/burst.js"))
        .env("ENDPOINT", emu.endpoint())
        .env("CONTACT_ID", &chat.contact_id)
        .env("PARTICIPANT_ID", &chat.participant_id)
        .env("PARTICIPANT_TOKEN", chat.participant_token.expose())
        .env("COUNT", n.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let reader = Arc::new(LineReader::spawn(child.stdout.take().unwrap()));
    let wait_lines = |k: usize, limit: Duration| {
        let r = reader.clone();
        async move {
            tokio::task::spawn_blocking(move || r.wait_lines(k, limit))
                .await
                .unwrap()
        }
    };
    if !wait_lines(1, Duration::from_secs(30)).await {
        let _ = child.kill();
        return None;
    }
    let t = Instant::now();
    publish(emu, &chat, n).await;
    let done = wait_lines(2, Duration::from_secs(120)).await;
    let elapsed = t.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let report = reader.text();
    let received = report
        .lines()
        .nth(1)
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["received"].as_u64());
    (done && received == Some(n as u64)).then(|| n as f64 / elapsed.as_secs_f64())
}

/// A raw tokio-tungstenite reader that subscribes and only counts the frames of the
/// same burst (no JSON, no output): the ceiling of this emulator and machine.
async fn raw_burst(emu: &Emulator, n: usize) -> f64 {
    raw_rate(emu, n).await
}

/// Publishing alone: how fast the emulator can produce the burst (no reader).
async fn publish_rate(emu: &Emulator, n: usize) -> f64 {
    let chat = emu.create_chat("Bench");
    let t = Instant::now();
    publish(emu, &chat, n).await;
    n as f64 / t.elapsed().as_secs_f64()
}

/// Virtual drop → first live Item after the gap, through a real session (ms).
async fn recovery_ms(emu: &Emulator, api: &ApiClient) -> f64 {
    let chat = emu.create_chat("Bench");
    let mut h = Supervisor::spawn(
        api.clone(),
        chat.participant_token.clone(),
        SupervisorConfig::default(),
    );
    h.state.wait_for(|s| *s == SessionState::Live).await.unwrap();
    let warm = emu
        .publish_message(&chat.contact_id, "Ana", ParticipantRole::Agent, "before")
        .unwrap();
    while h.items.recv().await.unwrap().id != warm.id {}
    let t = Instant::now();
    emu.drop_sockets(Some(&chat.participant_id));
    let gap = emu
        .publish_message(&chat.contact_id, "Ana", ParticipantRole::Agent, "in the gap")
        .unwrap();
    while h.items.recv().await.unwrap().id != gap.id {}
    h.state.wait_for(|s| *s == SessionState::Live).await.unwrap();
    let live = emu
        .publish_message(&chat.contact_id, "Ana", ParticipantRole::Agent, "after")
        .unwrap();
    while h.items.recv().await.unwrap().id != live.id {}
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    h.shutdown();
    let _ = h.join().await;
    ms
}

async fn bench_burst() {
    let n = 100_000;
    let holding = Emulator::start(EmulatorConfig {
        timing: connect_chatd::emulator::Timing {
            // The server holds a burst for its reader (TCP flow control) rather than
            // dropping the socket.
            socket_queue: 2 * n,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let (mut ours, mut chatjs, mut raw, mut produce) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut reconnects, mut wrong, mut cpu) = (0, 0, Vec::new());
    for _ in 0..ROUNDS {
        produce.push(publish_rate(&holding, n).await);
        raw.push(raw_burst(&holding, n).await);
        if let Some(r) = chatjs_burst(&holding, n).await {
            chatjs.push(r);
        }
        let b = tail_burst(&holding, n, None).await;
        reconnects += b.reconnects;
        wrong += b.duplicates + b.out_of_order + b.missing;
        ours.push(b.rate);
        cpu.push(b.cpu_us_per_item);
    }
    let ours = median(ours);
    println!(
        "burst: {n} Items into `tail` → pipe at {ours:.0} Items/s ({reconnects} reconnects, {wrong} duplicated, out of order or missing over {ROUNDS} rounds); the emulator publishes {:.0}/s with no reader",
        median(produce)
    );
    println!("burst: tail's CPU time {:.2} µs per Item", median(cpu));
    println!(
        "burst: raw tokio-tungstenite reader (counts frames only) {:.0} frames/s: tail is {:.2}x of it",
        median(raw.clone()),
        ours / median(raw)
    );
    match chatjs.len() {
        0 => println!("burst: amazon-connect-chatjs skipped (needs node and `npm ci` in interop/chatjs, as `bash interop/run` does)"),
        _ => {
            let c = median(chatjs);
            println!("burst: amazon-connect-chatjs (Node) {c:.0} messages/s: tail is {:.2}x the official client", ours / c);
        }
    }
    holding.shutdown().await;

    // A reader that stops for 20 s halfway through a burst, against a server that drops
    // a socket once 4096 frames wait for it (the emulator's default).
    let dropping = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let b = tail_burst(&dropping, n, Some(Duration::from_secs(20))).await;
    println!(
        "burst: a reader pausing 20 s halfway: {} reconnects, {} duplicates, {} out of order, {} missing",
        b.reconnects, b.duplicates, b.out_of_order, b.missing
    );
    let api = ApiClient::builder(Endpoint::from_url(&dropping.endpoint()).unwrap())
        .build()
        .unwrap();
    let mut rec = Vec::new();
    for _ in 0..ROUNDS {
        rec.push(recovery_ms(&dropping, &api).await);
    }
    println!(
        "recovery: drop → resubscribed, gap backfilled, first live Item after it: {:.1} ms (median of {ROUNDS})",
        median(rec)
    );
    dropping.shutdown().await;
}

async fn bench_throughput() {
    let n = 10_000;
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let api = ApiClient::builder(Endpoint::from_url(&emu.endpoint()).unwrap())
        .build()
        .unwrap();
    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raw.push(raw_rate(&emu, n).await);
        ours.push(session_rate(&emu, &api, n).await);
    }
    let (raw, ours) = (median(raw), median(ours));
    println!(
        "throughput: session {ours:.0} Items/s, raw websocket {raw:.0} frames/s: {:.2}x the baseline",
        ours / raw
    );
    emu.shutdown().await;
}

/// One memory measurement, in a process of its own so that allocator state left by
/// other measurements cannot blur it: KiB of RSS per connection of `kind`.
async fn memory_child(kind: &str, k: usize) -> f64 {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let mut chats = Vec::new();
    for _ in 0..k {
        chats.push(chat_with_url(&emu).await);
    }
    // Sessions share one API client (it is a cheap handle: one connection pool, one
    // TLS configuration); warm it up before the first reading.
    let api = ApiClient::builder(Endpoint::from_url(&emu.endpoint()).unwrap())
        .build()
        .unwrap();
    let _ = api
        .describe_view(&connect_chatd::secret::Secret::new("x"), "warm-up")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut raw = Vec::new();
    let mut ours = Vec::new();
    for (chat, url) in &chats {
        if kind == "raw" {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            ws.send(Message::text(frame::SUBSCRIBE)).await.unwrap();
            ws.next().await.unwrap().unwrap();
            raw.push(ws);
        } else {
            let mut h = Supervisor::spawn(
                api.clone(),
                chat.participant_token.clone(),
                SupervisorConfig::default(),
            );
            h.state.wait_for(|s| *s == SessionState::Live).await.unwrap();
            ours.push(h);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (rss_kib() - before) as f64 / k as f64
}

fn bench_memory() {
    let k = 500;
    let exe = std::env::current_exe().unwrap();
    let measure = |kind: &str| -> f64 {
        let out = std::process::Command::new(&exe)
            .args(["--memory-child", kind, &k.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(f64::NAN)
    };
    let raw = measure("raw");
    let ours = measure("session");
    println!(
        "memory: {ours:.1} KiB per idle subscribed session, {raw:.1} KiB per raw tokio-tungstenite connection with the default configuration (each with the emulator's side of it, {k} per process): {:.2}x the baseline",
        ours / raw
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        let k = args[i + 2].parse().unwrap();
        println!("{}", rt.block_on(memory_child(&args[i + 1], k)));
        return;
    }
    // `cargo test --benches` lists benchmarks: nothing to run then.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if args.iter().any(|a| a == "decode") {
        bench_decode();
        return;
    }
    if args.iter().any(|a| a == "burst") {
        rt.block_on(bench_burst());
        return;
    }
    bench_decode();
    rt.block_on(bench_throughput());
    rt.block_on(bench_burst());
    bench_memory();
}
