//! An HTTP CONNECT tunnel through a proxy, for the websocket dial (reqwest tunnels the
//! REST calls itself): connect to the proxy, ask for `CONNECT host:port`, with
//! `Proxy-Authorization: Basic` when the proxy has credentials, and hand back the TCP
//! stream once the proxy answers 2xx. TLS (for `wss://`) then runs inside it, end to
//! end with the service.

use super::proxy::{authority, ProxyUrl};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a proxy's answer to CONNECT may be (status line and headers).
const MAX_RESPONSE: usize = 16 * 1024;

/// Why a tunnel could not be opened. Messages name the proxy by `host:port` only: no
/// credentials, and the target by `host:port` (never a URL's query).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("cannot connect to the proxy {proxy}: {message}")]
    Connect { proxy: String, message: String },
    #[error("the proxy {proxy} requires authentication (407 {reason}){hint}")]
    AuthRequired {
        proxy: String,
        reason: String,
        hint: &'static str,
    },
    #[error("the proxy {proxy} refused CONNECT {target}: {status} {reason}")]
    Refused {
        proxy: String,
        target: String,
        status: u16,
        reason: String,
    },
    #[error("the proxy {proxy} answered CONNECT with something that is not HTTP: {message}")]
    Malformed { proxy: String, message: String },
    #[error("the proxy {proxy} closed or failed the connection during CONNECT: {message}")]
    Io { proxy: String, message: String },
}

/// A parsed answer to CONNECT: its status and reason, and how many bytes the head took.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectResponse {
    pub status: u16,
    pub reason: String,
    pub head_len: usize,
}

/// Parses a proxy's answer: `Ok(None)` while the head (up to the blank line) is not
/// complete yet.
pub fn parse_connect_response(buf: &[u8]) -> Result<Option<ConnectResponse>, String> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return Err("no HTTP status line".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "the answer is not text".to_string())?;
    let status_line = head.split("\r\n").next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(format!("unexpected status line {:?}", printable(status_line)));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("no status code in {:?}", printable(status_line)))?;
    let reason = printable(parts.next().unwrap_or("").trim());
    Ok(Some(ConnectResponse {
        status,
        reason,
        head_len: end + 4,
    }))
}

/// At most 100 printable characters of what a proxy said.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// The CONNECT request for `target` (`host:port`).
pub fn connect_request(target: &str, proxy: &ProxyUrl) -> String {
    let mut req = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {}\r\n",
        crate::api::client::USER_AGENT
    );
    if let Some(c) = &proxy.credentials {
        req.push_str("Proxy-Authorization: ");
        req.push_str(c.header_value().expose());
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

/// Opens a tunnel to `host:port` through `proxy`; the stream has Nagle off.
pub async fn connect(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    let name = proxy.authority();
    let io = |message: String| ProxyError::Io {
        proxy: name.clone(),
        message,
    };
    let mut tcp = tokio::time::timeout(timeout, TcpStream::connect((proxy.host.as_str(), proxy.port)))
        .await
        .map_err(|_| ProxyError::Connect {
            proxy: name.clone(),
            message: format!("timed out after {timeout:?}"),
        })?
        .map_err(|e| ProxyError::Connect {
            proxy: name.clone(),
            message: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let target = authority(host, port);
    tcp.write_all(connect_request(&target, proxy).as_bytes())
        .await
        .map_err(|e| io(e.to_string()))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let answer = loop {
        let n = tcp.read(&mut chunk).await.map_err(|e| io(e.to_string()))?;
        if n == 0 {
            return Err(io("closed before answering".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let parsed = parse_connect_response(&buf).map_err(|message| ProxyError::Malformed {
            proxy: name.clone(),
            message,
        })?;
        match parsed {
            Some(answer) => break answer,
            None if buf.len() > MAX_RESPONSE => {
                return Err(ProxyError::Malformed {
                    proxy: name,
                    message: format!("an answer head over {MAX_RESPONSE} bytes"),
                })
            }
            None => {}
        }
    };
    match answer.status {
        200..=299 if buf.len() == answer.head_len => Ok(tcp),
        // The client speaks first in both TLS and a websocket upgrade: a proxy that
        // sends more is not a tunnel.
        200..=299 => Err(ProxyError::Malformed {
            proxy: name,
            message: "data after the 2xx answer, before the tunnel was used".into(),
        }),
        407 => Err(ProxyError::AuthRequired {
            proxy: name,
            reason: answer.reason,
            hint: if proxy.credentials.is_some() {
                ": the credentials were refused"
            } else {
                ": give user:password in the proxy URL or a proxy_credentials_file"
            },
        }),
        status => Err(ProxyError::Refused {
            proxy: name,
            target,
            status,
            reason: answer.reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::proxy::ProxyCredentials;
    use crate::secret::Secret;

    #[test]
    fn connect_answers_parse() {
        assert_eq!(parse_connect_response(b"HTTP/1.1 200 Conn"), Ok(None));
        assert_eq!(parse_connect_response(b""), Ok(None));
        let head = b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n";
        let ok = parse_connect_response(head).unwrap().unwrap();
        assert_eq!(
            (ok.status, ok.reason.as_str(), ok.head_len),
            (200, "Connection established", head.len())
        );
        let bare = parse_connect_response(b"HTTP/1.0 200\r\n\r\n").unwrap().unwrap();
        assert_eq!((bare.status, bare.reason.as_str()), (200, ""));
        let denied = parse_connect_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(denied.status, 407);
        assert!(parse_connect_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_connect_response(b"garbage!").is_err());
        assert!(parse_connect_response(b"HTTP/1.1 2000 x\r\n\r\n").is_err());
        assert!(parse_connect_response(b"HTTP/2 200\r\n\r\n").is_err());
    }

    #[test]
    fn the_request_carries_basic_auth_only_with_credentials() {
        let mut proxy = ProxyUrl::parse("http://proxy:3128").unwrap();
        let plain = connect_request("h.example:443", &proxy);
        assert!(plain.starts_with("CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n"));
        assert!(!plain.contains("Proxy-Authorization"));
        proxy.credentials = Some(ProxyCredentials {
            user: Secret::new("u"),
            password: Secret::new("p"),
        });
        assert!(connect_request("h:443", &proxy).contains("Proxy-Authorization: Basic dTpw\r\n"));
    }

    #[tokio::test]
    async fn refusals_are_typed_and_name_no_secret() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
                "HTTP/1.1 403 Forbidden\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let proxy = ProxyUrl::parse(&format!("http://user:hunter2@127.0.0.1:{port}")).unwrap();
        let e = connect(&proxy, "h.example", 443, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyError::AuthRequired { .. }), "{e}");
        let e2 = connect(&proxy, "h.example", 443, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e2, ProxyError::Refused { status: 403, .. }), "{e2}");
        for shown in [e.to_string(), format!("{e:?}"), e2.to_string(), format!("{e2:?}")] {
            assert!(!shown.contains("hunter2") && !shown.contains("user"), "{shown}");
        }
    }
}
