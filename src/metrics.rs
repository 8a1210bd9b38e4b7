//! Process-wide Prometheus metrics: the counters and histograms that the API client,
//! the rate limiter, the socket dialler, the sessions and the journal update as things
//! happen, and the consumers' positions for their lag. `/metrics` encodes them with the
//! daemon's gauges read at scrape time (`daemon::metrics`).
//!
//! Labels are bounded: operations, outcomes, causes, states and configured consumer
//! names, never Item Ids or tokens (session names only when the operator asks, and
//! only in the daemon's scrape-time gauges).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub operation: &'static str,
    /// `ok`, `throttled` (429), `client_error` (other 4xx), `server_error` (5xx),
    /// `transport` (no answer), `decode` (an answer that does not fit the model).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every series the process updates as it goes.
pub struct Metrics {
    pub items_journalled: Counter,
    pub items_backfilled: Counter,
    pub duplicates_dropped: Counter,
    pub reconnects: Family<CauseLabel, Counter>,
    pub renewals: Counter,
    pub api_calls: Family<CallLabels, Counter>,
    pub limiter_wait: HistogramFamily<OperationLabel>,
    pub websocket_connect: Histogram,
    pub websocket_connect_failures: Counter,
    pub journal_commit_seconds: Histogram,
    pub journal_commit_items: Histogram,
    pub cluster_takeovers: Counter,
    pub cluster_conflicts: Counter,
    /// The journal position of the last committed Item (0: none yet).
    journal_head: AtomicI64,
    /// Durable consumers' positions, by `stdout`, `webhook:NAME`, `nats:NAME`.
    consumers: Mutex<BTreeMap<String, Arc<AtomicI64>>>,
    /// Open SSE streams' positions.
    streams: Mutex<Vec<Weak<AtomicI64>>>,
}

fn limiter_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every `cause` of `reconnects`, so each reads 0 before it first happens.
pub const CAUSES: [&str; 6] = [
    "requested",
    "server_close",
    "dropped",
    "half_open",
    "gateway_error",
    "slow_consumer",
];

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = new_metrics();
        for cause in CAUSES {
            let _ = m.reconnects.get_or_create(&CauseLabel { cause });
        }
        m
    })
}

fn new_metrics() -> Metrics {
    Metrics {
        items_journalled: Counter::default(),
        items_backfilled: Counter::default(),
        duplicates_dropped: Counter::default(),
        reconnects: Family::default(),
        renewals: Counter::default(),
        api_calls: Family::default(),
        limiter_wait: Family::new_with_constructor(limiter_histogram as fn() -> Histogram),
        // 1 ms to about 16 s.
        websocket_connect: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        websocket_connect_failures: Counter::default(),
        // 50 µs to about 1.6 s.
        journal_commit_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
        // 1 to 4096 Items.
        journal_commit_items: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        cluster_takeovers: Counter::default(),
        cluster_conflicts: Counter::default(),
        journal_head: AtomicI64::new(0),
        consumers: Mutex::new(BTreeMap::new()),
        streams: Mutex::new(Vec::new()),
    }
}

/// The lag of one consumer, in Items: how far its position is behind the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    pub consumer: String,
    pub items: i64,
}

impl Metrics {
    /// One API call's answer (each attempt counts).
    pub fn api_call(&self, operation: &'static str, outcome: &'static str) {
        self.api_calls
            .get_or_create(&CallLabels { operation, outcome })
            .inc();
    }

    pub fn limiter_waited(&self, operation: &'static str, waited: Duration) {
        self.limiter_wait
            .get_or_create(&OperationLabel { operation })
            .observe(waited.as_secs_f64());
    }

    pub fn reconnect(&self, cause: &'static str) {
        self.reconnects.get_or_create(&CauseLabel { cause }).inc();
    }

    /// A journal transaction: how long it took, how many Items it appended, and the
    /// position of its last Item.
    pub fn journal_committed(&self, took: Duration, appended: usize, last: Option<i64>) {
        self.journal_commit_seconds.observe(took.as_secs_f64());
        if appended > 0 {
            self.journal_commit_items.observe(appended as f64);
            self.items_journalled.inc_by(appended as u64);
        }
        if let Some(seq) = last {
            self.journal_head.fetch_max(seq, Ordering::Relaxed);
        }
    }

    /// Where the journal is: a consumer starting from its saved position needs this
    /// before the first commit of this run.
    pub fn journal_at(&self, seq: i64) {
        self.journal_head.fetch_max(seq, Ordering::Relaxed);
    }

    /// The journal position of the last committed Item this process knows of.
    pub fn journal_head(&self) -> i64 {
        self.journal_head.load(Ordering::Relaxed)
    }

