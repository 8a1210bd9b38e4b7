//! The daemon's life: open the journal, resume the registry's sessions, add the
//! configuration's, start the consumers, listen for control requests, and on shutdown
//! stop accepting requests, close every socket with a close frame and let the journal
//! commit what it has.

use super::{control, server, Daemon, DaemonError, NewSession};
use crate::api::ApiClient;
use crate::journal::Journal;
use crate::secret::Secret;
use crate::session::{History, SupervisorConfig};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the control API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket, created with mode 0600 (a stale one is replaced).
    Unix(PathBuf),
    /// A TCP address; requests need `Authorization: Bearer <secret>`.
    Tcp(SocketAddr),
}

/// A session the configuration file names.
#[derive(Debug, Clone)]
pub struct ConfiguredSession {
    pub name: String,
    pub participant_token: Secret,
    pub history: History,
    pub labels: BTreeMap<String, String>,
    /// Automatic delivered receipts for incoming messages.
    pub receipts: bool,
}

impl ConfiguredSession {
    pub fn into_new_session(self) -> NewSession {
        NewSession {
            participant_token: self.participant_token,
            name: Some(self.name),
            history: self.history,
            labels: self.labels,
            receipts: self.receipts,
            source: crate::journal::SessionSource::Config,
        }
    }
}

