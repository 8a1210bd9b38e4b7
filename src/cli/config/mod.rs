//! The daemon's configuration (`connect-chatd run --config PATH`, `check-config`):
//! defaults < TOML file < environment (`CONNECT_CHATD_…`) < flags ([`Overrides`]),
//! merged with figment and validated at start. Unknown keys, wrong types and bad values
//! are refused with a [`ConfigError`] whose every [`Problem`] names the key and its
//! source; the process then exits with [`crate::cli::exit::CONFIG`] (78).
//!
//! See `config/connect-chatd.toml` for every key with its default, [`env`] for the
//! environment names, [`limits`] for the rate-limit defaults and the shared
//! SendMessage/SendEvent bucket, [`duration`] for how durations are written.

mod cluster;
mod consumers;
pub mod duration;
mod egress;
pub mod env;
pub mod error;
pub mod limits;
mod raw;
mod summary;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_reject;

pub use crate::daemon::valid_session_name;
pub use error::{ConfigError, Problem, Source};
pub use limits::{bucket_of, Limit, DEFAULT_LIMITS, SEND_BUCKET};
pub use raw::{FsyncMode, Overrides, DEFAULT_STATE_DIR};

use crate::api::{Endpoint, Operation};
use crate::cli::logging::LogFormat;
use crate::session::History;
use figment::providers::{Format, Toml};
use figment::Figment;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated configuration of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The file it was loaded from.
    pub config_path: PathBuf,
    /// The target as configured (after a higher layer's `region`/`endpoint` replaced a
    /// lower layer's).
    pub target: Target,
    /// The resolved service endpoint.
    pub endpoint: Endpoint,
    /// Proxies (`proxy`, `no_proxy`, `proxy_credentials_file`, the proxy variables of
    /// the environment) and trust (`ca_file` with the OS store), for REST and websockets.
    pub egress: crate::egress::Egress,
    /// Default `/var/lib/connect-chatd`, or `$STATE_DIRECTORY` when set.
    pub state_dir: PathBuf,
    /// Default 10 s.
    pub heartbeat_interval: Duration,
    /// How long a SIGTERM's shutdown may take at most before the process exits anyway
    /// (default 10 s).
    pub shutdown_timeout: Duration,
    /// Whether the stdout consumer is on (default false).
    pub stdout: bool,
    pub control: ControlConfig,
    pub http: HttpConfig,
    pub journal: JournalConfig,
    /// Keyed by operation name: every operation with a default or a configured limit.
    /// SendMessage and SendEvent map to the same limit (same [`Limit::bucket`]).
    pub limits: BTreeMap<String, Limit>,
    /// `[limits]`' capacity keys: sessions, control connections, streams, body size,
    /// client deadlines.
    pub capacity: crate::daemon::Capacity,
    pub log: LogConfig,
    pub sessions: Vec<SessionSpec>,
    /// `[[consumers]]`: webhook and NATS consumers of the journal (secrets read).
    pub consumers: Vec<crate::sink::consumer::ConsumerConfig>,
    /// `[cluster]`, when set: the sessions are shared through NATS JetStream.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// Where the service is: `region` (with `fips`/`dual_stack`) or `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub region: Option<String>,
    pub fips: bool,
    pub dual_stack: bool,
    pub endpoint: Option<String>,
}

/// The control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Default `unix:$RUNTIME_DIRECTORY/control.sock`, else `unix:<state_dir>/control.sock`.
    pub listen: ControlListen,
    /// The bearer secret's file (required for TCP), resolved like session token files.
    pub token_file: Option<PathBuf>,
    /// The explicit opt-in for a non-loopback TCP address.
    pub allow_remote: bool,
}

/// `unix:PATH`, or `IP:PORT` (also `tcp:IP:PORT`, `localhost:PORT`).
pub use crate::daemon::run::Listen as ControlListen;

