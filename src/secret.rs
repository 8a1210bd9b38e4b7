//! Secrets: the ParticipantToken, the ConnectionToken and presigned URLs.
//!
//! They travel in headers and URLs but must never reach a log line, an error message or
//! `Debug` output, so they live in wrapper types whose `Debug` and `Display` redact them.
//! Only `expose()` (and serialisation, which is how they go on the wire or to the
//! `connect` command's stdout) reveals the value.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A secret string (a token). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: for a header or a request body, never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A presigned URL (websocket or attachment). Its query string is the credential;
/// `Debug` and `Display` show scheme, host and path only.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedUrl(String);

impl PresignedUrl {
    pub fn new(value: impl Into<String>) -> Self {
        PresignedUrl(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its query string and fragment: safe to log.
    pub fn redacted(&self) -> String {
        let cut = self.0.find(['?', '#']).unwrap_or(self.0.len());
        if cut < self.0.len() {
            format!("{}?***", &self.0[..cut])
        } else {
            self.0.clone()
        }
    }
}

impl fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresignedUrl({})", self.redacted())
    }
}

impl fmt::Display for PresignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for PresignedUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PresignedUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(PresignedUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("tok-123");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "tok-123");
    }

    #[test]
    fn presigned_url_hides_its_query() {
        let u = PresignedUrl::new("wss://h.example/connect?X-Amz-Signature=abc&tok=def");
        assert_eq!(u.to_string(), "wss://h.example/connect?***");
        assert!(!format!("{u:?}").contains("abc"));
        assert_eq!(PresignedUrl::new("wss://h/p").to_string(), "wss://h/p");
    }
}
