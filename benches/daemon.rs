//! The daemon, `connect-chatd run`, each figure next to a baseline measured in the same
//! run (so a slow or busy machine changes both sides alike):
//!
//! 1. `sse`: one session, 100 000 Items published as fast as the (in-process) emulator
//!    can, through the daemon (in process, multi-thread runtime): socket → journal
//!    (`fsync = batch`, or `SSE_FSYNC`) → a Server-Sent Events reader on the control
//!    API's unix socket that only counts `event: item` lines. Items/s from the first
//!    publish to the reader having the last Item, the session's reconnects (must be 0),
//!    Items per commit and the journal writer thread's CPU time per Item. Baselines on
//!    the same emulator: a raw tokio-tungstenite reader that only counts frames, and the
//!    official web client (amazon-connect-chatjs in Node, `interop/chatjs/burst.js`).
//!    `SSE_ROUNDS` (5) rounds alternate; medians are printed.
//! 2. `idle`: `IDLE_SESSIONS` (10 000, fewer if the fd limit is lower) idle subscribed
//!    sessions in one `connect-chatd run` process (the release binary), added through
//!    the control API, against an emulator process, heartbeats every 10 s: RSS per
//!    session ((VmRSS once all are live − VmRSS with 0 sessions) / N, `/proc/PID/status`)
//!    and the CPU % of one core over `IDLE_SECONDS` (30) once all are live (utime +
//!    stime, `/proc/PID/stat`). Baseline: this binary re-executed (`--baseline-idle`)
//!    holding N minimal tokio-tungstenite clients (connect, subscribe, the daemon's
//!    heartbeat and ping every 10 s, phases spread over the period as the daemon's are)
//!    with the default configuration, measured the same way; and once more with the
//!    daemon's socket buffer sizes (memory only).
//! 3. `idle-tls`: the daemon's side of `idle` again, over TLS: the emulator process
//!    with `--tls`, its CA as the daemon's `ca_file`, so every socket is `wss://`
//!    (a boxed rustls connection each) and every API call HTTPS. No baselines: compare
//!    with the daemon's figure of `idle` at the same `IDLE_SESSIONS`.
//!
//! Run: `cargo bench --bench daemon` (about three and a half minutes; `-- sse`, `-- idle`
//! or `-- idle-tls` for one part). The chatjs row needs `npm ci` in `interop/chatjs` (or `CHATJS_DIR`).

mod common;

use common::{api, median, publish, raw_rate, websocket_url};
use connect_chatd::api::model::ParticipantRole;

use connect_chatd::cli::control_client::{self, Control};
use connect_chatd::daemon::run::{run, ConfiguredSession, Listen, RunOptions};
use connect_chatd::emulator::{Emulator, EmulatorConfig, Timing};
use connect_chatd::journal::{Fsync, Journal, JournalSettings};
use connect_chatd::secret::Secret;
use connect_chatd::session::{History, SupervisorConfig};
use connect_chatd::socket::{frame, SocketConfig};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Message};

const BIN: &str = env!("CARGO_BIN_EXE_connect-chatd");
const BURST: usize = 100_000;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whitespace-separated field `i` of the first line of `path` that starts with `prefix`.
fn proc_field(path: &str, prefix: &str, i: usize) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or("");
    line.split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    proc_field(&format!("/proc/{pid}/status"), "VmRSS:", 1)
}

/// User + system CPU seconds from a `/proc/…/stat` file (fields 14 and 15: 11 and 12
/// after the parenthesised name).
fn cpu_seconds(stat: &Path) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    let f: Vec<&str> = text
        .rsplit_once(')')
        .map_or(vec![], |(_, r)| r.split_whitespace().collect());
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of this process's threads named `name`.
fn thread_cpu(name: &str) -> f64 {
    let tasks = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten();
    tasks
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| cpu_seconds(&t.path().join("stat")))
        .sum()
}

/// `f(0..n)` with at most `width` in flight.
async fn concurrently<T, F: std::future::Future<Output = T>>(
    n: usize,
    width: usize,
    f: impl FnMut(usize) -> F,
) -> Vec<T> {
    futures_util::stream::iter(0..n)
        .map(f)
        .buffer_unordered(width)
        .collect()
        .await
}

async fn control(ctl: &Control, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, bytes) = control_client::call(ctl, method, path, body.as_ref())
        .await
        .expect("the control API answers");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A child process with its stdout as lines (killed when dropped).
