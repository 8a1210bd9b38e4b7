//! The CONNECT proxy of `tests/egress.rs`: tokio TCP on loopback, one task a client.
//! It counts tunnels and records each CONNECT target and whether the expected
//! `Proxy-Authorization: Basic` came; with `require_auth`, a CONNECT without it gets
//! 407. Bytes are then copied both ways (it never sees inside the TLS).

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const USER: &str = "svc-chat";
pub const PASSWORD: &str = "pr0xy-S3cret";

/// One CONNECT the proxy was asked for.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub target: String,
    pub authorized: bool,
}

/// A CONNECT proxy on loopback. With `require_auth`, a CONNECT without the right
/// `Proxy-Authorization: Basic` gets 407.
pub struct Proxy {
    pub port: u16,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
}

impl Proxy {
    pub async fn start(require_auth: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(client, seen.clone(), require_auth));
            }
        });
        Proxy { port, tunnels }
    }

    pub fn url(&self, with_credentials: bool) -> String {
        match with_credentials {
            true => format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", self.port),
            false => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}

async fn serve(mut client: TcpStream, seen: Arc<Mutex<Vec<Tunnel>>>, require_auth: bool) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or("").to_string();
    let Some(target) = request.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next()) else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await;
        return;
    };
    use base64::Engine;
    let expected = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let authorized = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.strip_prefix("proxy-authorization:").map(str::trim) == Some(expected.to_ascii_lowercase().as_str())
    });
    seen.lock().unwrap().push(Tunnel {
        target: target.to_string(),
        authorized,
    });
    if require_auth && !authorized {
        let _ = client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n\r\n")
            .await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}
