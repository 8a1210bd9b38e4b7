//! From the merged, deserialized configuration to a [`DaemonConfig`]: resolves the
//! endpoint, the control and probe addresses, session names and secret file paths, and
//! collects every problem (each naming its key and source) rather than stopping at the
//! first.

use super::error::{lookup, ConfigError, Problem, Source};
use super::raw::{RawConfig, RawHistory, DEFAULT_HEARTBEAT, DEFAULT_RETENTION};
use super::{
    limits, ControlConfig, ControlListen, DaemonConfig, HttpConfig, JournalConfig, LogConfig, SessionSpec,
    Target,
};
use crate::api::{Endpoint, EndpointVariant};
use crate::daemon::valid_session_name;
use crate::session::History;
use figment::Figment;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// What validation needs besides the values.
pub(super) struct Context {
    pub config_path: PathBuf,
    pub config_dir: PathBuf,
    pub credentials_dir: Option<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    /// The proxy variables of the environment (`HTTPS_PROXY`, …), as set.
    pub env_proxy: Vec<(String, String)>,
}

/// Layer precedence, for the region/endpoint choice.
fn rank(s: &Source) -> u8 {
    match s {
        Source::Unset | Source::Default => 0,
        Source::File(_) => 1,
        Source::Env(_) => 2,
        Source::Flag(_) => 3,
    }
}

pub(super) fn validate(
    raw: RawConfig,
    fig: &Figment,
    ctx: &Context,
    mut problems: Vec<Problem>,
) -> Result<DaemonConfig, ConfigError> {
    let p = &mut problems;
    let (target, endpoint) = target(&raw, fig, p);
    let state_dir = raw.state_dir.clone().unwrap_or_default();
    if state_dir.as_os_str().is_empty() {
        p.push(Problem::new(
            "state_dir",
            lookup(fig, "state_dir"),
            "must not be empty",
        ));
    }
    let control = control(&raw, fig, ctx, &state_dir, p);
    let http = HttpConfig {
        listen: raw.http.listen.as_deref().and_then(|s| match parse_addr(s) {
            Some(a) => Some(a),
            None => {
                let msg = format!("{s:?} is not an IP:PORT address (e.g. 127.0.0.1:9100)");
                p.push(Problem::new("http.listen", lookup(fig, "http.listen"), msg));
                None
            }
        }),
        readyz_grace: raw
            .http
            .readyz_grace
            .map_or(crate::daemon::DEFAULT_READYZ_GRACE, |s| s.0),
        metrics_per_session: raw.http.metrics_per_session,
    };
    let level = raw.log.level.clone().unwrap_or_else(|| "info".into());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        let msg = format!("{level:?} is not a log level or filter: {e}");
        p.push(Problem::new("log.level", lookup(fig, "log.level"), msg));
    }
    let limits = limits::resolve(&raw.limits, fig, p);
    let capacity = limits::capacity(fig, p);
    let sessions = sessions(&raw, ctx, p);
    if sessions.len() > capacity.max_sessions {
        let msg = format!(
            "{} sessions are configured, more than the {} allowed",
            sessions.len(),
            capacity.max_sessions
        );
        p.push(Problem::new(
            "limits.max_sessions",
            lookup(fig, "limits.max_sessions"),
            msg,
        ));
    }
    let resolve = |f: &Path| resolve_secret(f, ctx);
    let files = super::consumers::Files {
        config_path: &ctx.config_path,
        resolve: &resolve,
        state_dir: &state_dir,
    };
    let consumers = super::consumers::consumers(&raw.consumers, &files, p);
    let cluster = super::cluster::cluster(raw.cluster.as_ref(), fig, &resolve, p);
    let egress = super::egress::egress(&raw, fig, ctx, p);
    if !problems.is_empty() {
        return Err(ConfigError::new(problems));
    }
    Ok(DaemonConfig {
        config_path: ctx.config_path.clone(),
        target,
        endpoint: endpoint.expect("no problems means an endpoint"),
        egress: egress.expect("no problems means an egress"),
        state_dir,
        heartbeat_interval: raw.heartbeat_interval.map_or(DEFAULT_HEARTBEAT, |s| s.0),
        shutdown_timeout: raw
            .shutdown_timeout
            .map_or(super::raw::DEFAULT_SHUTDOWN_TIMEOUT, |s| s.0),
        stdout: raw.stdout,
        control,
        http,
        journal: JournalConfig {
            fsync: raw.journal.fsync.unwrap_or_default(),
            retention: raw.journal.retention.map_or(DEFAULT_RETENTION, |s| s.0),
        },
        limits,
        capacity,
        log: LogConfig {
            format: raw.log.format.map(Into::into).unwrap_or_default(),
            level,
        },
        sessions,
        consumers,
        cluster,
    })
}