fn spawn(cmd: &mut Command) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the child starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, limit: Duration) -> Option<String> {
    tokio::time::timeout(limit, lines.next_line()).await.ok()?.ok()?
}

// ------------------------------------------------------------------ sse

fn chatjs_dir() -> PathBuf {
    std::env::var_os("CHATJS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/chatjs"))
}

/// Messages/s of amazon-connect-chatjs in Node for the same burst; `None` without it.
async fn chatjs_rate(emu: &Emulator, n: usize) -> Option<f64> {
    let dir = chatjs_dir();
    if !dir.join("node_modules/amazon-connect-chatjs").exists() {
        return None;
    }
    let chat = emu.create_chat("Bench");
    let (_child, mut lines) = spawn(
        Command::new("node")
            .arg(dir.join("burst.js"))
            .env("ENDPOINT", emu.endpoint())
            .env("CONTACT_ID", &chat.contact_id)
            .env("PARTICIPANT_ID", &chat.participant_id)
            .env("PARTICIPANT_TOKEN", chat.participant_token.expose())
            .env("COUNT", n.to_string())
            .stderr(std::process::Stdio::null()),
    );
    next_line(&mut lines, Duration::from_secs(30)).await?;
    let t = Instant::now();
    publish(emu, &chat, n).await;
    let report = next_line(&mut lines, Duration::from_secs(180)).await?;
    let elapsed = t.elapsed();
    let received = serde_json::from_str::<Value>(&report).ok()?["received"].as_u64();
    (received == Some(n as u64)).then(|| n as f64 / elapsed.as_secs_f64())
}

/// Follows `path`, an SSE stream on the control socket, counting `event: item` lines
/// into `seen`; resolves when `seen` reaches `target`.
async fn sse_reader(sock: PathBuf, path: &str, seen: Arc<AtomicUsize>, target: Arc<AtomicUsize>) -> Instant {
    let stream = tokio::net::UnixStream::connect(&sock)
        .await
        .expect("the control socket");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", "bench");
    let resp = tx.send_request(
        req.body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap(),
    );
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut partial, mut count) = (Vec::new(), 0);
    while let Some(frame) = body.frame().await {
        let Ok(mut rest) = frame.expect("the stream goes on").into_data() else {
            continue;
        };
        while let Some(i) = memchr::memchr(b'\n', &rest) {
            let line = rest.split_to(i + 1);
            let line = &line[..i];
            let is_item = if partial.is_empty() {
                line == b"event: item"
            } else {
                partial.extend_from_slice(line);
                std::mem::take(&mut partial) == b"event: item"
            };
            if is_item {
                count += 1;
                seen.store(count, Ordering::Release);
                if count >= target.load(Ordering::Acquire) {
                    return Instant::now();
                }
            }
        }
        partial.extend_from_slice(&rest);
    }
    panic!("the SSE stream ended after {count} Items");
}

/// `SSE_FSYNC`: `batch` (the default), `always` or `never`.
fn fsync_mode() -> Fsync {
    match std::env::var("SSE_FSYNC").as_deref() {
        Ok("always") => Fsync::Always,
        Ok("never") => Fsync::Never,
        _ => Fsync::Batch,
    }
}

/// What one burst through the daemon did.
struct DaemonBurst {
    rate: f64,
    reconnects: u64,
    upgrades: u64,
    items_per_commit: f64,
    writer_us_per_item: f64,
}