/// Everything `run` needs, already validated.
pub struct RunOptions {
    pub api: ApiClient,
    pub journal: Journal,
    pub supervisor: SupervisorConfig,
    pub listen: Listen,
    /// The bearer secret for a TCP listener.
    pub bearer: Option<Secret>,
    pub stdout: bool,
    /// The probes' listener (`/healthz`, `/readyz`), if any.
    pub http_listen: Option<SocketAddr>,
    /// Webhook and NATS consumers of the journal.
    pub consumers: Vec<crate::sink::consumer::ConsumerConfig>,
    pub sessions: Vec<ConfiguredSession>,
    /// `[limits]`: sessions, control connections, streams, bodies, client deadlines.
    pub capacity: super::Capacity,
    /// `http.readyz_grace`: `/readyz` is 503 while a session has not been live longer.
    pub readyz_grace: std::time::Duration,
    /// `http.metrics_per_session`: session names as labels on `/metrics`.
    pub metrics_per_session: bool,
    /// `[cluster]`: the sessions are shared with other instances through NATS.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The most a shutdown takes: past it the daemon exits anyway (what is not
    /// journalled by then is read from the transcript at the next start).
    pub shutdown_timeout: std::time::Duration,
    /// Re-read configurations (SIGHUP), applied as they come.
    pub reloads: Option<tokio::sync::mpsc::Receiver<super::reload::Reload>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {what}: {source}")]
    Listen {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(
        "another connect-chatd is running on {0} (its lock file is held); one daemon per state directory"
    )]
    Locked(String),
    #[error("cannot lock {what}: {source}")]
    Lock {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Holds `<state_dir>/daemon.lock` (an advisory lock the kernel drops with the
/// process, SIGKILL included): two daemons on one journal would follow every chat twice.
fn lock_state_dir(journal: &Journal) -> Result<std::fs::File, RunError> {
    let dir = journal.path().parent().unwrap_or(std::path::Path::new("."));
    let path = dir.join("daemon.lock");
    let err = |source| RunError::Lock {
        what: path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RunError::Locked(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

/// Where a running daemon can be reached: its [`Listen`], with the TCP port it bound.
pub type Bound = Listen;

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// Runs until `shutdown` resolves. `on_ready` gets the control address once it
/// listens and every configured session has started.
pub async fn run(
    mut opts: RunOptions,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Bound, &Arc<Daemon>),
) -> Result<(), RunError> {
    let _lock = lock_state_dir(&opts.journal)?;
    let daemon = Daemon::with_capacity(
        opts.api,
        opts.journal.clone(),
        opts.supervisor,
        opts.capacity.clone(),
    );
    daemon.set_configured(opts.sessions.iter().map(|s| s.name.clone()).collect());
    daemon.set_readyz_grace(opts.readyz_grace);
    daemon.set_metrics_per_session(opts.metrics_per_session);
    let mut current = opts.sessions.clone();
    let mut reloads = opts.reloads.take();
    let cluster = opts.cluster.clone();
    let (cluster_stop, cluster_stop_rx) = tokio::sync::watch::channel(false);
    let controller = match &cluster {
        Some(c) => {
            daemon.set_cluster(c.clone());
            // The cluster's bucket says who follows what: nothing resumes on its own.
            let configured = std::mem::take(&mut opts.sessions)
                .into_iter()
                .map(|s| (s.name.clone(), s.into_new_session()))
                .collect();
            opts.consumers
                .push(crate::cluster::publisher(c.clone(), &opts.journal));
            Some(tokio::spawn(crate::cluster::controller::run(
                c.clone(),
                daemon.clone(),
                configured,
                cluster_stop_rx,
            )))
        }
        None => None,
    };
    let resumed = if cluster.is_none() {
        daemon.resume_all().await?
    } else {
        0
    };
    if resumed > 0 {
        tracing::info!(sessions = resumed, "resumed the sessions of the last run");
    }
    // A configured session that left the file is no longer followed (its Items stay
    // for the retention period).
    let held = if cluster.is_none() {
        opts.journal.sessions().map_err(DaemonError::from)?
    } else {
        Vec::new()
    };
    for rec in held {
        let still_configured = opts.sessions.iter().any(|s| s.name == rec.name);
        let finished = matches!(rec.state.as_str(), "ended" | "failed");
        if rec.source == crate::journal::SessionSource::Config && !still_configured && !finished {
            tracing::info!(session = %rec.name, "no longer in the configuration: stopping it");
            daemon.remove(&rec.name, false).await?;
        }
    }
    for s in opts.sessions {
        let name = s.name.clone();
        let (view, created) = daemon.add(s.into_new_session()).await.or_else(|e| match e {
            // Held from the last run under its name: resumed above.
            DaemonError::NameTaken(_) if daemon.knows(&name) => {
                daemon.get(&name).map(|v| (v, false)).ok_or(e)
            }
            other => Err(other),
        })?;
        if created {
            tracing::info!(session = %view.name, "started a configured session");
        }
    }
    let (stdout_stop, stdout_stop_rx) = tokio::sync::watch::channel(false);
    let stdout_task = opts.stdout.then(|| {
        tokio::spawn(crate::sink::stdout::run(
            opts.journal.clone(),
            tokio::io::stdout(),
            stdout_stop_rx,
        ))
    });

    let purger = tokio::spawn(purge_periodically(daemon.clone()));
    let (consumers_stop, consumers_stop_rx) = tokio::sync::watch::channel(false);
    let consumers: Vec<_> = opts
        .consumers
        .iter()
        .cloned()
        .map(|c| crate::sink::consumer::spawn(opts.journal.clone(), c, consumers_stop_rx.clone()))
        .collect();
    let app = control::router(daemon.clone(), opts.bearer);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let probes = match opts.http_listen {
        Some(addr) => {
            let listener = bind_tcp(addr).await?;
            let app = control::probes(daemon.clone());
            Some(tokio::spawn(server::serve(
                listener,
                app,
                opts.capacity.clone(),
                stop_rx.clone(),
            )))
        }
        None => None,
    };
    let server = match &opts.listen {
        Listen::Unix(path) => {
            let listener = bind_unix(path)?;
            daemon.set_ready();
            on_ready(&Bound::Unix(path.clone()), &daemon);
            tokio::spawn(server::serve(
                listener,
                app,
                opts.capacity.clone(),
                stop_rx.clone(),
            ))
        }
        Listen::Tcp(addr) => {
            let listener = bind_tcp(*addr).await?;
            let bound = listener.local_addr().unwrap_or(*addr);
            daemon.set_ready();
            on_ready(&Bound::Tcp(bound), &daemon);
            tokio::spawn(server::serve(
                listener,
                app,
                opts.capacity.clone(),
                stop_rx.clone(),
            ))
        }
    };
    let notifier = tokio::spawn(super::notify::run(daemon.clone()));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let reload = async {
            match reloads.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            next = reload => match next {
                Some(_) if cluster.is_some() => {
                    tracing::info!("reloaded; in a cluster the sessions are the bucket's, so [[sessions]] changes wait for the next start");
                    super::notify::reloaded();
                }
                Some(next) => {
                    super::reload::apply(&daemon, &mut current, next.sessions).await;
                    daemon.set_configured(current.iter().map(|s| s.name.clone()).collect());
                    super::notify::reloaded();
                }
                None => reloads = None,
            },
        }
    }
    tracing::info!("shutting down: closing every session");
    let deadline = tokio::time::Instant::now() + opts.shutdown_timeout;
    // Each step gets its own bound, and none goes past the deadline.
    let bound = |d: std::time::Duration| deadline.min(tokio::time::Instant::now() + d);
    notifier.abort();
    super::notify::stopping();
    let _ = stop_tx.send(true);
    purger.abort();
    // The controller first, so that nothing is taken while the sessions close.
    let _ = cluster_stop.send(true);
    if let Some(c) = controller {
        let _ = tokio::time::timeout_at(bound(std::time::Duration::from_secs(2)), c).await;
    }
    if tokio::time::timeout_at(deadline, daemon.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?opts.shutdown_timeout,
            "shutdown_timeout passed with sessions still closing; exiting anyway"
        );
    }
    if let Some(c) = &cluster {
        // Handed over while the publisher still runs, so the last Items reach the stream.
        let released = crate::cluster::controller::release_all(c);
        if tokio::time::timeout_at(deadline, released).await.is_err() {
            tracing::warn!("shutdown_timeout passed while handing the sessions over; the others take them after instance_ttl");
        }
    }
    // Open streams end with the server; give them a moment, not forever.
    let _ = tokio::time::timeout_at(bound(std::time::Duration::from_secs(2)), server).await;
    if let Some(p) = probes {
        let _ = tokio::time::timeout_at(bound(std::time::Duration::from_secs(2)), p).await;
    }
    if let Some(t) = stdout_task {
        // Everything committed is written before the daemon exits.
        let _ = stdout_stop.send(true);
        // ... unless nobody reads stdout: then the daemon still exits in bounded time.
        match tokio::time::timeout_at(bound(STDOUT_DRAIN), t).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the stdout consumer stopped"),
            Ok(_) => {}
            Err(_) => tracing::warn!(
                "stdout is not being read; exiting with lines unwritten (they stay in the journal)"
            ),
        }
    }
    // A consumer finishes the Item in flight (its position saved) and stops; the rest
    // waits in the journal for the next run.
    let _ = consumers_stop.send(true);
    let until = bound(std::time::Duration::from_secs(5));
    for c in consumers {
        let _ = tokio::time::timeout_at(until, c).await;
    }
    if let Listen::Unix(path) = &opts.listen {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// How long shutdown waits for the stdout consumer to write what is committed.
const STDOUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How often retention runs (and once at start).
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

async fn purge_periodically(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        match daemon.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                items = n,
                "retention: deleted the Items of sessions that ended long ago"
            ),
            Err(e) => tracing::warn!(error = %e, "retention failed; trying again later"),
        }
    }
}

async fn bind_tcp(addr: SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen {
            what: addr.to_string(),
            source,
        })
}

/// Binds a unix socket with mode 0600, replacing a stale socket file left by a killed
/// daemon (but never a file that is not a socket).
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, RunError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |source| RunError::Listen {
        what: path.display().to_string(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path).map_err(err)?;
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}
