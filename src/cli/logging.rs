//! Logging set-up: tracing to stderr (stdout belongs to the Items), human-readable or
//! JSON, filtered by `RUST_LOG` or the `--log-level` default. Records from the `log`
//! crate (tungstenite) are bridged in.
//!
//! Some dependencies print request lines and headers at TRACE (tungstenite logs the
//! whole upgrade request, presigned query string included). Those targets are never
//! logged at TRACE, whatever the filter says, so a secret cannot reach a log.

use std::io::IsTerminal;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Targets whose TRACE records may carry URLs or headers.
const TRACE_LEAKY: [&str; 6] = [
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
];

/// False for records that could carry a secret.
pub fn safe_to_log(meta: &Metadata<'_>) -> bool {
    *meta.level() != Level::TRACE
        || !TRACE_LEAKY
            .iter()
            .any(|t| meta.target() == *t || meta.target().starts_with(&format!("{t}::")))
}

/// Installs the global subscriber; `level` is used when `RUST_LOG` is unset.
pub fn init(format: LogFormat, level: &str) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The `log` bridge takes the subscriber's maximum level as its own, and the secret
    // filter below hides that level: without this, every `log::trace!` of tungstenite
    // (several per frame) would be dispatched and then discarded, an eighth of the
    // CPU of a busy socket.
    let log_level = env.max_level_hint();
    let filter = env.and(filter_fn(safe_to_log));
    let layer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // Initialised twice only in tests; nothing to do then.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
    if let Some(level) = log_level {
        use tracing_log::AsLog;
        log::set_max_level(level.as_log());
    }
}