/// Probes and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `None` (the default): no HTTP listener.
    pub listen: Option<SocketAddr>,
    /// `/readyz` is 503 while a session has been connecting, subscribing or
    /// reconnecting for longer than this (default 2 minutes).
    pub readyz_grace: Duration,
    /// `/metrics` labels per-session series with session names (default off: one
    /// series per chat is too many for a large daemon).
    pub metrics_per_session: bool,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: None,
            readyz_grace: crate::daemon::DEFAULT_READYZ_GRACE,
            metrics_per_session: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Default `batch`.
    pub fsync: FsyncMode,
    /// Default 7 days.
    pub retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Default `text`.
    pub format: LogFormat,
    /// A level or `RUST_LOG`-style filter; default `info`.
    pub level: String,
}

/// A chat the daemon holds from start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// Given, or `session-N` for the N-th `[[sessions]]` entry (1-based).
    pub name: String,
    /// Absolute. A relative path in the file is looked up in `$CREDENTIALS_DIRECTORY`
    /// (when set and the file is there), else next to the config file.
    pub participant_token_file: PathBuf,
    /// Default `all`.
    pub history: History,
    pub labels: BTreeMap<String, String>,
    /// Automatic delivered receipts for incoming messages (default false).
    pub receipts: bool,
}

impl DaemonConfig {
    /// The rate limit of an operation, if it has one.
    pub fn limit(&self, op: Operation) -> Option<&Limit> {
        self.limits.get(op.name())
    }

    /// The session called `name`.
    pub fn session(&self, name: &str) -> Option<&SessionSpec> {
        self.sessions.iter().find(|s| s.name == name)
    }
}

/// Loads and validates the configuration from `config_path`, the environment `env`
/// (a list of variables, so tests can pass their own; `STATE_DIRECTORY`,
/// `RUNTIME_DIRECTORY` and `CREDENTIALS_DIRECTORY` are read from it too) and the
/// flags `overrides`.
pub fn load(
    config_path: &Path,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<DaemonConfig, ConfigError> {
    let var = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Err(e) = std::fs::metadata(config_path).and_then(|m| {
        if m.is_file() {
            Ok(())
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    }) {
        let msg = format!("cannot read the config file {}: {e}", config_path.display());
        return Err(ConfigError::single("", Source::Flag("--config".into()), msg));
    }
    let (env_provider, mut problems) = env::EnvProvider::new(env);
    let figment = Figment::new()
        .merge(raw::defaults_provider(var("STATE_DIRECTORY")))
        .merge(Toml::file_exact(config_path))
        .merge(env_provider)
        .merge(overrides.provider());
    let raw: raw::RawConfig = match figment.extract() {
        Ok(raw) => raw,
        Err(e) => {
            problems.extend(ConfigError::from_figment(e, &figment).problems().iter().cloned());
            return Err(ConfigError::new(problems));
        }
    };
    let config_dir = match config_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let ctx = validate::Context {
        config_path: config_path.to_path_buf(),
        config_dir,
        credentials_dir: var("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        runtime_dir: var("RUNTIME_DIRECTORY")
            .and_then(|s| s.split(':').next())
            .map(PathBuf::from),
        env_proxy: egress::PROXY_VARS
            .iter()
            .filter_map(|n| var(n).map(|v| (n.to_string(), v.to_string())))
            .collect(),
    };
    validate::validate(raw, &figment, &ctx, problems)
}

/// A secret file's content, surrounding whitespace removed; an empty or unreadable
/// file is an error naming it. Every token and secret file the daemon's configuration
/// and its CLI clients name is read with this.
pub fn read_secret(path: &Path) -> Result<crate::secret::Secret, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(crate::secret::Secret::new(s.trim())),
        Ok(_) => Err(format!("{} is empty", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// [`load`] with the process's environment.
pub fn load_from_process_env(config_path: &Path, overrides: &Overrides) -> Result<DaemonConfig, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load(config_path, &env, overrides)
}