/// `n` Items through an in-process daemon (a fresh state directory) to an SSE reader.
async fn daemon_rate(emu: &Emulator, n: usize) -> DaemonBurst {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("control.sock");
    let chat = emu.create_chat("Bench");
    let settings = JournalSettings {
        fsync: fsync_mode(),
        retention: Duration::from_secs(3600),
    };
    let opts = RunOptions {
        api: api(&emu.endpoint()),
        journal: Journal::open(&dir.path().join("state"), settings).unwrap(),
        supervisor: SupervisorConfig::default(),
        listen: Listen::Unix(sock.clone()),
        bearer: None,
        stdout: false,
        http_listen: None,
        consumers: vec![],
        sessions: vec![ConfiguredSession {
            name: "bench".into(),
            participant_token: chat.participant_token.clone(),
            history: History::All,
            labels: Default::default(),
            receipts: false,
        }],
        capacity: Default::default(),
        readyz_grace: connect_chatd::daemon::DEFAULT_READYZ_GRACE,
        metrics_per_session: false,
        cluster: None,
        shutdown_timeout: std::time::Duration::from_secs(10),
        reloads: None,
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let stop = async { _ = stop_rx.await };
        run(opts, stop, move |_, d| _ = ready.take().unwrap().send(d.clone()))
            .await
            .expect("the daemon runs");
    });
    let daemon = ready_rx.await.expect("the daemon gets ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.get("bench").is_none_or(|v| v.state != "live") {
        assert!(Instant::now() < deadline, "the session did not get live");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (seen, target) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(usize::MAX)),
    );
    let (s, t) = (seen.clone(), target.clone());
    let reader =
        tokio::spawn(async move { sse_reader(sock, "/v1/sessions/bench/items?from=start", s, t).await });
    // What comes before the burst (the chat's start, a warm-up message) is journalled
    // and read first, so the burst alone is timed.
    let warm = emu
        .publish_message(&chat.contact_id, "Ana", ParticipantRole::Agent, "warm-up")
        .unwrap();
    let (journal, warm_id) = (daemon.journal().clone(), warm.id.unwrap());
    while journal.seq_of("bench", &warm_id).unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = journal.entries_after(None, Some("bench"), 10_000).unwrap().len();
    while seen.load(Ordering::Acquire) < before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (commits, writer) = (journal.stats().commits, thread_cpu("journal-writer"));
    target.store(before + n, Ordering::Release);
    let t = Instant::now();
    publish(emu, &chat, n).await;
    let done = tokio::time::timeout(Duration::from_secs(300), reader)
        .await
        .expect("the burst arrives");
    let rate = n as f64 / (done.unwrap() - t).as_secs_f64();
    let writer_us_per_item = (thread_cpu("journal-writer") - writer) * 1e6 / n as f64;
    let items_per_commit = n as f64 / (journal.stats().commits - commits).max(1) as f64;
    let (_, view) = control(
        &Control::Unix(dir.path().join("control.sock")),
        "GET",
        "/v1/sessions/bench",
        None,
    )
    .await;
    let _ = stop_tx.send(());
    task.await.unwrap();
    DaemonBurst {
        rate,
        reconnects: view["counters"]["reconnects"]
            .as_u64()
            .expect("counters.reconnects"),
        upgrades: emu
            .stats()
            .upgrades
            .get(&chat.participant_id)
            .copied()
            .unwrap_or(0),
        items_per_commit,
        writer_us_per_item,
    }
}

async fn bench_sse() {
    let (n, rounds, t) = (BURST, env_num("SSE_ROUNDS", 5), Instant::now());
    let (mut ours, mut raw, mut chatjs, mut produce) = (vec![], vec![], vec![], vec![]);
    let (mut reconnects, mut upgrades, mut per_commit, mut writer) = (0, 0, vec![], vec![]);
    for _ in 0..rounds {
        // A server that holds a burst for its reader (TCP flow control), not one that
        // drops the socket of a reader 4096 frames behind.
        let timing = Timing {
            socket_queue: 2 * n,
            ..Default::default()
        };
        let emu = Emulator::start(EmulatorConfig {
            timing,
            ..Default::default()
        })
        .await
        .unwrap();
        let (chat, p) = (emu.create_chat("Bench"), Instant::now());
        publish(&emu, &chat, n).await;
        produce.push(n as f64 / p.elapsed().as_secs_f64());
        // `SSE_BASELINES=0` leaves the baselines out (for profiling the daemon alone).
        if env_num("SSE_BASELINES", 1) != 0 {
            raw.push(raw_rate(&emu, n).await);
            chatjs.extend(chatjs_rate(&emu, n).await);
        }
        let b = daemon_rate(&emu, n).await;
        ours.push(b.rate);
        reconnects += b.reconnects;
        upgrades += b.upgrades.saturating_sub(1);
        per_commit.push(b.items_per_commit);
        writer.push(b.writer_us_per_item);
        emu.shutdown().await;
    }
    let (ours, raw) = (median(ours), median(raw));
    let met = if ours >= 100_000.0 && reconnects == 0 {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "sse: {n} Items socket → journal (fsync {}) → SSE reader: {ours:.0} Items/s, {reconnects} reconnects ({upgrades} extra upgrades) over {rounds} rounds; target ≥ 100000 Items/s, 0 reconnects: {met}",
        fsync_mode().as_str()
    );
    println!(
        "sse: raw tokio-tungstenite reader (counts frames) {raw:.0} frames/s: the daemon is {:.2}x of it",
        ours / raw
    );
    if chatjs.is_empty() {
        println!(
            "sse: amazon-connect-chatjs skipped (needs node and `npm ci` in {})",
            chatjs_dir().display()
        );
    } else {
        let c = median(chatjs);
        println!(
            "sse: amazon-connect-chatjs (Node) {c:.0} messages/s: the daemon is {:.2}x of it",
            ours / c
        );
    }
    println!(
        "sse: {:.0} Items per commit, journal writer thread {:.1} µs CPU per Item; the emulator publishes {:.0} Items/s with no reader; {:.0} s in all",
        median(per_commit),
        median(writer),
        median(produce),
        t.elapsed().as_secs_f64()
    );
}

