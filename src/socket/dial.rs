//! Dialling a presigned websocket URL: TCP (no Nagle), directly or through an HTTP
//! CONNECT tunnel when the [`Egress`] has a proxy for the host, TLS for `wss://` with
//! the egress's rustls configuration (inside the tunnel, end to end), then the HTTP
//! upgrade.
//!
//! The stream type is our own rather than tokio-tungstenite's `MaybeTlsStream`, which
//! holds a whole rustls connection inline (over a kilobyte) in every socket, TLS or
//! not: here a TLS connection is boxed, so a plain socket carries none of it and an
//! idle socket's task stays small.

use super::SocketError;
use crate::egress::{tunnel, Egress};
use crate::secret::PresignedUrl;
use reqwest::Url;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;
use url::Host;

/// A websocket's transport: plain TCP (loopback `ws://` only) or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub type Ws = WebSocketStream<Stream>;

/// Connects to `parsed` (the checked form of `url`) and upgrades to a websocket. The
/// URL's query (its credentials) is sent, never logged or put into an error.
pub async fn dial(
    url: &PresignedUrl,
    parsed: &Url,
    config: WebSocketConfig,
    egress: &Egress,
    timeout: std::time::Duration,
) -> Result<Ws, SocketError> {
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| SocketError::Dial("the URL has no port".into()))?;
    let host = match parsed.host() {
        Some(Host::Domain(d)) => d.to_string(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(SocketError::Dial("the URL has no host".into())),
    };
    let tcp = match egress.proxy_for(parsed) {
        Some(proxy) => {
            tracing::debug!(%proxy, "websocket through a CONNECT tunnel");
            tunnel::connect(proxy, &host, port, timeout).await?
        }
        None => {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| SocketError::Dial(format!("cannot connect to {host}:{port}: {e}")))?;
            tcp.set_nodelay(true)
                .map_err(|e| SocketError::Dial(format!("cannot set TCP_NODELAY: {e}")))?;
            tcp
        }
    };
    let stream = if parsed.scheme() == "wss" {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| SocketError::Dial(format!("invalid TLS server name {host:?}: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(egress.tls());
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| SocketError::Tls(format!("TLS with {host}: {e}")))?;
        Stream::Tls(Box::new(tls))
    } else {
        Stream::Plain(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async_with_config(url.expose(), stream, Some(config))
        .await
        .map_err(|e| match e {
            WsError::Http(resp) => SocketError::Refused(resp.status().as_u16()),
            other => SocketError::Dial(other.to_string()),
        })?;
    Ok(ws)
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
