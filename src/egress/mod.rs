//! How connections leave the process, for the REST client and the websocket alike:
//! through an HTTP proxy or direct ([`proxy`], tunnels in [`tunnel`]), and which
//! certificates are trusted ([`crate::tls::Trust`]).
//!
//! Precedence: the `proxy` setting (the daemon's `proxy` key / `CONNECT_CHATD_PROXY`,
//! `tail`'s `--proxy`) beats the environment; an empty `proxy` means direct whatever
//! the environment says. Otherwise `https://`/`wss://` targets use `HTTPS_PROXY` (else
//! `https_proxy`), and `http://`/`ws://` targets `HTTP_PROXY` (else `http_proxy`).
//! Likewise `no_proxy` beats `NO_PROXY` (else `no_proxy`). A proxy credentials file
//! (`user:password`) beats credentials in the URL.

pub mod proxy;
pub mod tunnel;

pub use proxy::{NoProxy, ProxyCredentials, ProxyUrl};
pub use tunnel::ProxyError;

use crate::tls::{CaFileError, Trust};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The egress settings as given (before the environment is consulted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressSettings {
    /// The proxy for every target; `Some("")`: none, whatever the environment says.
    pub proxy: Option<String>,
    /// Hosts that go direct (`NO_PROXY` syntax); beats the `NO_PROXY` variable.
    pub no_proxy: Option<String>,
    /// A file holding `user:password` for the proxy.
    pub proxy_credentials_file: Option<PathBuf>,
    /// PEM certificates trusted besides the OS store.
    pub ca_file: Option<PathBuf>,
}

/// Which setting a problem is with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressKey {
    Proxy,
    NoProxy,
    ProxyCredentialsFile,
    CaFile,
    /// An environment variable (`HTTPS_PROXY`, …).
    Env(&'static str),
}

impl EgressKey {
    /// The daemon's configuration key, or the variable's name.
    pub fn name(self) -> &'static str {
        match self {
            EgressKey::Proxy => "proxy",
            EgressKey::NoProxy => "no_proxy",
            EgressKey::ProxyCredentialsFile => "proxy_credentials_file",
            EgressKey::CaFile => "ca_file",
            EgressKey::Env(name) => name,
        }
    }
}

/// A setting that cannot be used; the message names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", key.name())]
pub struct EgressError {
    pub key: EgressKey,
    pub message: String,
}

/// The proxies chosen for each kind of target, and the hosts that bypass them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    /// For `https://` and `wss://` targets.
    pub https: Option<ProxyUrl>,
    /// For `http://` and `ws://` targets (loopback only in this program).
    pub http: Option<ProxyUrl>,
    pub no_proxy: NoProxy,
}

impl Proxies {
    /// The proxy for a target of `scheme` (`https`, `wss`, `http`, `ws`) on `host`.
    pub fn for_target(&self, scheme: &str, host: &str) -> Option<&ProxyUrl> {
        let proxy = match scheme {
            "https" | "wss" => self.https.as_ref(),
            _ => self.http.as_ref(),
        }?;
        (!self.no_proxy.matches(host)).then_some(proxy)
    }

    /// Resolves `settings` against the environment (`env` looks a variable up; an
    /// empty value counts as unset).
    pub fn resolve(
        settings: &EgressSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Proxies, EgressError> {
        let var = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let parse = |key: EgressKey, text: &str| {
            ProxyUrl::parse(text).map_err(|message| EgressError { key, message })
        };
        let (mut https, mut http) = match settings.proxy.as_deref().map(str::trim) {
            Some("") => (None, None),
            Some(p) => {
                let p = parse(EgressKey::Proxy, p)?;
                (Some(p.clone()), Some(p))
            }
            None => {
                let https = match var(["HTTPS_PROXY", "https_proxy"]) {
                    Some((name, v)) => Some(parse(EgressKey::Env(name), &v)?),
                    None => None,
                };
                let http = match var(["HTTP_PROXY", "http_proxy"]) {
                    Some((name, v)) => Some(parse(EgressKey::Env(name), &v)?),
                    None => None,
                };
                (https, http)
            }
        };
        if let Some(path) = &settings.proxy_credentials_file {
            let creds = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| {
                    ProxyCredentials::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
                })
                .map_err(|message| EgressError {
                    key: EgressKey::ProxyCredentialsFile,
                    message,
                })?;
            for p in [&mut https, &mut http].into_iter().flatten() {
                p.credentials = Some(creds.clone());
            }
        }
        let no_proxy = match &settings.no_proxy {
            Some(list) => NoProxy::parse(list),
            None => var(["NO_PROXY", "no_proxy"]).map_or_else(NoProxy::default, |(_, v)| NoProxy::parse(&v)),
        };
        Ok(Proxies {
            https,
            http,
            no_proxy,
        })
    }
}

