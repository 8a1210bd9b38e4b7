//! TLS for the emulator (`emulator --tls`, [`super::EmulatorConfig::tls`]): a private CA
//! and a server certificate for `localhost` and `127.0.0.1` (plus the listen address),
//! generated at start with rcgen, and an axum listener that completes each TLS
//! handshake in its own task (a slow client does not hold up the others). The CA's PEM
//! is what a client's `ca_file` trusts; the REST base is then `https://` and presigned
//! URLs are `wss://`.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// The generated CA (to trust) and the server's configuration.
pub struct ServerTls {
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

/// A CA and a server certificate for `localhost`, `127.0.0.1`, `::1` and `extra_ip`.
pub fn generate(extra_ip: std::net::IpAddr) -> Result<ServerTls, String> {
    let fail = |e: rcgen::Error| format!("cannot generate the emulator's certificate: {e}");
    crate::tls::install_crypto_provider();
    let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "connect-chatd emulator CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !extra_ip.is_loopback() && !extra_ip.is_unspecified() {
        names.push(extra_ip.to_string());
    }
    let leaf_key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut leaf_params = rcgen::CertificateParams::new(names).map_err(fail)?;
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "connect-chatd emulator");
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(fail)?;

    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("cannot use the emulator's certificate: {e}"))?;
    Ok(ServerTls {
        ca_pem: ca_cert.pem(),
        config: Arc::new(config),
    })
}

/// Accepted TLS connections, handshakes done in their own tasks.
pub struct TlsListener {
    addr: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    // The server is gone: stop listening.
                    _ = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "emulator accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake = acceptor.accept(tcp);
                    match tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "emulator TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "emulator TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { addr, accepted })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(c) => c,
            // The accept loop never ends while this receiver lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
