//! Egress as enterprises run it: an HTTP CONNECT proxy (written here: it counts
//! tunnels, records each CONNECT target and whether `Proxy-Authorization` came) and
//! the emulator serving TLS with a CA of its own, trusted through `ca_file`. The
//! `tail` and `run` binaries are driven through their environment and configuration,
//! as users run them; environment variables are set on the children only.

mod common;
#[path = "egress/proxy.rs"]
mod proxy;

use connect_chatd::api::model::{ConnectionType, CreateParticipantConnectionRequest, ParticipantRole};
use connect_chatd::api::{ApiClient, Endpoint};
use connect_chatd::egress::{Egress, EgressSettings};
use connect_chatd::emulator::{Emulator, EmulatorConfig, Timing};
use connect_chatd::socket::{self, SocketConfig, SocketEvent};
use proxy::{Proxy, PASSWORD, USER};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_connect-chatd");

/// The emulator over TLS, its CA in `dir/ca.pem`.
async fn tls_emulator(dir: &Path, timing: Timing) -> (Emulator, PathBuf) {
    common::init_logs();
    let emu = Emulator::start(EmulatorConfig {
        timing,
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, emu.ca_pem().unwrap()).unwrap();
    (emu, ca)
}

/// A PEM CA nobody signed the emulator's certificate with.
fn other_ca(dir: &Path) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let path = dir.join("other-ca.pem");
    std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
    path
}

/// The binary with a clean environment for egress (none of the test machine's proxy
/// variables leak in).
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("RUST_LOG");
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "CONNECT_CHATD_CONFIG",
        "CONNECT_CHATD_CA_FILE",
        "CONNECT_CHATD_PROXY",
        "STATE_DIRECTORY",
        "RUNTIME_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// `tail` on `emu`'s chat with these extra variables.
fn tail(emu: &Emulator, token: &str, env: &[(&str, &str)]) -> Child {
    let mut c = command(&["tail", "--log-level", "debug"]);
    c.env("CONNECT_CHATD_ENDPOINT", emu.endpoint())
        .env("CONNECT_PARTICIPANT_TOKEN", token)
        .env("CONNECT_CHATD_HEARTBEAT_INTERVAL", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// Reads stdout lines until one holds `content`.
async fn until_line(
    out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    content: &str,
) -> Value {
    let read = async {
        while let Some(line) = out.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["Content"] == content {
                return v;
            }
        }
        panic!("stdout ended before {content:?}");
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("{content:?} never arrived"))
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} never happened");
}

fn upgrades(emu: &Emulator, participant: &str) -> u64 {
    emu.stats().upgrades.get(participant).copied().unwrap_or(0)
}

/// `tail` through an authenticating proxy (credentials in `HTTPS_PROXY`), over TLS
/// with `CONNECT_CHATD_CA_FILE`: live Items, a renewal (ConnectionExpiry of 3 s), and
/// a socket dropped while a message is published, which is backfilled. Every REST
/// call and every websocket went through the proxy, with credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_through_a_proxy_over_tls_lives_renews_and_backfills() {
    let dir = tempfile::tempdir().unwrap();
    let timing = Timing {
        connection_expiry: Duration::from_secs(3),
        ..Default::default()
    };
    let (emu, ca) = tls_emulator(dir.path(), timing).await;
    assert!(emu.endpoint().starts_with("https://"));
    let proxy = Proxy::start(true).await;
    let chat = emu.create_chat("Ana");
    let mut child = tail(
        &emu,
        chat.participant_token.expose(),
        &[
            ("HTTPS_PROXY", &proxy.url(true)),
            ("CONNECT_CHATD_CA_FILE", ca.to_str().unwrap()),
        ],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let logs = Arc::new(Mutex::new(String::new()));
    let sink = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = err.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    let pid = chat.participant_id.clone();
    eventually("the first socket", || upgrades(&emu, &pid) >= 1).await;
    let say = |text: &str| {
        emu.publish_message(&chat.contact_id, "Agent", ParticipantRole::Agent, text)
            .unwrap()
    };
    say("live over TLS");
    until_line(&mut out, "live over TLS").await;

    // A renewal: a new socket before the 3 s expiry, and Items keep coming.
    eventually("a renewal", || upgrades(&emu, &pid) >= 2).await;
    say("after the renewal");
    until_line(&mut out, "after the renewal").await;

    // A socket dropped abruptly; what is published meanwhile is backfilled.
    let before = upgrades(&emu, &pid);
    emu.drop_sockets(Some(&pid));
    say("published while the socket was down");
    until_line(&mut out, "published while the socket was down").await;
    eventually("a new socket", || upgrades(&emu, &pid) > before).await;

    emu.end_chat(&chat.contact_id).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("tail exits when the chat ends")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let tunnels = proxy.tunnels();
    let port = emu.addr().port();
    let sockets = upgrades(&emu, &pid) as usize;
    assert!(sockets >= 3, "{sockets} sockets");
    // Every socket and at least one REST connection came through the proxy, all with
    // credentials, to the emulator.
    assert!(
        tunnels.len() > sockets,
        "{} tunnels for {sockets} sockets: {tunnels:?}",
        tunnels.len()
    );
    assert!(
        tunnels
            .iter()
            .all(|t| t.authorized && t.target == format!("127.0.0.1:{port}")),
        "{tunnels:?}"
    );
    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("websocket through a CONNECT tunnel"), "{logs}");
    // Neither the proxy's credentials nor a presigned URL's query reach the logs.
    assert!(!logs.contains(PASSWORD) && !logs.contains(USER), "{logs}");
    assert!(!logs.contains("X-Amz-") && !logs.contains("token="), "{logs}");
}

