//! systemd's notification protocol (`Type=notify`), only when `NOTIFY_SOCKET` is set:
//!
//! * `READY=1` once the control API listens and every configured session has
//!   subscribed (or ended or failed for good);
//! * `STATUS=` a one-line summary, `12 live, 1 reconnecting, 3 ended; 4521 items`,
//!   whenever it changes, at most once a second;
//! * `WATCHDOG=1` every half `WATCHDOG_USEC` once ready, and only while the runtime runs a new
//!   task and the journal answers a read within that half: a stuck daemon stops
//!   sending it and systemd kills it;
//! * `RELOADING=1` when a SIGHUP's reload begins and `READY=1` once it is applied or
//!   refused ([`reloading`], [`reloaded`]);
//! * `STOPPING=1` when shutdown begins ([`stopping`]).

use super::Daemon;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the status line is looked at.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// True when the service manager listens.
fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Whether the first `READY=1` has gone out (a reload during start-up must not say it
/// early).
static READY_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sends `RELOADING=1` (with `MONOTONIC_USEC`, as `Type=notify-reload` wants).
pub fn reloading() {
    if enabled() {
        let mut state = vec![sd_notify::NotifyState::Reloading];
        if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
            state.push(now);
        }
        send(&state);
    }
}

/// Sends `READY=1` after a reload, if the daemon had said it once.
pub fn reloaded() {
    if enabled() && READY_SENT.load(std::sync::atomic::Ordering::Relaxed) {
        send(&[sd_notify::NotifyState::Ready]);
    }
}

/// Sends `STOPPING=1`.
pub fn stopping() {
    if enabled() {
        send(&[sd_notify::NotifyState::Stopping]);
    }
}

/// The status line: sessions by state (in a fixed order), then the Items delivered.
pub fn status_line(daemon: &Daemon) -> String {
    const ORDER: [&str; 9] = [
        "live",
        "connecting",
        "subscribing",
        "backfilling",
        "renewing",
        "reconnecting",
        "ended",
        "stopped",
        "failed",
    ];
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    let mut items = 0;
    for v in daemon.list() {
        *by_state.entry(v.state).or_default() += 1;
        items += v.counters.delivered;
    }
    let parts: Vec<String> = ORDER
        .iter()
        .filter_map(|s| by_state.get(s).map(|n| format!("{n} {s}")))
        .collect();
    let sessions = if parts.is_empty() {
        "no sessions".to_string()
    } else {
        parts.join(", ")
    };
    format!("{sessions}; {items} items")
}

/// Runs the notifications until the task is aborted: `READY=1` once the daemon has
/// started ([`Daemon::has_started`]), the status line, the watchdog. Does nothing
/// without `NOTIFY_SOCKET`.
pub async fn run(daemon: Arc<Daemon>) {
    if !enabled() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut ready = false;
    let mut last_status = String::new();
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            _ = status_tick.tick() => {
                if !ready && daemon.has_started() {
                    ready = true;
                    send(&[sd_notify::NotifyState::Ready]);
                    READY_SENT.store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!("notified the service manager: ready");
                }
                let status = status_line(&daemon);
                if status != last_status {
                    send(&[sd_notify::NotifyState::Status(&status)]);
                    last_status = status;
                }
            }
            // systemd arms the watchdog once the service is ready.
            _ = watchdog_tick.tick(), if watchdog.is_some() && ready => {
                let bound = watchdog.unwrap_or_default();
                if responsive(&daemon, bound).await {
                    send(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::warn!("the runtime or the journal did not answer in time: no watchdog ping");
                }
            }
        }
    }
}

/// The runtime starts a new task and the journal answers a read, within `bound`.
async fn responsive(daemon: &Daemon, bound: Duration) -> bool {
    let journal = daemon.journal().clone();
    let probe = async move {
        tokio::spawn(async {}).await.is_ok()
            && tokio::task::spawn_blocking(move || journal.last_seq().is_ok())
                .await
                .unwrap_or(false)
    };
    tokio::time::timeout(bound, probe).await.unwrap_or(false)
}
