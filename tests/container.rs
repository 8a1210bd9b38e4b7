//! The container image's assumptions, checked without a container engine.
//!
//! The `Dockerfile` copies the binary into `gcr.io/distroless/cc-debian12:nonroot`
//! (glibc, libgcc, a CA bundle, no shell) and runs it as uid 65532 on a read-only root;
//! `deploy/kubernetes/` mounts the configuration, the token secret, the state volume and
//! the shared control-socket directory. This test builds the same shape by hand: a root
//! filesystem in a temporary directory holding only the binary, the shared libraries
//! `ldd` names (with the dynamic loader), the CA bundle, the configuration and a token
//! file — no shell, no `/etc/passwd`, no `/proc`, no `/dev`, no `/tmp` — bind-mounted
//! read-only in a private mount namespace (`unshare --mount`), with only the state
//! directory and the control-socket directory writable, and runs `connect-chatd run` in
//! it with `chroot --userspec=65532:65532` under `setpriv --no-new-privs`. The network
//! namespace is shared, so the daemon reaches the in-process emulator on loopback and
//! the test reaches the daemon's probe listener (on `0.0.0.0`, as in the pod) and its
//! control socket (through the host side of the shared directory, as the application
//! container would).
//!
//! It needs root (`unshare --mount`, `mount`, `chroot`) and util-linux's `unshare`,
//! `mount` and `setpriv`; without them it prints why and passes (SKIPPED).

#![cfg(target_os = "linux")]

mod common;

use common::daemon::terminate;
use common::*;
use connect_chatd::emulator::Timing;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// distroless's `nonroot` user and group.
const UID: u32 = 65532;
const STATE: &str = "/var/lib/connect-chatd";
const RUN: &str = "/run/connect-chatd";
const CONFIG: &str = "/etc/connect-chatd/connect-chatd.toml";
const TOKEN: &str = "/run/secrets/connect-chatd/chat-1.token";

extern "C" {
    fn geteuid() -> u32;
}

/// Why this environment cannot run the test, if it cannot.
fn unsupported() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { geteuid() } != 0 {
        return Some("not root: unshare --mount, mount --bind and chroot need root".into());
    }
    for tool in ["ldd", "unshare", "mount", "chroot", "setpriv"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "unshare --mount fails here: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("unshare does not run: {e}")),
    }
}

/// The files `ldd` says `bin` loads: its libraries and the dynamic loader.
fn shared_libraries(bin: &str) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("ldd runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("not found"), "a library is missing: {text}");
    let libs: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)",
            // "linux-vdso.so.1 (0x…)" (in the kernel: nothing to copy).
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    assert!(
        libs.iter().any(|l| l.to_string_lossy().contains("ld-linux")),
        "ldd names the dynamic loader: {text}"
    );
    libs
}

/// Copies `from` (following symbolic links) to `root` + `to`, creating its directories.
fn install(root: &Path, from: &Path, to: &str, mode: u32) {
    let dest = root.join(to.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to));
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every path under `dir` with its size (directories as 0): what the root holds.
fn tree(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            if meta.is_dir() {
                todo.push(e.path());
                out.insert(rel, 0);
            } else {
                out.insert(rel, meta.len());
            }
        }
    }
    out
}