/// In process: a REST call and a websocket each open their own tunnel (targets and
/// credentials recorded), the socket delivers a live Item, and no Debug or error text
/// holds the proxy's password or the presigned URL's query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_websocket_each_tunnel_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, ca) = tls_emulator(dir.path(), Timing::default()).await;
    let proxy = Proxy::start(true).await;
    let chat = emu.create_chat("Bo");
    let settings = EgressSettings {
        proxy: Some(proxy.url(true)),
        ca_file: Some(ca),
        ..Default::default()
    };
    let egress = Egress::from_settings(&settings, &|_| None).unwrap();
    let api = ApiClient::builder(Endpoint::from_url(&emu.endpoint()).unwrap())
        .egress(egress.clone())
        .build()
        .unwrap();
    let created = api
        .create_participant_connection(
            &chat.participant_token,
            &CreateParticipantConnectionRequest {
                connection_types: Some(vec![
                    ConnectionType::Websocket,
                    ConnectionType::ConnectionCredentials,
                ]),
                connect_participant: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(proxy.tunnels().len(), 1, "the REST call tunnelled");
    let url = created.websocket.expect("a websocket URL").url;
    assert!(url.expose().starts_with("wss://"));
    let mut handle = socket::open_via(&url, &SocketConfig::default(), api.egress())
        .await
        .unwrap();
    let tunnels = proxy.tunnels();
    assert_eq!(
        tunnels.len(),
        2,
        "the websocket tunnelled on its own: {tunnels:?}"
    );
    assert!(tunnels
        .iter()
        .all(|t| t.authorized && t.target == format!("127.0.0.1:{}", emu.addr().port())));
    let item = emu
        .publish_message(
            &chat.contact_id,
            "Agent",
            ParticipantRole::Agent,
            "through the tunnel",
        )
        .unwrap();
    let live = async {
        loop {
            match handle.recv().await {
                Some(SocketEvent::Item(got)) if got.id == item.id => return,
                Some(SocketEvent::Item(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), live).await.unwrap();

    let query = url
        .expose()
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .unwrap_or_default();
    let shown = format!("{egress:?} {api:?} {url:?} {url} {:?}", egress.proxies());
    assert!(!shown.contains(PASSWORD) && !shown.contains(USER), "{shown}");
    assert!(query.is_empty() || !shown.contains(&query), "{shown}");
    // A refusing proxy (wrong password): the error names the proxy, not the secret.
    let wrong = EgressSettings {
        proxy: Some(format!("http://{USER}:wrong-{PASSWORD}@127.0.0.1:{}", proxy.port)),
        ca_file: settings.ca_file.clone(),
        ..Default::default()
    };
    let wrong = Egress::from_settings(&wrong, &|_| None).unwrap();
    let e = socket::open_via(&url, &SocketConfig::default(), &wrong)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("requires authentication (407"), "{e}");
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(USER) && !text.contains(&query),
            "{text}"
        );
    }
}

/// `tail` trusting the wrong CA: it exits 1 at once with the certificate problem in
/// its message, nothing retried (the emulator saw no API call); the daemon records the
/// session as failed with the same reason and keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_clearly_instead_of_looping() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, _ca) = tls_emulator(dir.path(), Timing::default()).await;
    let wrong = other_ca(dir.path());
    let chat = emu.create_chat("Cy");
    let child = tail(
        &emu,
        chat.participant_token.expose(),
        &[("CONNECT_CHATD_CA_FILE", wrong.to_str().unwrap())],
    );
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("tail gives up")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("invalid peer certificate: UnknownIssuer"),
        "{stderr}"
    );
    assert!(!stderr.contains("retrying API call"), "{stderr}");
    assert_eq!(emu.stats().calls.get("CreateParticipantConnection"), None);

    // The daemon: the session fails for good, with the reason; the daemon goes on.
    let config = common::daemon::write_config(
        dir.path(),
        &emu,
        &[("wrong-ca", &chat)],
        &format!("ca_file = \"{}\"\n", wrong.display()),
    );
    let mut daemon = command(&["run", "--config", config.to_str().unwrap()])
        .spawn()
        .unwrap();
    let sock = dir.path().join("control.sock");
    let mut last = String::new();
    for _ in 0..400 {
        if sock.exists() {
            last = common::daemon::unix_get(&sock, "/v1/sessions/wrong-ca").await;
            if last.contains("\"failed\"") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        last.contains("\"failed\"") && last.contains("invalid peer certificate: UnknownIssuer"),
        "{last}"
    );
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon keeps running");
    common::daemon::terminate(&mut daemon, Duration::from_secs(10)).await;
}

