//! A real `nats-server -js` for the tests of the NATS consumer and the cluster: found on
//! the PATH (or Debian's /usr/sbin), started on a loopback port with its store in a
//! directory, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The `nats-server` binary, if installed.
pub fn nats_server() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    })
}

/// The `nats-server` binary; without one, `None` after saying the test is skipped, or
/// a failure under CI (`CI` set), which must have installed it.
pub fn nats_server_or_skip() -> Option<PathBuf> {
    let found = nats_server();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is required under CI"
        );
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts JetStream on `port` with its store in `store`, once it accepts connections.
pub async fn start_nats(bin: &Path, port: u16, store: &Path) -> Child {
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server starts");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nats-server did not listen on {port}");
}