/// A free TCP port on every interface (closed again: the daemon binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `Name:` line of /proc/PID/status (the kernel's view of the daemon, from outside).
fn status_line(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

async fn probe(port: u16, path: &str) -> Option<u16> {
    let url = format!("http://127.0.0.1:{port}{path}");
    match tokio::time::timeout(Duration::from_secs(5), reqwest::get(url)).await {
        Ok(Ok(r)) => Some(r.status().as_u16()),
        _ => None,
    }
}

/// Reads a Server-Sent Events stream from the control socket until `ids` have all
/// appeared in it (bounded), and returns what was read.
async fn sse_until(sock: &Path, path: &str, ids: &[&str]) -> String {
    let mut c = tokio::net::UnixStream::connect(sock).await.unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    let mut buf = vec![0u8; 16384];
    let read = async {
        while !ids.iter().all(|id| text.contains(id)) {
            let n = c.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), read).await;
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_a_minimal_read_only_root_as_nonroot() {
    if let Some(why) = unsupported() {
        eprintln!("\n*** SKIPPED container::runs_in_a_minimal_read_only_root_as_nonroot: {why} ***\n");
        return;
    }
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Dora");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // The two writable volumes: the journal (the PVC) and the socket directory (the
    // emptyDir shared with the application container), owned by the pod's uid.
    let state = dir.path().join("state");
    let run = dir.path().join("run");
    for d in [&state, &run] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(UID), Some(UID)).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    // The root: what the image holds, and what the pod mounts into it.
    let bin = env!("CARGO_BIN_EXE_connect-chatd");
    install(&root, Path::new(bin), "/usr/local/bin/connect-chatd", 0o755);
    let libs = shared_libraries(bin);
    for lib in &libs {
        install(&root, lib, lib.to_str().unwrap(), 0o755);
    }
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.exists() {
        install(&root, ca, ca.to_str().unwrap(), 0o644);
    }
    let port = free_port();
    let config = format!(
        "endpoint = \"{}\"\nstate_dir = \"{STATE}\"\nstdout = true\n\
         [log]\nformat = \"json\"\n\
         [http]\nlisten = \"0.0.0.0:{port}\"\n\
         [control]\nlisten = \"unix:{RUN}/control.sock\"\n\
         [[sessions]]\nname = \"chat-1\"\nparticipant_token_file = \"{TOKEN}\"\n",
        emu.endpoint()
    );
    let staged = dir.path().join("staged");
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("config"), config).unwrap();
    std::fs::write(
        staged.join("token"),
        format!("{}\n", chat.participant_token.expose()),
    )
    .unwrap();
    install(&root, &staged.join("config"), CONFIG, 0o644);
    // As a Secret volume with `fsGroup: 65532` and `defaultMode: 0440` shows it.
    install(&root, &staged.join("token"), TOKEN, 0o440);
    let token_in_root = root.join(TOKEN.trim_start_matches('/'));
    std::os::unix::fs::chown(&token_in_root, Some(0), Some(UID)).unwrap();
    for mount_point in [STATE, RUN] {
        std::fs::create_dir_all(root.join(mount_point.trim_start_matches('/'))).unwrap();
    }
    let before = tree(&root);
    for absent in ["bin/sh", "etc/passwd", "proc", "dev", "tmp"] {
        assert!(!root.join(absent).exists(), "the root has no {absent}");
    }

    // A private mount namespace: the root read-only, the two volumes writable on top;
    // then the image's ENTRYPOINT + CMD as uid/gid 65532, no new privileges. (The shell
    // runs outside the root, before the chroot.)
    let script = r#"set -e
mount --bind "$1" "$1"
mount -o remount,bind,ro "$1"
mount --bind "$2" "$1/var/lib/connect-chatd"
mount --bind "$3" "$1/run/connect-chatd"
shift 3
exec setpriv --no-new-privs chroot --userspec=65532:65532 --groups=65532 "$@""#;
    let mut child = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"])
        .arg(&root)
        .arg(&state)
        .arg(&run)
        .arg(&root)
        .args(["/usr/local/bin/connect-chatd", "run", "--config", CONFIG])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let stdout = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = Arc::new(Mutex::new(Vec::<String>::new()));
    for (lines, pipe) in [
        (stdout.clone(), Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        (stderr.clone(), Box::new(child.stderr.take().unwrap())),
    ] {
        tokio::spawn(async move {
            let mut r = BufReader::new(pipe).lines();
            while let Ok(Some(l)) = r.next_line().await {
                lines.lock().unwrap().push(l);
            }
        });
    }
    let log = || stderr.lock().unwrap().join("\n");

    // It starts: /healthz answers on the probe listener, /readyz turns 200 once chat-1
    // has subscribed.
    let mut healthy = false;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the daemon exited ({status}) in the minimal root:\n{}", log());
        }
        if probe(port, "/healthz").await == Some(200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "/healthz never answered 200:\n{}", log());
    let mut ready = None;
    for _ in 0..400 {
        ready = probe(port, "/readyz").await;
        if ready == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, Some(200), "/readyz never turned 200:\n{}", log());

    // The process, as the kernel sees it: uid and gid 65532, no capabilities, no new
    // privileges, its root the read-only one.
    assert_eq!(status_line(pid, "Uid"), "65532 65532 65532 65532");
    assert_eq!(status_line(pid, "Gid"), "65532 65532 65532 65532");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(status_line(pid, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(status_line(pid, "NoNewPrivs"), "1");
    // Its mounts, seen from its root: / read-only, the two volumes writable, nothing
    // else (no /proc, no /dev).
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mounts: BTreeMap<&str, bool> = mountinfo
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[4], f[5].split(',').any(|o| o == "ro"))
        })
        .collect();
    assert_eq!(
        mounts,
        BTreeMap::from([("/", true), (STATE, false), (RUN, false)]),
        "mount point: read-only\n{mountinfo}"
    );

    // Items the agent sends reach the daemon's stdout (one JSON line per Item) and the
    // control socket in the shared directory (as the application container reads it).
    let one = agent_says(&emu, &chat, "hello from outside the root");
    let two = agent_says(&emu, &chat, "second");
    let (one, two) = (one.id.unwrap(), two.id.unwrap());
    let mut seen = Vec::new();
    for _ in 0..400 {
        seen = stdout
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).expect("stdout is JSON lines"))
            .filter(|v| v["session"] == "chat-1")
            .filter_map(|v| v["item"]["Id"].as_str().map(str::to_string))
            .collect();
        if seen.contains(&two) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = |id: &String| seen.iter().position(|s| s == id);
    assert!(
        at(&one).is_some() && at(&one) < at(&two),
        "both messages on stdout, in order: {seen:?}\n{}",
        log()
    );
    assert_same_ids(
        &seen,
        &persisted(&emu.transcript(&chat.contact_id).unwrap()),
        "stdout against the transcript",
    );
    let sock = run.join("control.sock");
    let meta = std::fs::metadata(&sock).expect("the control socket is in the shared directory");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (UID, 0o600),
        "the socket is the pod user's, mode 0600"
    );
    let session = common::daemon::unix_get(&sock, "/v1/sessions/chat-1").await;
    assert!(session.contains(r#""state":"live""#), "{session}");
    let items = sse_until(&sock, "/v1/items?from=start", &[&one, &two]).await;
    assert!(
        items.contains(&format!("id: chat-1/{one}")) && items.contains(&format!("id: chat-1/{two}")),
        "GET /v1/items over the shared socket: {items}"
    );

    // SIGTERM (what the kubelet sends) is a clean exit 0.
    terminate(&mut child, Duration::from_secs(30)).await;

    // The logs on stderr are JSON, one object a line.
    let logs = stderr.lock().unwrap().clone();
    assert!(!logs.is_empty(), "the daemon logged something");
    for l in &logs {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v.is_object(), "{l}");
    }
    // Only the volumes were written: the journal is in the state directory, owned by
    // the pod's uid, and the root is as it was built.
    let journal: Vec<_> = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap()).collect();
    assert!(
        journal.iter().any(|e| e.file_name() == "journal.sqlite3"),
        "the journal is on the state volume: {:?}",
        journal.iter().map(|e| e.file_name()).collect::<Vec<_>>()
    );
    for e in &journal {
        assert_eq!(e.metadata().unwrap().uid(), UID, "{:?}", e.file_name());
    }
    assert_eq!(tree(&root), before, "nothing was written into the root");
    eprintln!(
        "container: ran in a root of {} files ({} shared libraries), as uid {UID}",
        before.values().filter(|s| **s > 0).count(),
        libs.len()
    );
}
