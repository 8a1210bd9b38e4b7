//! `/metrics`: the process's series ([`crate::metrics`]) and the daemon's gauges read
//! at scrape time (sessions by state, consumer lag, journal size, how long sessions
//! have not been live), in the Prometheus text format (0.0.4), or OpenMetrics when
//! the scraper asks for it in `Accept`.
//!
//! Session names become labels only with `http.metrics_per_session = true`: a daemon
//! with thousands of chats would otherwise hand Prometheus thousands of series.

use super::{Daemon, Entry};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Every state a session can be in, so a state with no session still reads 0.
const STATES: [&str; 9] = [
    "connecting",
    "subscribing",
    "backfilling",
    "live",
    "renewing",
    "reconnecting",
    "ended",
    "stopped",
    "failed",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabel {
    session: String,
}

type Seconds = Gauge<f64, AtomicU64>;

impl Daemon {
    /// `http.metrics_per_session`: session names as labels.
    pub fn set_metrics_per_session(&self, on: bool) {
        self.metrics_per_session
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn metrics_per_session(&self) -> bool {
        self.metrics_per_session
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The whole exposition, in the format `accept` asks for.
pub fn render(daemon: &Daemon, accept: Option<&str>) -> (String, &'static str) {
    let mut registry = Registry::with_prefix("connect_chatd");
    crate::metrics::global().register(&mut registry);
    scrape(daemon, &mut registry);
    let mut out = String::with_capacity(16 * 1024);
    let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String");
        (out, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            .expect("writing to a String");
        (out, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
    }
}

/// The daemon's gauges, as they are now.
fn scrape(daemon: &Daemon, r: &mut Registry) {
    let sessions = Family::<StateLabel, Gauge>::default();
    for state in STATES {
        let _ = sessions.get_or_create(&StateLabel { state });
    }
    let longest_not_live = Seconds::default();
    let per_session = daemon.metrics_per_session();
    let not_live = Family::<SessionLabel, Seconds>::default();
    let last_item_age = Family::<SessionLabel, Seconds>::default();
    let now = time::OffsetDateTime::now_utc();
    {
        let entries = daemon.sessions.lock().expect("sessions lock");
        for (name, entry) in entries.iter() {
            let (state, not_live_for, last_item_at) = match entry {
                // The state alone unless the last Item's time is asked for: a whole view
                // clones every session's labels under the sessions lock.
                Entry::Running(s) => (
                    s.state(),
                    s.not_live_for(),
                    per_session.then(|| s.view().last_item_at).flatten(),
                ),
                Entry::Retired(v) => (v.state, None, v.last_item_at.clone()),
            };
            if let Some(state) = STATES.iter().find(|s| **s == state) {
                sessions.get_or_create(&StateLabel { state }).inc();
            }
            let waited = not_live_for.map_or(0.0, |d| d.as_secs_f64());
            if waited > longest_not_live.get() {
                longest_not_live.set(waited);
            }
            if per_session {
                let label = SessionLabel {
                    session: name.clone(),
                };
                if !matches!(state, "ended" | "stopped" | "failed") {
                    not_live.get_or_create(&label).set(waited);
                }
                let at = last_item_at.and_then(|t| crate::clock::parse_timestamp(&t).ok());
                if let Some(at) = at {
                    last_item_age
                        .get_or_create(&label)
                        .set((now - at).as_seconds_f64().max(0.0));
                }
            }
        }
    }
    r.register("sessions", "Sessions by state", sessions);
    r.register_with_unit(
        "longest_not_live",
        "Longest time any running session has been connecting, subscribing or reconnecting without being subscribed",
        Unit::Seconds,
        longest_not_live,
    );
    if per_session {
        r.register_with_unit(
            "session_not_live",
            "Time the session has been connecting, subscribing or reconnecting (0: subscribed)",
            Unit::Seconds,
            not_live,
        );
        r.register_with_unit(
            "session_last_item_age",
            "Time since the session's last Item",
            Unit::Seconds,
            last_item_age,
        );
    }

    let metrics = crate::metrics::global();
    let (lags, streams) = metrics.lags();
    let lag = Family::<ConsumerLabel, Gauge>::default();
    for l in lags {
        lag.get_or_create(&ConsumerLabel { consumer: l.consumer })
            .set(l.items);
    }
    r.register(
        "consumer_lag_items",
        "Items committed to the journal that a consumer has not handled yet (sse: the most behind open stream)",
        lag,
    );
    let open = Gauge::<i64>::default();
    open.set(streams as i64);
    r.register("sse_streams", "Open SSE streams", open);
    let head = Gauge::<i64>::default();
    head.set(metrics.journal_head());
    r.register(
        "journal_last_seq",
        "Journal position of the last committed Item",
        head,
    );
    let size = Gauge::<i64>::default();
    size.set(journal_bytes(daemon) as i64);
    r.register_with_unit(
        "journal_size",
        "The journal's database with its write-ahead log",
        Unit::Bytes,
        size,
    );
    if let Some(cluster) = daemon.cluster() {
        let owned = Gauge::<i64>::default();
        owned.set(cluster.owned() as i64);
        r.register(
            "cluster_sessions_owned",
            "Sessions this instance owns in the cluster",
            owned,
        );
        let live = Gauge::<i64>::default();
        live.set(cluster.live_instances().len() as i64);
        r.register(
            "cluster_instances",
            "Live instances of the cluster, as last read",
            live,
        );
    }
    let ready = Gauge::<i64>::default();
    ready.set(i64::from(matches!(daemon.readiness(), super::Readiness::Ready)));
    r.register("ready", "1 while /readyz answers 200", ready);
}

/// The database file and its `-wal` file, in bytes.
fn journal_bytes(daemon: &Daemon) -> u64 {
    let path = daemon.journal().path();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), wal.into()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// `GET /metrics`.
pub async fn metrics(State(daemon): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) = render(&daemon, accept);
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}
