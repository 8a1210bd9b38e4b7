//! Where the Participant Service lives: from a region (standard, FIPS, dual-stack) or an
//! explicit override (the emulator, tests, VPC endpoints). Plaintext `http://`/`ws://`
//! is refused unless the host is a loopback address, so a token never crosses a network
//! in the clear.

use reqwest::Url;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointVariant {
    #[default]
    Standard,
    Fips,
    DualStack,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("invalid region {0:?}: expected something like us-east-1")]
    Region(String),
    #[error("invalid endpoint URL {0:?}: {1}")]
    Url(String, String),
    #[error("plaintext {scheme}:// is only allowed for loopback hosts, not {host:?}; use {secure}://")]
    Plaintext {
        scheme: String,
        host: String,
        secure: &'static str,
    },
}

/// The base URL of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: Url,
}

impl Endpoint {
    pub fn for_region(region: &str, variant: EndpointVariant) -> Result<Endpoint, EndpointError> {
        let valid = !region.is_empty()
            && region.len() <= 32
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && region.contains('-');
        if !valid {
            return Err(EndpointError::Region(region.to_string()));
        }
        let host = match variant {
            EndpointVariant::Standard => format!("participant.connect.{region}.amazonaws.com"),
            EndpointVariant::Fips => format!("participant.connect-fips.{region}.amazonaws.com"),
            EndpointVariant::DualStack => format!("participant.connect.{region}.api.aws"),
        };
        Self::from_url(&format!("https://{host}"))
    }

    pub fn from_url(url: &str) -> Result<Endpoint, EndpointError> {
        let base = Url::parse(url).map_err(|e| EndpointError::Url(url.to_string(), e.to_string()))?;
        match base.scheme() {
            "https" => {}
            "http" => ensure_loopback(&base, "https")?,
            other => {
                return Err(EndpointError::Url(
                    url.to_string(),
                    format!("scheme {other:?} is not http or https"),
                ))
            }
        }
        if base.host_str().is_none() {
            return Err(EndpointError::Url(url.to_string(), "no host".into()));
        }
        Ok(Endpoint { base })
    }

    /// The URL of an operation's path, e.g. `/participant/connection`.
    pub fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let prefix = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{prefix}{path}"));
        u
    }

    pub fn base(&self) -> &Url {
        &self.base
    }
}

/// Refuses `ws://` to anything but loopback (presigned websocket URLs).
pub fn check_websocket_url(url: &str) -> Result<Url, EndpointError> {
    let redacted = crate::secret::PresignedUrl::new(url).redacted();
    let u = Url::parse(url).map_err(|e| EndpointError::Url(redacted.clone(), e.to_string()))?;
    match u.scheme() {
        "wss" => Ok(u),
        "ws" => ensure_loopback(&u, "wss").map(|_| u),
        other => Err(EndpointError::Url(
            redacted,
            format!("scheme {other:?} is not ws or wss"),
        )),
    }
}

fn ensure_loopback(u: &Url, secure: &'static str) -> Result<(), EndpointError> {
    let host = u.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
    if loopback {
        Ok(())
    } else {
        Err(EndpointError::Plaintext {
            scheme: u.scheme().to_string(),
            host: host.to_string(),
            secure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_endpoints() {
        let e = |v| {
            Endpoint::for_region("eu-west-2", v)
                .unwrap()
                .url("/participant/connection")
                .to_string()
        };
        assert_eq!(
            e(EndpointVariant::Standard),
            "https://participant.connect.eu-west-2.amazonaws.com/participant/connection"
        );
        assert_eq!(
            e(EndpointVariant::Fips),
            "https://participant.connect-fips.eu-west-2.amazonaws.com/participant/connection"
        );
        assert_eq!(
            e(EndpointVariant::DualStack),
            "https://participant.connect.eu-west-2.api.aws/participant/connection"
        );
        assert!(Endpoint::for_region("EU West", EndpointVariant::Standard).is_err());
    }

    #[test]
    fn plaintext_only_for_loopback() {
        assert!(Endpoint::from_url("http://127.0.0.1:8080").is_ok());
        assert!(Endpoint::from_url("http://localhost:1").is_ok());
        assert!(Endpoint::from_url("http://[::1]:1").is_ok());
        assert!(matches!(
            Endpoint::from_url("http://10.0.0.1"),
            Err(EndpointError::Plaintext { .. })
        ));
        assert!(Endpoint::from_url("https://vpce.example.com/base/").is_ok());
        assert_eq!(
            Endpoint::from_url("https://vpce.example.com/base/")
                .unwrap()
                .url("/participant/event")
                .as_str(),
            "https://vpce.example.com/base/participant/event"
        );
        assert!(check_websocket_url("ws://127.0.0.1:9/x?tok=1").is_ok());
        let err = check_websocket_url("ws://example.com/x?tok=secret")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(check_websocket_url("wss://example.com/x?tok=1").is_ok());
    }
}
