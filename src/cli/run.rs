//! `connect-chatd run` and `check-config`: from a validated [`DaemonConfig`] to what
//! [`crate::daemon::run::run`] needs — one API client (one connection pool, the
//! process-wide rate limiter), the journal opened under `state_dir`, the configured
//! sessions' tokens read from their files, the control listener with its bearer
//! secret.

use crate::api::limiter::{Limit, RateLimiter};
use crate::api::{ApiClient, Operation};
use crate::cli::config::{ConfigError, Overrides};
use crate::cli::config::{ControlListen, DaemonConfig};
use crate::cli::exit;
use crate::cli::RunArgs;
use crate::daemon::run::{ConfiguredSession, Listen, RunOptions};
use crate::journal::{Journal, JournalSettings};
use crate::secret::Secret;
use crate::session::SupervisorConfig;
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
    crate::cli::config::read_secret(path).map_err(|problem| StartError::Config {
        key: key.to_string(),
        problem,
    })
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

/// The configuration's sessions, their tokens read from their files.
pub fn configured_sessions(cfg: &DaemonConfig) -> Result<Vec<ConfiguredSession>, StartError> {
    cfg.sessions
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
                receipts: s.receipts,
            })
        })
        .collect()
}

/// Everything `run` needs, except the shutdown signal.
pub fn options(cfg: &DaemonConfig) -> Result<RunOptions, StartError> {
    let api = ApiClient::builder(cfg.endpoint.clone())
        .rate_limiter(rate_limiter(cfg))
        .egress(cfg.egress.clone())
        .build()
        .map_err(|e| StartError::Config {
            key: "endpoint".into(),
            problem: e.to_string(),
        })?;
    let sessions = configured_sessions(cfg)?;
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
        consumers: cfg.consumers.clone(),
        sessions,
        capacity: cfg.capacity.clone(),
        readyz_grace: cfg.http.readyz_grace,
        metrics_per_session: cfg.http.metrics_per_session,
        cluster: cfg
            .cluster
            .clone()
            .map(|c| std::sync::Arc::new(crate::cluster::Cluster::new(c))),
        shutdown_timeout: cfg.shutdown_timeout,
        reloads: None,
    })
}

/// The flags of `run` and `check-config` as the configuration's top layer.
pub fn overrides(args: &RunArgs) -> Overrides {
    Overrides {
        state_dir: args.state_dir.clone(),
        region: args.region.clone(),
        endpoint: args.endpoint.clone(),
        control_listen: args.control_listen.clone(),
        stdout: args.stdout,
        ..Default::default()
    }
}

/// Loads the configuration; on error prints every problem and gives exit 78.
pub fn load(args: &RunArgs, overrides: &Overrides) -> Result<DaemonConfig, u8> {
    crate::cli::config::load_from_process_env(&args.config, overrides).map_err(|e: ConfigError| {
        eprintln!("connect-chatd: {e}");
        exit::CONFIG
    })
}

/// `check-config`: the resolved configuration, one `key: value` line per setting, on
/// stdout (token files by path, never a secret).
pub fn check_config(cfg: &DaemonConfig) -> u8 {
    print!("{}", cfg.summary());
    exit::OK
}

/// `run`: the daemon, until `shutdown` resolves. Exit 0 after a clean shutdown, 78 for
/// a file the configuration names that cannot be used, 1 when the journal cannot be
/// opened or the control API cannot listen.
///
/// `reload` loads the configuration again; on each SIGHUP the sessions of what it gives
/// are applied and `log.level` takes effect (other keys need a restart); a
/// configuration that does not load is refused with an error in the log, and the
/// running one stays.
pub async fn run(
    cfg: DaemonConfig,
    reload: impl FnMut() -> Result<DaemonConfig, ConfigError> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()>,
) -> u8 {
    let mut opts = match options(&cfg) {
        Ok(o) => o,
        Err(e @ StartError::Config { .. }) => {
            eprintln!("connect-chatd: {e}");
            return exit::CONFIG;
        }
        Err(e) => {
            eprintln!("connect-chatd: {e}");
            return exit::FAILURE;
        }
    };
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    opts.reloads = Some(reload_rx);
    let hangups = tokio::spawn(on_hangup(reload, reload_tx));
    let result = crate::daemon::run::run(opts, shutdown, |bound, daemon| {
        tracing::info!(control = %bound, sessions = daemon.list().len(), "the daemon is ready");
    })
    .await;
    hangups.abort();
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("connect-chatd: {e}");
            exit::FAILURE
        }
    }
}

/// On every SIGHUP: `RELOADING=1`, the configuration loaded again, its log level set
/// and its sessions handed to the daemon (which says `READY=1` once applied); a
/// configuration that does not load (or a token file that cannot be read) is logged
/// and refused.
async fn on_hangup(
    mut reload: impl FnMut() -> Result<DaemonConfig, ConfigError>,
    to_daemon: tokio::sync::mpsc::Sender<crate::daemon::reload::Reload>,
) {
    use crate::daemon::notify;
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reloading is off");
        return;
    };
    while hangups.recv().await.is_some() {
        notify::reloading();
        tracing::info!("SIGHUP: reloading the configuration");
        let next = reload().map_err(|e| e.to_string()).and_then(|cfg| {
            configured_sessions(&cfg)
                .map(|s| (cfg, s))
                .map_err(|e| e.to_string())
        });
        match next {
            Ok((cfg, sessions)) => {
                match crate::cli::logging::set_level(&cfg.log.level) {
                    Ok(true) => tracing::info!(level = %cfg.log.level, "log level set"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "log level unchanged"),
                }
                if to_daemon
                    .send(crate::daemon::reload::Reload { sessions })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused: the running configuration stays in force");
                notify::reloaded();
            }
        }
    }
}