/// `region` (with `fips`/`dual_stack`) or `endpoint`; a higher layer's choice replaces
/// a lower layer's (`--endpoint` beats a `region` in the file), the same layer may not
/// set both.
fn target(raw: &RawConfig, fig: &Figment, p: &mut Vec<Problem>) -> (Target, Option<Endpoint>) {
    let (rs, es) = (lookup(fig, "region"), lookup(fig, "endpoint"));
    let (mut region, mut url) = (raw.region.clone(), raw.endpoint.clone());
    if region.is_some() && url.is_some() {
        match rank(&rs).cmp(&rank(&es)) {
            std::cmp::Ordering::Greater => url = None,
            std::cmp::Ordering::Less => region = None,
            std::cmp::Ordering::Equal => {
                let msg = "both region and endpoint are set; give one of them";
                p.push(Problem::new("endpoint", es.clone(), msg));
            }
        }
    }
    let target = Target {
        region: region.clone(),
        fips: raw.fips,
        dual_stack: raw.dual_stack,
        endpoint: url.clone(),
    };
    let endpoint = match (&region, &url) {
        (Some(_), Some(_)) => None,
        (None, None) => {
            let msg = "give region (with optional fips or dual_stack) or endpoint";
            p.push(Problem::new("region", Source::Unset, msg));
            None
        }
        (Some(r), None) => {
            let variant = match (raw.fips, raw.dual_stack) {
                (true, true) => {
                    let msg = "fips and dual_stack cannot both be true";
                    p.push(Problem::new("dual_stack", lookup(fig, "dual_stack"), msg));
                    return (target, None);
                }
                (true, false) => EndpointVariant::Fips,
                (false, true) => EndpointVariant::DualStack,
                (false, false) => EndpointVariant::Standard,
            };
            Endpoint::for_region(r, variant)
                .map_err(|e| p.push(Problem::new("region", rs.clone(), e.to_string())))
                .ok()
        }
        (None, Some(u)) => {
            for (key, on) in [("fips", raw.fips), ("dual_stack", raw.dual_stack)] {
                let src = lookup(fig, key);
                if on && rank(&src) >= rank(&es) {
                    p.push(Problem::new(key, src, "goes with region, not endpoint"));
                }
            }
            Endpoint::from_url(u)
                .map_err(|e| p.push(Problem::new("endpoint", es.clone(), e.to_string())))
                .ok()
        }
    };
    (target, endpoint)
}

/// `IP:PORT`, or `localhost:PORT` for the IPv4 loopback.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    if let Some(port) = s.strip_prefix("localhost:") {
        return port
            .parse()
            .ok()
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    s.parse().ok()
}

