//! TLS set-up shared by the HTTP client and the websocket dialler: one process-wide
//! rustls crypto provider (aws-lc-rs) and one client configuration with the webpki
//! roots, built once so a reconnect does not reload a root store (and a minimal
//! container image without a CA bundle still works).

use std::sync::{Arc, OnceLock};

/// Installs aws-lc-rs as the process's rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The rustls client configuration for `wss://` dials.
pub fn websocket_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            install_crypto_provider();
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}
