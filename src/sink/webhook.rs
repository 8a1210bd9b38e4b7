//! The webhook consumer (`kind = "webhook"`): each Item is POSTed as JSON,
//! `{"session": NAME, "contact_id": ID, "item": {…}}`, to a URL, one request at a time,
//! in journal order.
//!
//! Every request carries
//! * `X-Connect-Chatd-Timestamp`: Unix seconds when it was signed;
//! * `X-Connect-Chatd-Signature: sha256=HEX`: HMAC-SHA256, keyed with the secret from
//!   `secret_file`, of `TIMESTAMP.BODY` (the timestamp, a dot, the exact body bytes), so
//!   a receiver can check both and refuse old timestamps (replays);
//! * `Idempotency-Key`: the Item's Id, so a receiver can drop the rare repeat (a request
//!   that timed out after the receiver took it, or a crash before the position moved);
//! * `X-Connect-Chatd-Session`, `X-Connect-Chatd-Consumer`.
//!
//! A 2xx answer accepts the Item. Connection errors, timeouts, 408, 429 and 5xx are
//! retried, forever, with capped jittered backoff (250 ms doubling to 30 s; a
//! `Retry-After` in seconds or as an HTTP date is honoured, up to 5 minutes). Any other
//! 4xx rejects that Item for good: it is logged and written to the dead-letter file,
//! and the next Item goes.

use super::consumer::{pause, Backoff, Delivery, Outcome, Target};
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use tokio::sync::watch;

/// A webhook consumer's target.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: reqwest::Url,
    pub secret: Secret,
    /// Per request, default 10 s.
    pub timeout: Duration,
    /// The consumer's name, sent as `X-Connect-Chatd-Consumer`.
    pub name: String,
}

pub struct Webhook {
    cfg: WebhookConfig,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(cfg: WebhookConfig) -> Result<Webhook, String> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Webhook { cfg, http })
    }
}

/// `sha256=HEX` of HMAC-SHA256(secret, `TIMESTAMP.BODY`).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(v, &format).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

impl Target for Webhook {
    async fn deliver(&mut self, d: &Delivery<'_>, stop: &mut watch::Receiver<bool>) -> Outcome {
        let body = d.envelope();
        let id = d.item_id();
        let mut backoff = Backoff::default();
        loop {
            let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
            let sig = signature(self.cfg.secret.expose().as_bytes(), timestamp, body.as_bytes());
            let request = self
                .http
                .post(self.cfg.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Connect-Chatd-Timestamp", timestamp.to_string())
                .header("X-Connect-Chatd-Signature", sig)
                .header("Idempotency-Key", &id)
                .header("X-Connect-Chatd-Session", &d.entry.session)
                .header("X-Connect-Chatd-Consumer", &self.cfg.name)
                .body(body.clone());
            let sent = tokio::select! {
                r = request.send() => r,
                _ = crate::stop::stopped(stop) => return Outcome::Stopped,
            };
            let wait = match sent {
                Ok(resp) if resp.status().is_success() => return Outcome::Accepted,
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let asked = retry_after(resp.headers());
                    if status == 408 || status == 429 || status >= 500 {
                        tracing::warn!(consumer = %self.cfg.name, status, item = %id, "the webhook answered an error; retrying");
                        backoff.delay(asked)
                    } else {
                        let text = resp.text().await.unwrap_or_default();
                        let snippet: String = text.chars().take(500).collect();
                        return Outcome::Rejected(format!("HTTP {status}: {snippet}"));
                    }
                }
                Err(e) => {
                    tracing::warn!(consumer = %self.cfg.name, error = %e.without_url(), item = %id, "the webhook cannot be reached; retrying");
                    backoff.delay(None)
                }
            };
            if !pause(wait, stop).await {
                return Outcome::Stopped;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }
}
