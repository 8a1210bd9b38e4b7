//! Logging set-up: tracing to stderr (stdout belongs to the Items), human-readable or
//! JSON, filtered by `RUST_LOG` or the `--log-level` default. Records from the `log`
//! crate (tungstenite) are bridged in.
//!
//! Some dependencies print request lines and headers at TRACE (tungstenite logs the
//! whole upgrade request, presigned query string included). Those targets are never
//! logged at TRACE, whatever the filter says, so a secret cannot reach a log.
//!
//! The level can change while the daemon runs ([`set_level`], on SIGHUP), unless
//! `RUST_LOG` gave the filter.

use std::io::IsTerminal;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

/// The installed filter, for [`set_level`]; `None` while `RUST_LOG` decides.
static LEVEL: std::sync::OnceLock<reload::Handle<EnvFilter, Registry>> = std::sync::OnceLock::new();

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
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let env = from_env.unwrap_or_else(|| EnvFilter::new(level));
    // The `log` bridge takes the subscriber's maximum level as its own, and the secret
    // filter below hides that level: without this, every `log::trace!` of tungstenite
    // (several per frame) would be dispatched and then discarded, an eighth of the
    // CPU of a busy socket.
    let log_level = env.max_level_hint();
    let (env, handle) = reload::Layer::new(env);
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
    let installed = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .is_ok();
    if installed && !fixed {
        let _ = LEVEL.set(handle);
    }
    if let Some(level) = log_level {
        use tracing_log::AsLog;
        log::set_max_level(level.as_log());
    }
}

/// Changes the level (a level or a `RUST_LOG`-style filter) of the running process;
/// `Ok(false)` when `RUST_LOG` gave the filter (it wins) or logging is not set up.
pub fn set_level(level: &str) -> Result<bool, String> {
    let Some(handle) = LEVEL.get() else {
        return Ok(false);
    };
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    let max = filter.max_level_hint();
    handle.reload(filter).map_err(|e| e.to_string())?;
    if let Some(level) = max {
        use tracing_log::AsLog;
        log::set_max_level(level.as_log());
    }
    Ok(true)
}
