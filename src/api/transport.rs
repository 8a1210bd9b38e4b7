//! The HTTP transport under the API client: reqwest built from an [`Egress`] (its
//! proxies as reqwest custom proxies, so REST and websockets choose the same route for
//! a host, and its rustls configuration), and reqwest's errors turned into
//! [`ApiError`]s that say what went wrong (reqwest's own message is only "error
//! sending request") and whether a retry can help: an untrusted certificate is
//! [`ApiError::Tls`], never retried.

use super::client::USER_AGENT;
use super::error::ApiError;
use crate::egress::{Egress, ProxyUrl};
use std::error::Error as _;
use std::time::Duration;

/// Idle keep-alive connections kept per host.
const POOL_MAX_IDLE_PER_HOST: usize = 16;

pub(super) fn http_client(egress: &Egress, timeout: Duration) -> Result<reqwest::Client, ApiError> {
    crate::tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(50))
        // A burst of calls (thousands of sessions resuming at once) must not leave as
        // many idle connections behind: each holds hyper's buffers (~17 KiB) and a
        // descriptor. The limiter's rates need only a few.
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        // The environment was read into `egress`, which alone decides.
        .no_proxy()
        .tls_backend_preconfigured(rustls::ClientConfig::clone(&egress.tls()));
    let proxies = egress.proxies();
    for (secure, proxy) in [(true, &proxies.https), (false, &proxies.http)] {
        let Some(proxy) = proxy else { continue };
        builder = builder.proxy(reqwest_proxy(egress.clone(), secure, proxy));
    }
    builder.build().map_err(|e| error("build", e))
}

/// A reqwest proxy for `https://` (`secure`) or `http://` targets that asks `egress`
/// (so `NO_PROXY` is matched by our rules, the same as for websockets).
fn reqwest_proxy(egress: Egress, secure: bool, proxy: &ProxyUrl) -> reqwest::Proxy {
    let base = proxy.base_url();
    let p = reqwest::Proxy::custom(move |url| {
        let is_secure = url.scheme() == "https";
        if is_secure != secure {
            return None;
        }
        egress.proxy_for(url).map(|_| base.clone())
    });
    match &proxy.credentials {
        Some(c) => p.basic_auth(c.user.expose(), c.password.expose()),
        None => p,
    }
}

/// Describes a reqwest error by its whole chain of causes, with no URL; a certificate
/// the trust store refuses is [`ApiError::Tls`].
pub(crate) fn error(operation: &'static str, e: reqwest::Error) -> ApiError {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut tls = None;
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        if let Some(r) = rustls_error(c) {
            tls = Some(r);
        }
        cause = c.source();
    }
    match tls {
        Some(r) if is_permanent(r) => ApiError::Tls {
            operation,
            message: r.to_string(),
        },
        _ => ApiError::Transport { operation, message },
    }
}

/// A rustls error, directly or inside (nested) `io::Error`s, whose `source` skips
/// the error they wrap.
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut e = e;
    for _ in 0..8 {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        e = inner;
    }
    None
}

/// Problems a retry does not mend: the certificate, or a peer that cannot talk to us.
pub(crate) fn is_permanent(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::UnsupportedNameType
    )
}
