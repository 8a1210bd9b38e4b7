//! The container image's assumptions, checked without a container engine.
//!
//! The `Dockerfile` copies the binary into `gcr.io/distroless/cc-debian12:nonroot`
//! (glibc, libgcc, a CA bundle, no shell) and runs it as uid 65532 on a read-only root;
//! `deploy/kubernetes/` mounts the configuration, the token secret, the state volume and
//! the shared control-socket directory. The first test builds the same shape by hand: a root
//! filesystem in a temporary directory holding only the binary, the shared libraries
//! `ldd` names (with the dynamic loader), the CA bundle, the configuration and a token
//! file — no shell, no `/etc/passwd`, no `/proc`, no `/dev`, no `/tmp` — bind-mounted
//! read-only in a private mount namespace (`unshare --mount`), with only the state
//! directory and the control-socket directory writable, and runs `connect-chatd run` in
//! it with `chroot --userspec=65532:65532` under `setpriv --no-new-privs` — the
//! Dockerfile's ENTRYPOINT and CMD, with the ConfigMap's TOML (only its endpoint and
//! probe port changed, through the environment, and stdout turned on). The network
//! namespace is shared, so the daemon reaches the in-process emulator on loopback and
//! the test reaches the daemon's probe listener (on `0.0.0.0`, as in the pod) and its
//! control socket (through the host side of the shared directory, as the application
//! container would).
//!
//! It needs root (`unshare --mount`, `mount`, `chroot`) and util-linux's `unshare`,
//! `mount` and `setpriv`; without them it prints why and passes (SKIPPED).
//!
//! The second test parses the manifests with Python's PyYAML and checks that they fit
//! the daemon and the image: mount paths against the ConfigMap's TOML, the probes
//! against `http.listen`, the securityContext, the Secret's keys; with
//! `kubernetes-validate` on PATH (`.ci/run` installs both) also against the Kubernetes
//! schemas, and with `kubectl` the kustomization. Without python3 and PyYAML it prints
//! why and passes (SKIPPED).

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
/// The pod's mounts (deploy/kubernetes/deployment.yaml).
const CONFIG_DIR: &str = "/etc/connect-chatd";
const SECRETS: &str = "/run/secrets/connect-chatd";
const STATE: &str = "/var/lib/connect-chatd";
const RUN: &str = "/run/connect-chatd";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The final stage of the Dockerfile: its base image, USER, and ENTRYPOINT + CMD (exec
/// form, JSON arrays).
struct Image {
    base: String,
    user: String,
    argv: Vec<String>,
}

fn dockerfile() -> Image {
    let text = repo_file("Dockerfile");
    let last = |key: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix(key))
            .next_back()
            .unwrap_or_else(|| panic!("the Dockerfile has a {key}line"))
            .trim()
            .to_string()
    };
    let array = |key: &str| -> Vec<String> {
        serde_json::from_str(&last(key)).unwrap_or_else(|e| panic!("{key}is an exec-form array: {e}"))
    };
    let mut argv = array("ENTRYPOINT ");
    argv.extend(array("CMD "));
    Image {
        base: last("FROM "),
        user: last("USER "),
        argv,
    }
}

/// The TOML under `connect-chatd.toml: |` in deploy/kubernetes/configmap.yaml (the
/// block scalar, de-indented; the manifests test checks it against PyYAML's reading).
fn configmap_toml() -> String {
    let yaml = repo_file("deploy/kubernetes/configmap.yaml");
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "connect-chatd.toml: |");
    let key = lines
        .next()
        .expect("configmap.yaml has a connect-chatd.toml block");
    let indent = key.len() - key.trim_start().len() + 2;
    let mut toml = String::new();
    for l in lines {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
            break;
        }
        toml.push_str(l.get(indent..).unwrap_or(""));
        toml.push('\n');
    }
    toml.trim_end().to_string() + "\n"
}

