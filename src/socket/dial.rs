//! Dialling a presigned websocket URL: TCP (no Nagle), directly or through an HTTP
//! CONNECT tunnel when the [`Egress`] has a proxy for the host, TLS for `wss://` with
//! the egress's rustls configuration (inside the tunnel, end to end), then the HTTP
//! upgrade (`upgrade.rs`).
//!
//! The stream type is our own rather than tokio-tungstenite's `MaybeTlsStream`, which
//! holds a whole rustls connection inline (over a kilobyte) in every socket, TLS or
//! not: here a TLS connection is boxed, so a plain socket carries none of it and an
//! idle socket's task stays small.
//!
//! It also reads ahead: a read goes into a per-thread 64 KiB scratch buffer, and what
//! tungstenite has no room for waits in a buffer of the socket's own that exists only
//! while it holds something. So tungstenite's own read buffer can be small (an idle
//! socket holds half a kilobyte, not four), and a burst still takes one system call per
//! 64 KiB.

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
use tokio_tungstenite::WebSocketStream;
use url::Host;

/// A websocket's transport, with what was read ahead of tungstenite.
pub struct Stream {
    io: Transport,
    /// Bytes read but not yet taken, from `ahead_pos` on; empty (no allocation) when
    /// nothing is waiting.
    ahead: Vec<u8>,
    ahead_pos: usize,
}

/// Plain TCP (loopback `ws://` only) or TLS over TCP.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The most one read takes from the network.
const READ_AHEAD: usize = 64 * 1024;

thread_local! {
    /// Where reads land before what fits is handed on (one per runtime thread).
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_AHEAD].into_boxed_slice());
}

impl Stream {
    /// A plain TCP transport (`ws://`).
    pub(crate) fn plain(tcp: TcpStream) -> Stream {
        Stream::new(Transport::Plain(tcp))
    }

    fn new(io: Transport) -> Stream {
        Stream {
            io,
            ahead: Vec::new(),
            ahead_pos: 0,
        }
    }

    /// Puts `bytes` (read past the upgrade answer) back before whatever comes next.
    pub(super) fn give_back(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let mut ahead = bytes.to_vec();
            ahead.extend_from_slice(&self.ahead[self.ahead_pos..]);
            self.ahead = ahead;
            self.ahead_pos = 0;
        }
    }

    /// Hands on what was read ahead: true if there was any.
    fn take_ahead(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let waiting = &self.ahead[self.ahead_pos..];
        if waiting.is_empty() {
            return false;
        }
        let n = waiting.len().min(buf.remaining());
        buf.put_slice(&waiting[..n]);
        self.ahead_pos += n;
        if self.ahead_pos == self.ahead.len() {
            // Drained: an idle socket keeps no buffer.
            self.ahead = Vec::new();
            self.ahead_pos = 0;
        }
        true
    }
}

impl Transport {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
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
        Stream::new(Transport::Tls(Box::new(tls)))
    } else {
        Stream::plain(tcp)
    };
    super::upgrade::upgrade(stream, url, config).await
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.take_ahead(buf) {
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= READ_AHEAD {
            return this.io.poll_read(cx, buf);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read = ReadBuf::new(&mut scratch[..]);
            std::task::ready!(this.io.poll_read(cx, &mut read))?;
            let got = read.filled();
            let n = got.len().min(buf.remaining());
            buf.put_slice(&got[..n]);
            if n < got.len() {
                this.ahead = got[n..].to_vec();
                this.ahead_pos = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads in small pieces (as tungstenite's small buffer does) see every byte in
    /// order, and once drained the stream holds no buffer.
    #[tokio::test]
    async fn reading_ahead_loses_nothing_and_holds_nothing_when_drained() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                peer.write_all(&sent).await.unwrap();
                peer.shutdown().await.unwrap();
            })
        };
        let mut stream = Stream::plain(tcp);
        let (mut got, mut piece) = (Vec::new(), [0u8; 512]);
        loop {
            let n = stream.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&piece[..n]);
            assert!(stream.ahead_pos <= stream.ahead.len());
        }
        writer.await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the bytes arrive unchanged and in order");
        assert_eq!(stream.ahead.capacity(), 0, "a drained stream holds no buffer");
    }
}
