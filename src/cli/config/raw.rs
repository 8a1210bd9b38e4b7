//! The configuration as written (every section `deny_unknown_fields`), the defaults
//! layer, and the flags layer ([`Overrides`]). Validation into typed values is in
//! `validate`.

use super::duration::Seconds;
use crate::cli::logging::LogFormat;
use figment::value::{Dict, Map};
use figment::{Error, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The metadata name of the defaults layer.
pub const DEFAULTS_NAME: &str = "defaults";
/// The metadata name of the flags layer.
pub const FLAGS_NAME: &str = "command line";

pub const DEFAULT_STATE_DIR: &str = "/var/lib/connect-chatd";
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86400);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub fips: bool,
    #[serde(default)]
    pub dual_stack: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_credentials_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<Seconds>,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub control: RawControl,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub journal: RawJournal,
    /// Operations' `[limits.<Operation>]` tables and the capacity keys, each read on
    /// its own (`limits::resolve`, `limits::capacity`) so errors name the full key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, figment::value::Value>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<RawSession>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<super::consumers::RawConsumer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::cluster::RawCluster>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_remote: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readyz_grace: Option<Seconds>,
    #[serde(default)]
    pub metrics_per_session: bool,
}

/// How hard the journal pushes writes to disk: the journal's own setting.
pub use crate::journal::Fsync as FsyncMode;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<FsyncMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Seconds>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    Text,
    Json,
}

impl From<RawLogFormat> for LogFormat {
    fn from(f: RawLogFormat) -> LogFormat {
        match f {
            RawLogFormat::Text => LogFormat::Text,
            RawLogFormat::Json => LogFormat::Json,
        }
    }
}

impl From<LogFormat> for RawLogFormat {
    fn from(f: LogFormat) -> RawLogFormat {
        match f {
            LogFormat::Text => RawLogFormat::Text,
            LogFormat::Json => RawLogFormat::Json,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<RawLogFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawHistory {
    All,
    None,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub participant_token_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<RawHistory>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub receipts: bool,
}

/// The defaults layer; `state_dir` is `$STATE_DIRECTORY` when set (as systemd does).
pub fn defaults(state_directory: Option<&str>) -> RawConfig {
    RawConfig {
        state_dir: Some(PathBuf::from(
            state_directory
                .filter(|s| !s.is_empty())
                // systemd joins several StateDirectory= entries with ':'; take the first.
                .and_then(|s| s.split(':').next())
                .unwrap_or(DEFAULT_STATE_DIR),
        )),
        heartbeat_interval: Some(Seconds(DEFAULT_HEARTBEAT)),
        journal: RawJournal {
            fsync: Some(FsyncMode::Batch),
            retention: Some(Seconds(DEFAULT_RETENTION)),
        },
        log: RawLog {
            format: Some(RawLogFormat::Text),
            level: Some("info".into()),
        },
        ..RawConfig::default()
    }
}

/// Values from command-line flags: the top layer. `None` leaves lower layers alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--state-dir`
    pub state_dir: Option<PathBuf>,
    /// `--region` (replaces an `endpoint` from lower layers)
    pub region: Option<String>,
    /// `--endpoint` (replaces a `region` from lower layers)
    pub endpoint: Option<String>,
    /// `--log-level`
    pub log_level: Option<String>,
    /// `--log-format`
    pub log_format: Option<LogFormat>,
    /// `--control-listen`
    pub control_listen: Option<String>,
    /// `--stdout`
    pub stdout: Option<bool>,
}

/// The flag that sets each key, for error messages.
const FLAG_NAMES: [(&str, &str); 7] = [
    ("state_dir", "--state-dir"),
    ("region", "--region"),
    ("endpoint", "--endpoint"),
    ("log.level", "--log-level"),
    ("log.format", "--log-format"),
    ("control.listen", "--control-listen"),
    ("stdout", "--stdout"),
];

#[derive(Serialize)]
struct FlagLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stdout: Option<bool>,
    #[serde(skip_serializing_if = "FlagLog::is_empty")]
    log: FlagLog,
    #[serde(skip_serializing_if = "FlagControl::is_empty")]
    control: FlagControl,
}

#[derive(Serialize)]
struct FlagLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<RawLogFormat>,
}

impl FlagLog {
    fn is_empty(&self) -> bool {
        self.level.is_none() && self.format.is_none()
    }
}

#[derive(Serialize)]
struct FlagControl {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
}

impl FlagControl {
    fn is_empty(&self) -> bool {
        self.listen.is_none()
    }
}

impl Overrides {
    pub(super) fn provider(&self) -> Named<figment::providers::Serialized<impl Serialize>> {
        let layer = FlagLayer {
            state_dir: self.state_dir.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            stdout: self.stdout,
            log: FlagLog {
                level: self.log_level.clone(),
                format: self.log_format.map(RawLogFormat::from),
            },
            control: FlagControl {
                listen: self.control_listen.clone(),
            },
        };
        let md = Metadata::named(FLAGS_NAME).interpolater(|_: &Profile, keys: &[&str]| {
            let dotted = keys.join(".");
            FLAG_NAMES
                .iter()
                .find(|(k, _)| *k == dotted)
                .map(|(_, f)| f.to_string())
                .unwrap_or_else(|| format!("--{}", dotted.replace(['.', '_'], "-")))
        });
        Named(figment::providers::Serialized::defaults(layer), md)
    }
}

/// A provider with metadata of our choosing, so errors can tell the layers apart.
pub struct Named<P>(pub P, pub Metadata);

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        self.1.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        self.0.data()
    }
}

/// The defaults as a provider.
pub fn defaults_provider(state_directory: Option<&str>) -> Named<figment::providers::Serialized<RawConfig>> {
    Named(
        figment::providers::Serialized::defaults(defaults(state_directory)),
        Metadata::named(DEFAULTS_NAME),
    )
}