/// `NO_PROXY` sends the emulator's host direct: the chat works and the proxy sees no
/// tunnel, although `HTTPS_PROXY` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_bypasses_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, ca) = tls_emulator(dir.path(), Timing::default()).await;
    let proxy = Proxy::start(false).await;
    let chat = emu.create_chat("Di");
    let mut child = tail(
        &emu,
        chat.participant_token.expose(),
        &[
            ("HTTPS_PROXY", &proxy.url(false)),
            ("NO_PROXY", "example.com, 127.0.0.0/8"),
            ("CONNECT_CHATD_CA_FILE", ca.to_str().unwrap()),
        ],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let pid = chat.participant_id.clone();
    eventually("a socket", || upgrades(&emu, &pid) >= 1).await;
    emu.publish_message(&chat.contact_id, "Agent", ParticipantRole::Agent, "direct")
        .unwrap();
    until_line(&mut out, "direct").await;
    emu.end_chat(&chat.contact_id).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(proxy.tunnels().len(), 0, "{:?}", proxy.tunnels());
}

/// The daemon: the `proxy` key (credentials from `proxy_credentials_file`) beats a
/// dead `HTTPS_PROXY` in the environment, and `ca_file` trusts the emulator; the
/// session goes live through the proxy. `check-config` shows the route without the
/// password, and a bad `ca_file` is a configuration error naming the key (exit 78).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_takes_the_proxy_key_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, ca) = tls_emulator(dir.path(), Timing::default()).await;
    let proxy = Proxy::start(true).await;
    let chat = emu.create_chat("Ed");
    std::fs::write(dir.path().join("proxy.creds"), format!("{USER}:{PASSWORD}\n")).unwrap();
    let top = format!(
        "proxy = \"{}\"\nproxy_credentials_file = \"proxy.creds\"\nca_file = \"{}\"\n",
        proxy.url(false),
        ca.display()
    );
    let config = common::daemon::write_config(dir.path(), &emu, &[("via-proxy", &chat)], &top);
    let cfg = config.to_str().unwrap();

    let check = command(&["check-config", "--config", cfg])
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        shown.contains(&format!(
            "proxy (https, wss): http://***@127.0.0.1:{}",
            proxy.port
        )),
        "{shown}"
    );
    assert!(
        shown.contains("(1 certificates)") && !shown.contains(PASSWORD),
        "{shown}"
    );

    let mut daemon = command(&["run", "--config", cfg])
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .spawn()
        .unwrap();
    let pid = chat.participant_id.clone();
    eventually("the daemon's socket", || upgrades(&emu, &pid) >= 1).await;
    let sock = dir.path().join("control.sock");
    let mut last = String::new();
    for _ in 0..400 {
        last = common::daemon::unix_get(&sock, "/v1/sessions/via-proxy").await;
        if last.contains("\"live\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(last.contains("\"live\""), "{last}");
    let tunnels = proxy.tunnels();
    assert!(
        tunnels.len() >= 2 && tunnels.iter().all(|t| t.authorized),
        "{tunnels:?}"
    );
    common::daemon::terminate(&mut daemon, Duration::from_secs(10)).await;

    // Bad ca_files: missing, not PEM, no certificate. Each is exit 78 naming ca_file.
    let text = dir.path().join("text.pem");
    std::fs::write(&text, "not a certificate\n").unwrap();
    for (bad, what) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (text, "holds no certificate"),
    ] {
        for sub in ["check-config", "run"] {
            let out = command(&[sub, "--config", cfg])
                .env("CONNECT_CHATD_CA_FILE", &bad)
                .output()
                .await
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{sub}: {err}");
            assert!(
                err.contains("ca_file (from environment variable CONNECT_CHATD_CA_FILE)")
                    && err.contains(what),
                "{sub}: {err}"
            );
        }
    }
}
