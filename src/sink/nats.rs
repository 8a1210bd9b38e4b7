//! The NATS JetStream consumer (`kind = "nats"`): each Item is published, as
//! `{"session": NAME, "contact_id": ID, "item": {…}}`, to a subject made from a template
//! (default `connect.chat.{contact_id}.{session}`), with `Nats-Msg-Id` set to the Item's
//! Id so the stream's duplicate window drops a re-publish (after a lost ack, a
//! reconnect or a restart). The position moves only on the stream's publish ack.
//!
//! Written for the JetStream API of nats-server 2.9 (Debian's): the crate's
//! `server_2_10`+ features are off.

use super::consumer::{pause, Backoff, Delivery, Outcome, Target};
use crate::secret::Secret;
use async_nats::jetstream::{self, stream};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// The default subject template.
pub const DEFAULT_SUBJECT: &str = "connect.chat.{contact_id}.{session}";

/// How the consumer authenticates.
#[derive(Debug, Clone)]
pub enum NatsAuth {
    None,
    Token(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
    /// An nkey seed.
    Nkey(Secret),
    /// A `.creds` file (JWT and nkey seed).
    CredentialsFile(PathBuf),
}

#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub name: String,
    /// `nats://HOST:PORT` (or `tls://…`), comma-separated for a cluster.
    pub url: String,
    pub subject: String,
    pub stream: String,
    pub create_stream: bool,
    /// The stream's subjects when it is created.
    pub subjects: Vec<String>,
    pub duplicate_window: Duration,
    /// `file` or `memory`, when the stream is created.
    pub memory_storage: bool,
    pub replicas: usize,
    pub auth: NatsAuth,
    pub tls_ca_file: Option<PathBuf>,
}

/// The subject for one Item: the template with `{contact_id}` and `{session}` filled in,
/// each value made a single subject token (`.`, `*`, `>` and whitespace become `_`).
pub fn subject(template: &str, session: &str, contact_id: Option<&str>) -> String {
    let token = |v: &str| -> String {
        let t: String = v
            .chars()
            .map(|c| {
                if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        if t.is_empty() {
            "_".into()
        } else {
            t
        }
    };
    template
        .replace("{contact_id}", &token(contact_id.unwrap_or("unknown")))
        .replace("{session}", &token(session))
}

/// The stream subjects that cover a template: each `{…}` becomes `*`.
pub fn subjects_of(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push('*');
                rest = &rest[open + close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

pub struct Nats {
    cfg: NatsConfig,
    js: Option<jetstream::Context>,
}

impl Nats {
    pub fn new(cfg: NatsConfig) -> Nats {
        Nats { cfg, js: None }
    }

    async fn connect(&self) -> Result<jetstream::Context, String> {
        let mut opts = match &self.cfg.auth {
            NatsAuth::None => async_nats::ConnectOptions::new(),
            NatsAuth::Token(t) => async_nats::ConnectOptions::with_token(t.expose().to_string()),
            NatsAuth::UserPassword { user, password } => async_nats::ConnectOptions::with_user_and_password(
                user.clone(),
                password.expose().to_string(),
            ),
            NatsAuth::Nkey(seed) => async_nats::ConnectOptions::with_nkey(seed.expose().to_string()),
            NatsAuth::CredentialsFile(path) => {
                async_nats::ConnectOptions::with_credentials_file(path.clone())
                    .await
                    .map_err(|e| format!("credentials_file {}: {e}", path.display()))?
            }
        };
        if let Some(ca) = &self.cfg.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = opts
            .name(format!("connect-chatd {}", self.cfg.name))
            .retry_on_initial_connect()
            .connect(self.cfg.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.cfg.url))?;
        let js = jetstream::new(client);
        if self.cfg.create_stream {
            let config = stream::Config {
                name: self.cfg.stream.clone(),
                subjects: self.cfg.subjects.clone(),
                duplicate_window: self.cfg.duplicate_window,
                storage: if self.cfg.memory_storage {
                    stream::StorageType::Memory
                } else {
                    stream::StorageType::File
                },
                num_replicas: self.cfg.replicas,
                ..Default::default()
            };
            js.get_or_create_stream(config)
                .await
                .map_err(|e| format!("cannot create the stream {:?}: {e}", self.cfg.stream))?;
        } else {
            js.get_stream(&self.cfg.stream).await.map_err(|e| {
                format!(
                    "the stream {:?} is not there (set create_stream = true to create it): {e}",
                    self.cfg.stream
                )
            })?;
        }
        Ok(js)
    }
}

impl Target for Nats {
    async fn deliver(&mut self, d: &Delivery<'_>, stop: &mut watch::Receiver<bool>) -> Outcome {
        let subject = subject(&self.cfg.subject, &d.entry.session, d.contact_id.as_deref());
        let payload = axum::body::Bytes::from(d.envelope());
        let id = d.item_id();
        let mut backoff = Backoff::default();
        loop {
            if self.js.is_none() {
                match self.connect().await {
                    Ok(js) => self.js = Some(js),
                    Err(e) => {
                        tracing::warn!(consumer = %self.cfg.name, error = %e, "NATS is not ready; retrying");
                        if !pause(backoff.delay(None), stop).await {
                            return Outcome::Stopped;
                        }
                        continue;
                    }
                }
            }
            let js = self.js.as_ref().expect("connected above");
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let published = async {
                js.publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            let result = tokio::select! {
                r = published => r,
                _ = crate::stop::stopped(stop) => return Outcome::Stopped,
            };
            match result {
                Ok(_ack) => return Outcome::Accepted,
                Err(e) => {
                    tracing::warn!(consumer = %self.cfg.name, error = %e, item = %id, "a publish was not acknowledged; retrying");
                    if !pause(backoff.delay(None), stop).await {
                        return Outcome::Stopped;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_made_of_single_tokens() {
        assert_eq!(
            subject(DEFAULT_SUBJECT, "chat.1", Some("c-1")),
            "connect.chat.c-1.chat_1"
        );
        assert_eq!(subject(DEFAULT_SUBJECT, "s", None), "connect.chat.unknown.s");
        assert_eq!(subjects_of(DEFAULT_SUBJECT), "connect.chat.*.*");
        assert_eq!(subjects_of("x.{session}"), "x.*");
    }
}
