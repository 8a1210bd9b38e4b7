//! From a validated [`DaemonConfig`] to what [`run`](super::run::run) needs: one API
//! client (one connection pool, the process-wide rate limiter), the journal opened
//! under `state_dir`, the configured sessions' tokens read from their files, and the
//! control listener with its bearer secret. Also the summary `check-config` prints.

use super::run::{ConfiguredSession, Listen, RunOptions};
use crate::api::limiter::{Limit, RateLimiter};
use crate::api::{ApiClient, Operation};
use crate::config::{ControlListen, DaemonConfig};
use crate::journal::{Journal, JournalSettings};
use crate::secret::Secret;
use crate::supervisor::SupervisorConfig;
use std::path::Path;

/// Why the daemon cannot start with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file the configuration names cannot be used (exit 78).
    #[error("invalid configuration: {key}: {problem}")]
    Config { key: String, problem: String },
    /// The journal cannot be opened (exit 1).
    #[error("{0}")]
    Journal(#[from] crate::journal::JournalError),
}

/// A secret file's content, surrounding whitespace removed.
pub fn read_secret(key: &str, path: &Path) -> Result<Secret, StartError> {
    let problem = |problem: String| StartError::Config {
        key: key.to_string(),
        problem,
    };
    let raw =
        std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read {}: {e}", path.display())))?;
    let value = raw.trim();
    if value.is_empty() {
        return Err(problem(format!("{} is empty", path.display())));
    }
    Ok(Secret::new(value))
}

/// The process-wide limiter: one bucket per configured operation.
pub fn rate_limiter(cfg: &DaemonConfig) -> RateLimiter {
    RateLimiter::with_limits(Operation::ALL.iter().filter_map(|op| {
        cfg.limit(*op).map(|l| {
            (
                *op,
                Limit {
                    rate: l.rate,
                    burst: l.burst,
                },
            )
        })
    }))
}

/// Everything `run` needs, except the shutdown signal.
pub fn options(cfg: &DaemonConfig) -> Result<RunOptions, StartError> {
    let api = ApiClient::builder(cfg.endpoint.clone())
        .rate_limiter(rate_limiter(cfg))
        .build()
        .map_err(|e| StartError::Config {
            key: "endpoint".into(),
            problem: e.to_string(),
        })?;
    let sessions = cfg
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(ConfiguredSession {
                name: s.name.clone(),
                participant_token: read_secret(
                    &format!("sessions[{i}].participant_token_file"),
                    &s.participant_token_file,
                )?,
                history: s.history,
                labels: s.labels.clone(),
            })
        })
        .collect::<Result<Vec<_>, StartError>>()?;
    let (listen, bearer) = match &cfg.control.listen {
        ControlListen::Unix(p) => (Listen::Unix(p.clone()), None),
        ControlListen::Tcp(a) => {
            let bearer = match &cfg.control.token_file {
                Some(f) => Some(read_secret("control.token_file", f)?),
                None => None,
            };
            (Listen::Tcp(*a), bearer)
        }
    };
    let mut supervisor = SupervisorConfig::default();
    supervisor.socket.heartbeat_interval = cfg.heartbeat_interval;
    let journal = Journal::open(
        &cfg.state_dir,
        JournalSettings {
            fsync: cfg.journal.fsync,
            retention: cfg.journal.retention,
        },
    )?;
    Ok(RunOptions {
        api,
        journal,
        supervisor,
        listen,
        bearer,
        stdout: cfg.stdout,
        http_listen: cfg.http.listen,
        sessions,
    })
}

/// What `check-config` prints: the resolved settings, never a secret.
pub fn summary(cfg: &DaemonConfig) -> serde_json::Value {
    let limits: serde_json::Map<String, serde_json::Value> = cfg
        .limits
        .iter()
        .map(|(op, l)| (op.clone(), serde_json::json!({"rate": l.rate, "burst": l.burst})))
        .collect();
    serde_json::json!({
        "config": cfg.config_path,
        "endpoint": cfg.endpoint.base().to_string(),
        "state_dir": cfg.state_dir,
        "heartbeat_interval": cfg.heartbeat_interval.as_secs_f64(),
        "stdout": cfg.stdout,
        "control": {"listen": cfg.control.listen.to_string(), "token_file": cfg.control.token_file},
        "http": {"listen": cfg.http.listen.map(|a| a.to_string())},
        "journal": {"fsync": cfg.journal.fsync.as_str(), "retention": cfg.journal.retention.as_secs_f64()},
        "limits": limits,
        "log": {"format": format!("{:?}", cfg.log.format).to_lowercase(), "level": cfg.log.level},
        "sessions": cfg.sessions.iter().map(|s| serde_json::json!({
            "name": s.name,
            "participant_token_file": s.participant_token_file,
            "history": match s.history { crate::supervisor::History::All => "all", crate::supervisor::History::None => "none" },
            "labels": s.labels,
        })).collect::<Vec<_>>(),
    })
}