fn parse_toml(text: &str) -> Value {
    use figment::providers::Format;
    figment::Figment::from(figment::providers::Toml::string(text))
        .extract()
        .expect("the TOML parses")
}

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
    // What the test does, on an empty directory: a private mount namespace, a
    // read-only bind mount (a container without CAP_SYS_ADMIN fails here).
    let dir = tempfile::tempdir().unwrap();
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1""#)
        .arg("sh")
        .arg(dir.path())
        .output();
    match probe {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "unshare --mount with a read-only bind mount fails here: {}",
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

/// Writes `content` at `root` + `path` the way a ConfigMap or Secret volume shows a key:
/// `path` -> `..data/NAME` -> `..TIMESTAMP/NAME`, the file root-owned, group `gid`.
fn projected(root: &Path, path: &str, content: &[u8], mode: u32, gid: u32) {
    let path = root.join(path.trim_start_matches('/'));
    let (dir, name) = (path.parent().unwrap(), path.file_name().unwrap());
    let stamp = dir.join("..2026_12_04_00_00_00.000000001");
    std::fs::create_dir_all(&stamp).unwrap();
    let file = stamp.join(name);
    std::fs::write(&file, content).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(&file, Some(0), Some(gid)).unwrap();
    if !dir.join("..data").exists() {
        std::os::unix::fs::symlink(stamp.file_name().unwrap(), dir.join("..data")).unwrap();
    }
    std::os::unix::fs::symlink(Path::new("..data").join(name), &path).unwrap();
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
    let image = dockerfile();
    assert!(
        image.base.starts_with("gcr.io/distroless/cc-debian12"),
        "{}",
        image.base
    );
    assert_eq!(image.user, format!("{UID}:{UID}"));
    let entrypoint = image.argv[0].clone();
    let bin = env!("CARGO_BIN_EXE_connect-chatd");
    install(&root, Path::new(bin), &entrypoint, 0o755);
    let libs = shared_libraries(bin);
    for lib in &libs {
        install(&root, lib, lib.to_str().unwrap(), 0o755);
    }
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.exists() {
        install(&root, ca, ca.to_str().unwrap(), 0o644);
    }
    let config_path = image
        .argv
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("CMD gives --config");
    assert_eq!(Path::new(config_path).parent(), Some(Path::new(CONFIG_DIR)));
    let toml = configmap_toml();
    let config = parse_toml(&toml);
    assert_eq!(config["state_dir"], STATE);
    assert_eq!(config["control"]["listen"], format!("unix:{RUN}/control.sock"));
    assert_eq!(config["log"]["format"], "json");
    let token_path = config["sessions"][0]["participant_token_file"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token_path.starts_with(&format!("{SECRETS}/")), "{token_path}");
    let session = config["sessions"][0]["name"].as_str().unwrap().to_string();
    // As the kubelet lays out a ConfigMap or Secret volume: each key a symbolic link
    // through `..data` into a timestamped directory; the Secret's files group 65532
    // (fsGroup) with `defaultMode: 0440`.
    projected(&root, config_path, toml.as_bytes(), 0o644, 0);
    let token = format!("{}\n", chat.participant_token.expose());
    projected(&root, &token_path, token.as_bytes(), 0o440, UID);
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
root=$1 state=$2 run=$3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$state" "$root$4"
mount --bind "$run" "$root$5"
shift 5
exec setpriv --no-new-privs chroot --userspec=65532:65532 --groups=65532 "$root" "$@""#;
    let port = free_port();
    let mut child = tokio::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args([&root, &state, &run])
        .args([STATE, RUN])
        .args(&image.argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        // The layers above the file: the emulator instead of the region, a free port
        // instead of 9100, and the Items on stdout too.
        .env("CONNECT_CHATD_ENDPOINT", emu.endpoint())
        .env("CONNECT_CHATD_HTTP__LISTEN", format!("0.0.0.0:{port}"))
        .env("CONNECT_CHATD_STDOUT", "true")
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
        (
            stdout.clone(),
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        ),
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
    // The same port serves Prometheus, naming no chat.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("connect_chatd_"), "{metrics}");
    assert!(!metrics.contains(&session), "no session named in /metrics");

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
            .filter(|v| v["session"] == session.as_str())
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
    let view = common::daemon::unix_get(&sock, &format!("/v1/sessions/{session}")).await;
    assert!(view.contains(r#""state":"live""#), "{view}");
    let items = sse_until(&sock, "/v1/items?from=start", &[&one, &two]).await;
    assert!(
        items.contains(&format!("id: {session}/{one}")) && items.contains(&format!("id: {session}/{two}")),
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
        "container: ran in a root of {} entries ({} shared libraries), as uid {UID}",
        before.len(),
        libs.len()
    );
}

/// Runs `python3` with PyYAML over `files`: every document of each as JSON, or why not.
fn yaml_documents(files: &[PathBuf]) -> Result<Vec<(String, Vec<Value>)>, String> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        print(json.dumps([[f, list(yaml.safe_load_all(open(f)))] for f in sys.argv[1:]]))";
    let out = Command::new("python3")
        .arg("-c")
        .arg("import yaml")
        .output()
        .map_err(|e| format!("python3 does not run: {e}"))?;
    if !out.status.success() {
        return Err("PyYAML is not installed (pip install pyyaml, or apt-get install python3-yaml)".into());
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a manifest is not valid YAML:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[test]
fn kubernetes_manifests_fit_the_daemon_and_the_image() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let docs = match yaml_documents(&files) {
        Ok(d) => d,
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED container::kubernetes_manifests_fit_the_daemon_and_the_image: {why} ***\n"
            );
            return;
        }
    };
    let mut kinds = BTreeMap::new();
    for (file, list) in &docs {
        for d in list {
            let kind = d["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: a document without kind"));
            assert!(kinds.insert(kind.to_string(), d.clone()).is_none(), "one {kind}");
        }
    }
    let kind = |k: &str| {
        kinds
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in deploy/kubernetes"))
    };
    let (configmap, secret, pvc, deployment) = (
        kind("ConfigMap"),
        kind("Secret"),
        kind("PersistentVolumeClaim"),
        kind("Deployment"),
    );
    let resources = kind("Kustomization")["resources"].as_array().unwrap();
    for f in ["configmap.yaml", "pvc.yaml", "deployment.yaml"] {
        assert!(resources.iter().any(|r| r == f), "kustomization.yaml lists {f}");
    }
    assert!(
        !resources.iter().any(|r| r == "secret.example.yaml"),
        "the example Secret is never applied over a real one"
    );

    // The ConfigMap's TOML is the one the chroot test runs, and it fits the mounts.
    let toml = configmap["data"]["connect-chatd.toml"].as_str().unwrap();
    assert_eq!(
        toml,
        configmap_toml(),
        "configmap_toml() reads the block as YAML does"
    );
    let config = parse_toml(toml);
    let listen = config["http"]["listen"].as_str().expect("http.listen is set");
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    assert!(
        addr.ip().is_unspecified(),
        "the kubelet probes the pod IP: {listen}"
    );

    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let image = dockerfile();
    let ctx = &pod["securityContext"];
    assert_eq!(ctx["runAsNonRoot"], true);
    assert_eq!(format!("{}:{}", ctx["runAsUser"], ctx["runAsGroup"]), image.user);
    assert_eq!(ctx["fsGroup"], UID);
    assert_eq!(ctx["seccompProfile"]["type"], "RuntimeDefault");
    let sidecar = by_name(&pod["initContainers"], "connect-chatd");
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    assert!(
        sidecar.get("command").is_none() && sidecar.get("args").is_none(),
        "the image's ENTRYPOINT and CMD run: {:?}",
        image.argv
    );
    let app = by_name(&pod["containers"], "app");
    for c in [sidecar, app] {
        let s = &c["securityContext"];
        assert_eq!(s["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(s["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(
            s["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{}",
            c["name"]
        );
        assert_eq!(s["seccompProfile"]["type"], "RuntimeDefault", "{}", c["name"]);
    }

    // The probes: /healthz live, /readyz ready, on the port http.listen binds.
    let port = by_name(&sidecar["ports"], "probes")["containerPort"]
        .as_u64()
        .unwrap();
    assert_eq!(port, u64::from(addr.port()));
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &sidecar[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(get["port"] == "probes" || get["port"] == port, "{probe}");
    }

    // The mounts against the configuration and the image's CMD.
    let mount = |c: &Value, volume: &str| by_name(&c["volumeMounts"], volume).clone();
    let volume = |name: &str| by_name(&pod["volumes"], name).clone();
    let config_path = image.argv.iter().skip_while(|a| *a != "--config").nth(1).unwrap();
    let config_mount = mount(sidecar, "config");
    assert_eq!(config_mount["mountPath"], CONFIG_DIR);
    assert_eq!(Path::new(config_path).parent(), Some(Path::new(CONFIG_DIR)));
    assert_eq!(config_mount["readOnly"], true);
    let config_volume = volume("config");
    assert_eq!(config_volume["configMap"]["name"], configmap["metadata"]["name"]);
    let file_name = Path::new(config_path).file_name().unwrap().to_str().unwrap();
    assert!(
        configmap["data"].get(file_name).is_some(),
        "the ConfigMap's key is {file_name}"
    );

    let tokens = mount(sidecar, "tokens");
    assert_eq!(tokens["mountPath"], SECRETS);
    assert_eq!(tokens["readOnly"], true);
    let tokens_volume = volume("tokens");
    assert_eq!(tokens_volume["secret"]["secretName"], secret["metadata"]["name"]);
    assert_eq!(tokens_volume["secret"]["defaultMode"], 0o440);
    for s in config["sessions"].as_array().unwrap() {
        let file = s["participant_token_file"].as_str().unwrap();
        let key = file
            .strip_prefix(&format!("{SECRETS}/"))
            .unwrap_or_else(|| panic!("{file} is in the Secret's mount"));
        assert!(
            secret["stringData"].get(key).is_some(),
            "the example Secret has {key}"
        );
    }

    assert_eq!(config["state_dir"], STATE);
    assert_eq!(mount(sidecar, "state")["mountPath"], STATE);
    assert_eq!(
        volume("state")["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );

    let control = config["control"]["listen"].as_str().unwrap();
    assert_eq!(control, format!("unix:{RUN}/control.sock"));
    assert_eq!(mount(sidecar, "control")["mountPath"], RUN);
    assert_eq!(
        mount(app, "control")["mountPath"],
        RUN,
        "the application mounts the socket's directory"
    );
    assert!(volume("control").get("emptyDir").is_some());
    assert_eq!(config["log"]["format"], "json");

    // The Kubernetes schemas and the kustomization, where the tools are installed.
    // With the cluster example (deploy/kubernetes/cluster/: a StatefulSet).
    let cluster = dir.join("cluster/statefulset.yaml");
    assert!(cluster.is_file(), "deploy/kubernetes/cluster/statefulset.yaml");
    match Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(&files)
        .arg(&cluster)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "kubernetes-validate --strict:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("*** kubernetes-validate is not installed: the schemas were not checked ***"),
    }
    match Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        Ok(out) => assert!(
            out.status.success(),
            "kubectl kustomize: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("*** kubectl is not installed: the kustomization was not built ***"),
    }
}
