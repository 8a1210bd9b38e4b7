//! `[[consumers]]`: the webhook and NATS JetStream consumers of the journal, validated
//! into what [`crate::sink::consumer`] runs. Every key is checked against the consumer's
//! `kind` (a NATS key on a webhook is an error naming it), secret files are read here
//! (surrounding whitespace ignored), and plaintext `http://` is refused except to a
//! loopback host or with `allow_http = true`.

use super::duration::Seconds;
use super::error::{Problem, Source};
use super::read_secret;
use crate::daemon::valid_session_name;
use crate::secret::Secret;
use crate::sink::consumer::{Common, ConsumerConfig, TargetConfig};
use crate::sink::nats::{self, NatsAuth, NatsConfig};
use crate::sink::webhook::WebhookConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<String>>,
    // webhook
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    // nats
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_window: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
}

const WEBHOOK_KEYS: [&str; 4] = ["url", "secret_file", "timeout", "allow_http"];
const NATS_KEYS: [&str; 14] = [
    "url",
    "subject",
    "stream",
    "create_stream",
    "subjects",
    "duplicate_window",
    "storage",
    "replicas",
    "token_file",
    "user",
    "password_file",
    "nkey_file",
    "credentials_file",
    "tls_ca_file",
];

impl RawConsumer {
    /// The kind-specific keys that are set.
    fn set_keys(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut note = |set: bool, key| {
            if set {
                v.push(key)
            }
        };
        note(self.url.is_some(), "url");
        note(self.secret_file.is_some(), "secret_file");
        note(self.timeout.is_some(), "timeout");
        note(self.allow_http.is_some(), "allow_http");
        note(self.subject.is_some(), "subject");
        note(self.stream.is_some(), "stream");
        note(self.create_stream.is_some(), "create_stream");
        note(self.subjects.is_some(), "subjects");
        note(self.duplicate_window.is_some(), "duplicate_window");
        note(self.storage.is_some(), "storage");
        note(self.replicas.is_some(), "replicas");
        note(self.token_file.is_some(), "token_file");
        note(self.user.is_some(), "user");
        note(self.password_file.is_some(), "password_file");
        note(self.nkey_file.is_some(), "nkey_file");
        note(self.credentials_file.is_some(), "credentials_file");
        note(self.tls_ca_file.is_some(), "tls_ca_file");
        v
    }
}

/// Where validation reads files from.
pub(super) struct Files<'a> {
    pub config_path: &'a Path,
    pub resolve: &'a dyn Fn(&Path) -> PathBuf,
    pub state_dir: &'a Path,
}

