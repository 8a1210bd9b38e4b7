//! The NATS JetStream consumer against a real `nats-server -js` on loopback: 2 000 Items
//! over 3 sessions while the daemon is SIGKILLed and restarted and the NATS server is
//! stopped and restarted, mid-stream; afterwards the stream holds every journalled Item
//! exactly once, in order per session.
//!
//! Needs `nats-server` on the PATH (`.ci/run` installs Debian's package). Without it the
//! test says so and passes, except under CI (`CI` set), where it fails.

mod common;

use common::nats::*;
use common::*;
use connect_chatd::emulator::{CreatedChat, Timing};
use connect_chatd::journal::{Journal, JournalSettings};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_connect-chatd");
const ITEMS: usize = 2000;

fn start_daemon(config: &Path) -> Child {
    Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the daemon starts")
}

fn write_config(dir: &Path, endpoint: &str, chats: &[CreatedChat], nats_port: u16) -> PathBuf {
    let mut toml = format!(
        "endpoint = \"{endpoint}\"\nstate_dir = \"{}\"\n[control]\nlisten = \"unix:{}\"\n",
        dir.join("state").display(),
        dir.join("control.sock").display()
    );
    for (i, chat) in chats.iter().enumerate() {
        let token = dir.join(format!("s{i}.token"));
        std::fs::write(&token, chat.participant_token.expose()).unwrap();
        toml.push_str(&format!(
            "\n[[sessions]]\nname = \"s{i}\"\nparticipant_token_file = \"{}\"\n",
            token.display()
        ));
    }
    toml.push_str(&format!(
        "\n[[consumers]]\nname = \"bus\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{nats_port}\"\nstream = \"CHAT\"\ncreate_stream = true\nduplicate_window = 600\n"
    ));
    let path = dir.join("connect-chatd.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_reaches_the_stream_once_in_order_through_kills_and_a_nats_restart() {
    let Some(nats_bin) = nats_server_or_skip() else {
        return;
    };
    let emu = Arc::new(emulator(Timing::default()).await);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nats");
    let port = free_port();
    let mut nats = start_nats(&nats_bin, port, &store).await;
    let chats: Vec<CreatedChat> = (0..3).map(|i| emu.create_chat(&format!("c{i}"))).collect();
    let config = write_config(dir.path(), &emu.endpoint(), &chats, port);
    let mut daemon = start_daemon(&config);

    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let publisher = {
        let (emu, chats) = (emu.clone(), chats.clone());
        tokio::spawn(async move {
            for i in 0..ITEMS {
                agent_says(&emu, &chats[i % 3], &format!("m{i}"));
                let _ = progress_tx.send(i + 1);
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    progress.wait_for(|n| *n >= 600).await.unwrap();
    daemon.kill().await.unwrap(); // SIGKILL
    let _ = daemon.wait().await;
    let mut daemon = start_daemon(&config);
    progress.wait_for(|n| *n >= 1300).await.unwrap();
    nats.kill().await.unwrap();
    let _ = nats.wait().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _nats = start_nats(&nats_bin, port, &store).await;
    publisher.await.unwrap();
    for chat in &chats {
        emu.end_chat(&chat.contact_id).unwrap();
    }

    // Wait until the stream holds as many messages as there are journalled Items.
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let want: usize = chats
        .iter()
        .map(|c| persisted(&emu.transcript(&c.contact_id).unwrap()).len())
        .sum();
    let mut last = 0;
    for _ in 0..600 {
        if let Ok(mut stream) = js.get_stream("CHAT").await {
            if let Ok(info) = stream.info().await {
                last = info.state.messages as usize;
                if last >= want {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last >= want, "the stream holds {last} of {want}");
    common::daemon::signal(&daemon, 15);
    let _ = tokio::time::timeout(Duration::from_secs(20), daemon.wait()).await;

    // Read the whole stream back.
    let stream = js.get_stream("CHAT").await.unwrap();
    let mut per_session: HashMap<String, Vec<String>> = HashMap::new();
    for seq in 1..=last as u64 {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        per_session
            .entry(v["session"].as_str().unwrap().to_string())
            .or_default()
            .push(v["item"]["Id"].as_str().unwrap().to_string());
    }
    let journal = Journal::open(&dir.path().join("state"), JournalSettings::default()).unwrap();
    for (i, chat) in chats.iter().enumerate() {
        let name = format!("s{i}");
        let journalled: Vec<String> = journal
            .entries_after(None, Some(&name), 100_000)
            .unwrap()
            .into_iter()
            .filter_map(|e| e.item_id)
            .collect();
        assert_same_ids(
            &journalled,
            &persisted(&emu.transcript(&chat.contact_id).unwrap()),
            &format!("journal {name}"),
        );
        assert_same_ids(
            per_session.get(&name).map_or(&[][..], |v| &v[..]),
            &journalled,
            &format!("stream {name}"),
        );
    }
}
