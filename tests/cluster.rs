//! Daemon instances sharing chats through a real `nats-server -js`: three instances on
//! loopback follow 300 sessions on the emulator (half from one instance's configuration
//! file, half added through another's control API) while messages flow; one is
//! SIGKILLed and its sessions must be live on the others within 30 s; a fourth joins and
//! takes its share; one leaves with SIGTERM. Afterwards the stream holds every Item of
//! every session exactly once, in transcript order, and no participant ever had two
//! open sockets (the emulator's high-water mark), so no two instances followed one chat
//! at once.
//!
//! Needs `nats-server` on the PATH (`.ci/run` installs Debian's package). Without it the
//! test says so and passes, except under CI (`CI` set), where it fails.

mod common;

use common::daemon::signal;
use common::nats::*;
use common::*;
use connect_chatd::emulator::{CreatedChat, Timing};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_connect-chatd");
const SESSIONS: usize = 300;

struct Instance {
    name: String,
    sock: PathBuf,
    child: Child,
}

/// An instance's configuration in `dir/NAME/`, with `sessions` in its file.
fn configure(
    dir: &Path,
    name: &str,
    endpoint: &str,
    nats: u16,
    sessions: &[(String, &CreatedChat)],
) -> PathBuf {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let mut toml = format!(
        "endpoint = \"{endpoint}\"\nstate_dir = \"{home}/state\"\n\n[control]\nlisten = \"unix:{home}/control.sock\"\n\n\
         [log]\nlevel = \"info\"\n\n\
         [limits.CreateParticipantConnection]\nrate = 200\nburst = 200\n\n\
         [limits.GetTranscript]\nrate = 200\nburst = 200\n\n\
         [cluster]\nnats = \"nats://127.0.0.1:{nats}\"\ninstance = \"{name}\"\nkey_file = \"{key}\"\ninstance_ttl = 5\n",
        home = home.display(),
        key = dir.join("cluster.key").display(),
    );
    for (session, chat) in sessions {
        let token = home.join(format!("{session}.token"));
        std::fs::write(&token, chat.participant_token.expose()).unwrap();
        toml.push_str(&format!(
            "\n[[sessions]]\nname = \"{session}\"\nparticipant_token_file = \"{}\"\n",
            token.display()
        ));
    }
    let path = home.join("connect-chatd.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

async fn start(dir: &Path, name: &str, config: &Path) -> Instance {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the daemon starts");
    let sock = dir.join(name).join("control.sock");
    for _ in 0..800 {
        let ready = tokio::net::UnixStream::connect(&sock).await.is_ok()
            && request(&sock, "GET", "/readyz", None).await.0 == 200;
        if ready {
            return Instance {
                name: name.into(),
                sock,
                child,
            };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let tail: String = log
        .chars()
        .rev()
        .take(3000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    panic!("instance {name} was not ready; the end of its log:\n{tail}");
}

/// One HTTP/1.1 request over a unix socket: (status, JSON body).
async fn request(sock: &Path, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::UnixStream::connect(sock).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(body.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), c.read_to_string(&mut out))
        .await
        .expect("the control API answers")
        .unwrap();
    let status = out.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = out
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// Session name -> (owner, state), as `GET /v1/sessions` on `via` shows the cluster.
async fn sessions(via: &Instance) -> BTreeMap<String, (Option<String>, String)> {
    let (status, body) = request(&via.sock, "GET", "/v1/sessions", None).await;
    assert_eq!(status, 200, "{body}");
    body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                (
                    s["owner"].as_str().map(str::to_string),
                    s["state"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Waits until every session is live and owned by one of `owners`; returns how long.
async fn all_live_on(via: &Instance, owners: &[&str], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let s = sessions(via).await;
        let bad: Vec<_> = s
            .iter()
            .filter(|(_, (o, st))| st != "live" || !o.as_deref().is_some_and(|o| owners.contains(&o)))
            .collect();
        if s.len() == SESSIONS && bad.is_empty() {
            return started.elapsed();
        }
        if started.elapsed() > within {
            panic!(
                "after {within:?}: {} sessions, {} not live on {owners:?}, e.g. {:?}",
                s.len(),
                bad.len(),
                bad.iter().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn owned_by(s: &BTreeMap<String, (Option<String>, String)>, who: &str) -> usize {
    s.values().filter(|(o, _)| o.as_deref() == Some(who)).count()
}

/// Every Item in the stream, read by a JetStream consumer (an ephemeral pull
/// consumer from the first message): session -> Item Ids in stream order.
async fn stream_items(nats: u16) -> BTreeMap<String, Vec<String>> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use futures_util::StreamExt;
    let client = async_nats::connect(format!("nats://127.0.0.1:{nats}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("CONNECT_CHATD").await.unwrap();
    let total = stream.info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut read = 0;
    while read < total {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let before = read;
        while let Some(msg) = batch.next().await {
            let msg = msg.unwrap();
            let v: Value = serde_json::from_slice(&msg.payload).unwrap();
            out.entry(v["session"].as_str().unwrap().to_string())
                .or_default()
                .push(v["item"]["Id"].as_str().unwrap().to_string());
            read += 1;
        }
        assert!(
            read > before,
            "the consumer read nothing more ({read} of {total})"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_the_chats_and_take_over_without_loss() {
    let Some(nats_bin) = nats_server_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nats_port = free_port();
    let mut nats = start_nats(&nats_bin, nats_port, &dir.path().join("nats")).await;
    std::fs::write(dir.path().join("cluster.key"), "5f".repeat(32)).unwrap();
    let emu = std::sync::Arc::new(emulator(Timing::default()).await);
    let chats: Vec<CreatedChat> = (0..SESSIONS).map(|i| emu.create_chat(&format!("C{i}"))).collect();
    let names: Vec<String> = (0..SESSIONS).map(|i| format!("chat-{i:03}")).collect();
    let endpoint = emu.endpoint();

    // Half the sessions in i1's file, the other half added through i2's control API.
    let in_file: Vec<(String, &CreatedChat)> =
        (0..SESSIONS / 2).map(|i| (names[i].clone(), &chats[i])).collect();
    let c1 = configure(dir.path(), "i1", &endpoint, nats_port, &in_file);
    let c2 = configure(dir.path(), "i2", &endpoint, nats_port, &[]);
    let c3 = configure(dir.path(), "i3", &endpoint, nats_port, &[]);
    let c4 = configure(dir.path(), "i4", &endpoint, nats_port, &[]);
    let mut i1 = start(dir.path(), "i1", &c1).await;
    let mut i2 = start(dir.path(), "i2", &c2).await;
    let mut i3 = start(dir.path(), "i3", &c3).await;
    for i in SESSIONS / 2..SESSIONS {
        let body =
            serde_json::json!({"participant_token": chats[i].participant_token.expose(), "name": names[i]});
        let (status, created) = request(&i2.sock, "POST", "/v1/sessions", Some(&body)).await;
        assert_eq!(status, 201, "{created}");
        assert!(
            created["owner"].is_null() || created["owner"].is_string(),
            "{created}"
        );
        assert!(!created.to_string().contains(chats[i].participant_token.expose()));
    }
    // The same token again, through another instance: the same session.
    let again = serde_json::json!({"participant_token": chats[SESSIONS - 1].participant_token.expose()});
    let (status, existing) = request(&i3.sock, "POST", "/v1/sessions", Some(&again)).await;
    assert_eq!(
        (status, existing["name"].as_str()),
        (200, Some(names[SESSIONS - 1].as_str()))
    );

    let took = all_live_on(&i3, &["i1", "i2", "i3"], Duration::from_secs(90)).await;
    eprintln!("300 sessions live on 3 instances after {took:?}");
    let s = sessions(&i1).await;
    for who in ["i1", "i2", "i3"] {
        assert!(
            owned_by(&s, who) > 30,
            "{who} owns its share: {}",
            owned_by(&s, who)
        );
    }

    // Messages flow through everything that follows.
    let publishing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let publisher = {
        let (emu_chats, flag) = (chats.clone(), publishing.clone());
        let emu = emu.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while flag.load(std::sync::atomic::Ordering::Relaxed) {
                let chat = &emu_chats[n % SESSIONS];
                agent_says(&emu, chat, &format!("m{n}"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // SIGKILL i2: its sessions are live elsewhere within 30 s.
    let killed_owned = owned_by(&sessions(&i1).await, "i2");
    signal(&i2.child, 9);
    let _ = i2.child.wait().await;
    let took = all_live_on(&i1, &["i1", "i3"], Duration::from_secs(30)).await;
    eprintln!("{killed_owned} sessions of the killed instance live again after {took:?}");

    // A fourth instance takes its share; the others keep theirs.
    let mut i4 = start(dir.path(), "i4", &c4).await;
    let started = Instant::now();
    loop {
        let s = sessions(&i4).await;
        let live = s.values().filter(|(_, st)| st == "live").count();
        if owned_by(&s, "i4") > 30 && live == SESSIONS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "i4 did not get its share: {}",
            owned_by(&s, "i4")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // i1 leaves gracefully: it hands its sessions over at once.
    let leaving = Instant::now();
    common::daemon::terminate(&mut i1.child, Duration::from_secs(15)).await;
    let took = all_live_on(&i3, &["i3", "i4"], Duration::from_secs(30)).await;
    eprintln!(
        "i1 left; its sessions live again {took:?} later ({:?} after SIGTERM)",
        leaving.elapsed()
    );

    // NATS goes away for a while: the sessions keep running, their Items wait in the
    // local journals and reach the stream once it is back; nothing is taken over.
    nats.kill().await.unwrap();
    let _ = nats.wait().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during: Vec<usize> = chats
        .iter()
        .map(|c| open_sockets(&emu, &c.participant_id))
        .collect();
    assert!(
        during.iter().all(|&n| n == 1),
        "every chat still has its one socket while NATS is away"
    );
    let _restarted = start_nats(&nats_bin, nats_port, &dir.path().join("nats")).await;
    let took = all_live_on(&i3, &["i3", "i4"], Duration::from_secs(30)).await;
    eprintln!("NATS back; every session still live on i3/i4 ({took:?})");
    tokio::time::sleep(Duration::from_secs(2)).await;

    publishing.store(false, std::sync::atomic::Ordering::Relaxed);
    let published = publisher.await.unwrap();
    eprintln!("{published} messages published");

    // The stream: every Item of every session exactly once, in transcript order.
    let expected: BTreeMap<String, Vec<String>> = names
        .iter()
        .zip(&chats)
        .map(|(n, c)| (n.clone(), persisted(&emu.transcript(&c.contact_id).unwrap())))
        .collect();
    let started = Instant::now();
    let got = loop {
        let got = stream_items(nats_port).await;
        let done = expected
            .iter()
            .all(|(n, want)| got.get(n).map_or(0, Vec::len) >= want.len());
        if done || started.elapsed() > Duration::from_secs(30) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (name, want) in &expected {
        let have = got.get(name).cloned().unwrap_or_default();
        assert_same_ids(&have, want, name);
    }

    // Never two sockets of one participant at once.
    let stats = emu.stats();
    let doubled: Vec<_> = stats.max_open_sockets.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        doubled.is_empty(),
        "participants with two open sockets at once: {doubled:?}"
    );

    for inst in [&mut i3, &mut i4] {
        common::daemon::terminate(&mut inst.child, Duration::from_secs(15)).await;
        let _ = &inst.name;
    }
}