pub(super) fn consumers(raw: &[RawConsumer], files: &Files<'_>, p: &mut Vec<Problem>) -> Vec<ConsumerConfig> {
    let file = || Source::File(files.config_path.to_path_buf());
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, c) in raw.iter().enumerate() {
        let key = |k: &str| format!("consumers[{i}].{k}");
        let errors = std::cell::RefCell::new(Vec::new());
        let problem = |k: &str, msg: String| errors.borrow_mut().push(Problem::new(key(k), file(), msg));
        let name = c.name.clone().unwrap_or_default();
        if !valid_session_name(&name) {
            problem(
                "name",
                format!("{name:?} is not a consumer name: 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            );
        } else if !names.insert(name.clone()) {
            problem("name", format!("duplicate consumer name {name:?}"));
        }
        let kind = match c.kind.as_deref() {
            Some("webhook") => "webhook",
            Some("nats") => "nats",
            Some(other) => {
                problem(
                    "kind",
                    format!("{other:?} is not a consumer kind: \"webhook\" or \"nats\""),
                );
                p.extend(errors.into_inner());
                continue;
            }
            None => {
                problem("kind", "missing: \"webhook\" or \"nats\"".into());
                p.extend(errors.into_inner());
                continue;
            }
        };
        let allowed: &[&str] = if kind == "webhook" {
            &WEBHOOK_KEYS
        } else {
            &NATS_KEYS
        };
        for k in c.set_keys() {
            if !allowed.contains(&k) {
                problem(k, format!("not a key of a {kind} consumer"));
            }
        }
        let sessions = c.sessions.as_ref().map(|list| {
            for s in list {
                if !valid_session_name(s) {
                    problem("sessions", format!("{s:?} is not a session name"));
                }
            }
            list.iter().cloned().collect::<BTreeSet<String>>()
        });
        let secret = |k: &str, path: &Option<PathBuf>| -> Option<Secret> {
            let path = (files.resolve)(path.as_deref()?);
            read_secret(&path).map_err(|e| problem(k, e)).ok()
        };
        let target = if kind == "webhook" {
            let secret = match &c.secret_file {
                Some(_) => secret("secret_file", &c.secret_file),
                None => {
                    problem(
                        "secret_file",
                        "missing: the file holding the secret requests are signed with".into(),
                    );
                    None
                }
            };
            let url = match c.url.as_deref().map(reqwest::Url::parse) {
                Some(Ok(u)) if u.scheme() == "https" => Some(u),
                Some(Ok(u)) if u.scheme() == "http" => {
                    let loopback = u
                        .host_str()
                        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                        .is_some_and(|h| {
                            h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
                        });
                    if loopback || c.allow_http == Some(true) {
                        Some(u)
                    } else {
                        problem("url", format!("{u} is plaintext http to a host that is not loopback; use https, or set allow_http = true"));
                        None
                    }
                }
                Some(Ok(u)) => {
                    problem("url", format!("{u}: the scheme must be https (or http)"));
                    None
                }
                Some(Err(e)) => {
                    problem("url", format!("not a URL: {e}"));
                    None
                }
                None => {
                    problem("url", "missing: where Items are POSTed".into());
                    None
                }
            };
            match (url, secret) {
                (Some(url), Some(secret)) => Some(TargetConfig::Webhook(WebhookConfig {
                    url,
                    secret,
                    timeout: c.timeout.as_ref().map_or(Duration::from_secs(10), |s| s.0),
                    name: name.clone(),
                })),
                _ => None,
            }
        } else {
            let url = c.url.clone().unwrap_or_default();
            if url.is_empty() {
                problem(
                    "url",
                    "missing: the NATS server, e.g. nats://127.0.0.1:4222".into(),
                );
            }
            let stream = c.stream.clone().unwrap_or_default();
            if stream.is_empty() || stream.contains(['.', '*', '>', ' ']) {
                problem(
                    "stream",
                    format!("{stream:?} is not a stream name (required; no . * > or spaces)"),
                );
            }
            let subject = c
                .subject
                .clone()
                .unwrap_or_else(|| nats::DEFAULT_SUBJECT.to_string());
            let memory_storage = match c.storage.as_deref() {
                None | Some("file") => false,
                Some("memory") => true,
                Some(other) => {
                    problem("storage", format!("{other:?} is not \"file\" or \"memory\""));
                    false
                }
            };
            let auths = [
                c.token_file.is_some(),
                c.user.is_some() || c.password_file.is_some(),
                c.nkey_file.is_some(),
                c.credentials_file.is_some(),
            ];
            if auths.iter().filter(|a| **a).count() > 1 {
                problem(
                    "token_file",
                    "give one of token_file, user + password_file, nkey_file, credentials_file".into(),
                );
            }
            let auth = if c.token_file.is_some() {
                secret("token_file", &c.token_file).map(NatsAuth::Token)
            } else if c.user.is_some() || c.password_file.is_some() {
                match (&c.user, &c.password_file) {
                    (Some(user), Some(_)) => {
                        secret("password_file", &c.password_file).map(|password| NatsAuth::UserPassword {
                            user: user.clone(),
                            password,
                        })
                    }
                    _ => {
                        problem("user", "user and password_file go together".into());
                        None
                    }
                }
            } else if c.nkey_file.is_some() {
                secret("nkey_file", &c.nkey_file).map(NatsAuth::Nkey)
            } else if let Some(path) = &c.credentials_file {
                let path = (files.resolve)(path);
                match std::fs::metadata(&path) {
                    Ok(_) => Some(NatsAuth::CredentialsFile(path)),
                    Err(e) => {
                        problem("credentials_file", format!("cannot read {}: {e}", path.display()));
                        None
                    }
                }
            } else {
                Some(NatsAuth::None)
            };
            let tls_ca_file = c.tls_ca_file.as_deref().map(|f| (files.resolve)(f));
            if let Some(ca) = &tls_ca_file {
                if let Err(e) = std::fs::metadata(ca) {
                    problem("tls_ca_file", format!("cannot read {}: {e}", ca.display()));
                }
            }
            let replicas = c.replicas.unwrap_or(1);
            if !(1..=5).contains(&replicas) {
                problem("replicas", format!("{replicas} is not 1 to 5"));
            }
            auth.map(|auth| {
                TargetConfig::Nats(NatsConfig {
                    name: name.clone(),
                    url,
                    subjects: c
                        .subjects
                        .clone()
                        .unwrap_or_else(|| vec![nats::subjects_of(&subject)]),
                    subject,
                    stream,
                    create_stream: c.create_stream.unwrap_or(false),
                    duplicate_window: c
                        .duplicate_window
                        .as_ref()
                        .map_or(Duration::from_secs(120), |s| s.0),
                    memory_storage,
                    replicas,
                    auth,
                    tls_ca_file,
                })
            })
        };
        let errors = errors.into_inner();
        if !errors.is_empty() {
            p.extend(errors);
            continue;
        }
        if let Some(target) = target {
            out.push(ConsumerConfig {
                common: Common {
                    dead_letters: files
                        .state_dir
                        .join("dead-letters")
                        .join(format!("{kind}-{name}.jsonl")),
                    name,
                    kind,
                    sessions,
                    owned_in: None,
                },
                target,
            });
        }
    }
    out
}
