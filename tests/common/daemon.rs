//! An in-process daemon on a loopback TCP control listener (with a bearer secret), for
//! the daemon's tests.

use super::client;
use connect_chatd::daemon::run::{run, Bound, ConfiguredSession, Listen, RunOptions};
use connect_chatd::daemon::Daemon;
use connect_chatd::emulator::Emulator;
use connect_chatd::journal::{Fsync, Journal, JournalSettings};
use connect_chatd::secret::Secret;
use connect_chatd::session::SupervisorConfig;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

pub const BEARER: &str = "control-secret";

pub struct Running {
    pub base: String,
    pub daemon: Arc<Daemon>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pub http: reqwest::Client,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(BEARER);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the control API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

pub fn open_journal(dir: &std::path::Path) -> Journal {
    Journal::open(
        dir,
        JournalSettings {
            fsync: Fsync::Batch,
            retention: Duration::from_secs(3600),
        },
    )
    .expect("the journal opens")
}

pub async fn start_daemon(
    emu: &Emulator,
    dir: &std::path::Path,
    sessions: Vec<ConfiguredSession>,
) -> Running {
    start_daemon_with(emu, dir, sessions, vec![]).await
}

/// [`start_daemon`] with journal consumers.
pub async fn start_daemon_with(
    emu: &Emulator,
    dir: &std::path::Path,
    sessions: Vec<ConfiguredSession>,
    consumers: Vec<connect_chatd::sink::consumer::ConsumerConfig>,
) -> Running {
    start_daemon_within(emu, dir, sessions, consumers, Default::default()).await
}

/// [`start_daemon_with`] within `capacity` (`[limits]`).
pub async fn start_daemon_within(
    emu: &Emulator,
    dir: &std::path::Path,
    sessions: Vec<ConfiguredSession>,
    consumers: Vec<connect_chatd::sink::consumer::ConsumerConfig>,
    capacity: connect_chatd::daemon::Capacity,
) -> Running {
    let journal = open_journal(dir);
    let opts = RunOptions {
        api: client(emu),
        journal,
        supervisor: SupervisorConfig::default(),
        listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        bearer: Some(Secret::new(BEARER)),
        stdout: false,
        http_listen: None,
        consumers,
        sessions,
        capacity,
        readyz_grace: connect_chatd::daemon::DEFAULT_READYZ_GRACE,
        metrics_per_session: false,
        cluster: None,
        shutdown_timeout: std::time::Duration::from_secs(10),
        reloads: None,
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        run(
            opts,
            async {
                let _ = stop_rx.await;
            },
            move |bound, daemon| {
                let _ = ready.take().unwrap().send((bound.clone(), daemon.clone()));
            },
        )
        .await
        .expect("the daemon runs");
    });
    let (bound, daemon) = ready_rx.await.expect("the daemon gets ready");
    let Bound::Tcp(addr) = bound else { panic!("tcp") };
    Running {
        base: format!("http://{addr}"),
        daemon,
        stop: Some(stop_tx),
        task,
        http: reqwest::Client::new(),
    }
}

/// Waits (real time, bounded) until `f` is true.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A configuration for the `run` binary in `dir`: the emulator, a unix control socket
/// `dir/control.sock`, state in `dir/state`, `top` (top-level keys and tables, before
/// `[control]`), and these (name, chat) sessions, each token in `dir/NAME.token`.
/// Returns the file's path, `dir/connect-chatd.toml`.
pub fn write_config(
    dir: &std::path::Path,
    emu: &Emulator,
    sessions: &[(&str, &connect_chatd::emulator::CreatedChat)],
    top: &str,
) -> std::path::PathBuf {
    let mut toml = format!(
        "endpoint = \"{}\"\nstate_dir = \"{}\"\n{top}\n[control]\nlisten = \"unix:{}\"\n",
        emu.endpoint(),
        dir.join("state").display(),
        dir.join("control.sock").display(),
    );
    for (name, chat) in sessions {
        let token = dir.join(format!("{name}.token"));
        std::fs::write(&token, format!("{}\n", chat.participant_token.expose())).unwrap();
        toml.push_str(&format!(
            "\n[[sessions]]\nname = \"{name}\"\nparticipant_token_file = \"{}\"\n",
            token.display()
        ));
    }
    let path = dir.join("connect-chatd.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// One request over the unix control socket, read to the end.
pub async fn unix_get(sock: &std::path::Path, path: &str) -> String {
    let mut c = tokio::net::UnixStream::connect(sock).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut c,
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_string(&mut c, &mut out),
    )
    .await;
    out
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Sends signal `sig` (1 SIGHUP, 15 SIGTERM, …) to a child that is still running.
pub fn signal(child: &tokio::process::Child, sig: i32) {
    let pid = child.id().expect("the child is running") as i32;
    // SAFETY: a signal to our own child process.
    unsafe { libc_kill(pid, sig) };
}

/// SIGTERM, then waits up to `within` for the exit, which must be a clean 0.
pub async fn terminate(child: &mut tokio::process::Child, within: Duration) {
    signal(child, 15);
    let status = tokio::time::timeout(within, child.wait())
        .await
        .expect("the daemon stops on SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "a clean exit on SIGTERM");
}