// ------------------------------------------------------------------ idle

async fn admin(http: &reqwest::Client, url: String, method: reqwest::Method) -> Value {
    let resp = http
        .request(method, url)
        .body("{}")
        .send()
        .await
        .expect("the emulator answers");
    resp.json().await.expect("JSON from the emulator")
}

/// The baseline child: N minimal tokio-tungstenite clients, one subscribed socket each,
/// a heartbeat and a ping every 10 s. `READY` before any work, then waits for a line on
/// stdin; `LIVE` once every socket is subscribed; exits when stdin closes.
async fn baseline_child(tokens: &Path, endpoint: &str, small: bool) {
    let tokens: Vec<String> = std::fs::read_to_string(tokens)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let (api, mut stdin) = (api(endpoint), BufReader::new(tokio::io::stdin()).lines());
    println!("READY");
    let _ = stdin.next_line().await;
    let config = small.then(|| {
        WebSocketConfig::default()
            .read_buffer_size(SocketConfig::default().read_buffer_size)
            .write_buffer_size(0)
    });
    let (n, tokens) = (tokens.len(), Arc::new(tokens));
    concurrently(n, 64, |i| {
        let (api, tokens) = (api.clone(), tokens.clone());
        async move {
            let url = websocket_url(&api, &Secret::new(&tokens[i])).await;
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, config, false)
                .await
                .unwrap();
            ws.send(Message::text(frame::SUBSCRIBE)).await.unwrap();
            ws.next().await.unwrap().unwrap();
            tokio::spawn(async move {
                // Phases spread over the period, as the daemon's sessions (which come up
                // one after another) have them.
                let period = Duration::from_secs(10);
                let first = tokio::time::Instant::now() + period.mul_f64((i + 1) as f64 / n as f64);
                let mut tick = tokio::time::interval_at(first, period);
                loop {
                    tokio::select! {
                        m = ws.next() => if !matches!(m, Some(Ok(_))) { break },
                        _ = tick.tick() => {
                            let _ = ws.send(Message::text(frame::HEARTBEAT)).await;
                            let _ = ws.send(Message::text(frame::PING)).await;
                        }
                    }
                }
            });
        }
    })
    .await;
    println!("LIVE");
    let _ = stdin.next_line().await;
}

/// KiB of RSS per session, and % of one core while idle.
struct Idle {
    /// RSS per session at the end of the CPU window (2 s after bring-up without one).
    kib: f64,
    /// RSS per session 2 s after bring-up.
    early_kib: f64,
    cpu: f64,
}

/// After a moment to settle: RSS per session now, then CPU over `window` (None: NaN).
async fn idle_figures(pid: u32, before: u64, n: usize, window: Option<Duration>) -> Idle {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let early_kib = rss_kib(pid).saturating_sub(before) as f64 / n as f64;
    let mut kib = early_kib;
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let cpu = match window {
        Some(w) => {
            let c = cpu_seconds(&stat);
            tokio::time::sleep(w).await;
            let cpu = (cpu_seconds(&stat) - c) / w.as_secs_f64() * 100.0;
            // Steady state: after the window, when bring-up's transient allocations
            // have settled.
            kib = rss_kib(pid).saturating_sub(before) as f64 / n as f64;
            cpu
        }
        None => f64::NAN,
    };
    Idle { kib, early_kib, cpu }
}

async fn baseline(
    dir: &Path,
    endpoint: &str,
    tokens: &[String],
    small: bool,
    window: Option<Duration>,
) -> Idle {
    let file = dir.join(if small { "tokens-small" } else { "tokens-default" });
    std::fs::write(&file, tokens.join("\n")).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--baseline-idle")
        .arg(&file)
        .arg(endpoint)
        .args(small.then_some("--small"));
    let (mut child, mut lines) = spawn(cmd.stdin(std::process::Stdio::piped()));
    assert_eq!(
        next_line(&mut lines, Duration::from_secs(30)).await.as_deref(),
        Some("READY")
    );
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    assert_eq!(
        next_line(&mut lines, Duration::from_secs(600)).await.as_deref(),
        Some("LIVE")
    );
    let idle = idle_figures(pid, before, tokens.len(), window).await;
    drop(stdin);
    let _ = child.wait().await;
    idle
}