    /// The position a durable consumer moves as it handles Items.
    pub fn consumer_position(&self, key: &str) -> Arc<AtomicI64> {
        let mut consumers = self.consumers.lock().expect("metrics lock");
        consumers
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(AtomicI64::new(0)))
            .clone()
    }

    /// The position an SSE stream moves; it counts while the `Arc` lives.
    pub fn stream_position(&self, at: i64) -> Arc<AtomicI64> {
        let position = Arc::new(AtomicI64::new(at));
        let mut streams = self.streams.lock().expect("metrics lock");
        streams.retain(|w| w.strong_count() > 0);
        streams.push(Arc::downgrade(&position));
        position
    }

    /// Each durable consumer's lag, and the largest of the open SSE streams' (as
    /// `sse`), with the number of open streams.
    pub fn lags(&self) -> (Vec<Lag>, usize) {
        let head = self.journal_head.load(Ordering::Relaxed);
        let behind = |p: &AtomicI64| (head - p.load(Ordering::Relaxed)).max(0);
        let mut lags: Vec<Lag> = self
            .consumers
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|(k, p)| Lag {
                consumer: k.clone(),
                items: behind(p),
            })
            .collect();
        let mut streams = self.streams.lock().expect("metrics lock");
        streams.retain(|w| w.strong_count() > 0);
        let open: Vec<_> = streams.iter().filter_map(Weak::upgrade).collect();
        lags.push(Lag {
            consumer: "sse".into(),
            items: open.iter().map(|p| behind(p)).max().unwrap_or(0),
        });
        (lags, open.len())
    }

    /// Registers every series in `registry` (which prefixes them `connect_chatd_`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "items_journalled",
            "Items committed to the journal",
            self.items_journalled.clone(),
        );
        r.register(
            "items_backfilled",
            "Items delivered from GetTranscript rather than the websocket",
            self.items_backfilled.clone(),
        );
        r.register(
            "duplicates_dropped",
            "Items dropped as already delivered (socket and transcript overlap, redelivery)",
            self.duplicates_dropped.clone(),
        );
        r.register(
            "reconnects",
            "Websockets lost and reconnected, by cause",
            self.reconnects.clone(),
        );
        r.register(
            "renewals",
            "Connections renewed before ConnectionExpiry",
            self.renewals.clone(),
        );
        r.register(
            "api_calls",
            "Participant Service calls (each attempt), by operation and outcome",
            self.api_calls.clone(),
        );
        r.register_with_unit(
            "limiter_wait",
            "Time an API call waited for the process-wide rate limiter",
            Unit::Seconds,
            self.limiter_wait.clone(),
        );
        r.register_with_unit(
            "websocket_connect",
            "Time to open a websocket (TCP, TLS, upgrade)",
            Unit::Seconds,
            self.websocket_connect.clone(),
        );
        r.register(
            "websocket_connect_failures",
            "Websocket dials that failed",
            self.websocket_connect_failures.clone(),
        );
        r.register_with_unit(
            "journal_commit",
            "Time of one journal transaction",
            Unit::Seconds,
            self.journal_commit_seconds.clone(),
        );
        r.register(
            "journal_commit_items",
            "Items appended by one journal transaction",
            self.journal_commit_items.clone(),
        );
        r.register(
            "cluster_takeovers",
            "Sessions taken over from a cluster instance that was gone",
            self.cluster_takeovers.clone(),
        );
        r.register(
            "cluster_ownership_conflicts",
            "Compare-and-set races lost, and sessions found owned by another instance",
            self.cluster_conflicts.clone(),
        );
    }
}

/// The outcome label of an API call's result.
pub fn outcome<T>(r: &Result<T, crate::api::ApiError>) -> &'static str {
    use crate::api::ApiError;
    match r {
        Ok(_) => "ok",
        Err(ApiError::Service { status: 429, .. }) => "throttled",
        Err(ApiError::Service { status, .. }) if *status >= 500 => "server_error",
        Err(ApiError::Service { .. }) => "client_error",
        Err(ApiError::Transport { .. }) => "transport",
        Err(ApiError::Tls { .. }) => "tls",
        Err(ApiError::Decode { .. }) => "decode",
    }
}

/// The cause label of a lost websocket.
pub fn cause(reason: &crate::socket::CloseReason) -> &'static str {
    use crate::socket::CloseReason;
    match reason {
        CloseReason::Requested => "requested",
        CloseReason::Server { .. } => "server_close",
        CloseReason::Error(_) => "dropped",
        CloseReason::Stalled => "half_open",
        CloseReason::Gateway(_) => "gateway_error",
        CloseReason::SlowConsumer(_) => "slow_consumer",
    }
}
