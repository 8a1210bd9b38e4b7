//! The egress keys of the daemon's configuration: `proxy`, `no_proxy`,
//! `proxy_credentials_file` and `ca_file`, resolved against the proxy variables of
//! the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` and their lowercase
//! forms) into an [`Egress`]. A problem names the key (or the variable) and where its
//! value came from, never the value (a proxy URL may hold a password).

use super::error::{lookup, Problem, Source};
use super::raw::RawConfig;
use super::validate::Context;
use crate::egress::{Egress, EgressKey, EgressSettings};
use figment::Figment;

/// The environment variables an [`Egress`] reads besides the configuration.
pub const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

pub(super) fn egress(raw: &RawConfig, fig: &Figment, ctx: &Context, p: &mut Vec<Problem>) -> Option<Egress> {
    let settings = EgressSettings {
        proxy: raw.proxy.clone(),
        no_proxy: raw.no_proxy.clone(),
        // Like token files: $CREDENTIALS_DIRECTORY first, else next to the file.
        proxy_credentials_file: raw
            .proxy_credentials_file
            .as_deref()
            .map(|f| super::validate::resolve_secret(f, ctx)),
        ca_file: raw.ca_file.as_deref().map(|f| {
            let path = if f.is_absolute() {
                f.to_path_buf()
            } else {
                ctx.config_dir.join(f)
            };
            std::path::absolute(&path).unwrap_or(path)
        }),
    };
    let env = |name: &str| {
        ctx.env_proxy
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match Egress::from_settings(&settings, &env) {
        Ok(e) => Some(e),
        Err(e) => {
            let source = match e.key {
                EgressKey::Env(name) => Source::Env(name.to_string()),
                key => lookup(fig, key.name()),
            };
            p.push(Problem::new(e.key.name(), source, e.message));
            None
        }
    }
}

/// `check-config`'s lines for the egress, as (key, value): the proxy for each kind of
/// target (credentials as `***`), whether a bypass list is set, and the trust anchors.
pub(super) fn summary(egress: &Egress) -> Vec<(&'static str, String)> {
    let proxies = egress.proxies();
    let show =
        |p: &Option<crate::egress::ProxyUrl>| p.as_ref().map_or("direct".to_string(), |p| p.to_string());
    let mut lines = vec![
        ("proxy (https, wss)", show(&proxies.https)),
        ("proxy (http, ws)", show(&proxies.http)),
    ];
    if !proxies.no_proxy.is_empty() {
        lines.push(("no_proxy", "set (matching hosts go direct)".to_string()));
    }
    let trust = egress.trust();
    lines.push((
        "ca_file",
        match &trust.ca_file {
            Some(path) => format!(
                "{} ({} certificates), with the OS trust store",
                path.display(),
                trust.extra.len()
            ),
            None => "none (the OS trust store)".to_string(),
        },
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::super::tests::Setup;

    const REGION: &str = "region = \"us-east-1\"\n";

    #[test]
    fn bad_egress_values_name_the_key_and_source_but_no_secret() {
        let s = Setup::new(&format!("{REGION}proxy = \"socks5://u:hunter22@p:1080\"\n"));
        let err = s.err(&[]);
        assert!(err.contains(&format!("proxy (in {})", s.file())), "{err}");
        assert!(
            err.contains("unsupported proxy scheme") && !err.contains("hunter22"),
            "{err}"
        );
        let err = Setup::new(REGION).err(&[("https_proxy", "https://u:hunter22@p")]);
        assert!(
            err.contains("https_proxy (from environment variable https_proxy)"),
            "{err}"
        );
        assert!(!err.contains("hunter22"), "{err}");
        let err = Setup::new(REGION).err(&[("CONNECT_CHATD_CA_FILE", "/nonexistent/ca.pem")]);
        assert!(
            err.contains("ca_file (from environment variable CONNECT_CHATD_CA_FILE)")
                && err.contains("cannot read"),
            "{err}"
        );
        let err = Setup::new(&format!("{REGION}proxy_credentials_file = \"missing.creds\"\n")).err(&[]);
        assert!(err.contains("proxy_credentials_file (in "), "{err}");
    }

    #[test]
    fn the_key_beats_the_environment_and_the_summary_hides_credentials() {
        let s = Setup::new(&format!("{REGION}proxy = \"http://u:hunter22@key-proxy:3128\"\n"));
        let cfg = s
            .load(&[
                ("HTTPS_PROXY", "http://env-proxy:1"),
                ("NO_PROXY", "internal.example"),
            ])
            .unwrap();
        let https = cfg.egress.proxies().https.clone().unwrap();
        assert_eq!(https.host, "key-proxy");
        assert!(cfg.egress.proxies().no_proxy.matches("a.internal.example"));
        let summary = cfg.summary();
        assert!(
            summary.contains("proxy (https, wss): http://***@key-proxy:3128"),
            "{summary}"
        );
        assert!(!summary.contains("hunter22") && !format!("{cfg:?}").contains("hunter22"));
        let direct = Setup::new(&format!("{REGION}proxy = \"\"\n"))
            .load(&[("HTTPS_PROXY", "http://env-proxy:1")])
            .unwrap();
        assert!(direct.egress.proxies().https.is_none());
    }
}
