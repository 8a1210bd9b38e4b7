//! Proxy settings: the proxy URL (`http://[user:password@]host[:port]`) with its
//! credentials kept secret, and `NO_PROXY` matching. Shared by the REST client (which
//! hands them to reqwest as a custom proxy) and the websocket dial (which tunnels with
//! CONNECT, [`super::tunnel`]), so both take the same route for a host.

use crate::secret::Secret;
use std::fmt;
use std::net::IpAddr;

/// User name and password for `Proxy-Authorization: Basic`. Both are treated as
/// secrets: neither `Debug` nor `Display` shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    pub user: Secret,
    pub password: Secret,
}

impl ProxyCredentials {
    /// `user:password` (as in a credentials file; the password may hold `:`).
    pub fn parse(text: &str) -> Result<ProxyCredentials, String> {
        let text = text.trim();
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(ProxyCredentials {
                user: Secret::new(user),
                password: Secret::new(password),
            }),
            _ => Err("expected `user:password`".into()),
        }
    }

    /// The `Proxy-Authorization` header's value.
    pub fn header_value(&self) -> Secret {
        use base64::Engine;
        let raw = format!("{}:{}", self.user.expose(), self.password.expose());
        Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

impl fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyCredentials(***)")
    }
}

/// An HTTP proxy (CONNECT tunnels). `Display` and `Debug` show `http://host:port`,
/// with `***@` in front of the host when it has credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// A domain name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub credentials: Option<ProxyCredentials>,
}

impl ProxyUrl {
    /// `http://[user:password@]host[:port][/]`; a URL without a scheme is taken as
    /// `http://`. The port defaults to 80. The error never repeats the URL (it may hold
    /// a password).
    pub fn parse(text: &str) -> Result<ProxyUrl, String> {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| format!("not a URL: {e}"))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(
                    "an https:// proxy is not supported: give its http:// address (the tunnel \
                            to the service is TLS end to end either way)"
                        .into(),
                )
            }
            other => return Err(format!("unsupported proxy scheme {other}:// (only http://)")),
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("a proxy URL has no path or query: http://[user:password@]host[:port]".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("the proxy URL has no host".into()),
        };
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_decode(s)
                    .ok_or_else(|| "the proxy URL's user or password is not valid UTF-8".to_string())
            };
            Some(ProxyCredentials {
                user: Secret::new(decode(url.username())?),
                password: Secret::new(decode(url.password().unwrap_or(""))?),
            })
        };
        Ok(ProxyUrl {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            credentials,
        })
    }

    /// `host:port` as a CONNECT target or `Host` header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// The URL without credentials, e.g. for reqwest (which gets them separately).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.authority())
    }
}

/// `host:port`, an IPv6 address in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.credentials.is_some() { "***@" } else { "" };
        write!(f, "http://{auth}{}", self.authority())
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Hosts that bypass the proxy: `NO_PROXY` syntax. Entries are comma-separated
/// (whitespace ignored): `*` (everything), an IP address, a CIDR block
/// (`10.0.0.0/8`), or a domain, which matches itself and every subdomain (a leading
/// `.` or `*.` is the same: `example.com`, `.example.com`, `*.example.com`). A
/// `:port` after a domain or IPv4 address is ignored. Matching ignores case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Net(IpAddr, u8),
    Domain(String),
}

impl NoProxy {
    pub fn parse(list: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if raw == "*" {
                out.all = true;
                continue;
            }
            let unbracketed = raw.trim_start_matches('[').split(']').next().unwrap_or(raw);
            if let Some((ip, bits)) = unbracketed.split_once('/') {
                if let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    out.entries.push(Entry::Net(ip, bits.min(max)));
                    continue;
                }
            }
            if let Ok(ip) = unbracketed.parse::<IpAddr>() {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                out.entries.push(Entry::Net(ip, bits));
                continue;
            }
            // `host:port` (a domain or an IPv4 address): the port is ignored.
            let host = match raw.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => h,
                _ => raw,
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                out.entries.push(Entry::Net(ip, 32));
                continue;
            }
            let domain = host
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.');
            if !domain.is_empty() {
                out.entries.push(Entry::Domain(domain.to_ascii_lowercase()));
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.entries.is_empty()
    }

    /// Whether `host` (a domain, or an IP address, IPv6 with or without brackets)
    /// goes direct.
    pub fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.entries.iter().any(|e| match e {
                Entry::Net(net, bits) => in_net(ip, *net, *bits),
                Entry::Domain(_) => false,
            });
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|e| match e {
            Entry::Domain(d) => {
                host == *d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            }
            Entry::Net(..) => false,
        })
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_hosts_suffixes_ips_and_star() {
        let np = NoProxy::parse(" internal.example , .corp.example,*.svc.local, 10.0.0.0/8, 192.168.1.7, ::1, [fd00::1], proxy.example:3128");
        for host in [
            "internal.example",
            "a.internal.example",
            "corp.example",
            "x.y.corp.example",
            "pod.svc.local",
            "10.1.2.3",
            "192.168.1.7",
            "::1",
            "[::1]",
            "fd00::1",
            "INTERNAL.Example",
            "proxy.example",
        ] {
            assert!(np.matches(host), "{host} should bypass");
        }
        for host in [
            "notinternal.example",
            "example",
            "participant.connect.us-east-1.amazonaws.com",
            "11.0.0.1",
            "192.168.1.8",
            "::2",
            "127.0.0.1",
        ] {
            assert!(!np.matches(host), "{host} should use the proxy");
        }
        assert!(NoProxy::parse("*").matches("anything.at.all"));
        assert!(NoProxy::parse("*").matches("127.0.0.1"));
        assert!(NoProxy::parse("").is_empty());
        assert!(!NoProxy::parse(" , ").matches("a"));
        assert!(NoProxy::parse("127.0.0.0/8").matches("127.0.0.1"));
        assert!(NoProxy::parse("localhost,127.0.0.1").matches("localhost"));
    }

    #[test]
    fn proxy_urls_parse_and_never_print_credentials() {
        let p = ProxyUrl::parse("http://al%40ice:s3cr%3At@proxy.example:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        let c = p.credentials.clone().unwrap();
        assert_eq!((c.user.expose(), c.password.expose()), ("al@ice", "s3cr:t"));
        let shown = format!("{p} {p:?} {c:?}");
        assert!(
            !shown.contains("s3cr") && !shown.contains("al@ice") && !shown.contains("al%40"),
            "{shown}"
        );
        assert_eq!(p.to_string(), "http://***@proxy.example:3128");
        assert_eq!(p.base_url(), "http://proxy.example:3128");
        assert_eq!(
            ProxyUrl::parse("proxy:8080").unwrap().to_string(),
            "http://proxy:8080"
        );
        assert_eq!(ProxyUrl::parse("http://[::1]").unwrap().authority(), "[::1]:80");
        let e = ProxyUrl::parse("https://u:topsecret@p:1").unwrap_err();
        assert!(e.contains("https://") && !e.contains("topsecret"), "{e}");
        assert!(ProxyUrl::parse("socks5://p:1080").is_err());
        assert!(ProxyUrl::parse("http://p:1/path").is_err());
        assert_eq!(
            ProxyCredentials::parse("u:p:w\n")
                .unwrap()
                .header_value()
                .expose(),
            "Basic dTpwOnc="
        );
        assert!(ProxyCredentials::parse("nocolon").is_err());
    }
}
