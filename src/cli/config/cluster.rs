//! `[cluster]`: daemon instances sharing the chats through NATS JetStream. Its secret
//! files (`key_file`, `token_file`) are read and checked here, so a bad key is a
//! configuration error (exit 78) naming the key, not a failure at the first takeover.

use super::duration::Seconds;
use super::error::{lookup, Problem};
use crate::cluster::entry::ClusterKey;
use crate::cluster::{ClusterConfig, DEFAULT_BUCKET, DEFAULT_INSTANCE_TTL, DEFAULT_STREAM};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_ttl: Option<Seconds>,
}

/// `[cluster]` checked; `None` when the section is absent.
pub(super) fn cluster(
    raw: Option<&RawCluster>,
    fig: &Figment,
    resolve: &dyn Fn(&Path) -> PathBuf,
    p: &mut Vec<Problem>,
) -> Option<ClusterConfig> {
    let raw = raw?;
    let mut problem = |key: &str, msg: String| {
        let key = format!("cluster.{key}");
        let source = lookup(fig, &key);
        p.push(Problem::new(key, source, msg));
    };
    let nats = match raw.nats.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            problem(
                "nats",
                "is required in [cluster] (e.g. \"nats://127.0.0.1:4222\")".into(),
            );
            String::new()
        }
    };
    let instance = raw
        .instance
        .clone()
        .unwrap_or_else(crate::cluster::default_instance);
    if !crate::daemon::valid_session_name(&instance) {
        problem(
            "instance",
            format!("{instance:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"),
        );
    }
    let key = match &raw.key_file {
        None => {
            problem("key_file", "is required in [cluster]: the key that seals ParticipantTokens in the bucket (e.g. `openssl rand -hex 32`)".into());
            None
        }
        Some(f) => {
            let path = resolve(f);
            match super::read_secret(&path) {
                Err(e) => {
                    problem("key_file", e);
                    None
                }
                Ok(text) => match ClusterKey::parse(text.expose()) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        problem("key_file", format!("{}: {e}", path.display()));
                        None
                    }
                },
            }
        }
    };
    let token = match &raw.token_file {
        None => None,
        Some(f) => match super::read_secret(&resolve(f)) {
            Ok(t) => Some(t),
            Err(e) => {
                problem("token_file", e);
                None
            }
        },
    };
    let bucket = raw.bucket.clone().unwrap_or_else(|| DEFAULT_BUCKET.into());
    if !valid_bucket(&bucket) {
        problem("bucket", format!("{bucket:?} must be letters, digits, - and _"));
    }
    let stream = raw.stream.clone().unwrap_or_else(|| DEFAULT_STREAM.into());
    if !valid_bucket(&stream) {
        problem("stream", format!("{stream:?} must be letters, digits, - and _"));
    }
    let subject = raw
        .subject
        .clone()
        .unwrap_or_else(|| crate::sink::nats::DEFAULT_SUBJECT.into());
    if !subject.contains("{session}") {
        problem(
            "subject",
            format!("{subject:?} must contain {{session}}: each session needs its own subject"),
        );
    }
    let instance_ttl = raw.instance_ttl.map_or(DEFAULT_INSTANCE_TTL, |s| s.0);
    if instance_ttl < std::time::Duration::from_secs(3) {
        problem("instance_ttl", "must be at least 3 seconds".into());
    }
    Some(ClusterConfig {
        nats,
        instance,
        token,
        key: key?,
        bucket,
        stream,
        subject,
        instance_ttl,
    })
}

fn valid_bucket(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
