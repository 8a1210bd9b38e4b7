//! A client of the control API for the CLI (`connect-chatd sessions …`, `stream`):
//! HTTP/1.1 over the daemon's unix socket, or over loopback TCP with the bearer secret.

use crate::secret::Secret;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the daemon's control API is.
#[derive(Debug, Clone)]
pub enum Control {
    Unix(PathBuf),
    Tcp {
        addr: SocketAddr,
        bearer: Option<Secret>,
    },
}

impl Control {
    /// `unix:PATH`, a path with a `/`, or `HOST:PORT`.
    pub fn parse(s: &str, bearer: Option<Secret>) -> Result<Control, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Control::Unix(PathBuf::from(p)));
        }
        if s.contains('/') {
            return Ok(Control::Unix(PathBuf::from(s)));
        }
        s.parse()
            .map(|addr| Control::Tcp { addr, bearer })
            .map_err(|_| format!("{s:?} is neither unix:PATH nor HOST:PORT"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {at}: {source}")]
    Connect {
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the control API failed: {0}")]
    Http(String),
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(control: &Control) -> Result<Sender, ClientError> {
    macro_rules! handshake {
        ($stream:expr) => {{
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new($stream))
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        }};
    }
    Ok(match control {
        Control::Unix(path) => {
            let stream =
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|source| ClientError::Connect {
                        at: format!("unix:{}", path.display()),
                        source,
                    })?;
            handshake!(stream)
        }
        Control::Tcp { addr, .. } => {
            let stream =
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|source| ClientError::Connect {
                        at: addr.to_string(),
                        source,
                    })?;
            handshake!(stream)
        }
    })
}

fn request(
    control: &Control,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "connect-chatd");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Control::Tcp { bearer: Some(b), .. } = control {
        req = req.header("authorization", format!("Bearer {}", b.expose()));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(b.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    req.body(body).expect("a valid request")
}

/// One request: the status and the body.
pub async fn call(
    control: &Control,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, Bytes), ClientError> {
    call_with(control, method, path, body, &[]).await
}

/// [`call`] with extra request headers.
pub async fn call_with(
    control: &Control,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    headers: &[(&str, &str)],
) -> Result<(u16, Bytes), ClientError> {
    let mut sender = connect(control).await?;
    let resp = sender
        .send_request(request(control, method, path, body, headers))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}

/// Follows a Server-Sent Events stream, handing each event's `data` to `on_data`
/// (which returns false to stop). Returns the status if it is not 200, with its body.
pub async fn stream(
    control: &Control,
    path: &str,
    mut on_data: impl FnMut(&str) -> bool,
) -> Result<Option<(u16, Bytes)>, ClientError> {
    let mut sender = connect(control).await?;
    let resp = sender
        .send_request(request(control, "GET", path, None, &[]))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if status != 200 {
        let bytes = body
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        return Ok(Some((status, bytes)));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
        let Some(chunk) = frame.data_ref() else { continue };
        buf.extend_from_slice(chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                if !on_data(data.trim_start()) {
                    return Ok(None);
                }
            }
        }
    }
    Ok(None)
}
