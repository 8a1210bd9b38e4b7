//! TLS trust shared by the HTTP client and the websocket dialler: one process-wide
//! rustls crypto provider (aws-lc-rs) and the client configurations built from a
//! [`Trust`]: the certificates of a `ca_file` (a private or TLS-inspecting CA), the
//! operating system's store (`rustls-native-certs`, read once per process), and the
//! webpki roots as the fallback when the OS store is empty or unreadable (a minimal
//! container image). Each configuration is built once and shared, so a reconnect
//! does not reload a root store.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Installs aws-lc-rs as the process's rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Why a `ca_file` cannot be used. The message names the file, never its content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CaFileError {
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path} is not PEM: {message}")]
    NotPem { path: PathBuf, message: String },
    #[error("{path} holds no certificate (expected one or more PEM `CERTIFICATE` blocks)")]
    NoCertificates { path: PathBuf },
    #[error("{path}: certificate {index} is not usable as a trust anchor: {message}")]
    BadCertificate {
        path: PathBuf,
        index: usize,
        message: String,
    },
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks; other blocks are
/// ignored), each checked to be usable as a trust anchor.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let bytes = std::fs::read(path).map_err(|e| CaFileError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaFileError::NotPem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaFileError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    for (i, cert) in certs.iter().enumerate() {
        let mut probe = rustls::RootCertStore::empty();
        probe.add(cert.clone()).map_err(|e| CaFileError::BadCertificate {
            path: path.to_path_buf(),
            index: i + 1,
            message: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// Where the trust anchors come from: the extra certificates (a `ca_file`), plus the
/// OS store and, when that is empty, the webpki roots.
#[derive(Clone, Default)]
pub struct Trust {
    /// The `ca_file`'s certificates (empty: none).
    pub extra: Vec<CertificateDer<'static>>,
    /// Where they came from, for `Debug`.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("ca_file", &self.ca_file)
            .field("extra_certificates", &self.extra.len())
            .finish()
    }
}

impl Trust {
    /// The OS store (plus the webpki fallback) and the certificates of `ca_file`.
    pub fn with_ca_file(path: &Path) -> Result<Trust, CaFileError> {
        Ok(Trust {
            extra: load_ca_file(path)?,
            ca_file: Some(path.to_path_buf()),
        })
    }

    /// A rustls client configuration trusting these anchors (HTTP/1.1 only, no ALPN).
    /// Without extra certificates the process-wide one is returned.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        if self.extra.is_empty() {
            return DEFAULT.get_or_init(|| build_config(&[])).clone();
        }
        build_config(&self.extra)
    }
}

fn build_config(extra: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    install_crypto_provider();
    let mut roots = system_roots().clone();
    for cert in extra {
        // Checked in `load_ca_file`.
        let _ = roots.add(cert.clone());
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The OS store, read once per process; the webpki roots when it has nothing usable.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::debug!(
                errors = found.errors.len(),
                "no usable certificate in the OS trust store; using the built-in webpki roots"
            );
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// The rustls client configuration for `wss://` dials without a `ca_file`.
pub fn websocket_tls_config() -> Arc<rustls::ClientConfig> {
    Trust::default().client_config()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            load_ca_file(&missing),
            Err(CaFileError::Unreadable { .. })
        ));
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "just some text\n").unwrap();
        let e = load_ca_file(&text).unwrap_err();
        assert!(matches!(e, CaFileError::NoCertificates { .. }), "{e}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_ca_file(&broken).unwrap_err();
        assert!(matches!(e, CaFileError::NotPem { .. }), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_ca_file(&junk).unwrap_err();
        assert!(matches!(e, CaFileError::BadCertificate { index: 1, .. }), "{e}");
    }

    #[test]
    fn a_ca_file_with_two_certificates_loads_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let pem = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.self_signed(&key).unwrap().pem()
        };
        std::fs::write(&path, format!("{}{}", pem("a.example"), pem("b.example"))).unwrap();
        let trust = Trust::with_ca_file(&path).unwrap();
        assert_eq!(trust.extra.len(), 2);
        assert!(!format!("{trust:?}").contains("BEGIN"));
        let _ = trust.client_config();
    }
}