fn control(
    raw: &RawConfig,
    fig: &Figment,
    ctx: &Context,
    state_dir: &Path,
    p: &mut Vec<Problem>,
) -> ControlConfig {
    let c = &raw.control;
    let default_socket = ctx
        .runtime_dir
        .as_deref()
        .unwrap_or(state_dir)
        .join("control.sock");
    let src = lookup(fig, "control.listen");
    let listen = match c.listen.as_deref() {
        None => ControlListen::Unix(default_socket.clone()),
        Some(s) => match s.strip_prefix("unix:") {
            Some("") => {
                p.push(Problem::new(
                    "control.listen",
                    src.clone(),
                    "unix: needs a socket path",
                ));
                ControlListen::Unix(default_socket)
            }
            Some(path) => ControlListen::Unix(PathBuf::from(path)),
            None => match parse_addr(s.strip_prefix("tcp:").unwrap_or(s)) {
                Some(addr) => ControlListen::Tcp(addr),
                None => {
                    let msg = format!(
                        "{s:?} is neither unix:PATH nor a loopback IP:PORT \
                         (e.g. unix:/run/connect-chatd/control.sock or 127.0.0.1:7001)"
                    );
                    p.push(Problem::new("control.listen", src.clone(), msg));
                    ControlListen::Unix(default_socket)
                }
            },
        },
    };
    let token_file = c.token_file.as_deref().map(|f| {
        let path = resolve_secret(f, ctx);
        if let Err(e) = check_secret_file(&path) {
            p.push(Problem::new(
                "control.token_file",
                lookup(fig, "control.token_file"),
                e,
            ));
        }
        path
    });
    if let ControlListen::Tcp(addr) = listen {
        if !addr.ip().is_loopback() && !c.allow_remote {
            let msg = format!(
                "{addr} is not a loopback address; set control.allow_remote = true to accept \
                 control connections from other hosts"
            );
            p.push(Problem::new("control.listen", src.clone(), msg));
        }
        if token_file.is_none() {
            let msg = format!(
                "control.listen is a TCP address ({addr}, {src}): give control.token_file, the \
                 file holding the bearer secret clients must present"
            );
            p.push(Problem::new("control.token_file", Source::Unset, msg));
        }
    }
    ControlConfig {
        listen,
        token_file,
        allow_remote: c.allow_remote,
    }
}

/// A relative path is looked up in `$CREDENTIALS_DIRECTORY` first (when set and the file
/// is there), else next to the config file. The result is absolute.
pub(super) fn resolve_secret(path: &Path, ctx: &Context) -> PathBuf {
    let found = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match &ctx.credentials_dir {
            Some(dir) if dir.join(path).exists() => dir.join(path),
            _ => ctx.config_dir.join(path),
        }
    };
    std::path::absolute(&found).unwrap_or(found)
}

/// The file exists, is readable and not blank. Its content is dropped at once.
fn check_secret_file(path: &Path) -> Result<(), String> {
    super::read_secret(path).map(drop)
}

fn sessions(raw: &RawConfig, ctx: &Context, p: &mut Vec<Problem>) -> Vec<SessionSpec> {
    let file = || Source::File(ctx.config_path.clone());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.sessions.len());
    for (i, s) in raw.sessions.iter().enumerate() {
        let name = s.name.clone().unwrap_or_else(|| format!("session-{}", i + 1));
        if !valid_session_name(&name) {
            let msg = format!("{name:?} is not a session name: 1 to 64 characters of A-Z a-z 0-9 . _ -");
            p.push(Problem::new(format!("sessions[{i}].name"), file(), msg));
        } else if let Some(j) = seen.get(&name) {
            let how = if s.name.is_some() {
                ""
            } else {
                " (generated from its position)"
            };
            let msg = format!("duplicate session name {name:?}{how}: sessions[{j}] has it too");
            p.push(Problem::new(format!("sessions[{i}].name"), file(), msg));
        } else {
            seen.insert(name.clone(), i);
        }
        let participant_token_file = resolve_secret(&s.participant_token_file, ctx);
        if let Err(e) = check_secret_file(&participant_token_file) {
            p.push(Problem::new(
                format!("sessions[{i}].participant_token_file"),
                file(),
                e,
            ));
        }
        out.push(SessionSpec {
            name,
            participant_token_file,
            history: match s.history {
                Some(RawHistory::None) => History::None,
                Some(RawHistory::All) | None => History::All,
            },
            labels: s.labels.clone(),
            receipts: s.receipts,
        });
    }
    out
}