/// Proxies and trust, built once and shared (cheap to clone) by every client and socket.
#[derive(Clone)]
pub struct Egress {
    inner: Arc<Inner>,
}

struct Inner {
    proxies: Proxies,
    trust: Trust,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("proxies", &self.inner.proxies)
            .field("trust", &self.inner.trust)
            .finish()
    }
}

impl Default for Egress {
    /// Direct, trusting the OS store (webpki roots when it is empty).
    fn default() -> Egress {
        static DIRECT: OnceLock<Egress> = OnceLock::new();
        DIRECT
            .get_or_init(|| Egress::new(Proxies::default(), Trust::default()))
            .clone()
    }
}

impl Egress {
    pub fn new(proxies: Proxies, trust: Trust) -> Egress {
        let tls = trust.client_config();
        Egress {
            inner: Arc::new(Inner { proxies, trust, tls }),
        }
    }

    /// Resolves `settings` against the environment (`env`) and reads the `ca_file`.
    pub fn from_settings(
        settings: &EgressSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Egress, EgressError> {
        let proxies = Proxies::resolve(settings, env)?;
        let trust = match &settings.ca_file {
            Some(path) => Trust::with_ca_file(path).map_err(|e: CaFileError| EgressError {
                key: EgressKey::CaFile,
                message: e.to_string(),
            })?,
            None => Trust::default(),
        };
        Ok(Egress::new(proxies, trust))
    }

    /// [`from_settings`](Self::from_settings) with the process's environment.
    pub fn from_process_env(settings: &EgressSettings) -> Result<Egress, EgressError> {
        Egress::from_settings(settings, &|name| std::env::var(name).ok())
    }

    pub fn proxies(&self) -> &Proxies {
        &self.inner.proxies
    }

    pub fn trust(&self) -> &Trust {
        &self.inner.trust
    }

    /// The rustls client configuration (no ALPN) for both REST and websockets.
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.inner.tls.clone()
    }

    /// The proxy for `url`, if it is not to go direct.
    pub fn proxy_for(&self, url: &url::Url) -> Option<&ProxyUrl> {
        let host = url.host_str()?;
        self.inner.proxies.for_target(url.scheme(), host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_proxy_setting_beats_the_environment() {
        let vars = env(&[
            ("HTTPS_PROXY", "http://env-https:3128"),
            ("http_proxy", "http://env-http:3128"),
            ("NO_PROXY", "internal.example"),
        ]);
        let from_env = Proxies::resolve(&EgressSettings::default(), &vars).unwrap();
        assert_eq!(from_env.https.as_ref().unwrap().host, "env-https");
        assert_eq!(from_env.http.as_ref().unwrap().host, "env-http");
        assert!(from_env.for_target("wss", "a.internal.example").is_none());
        assert_eq!(
            from_env.for_target("wss", "svc.example").unwrap().host,
            "env-https"
        );
        let set = EgressSettings {
            proxy: Some("http://key:8080".into()),
            no_proxy: Some("svc.example".into()),
            ..Default::default()
        };
        let from_key = Proxies::resolve(&set, &vars).unwrap();
        assert_eq!(
            from_key.for_target("https", "a.internal.example").unwrap().host,
            "key"
        );
        assert_eq!(from_key.for_target("ws", "127.0.0.1").unwrap().host, "key");
        assert!(from_key.for_target("https", "svc.example").is_none());
        let direct = EgressSettings {
            proxy: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(Proxies::resolve(&direct, &vars).unwrap().https, None);
    }

    #[test]
    fn a_bad_variable_is_named_without_its_value() {
        let vars = env(&[("https_proxy", "ftp://user:pw1234@p")]);
        let e = Proxies::resolve(&EgressSettings::default(), &vars).unwrap_err();
        assert_eq!(e.key, EgressKey::Env("https_proxy"));
        assert!(!e.to_string().contains("pw1234"), "{e}");
    }

    #[test]
    fn a_credentials_file_fills_both_proxies() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.creds");
        std::fs::write(&file, "svc:Pa55:word\n").unwrap();
        let set = EgressSettings {
            proxy: Some("http://u:old@p:3128".into()),
            proxy_credentials_file: Some(file),
            ..Default::default()
        };
        let egress = Egress::from_settings(&set, &|_| None).unwrap();
        let c = egress
            .proxies()
            .https
            .as_ref()
            .unwrap()
            .credentials
            .clone()
            .unwrap();
        assert_eq!(c.password.expose(), "Pa55:word");
        let shown = format!("{egress:?}");
        assert!(
            !shown.contains("Pa55") && !shown.contains("old") && !shown.contains("svc"),
            "{shown}"
        );
        let missing = EgressSettings {
            proxy_credentials_file: Some(dir.path().join("nope")),
            ..Default::default()
        };
        assert_eq!(
            Egress::from_settings(&missing, &|_| None).unwrap_err().key,
            EgressKey::ProxyCredentialsFile
        );
    }
}