/// How many sessions are in each state, and their reconnects in all.
async fn daemon_sessions(ctl: &Control) -> (BTreeMap<String, usize>, u64) {
    let (_, list) = control(ctl, "GET", "/v1/sessions", None).await;
    let (mut states, mut reconnects) = (BTreeMap::new(), 0);
    for s in list["sessions"].as_array().into_iter().flatten() {
        *states
            .entry(s["state"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
        reconnects += s["counters"]["reconnects"].as_u64().unwrap_or(0);
    }
    (states, reconnects)
}

/// The daemon's figures, how long until every session was live, and reconnects.
async fn daemon_idle(
    dir: &Path,
    endpoint: &str,
    tokens: &[String],
    window: Duration,
    ca_file: Option<&Path>,
) -> (Idle, Duration, u64) {
    let sock = dir.join("control.sock");
    let limits: String = ["CreateParticipantConnection", "GetTranscript"]
        .map(|op| format!("[limits.{op}]\nrate = 100000\nburst = 100000\n"))
        .concat();
    let limits = format!("[limits]\nmax_sessions = 1000000\n{limits}");
    let trust = ca_file.map_or(String::new(), |ca| format!("ca_file = \"{}\"\n", ca.display()));
    let config = format!(
        "{trust}endpoint = \"{endpoint}\"\nstate_dir = \"{}\"\nheartbeat_interval = 10\n[control]\nlisten = \"unix:{}\"\n\
         [journal]\nfsync = \"batch\"\n[log]\nlevel = \"warn\"\n{limits}",
        dir.join("state").display(),
        sock.display()
    );
    std::fs::write(dir.join("daemon.toml"), config).unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let (mut child, _) = spawn(
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(dir.join("daemon.toml"))
            .stderr(log),
    );
    let (pid, ctl) = (child.id().unwrap(), Control::Unix(sock));
    let deadline = Instant::now() + Duration::from_secs(30);
    while control_client::call(&ctl, "GET", "/v1/sessions", None)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start: {}",
            dir.join("daemon.log").display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, t, n) = (rss_kib(pid), Instant::now(), tokens.len());
    let added = concurrently(n, 64, |i| {
        let (ctl, body) = (
            ctl.clone(),
            json!({"participant_token": tokens[i], "name": format!("s{i}")}),
        );
        async move { control(&ctl, "POST", "/v1/sessions", Some(body)).await.0 }
    });
    assert!(added.await.iter().all(|s| *s == 201), "every session is added");
    while daemon_sessions(&ctl).await.0.get("live") != Some(&n) {
        assert!(
            t.elapsed() < Duration::from_secs(1200),
            "not all live after 20 min: {:?}",
            daemon_sessions(&ctl).await.0
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let up = t.elapsed();
    let idle = idle_figures(pid, before, n, Some(window)).await;
    let (states, reconnects) = daemon_sessions(&ctl).await;
    assert_eq!(
        states.get("live"),
        Some(&n),
        "every session stays live: {states:?}"
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    (idle, up, reconnects)
}

/// The emulator process (`--tls`: with its CA in `dir/ca.pem`) and its endpoint.
async fn emulator_process(dir: &Path, tls: bool) -> (Child, String) {
    let mut emulator = Command::new(BIN);
    emulator
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::null());
    if tls {
        emulator.arg("--tls").arg("--tls-ca-out").arg(dir.join("ca.pem"));
    }
    let (child, mut lines) = spawn(&mut emulator);
    let first = next_line(&mut lines, Duration::from_secs(30))
        .await
        .expect("the emulator's endpoint");
    let endpoint = serde_json::from_str::<Value>(&first).unwrap()["Endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    (child, endpoint)
}

/// `n` chats' ParticipantTokens from the emulator's admin side.
async fn chat_tokens(http: &reqwest::Client, endpoint: &str, n: usize) -> Vec<String> {
    concurrently(n, 32, |_| {
        let (http, url) = (http.clone(), format!("{endpoint}/admin/chats"));
        async move {
            admin(&http, url, reqwest::Method::POST).await["ParticipantToken"]
                .as_str()
                .unwrap()
                .to_string()
        }
    })
    .await
}

/// `idle-tls`: the daemon alone, over TLS.
async fn bench_idle_tls() {
    let t = Instant::now();
    let limit = proc_field("/proc/self/limits", "Max open files", 3).saturating_sub(500) as usize;
    let n = (env_num("IDLE_SESSIONS", 10_000) as usize).min(limit).max(1);
    let window = Duration::from_secs(env_num("IDLE_SECONDS", 30));
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, endpoint) = emulator_process(dir.path(), true).await;
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_merge([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let tokens = chat_tokens(&http, &endpoint, n).await;
    let ca_file = dir.path().join("ca.pem");
    let (ours, up, reconnects) = daemon_idle(dir.path(), &endpoint, &tokens, window, Some(&ca_file)).await;
    println!(
        "idle-tls: {n} subscribed sessions over TLS (wss://, https://, ca_file) in `connect-chatd run` (all live {:.1} s after the first add, {reconnects} reconnects): {:.1} KiB RSS per session after {} s idle ({:.1} KiB 2 s after bring-up), {:.2} % of a core over {} s; {:.0} s in all",
        up.as_secs_f64(),
        ours.kib,
        window.as_secs(),
        ours.early_kib,
        ours.cpu,
        window.as_secs(),
        t.elapsed().as_secs_f64()
    );
}

async fn bench_idle() {
    let t = Instant::now();
    // Each process holds a socket per session (the emulator one set at a time).
    let limit = proc_field("/proc/self/limits", "Max open files", 3).saturating_sub(500) as usize;
    let n = (env_num("IDLE_SESSIONS", 10_000) as usize).min(limit).max(1);
    let window = Duration::from_secs(env_num("IDLE_SECONDS", 30));
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, endpoint) = emulator_process(dir.path(), false).await;
    let http = reqwest::Client::new();
    let tokens = chat_tokens(&http, &endpoint, 3 * n).await;
    let (daemon_tokens, rest) = tokens.split_at(n);
    let (default_tokens, small_tokens) = rest.split_at(n);
    let raw = baseline(dir.path(), &endpoint, default_tokens, false, Some(window)).await;
    let small = baseline(dir.path(), &endpoint, small_tokens, true, None).await;
    // The baselines' sockets are gone from the emulator before the daemon's arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let stats = admin(&http, format!("{endpoint}/admin/stats"), reqwest::Method::GET).await;
        let open: u64 = stats["OpenSockets"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ours, up, reconnects) = daemon_idle(dir.path(), &endpoint, daemon_tokens, window, None).await;
    let met = if ours.kib <= 16.0 && ours.cpu < 5.0 {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "idle: {n} subscribed sessions in `connect-chatd run` (all live {:.1} s after the first add, {reconnects} reconnects): {:.1} KiB RSS per session after {} s idle ({:.1} KiB 2 s after bring-up), {:.2} % of a core over {} s; targets ≤ 16 KiB, < 5 %: {met}",
        up.as_secs_f64(),
        ours.kib,
        window.as_secs(),
        ours.early_kib,
        ours.cpu,
        window.as_secs()
    );
    println!(
        "idle: {n} raw tokio-tungstenite clients in one process (default configuration, heartbeat + ping every 10 s): {:.1} KiB per socket, {:.2} % of a core: the daemon takes {:.2}x the memory, {:.2}x the CPU",
        raw.kib,
        raw.cpu,
        ours.kib / raw.kib,
        ours.cpu / raw.cpu.max(0.01)
    );
    println!(
        "idle: the same with the daemon's buffer sizes ({} B read, no write buffer): {:.1} KiB per socket: the daemon takes {:.2}x; {:.0} s in all",
        SocketConfig::default().read_buffer_size,
        small.kib,
        ours.kib / small.kib,
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(i) = args.iter().position(|a| a == "--baseline-idle") {
        let small = args.iter().any(|a| a == "--small");
        rt.block_on(baseline_child(Path::new(&args[i + 1]), &args[i + 2], small));
        return;
    }
    // `cargo test --benches` lists benchmarks: nothing to run then.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let part = |name: &str| args.iter().any(|a| a == name);
    let all = !part("sse") && !part("idle") && !part("idle-tls");
    if all || part("sse") {
        rt.block_on(bench_sse());
    }
    if all || part("idle") {
        rt.block_on(bench_idle());
    }
    if all || part("idle-tls") {
        rt.block_on(bench_idle_tls());
    }
}
