//! Command-line arguments and the configuration they make. Every option can also come
//! from a `CONNECT_CHATD_*` environment variable (a systemd `EnvironmentFile`), except
//! the ParticipantToken, which comes only from a file or `CONNECT_PARTICIPANT_TOKEN` so
//! it never shows in `ps`. Errors name the option and the problem.

pub mod config;
pub mod control_client;
pub mod demo;
pub mod exit;
pub mod logging;
pub mod run;
pub mod sessions;
pub mod tail;
pub mod talk;

use crate::api::{ApiClient, Endpoint, EndpointVariant};
use crate::cli::logging::LogFormat;
use crate::secret::Secret;
use crate::session::{History, SupervisorConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable that may hold the ParticipantToken.
pub const TOKEN_ENV: &str = "CONNECT_PARTICIPANT_TOKEN";

#[derive(Debug, Parser)]
#[command(
    name = "connect-chatd",
    version,
    about = "A resilient participant-side chat client for the Amazon Connect Participant Service",
    long_about = "Keeps an Amazon Connect chat participant connected and delivers every chat Item \
                  exactly once, in order, across reconnects and connection expiry. \
                  Includes a local emulator of the Participant Service."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CONNECT_CHATD_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log level or filter (RUST_LOG syntax) when RUST_LOG is not set.
    #[arg(long, global = true, env = "CONNECT_CHATD_LOG_LEVEL")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow a chat: print every Item as one JSON line on stdout, until the chat ends.
    Tail(TailArgs),
    /// Call CreateParticipantConnection once and print the response as JSON.
    Connect(ConnectArgs),
    /// Run the local Participant Service emulator until interrupted.
    Emulator(EmulatorArgs),
    /// Run a scripted chat against the built-in emulator and tail it (no AWS needed).
    Demo(DemoArgs),
    /// Run the daemon: many chats in one process, a journal, a control API.
    Run(RunArgs),
    /// Validate the daemon's configuration without connecting, and print a summary.
    CheckConfig(RunArgs),
    /// Add, list, show or remove the sessions of a running daemon.
    Sessions(SessionsArgs),
    /// Follow a running daemon's Items (one session's, or all) as JSON lines on stdout.
    Stream(StreamArgs),
    /// Send a message to the chat (directly, or through the daemon with --session).
    Send(talk::SendArgs),
    /// Send an event: typing, a read or delivered receipt (or disconnect).
    Event(talk::EventArgs),
    /// End this participant's part in the chat (DisconnectParticipant).
    Disconnect(talk::DisconnectArgs),
    /// Send a file to the chat.
    Attach(talk::AttachArgs),
    /// Download an attachment.
    Attachment(talk::AttachmentArgs),
}

/// `run` and `check-config`: the configuration file and the flags that override it.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The daemon's TOML configuration.
    #[arg(long, env = "CONNECT_CHATD_CONFIG", value_name = "PATH")]
    pub config: PathBuf,
    /// Overrides `state_dir`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Overrides `region` (and replaces an `endpoint` from the file or environment).
    #[arg(long, conflicts_with = "endpoint")]
    pub region: Option<String>,
    /// Overrides `endpoint` (and replaces a `region` from the file or environment).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Overrides `control.listen` (`unix:PATH` or a loopback `IP:PORT`).
    #[arg(long, value_name = "ADDR")]
    pub control_listen: Option<String>,
    /// Overrides `stdout` (`true` or `false`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub stdout: Option<bool>,
}

/// Where a running daemon's control API is (for `sessions` and `stream`).
#[derive(Debug, Args, Clone)]
pub struct ControlArgs {
    /// `unix:PATH` or `IP:PORT`; default: `control.listen` of `--config`.
    #[arg(long, env = "CONNECT_CHATD_CONTROL", value_name = "ADDR")]
    pub control: Option<String>,
    /// The daemon's configuration, to find the control API (and its bearer secret).
    #[arg(long, env = "CONNECT_CHATD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// File holding the bearer secret for a TCP control address (default: the
    /// configuration's `control.token_file`).
    #[arg(long, value_name = "PATH")]
    pub control_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(subcommand)]
    pub action: SessionsAction,
}

#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// Follow a new chat (or get the session that already holds this token).
    Add {
        /// File holding the ParticipantToken.
        #[arg(long, value_name = "PATH")]
        participant_token_file: PathBuf,
        /// The session's name (1-64 of A-Z a-z 0-9 . _ -); generated when not given.
        #[arg(long)]
        name: Option<String>,
        /// all: journal the transcript so far, then follow; none: only new Items.
        #[arg(long, value_enum, default_value_t = HistoryArg::All)]
        history: HistoryArg,
        /// A label, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Send delivered receipts for incoming messages automatically.
        #[arg(long)]
        receipts: bool,
    },
    /// Every session, as `{"sessions": [...]}`.
    List,
    /// One session.
    Show { name: String },
    /// Stop following a session (its Items stay readable for the retention period).
    Remove {
        name: String,
        /// Also end this participant's part in the chat (DisconnectParticipant).
        #[arg(long)]
        disconnect: bool,
    },
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// One session's Items (`data` is the Item); without it, every session's
    /// (`{"session": NAME, "item": {...}}`).
    pub name: Option<String>,
    /// Resume right after this Item Id (`NAME/ID` without a session name).
    #[arg(long, value_name = "ID", conflicts_with = "from_start")]
    pub after: Option<String>,
    /// Replay everything the journal holds first (default: from now on).
    #[arg(long)]
    pub from_start: bool,
}

/// Where the service is.
#[derive(Debug, Args, Clone)]
#[group(id = "target", required = true, multiple = false)]
pub struct Target {
    /// AWS region of the Amazon Connect instance, e.g. us-east-1.
    #[arg(long, env = "CONNECT_CHATD_REGION", group = "target")]
    pub region: Option<String>,
    /// Explicit endpoint URL (emulator, VPC endpoint); http:// only for loopback.
    #[arg(long, env = "CONNECT_CHATD_ENDPOINT", group = "target")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct EndpointArgs {
    #[command(flatten)]
    pub target: Target,
    /// With --region: use the FIPS endpoint.
    #[arg(long, conflicts_with = "dual_stack", env = "CONNECT_CHATD_FIPS")]
    pub fips: bool,
    /// With --region: use the dual-stack (IPv4 + IPv6) endpoint.
    #[arg(long, env = "CONNECT_CHATD_DUAL_STACK")]
    pub dual_stack: bool,
    /// File holding the ParticipantToken (else the CONNECT_PARTICIPANT_TOKEN variable).
    #[arg(long, env = "CONNECT_CHATD_PARTICIPANT_TOKEN_FILE", value_name = "PATH")]
    pub participant_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub egress: EgressArgs,
}

/// How connections leave: a proxy, hosts that go direct, a CA to trust.
#[derive(Debug, Args, Clone, Default)]
pub struct EgressArgs {
    /// HTTP proxy for the API and the websocket, http://[user:password@]host[:port];
    /// beats HTTPS_PROXY/HTTP_PROXY ("" = direct).
    #[arg(long, env = "CONNECT_CHATD_PROXY", value_name = "URL", value_parser = secret_arg, hide_env_values = true)]
    pub proxy: Option<Secret>,
    /// Hosts that go direct (NO_PROXY syntax; beats NO_PROXY).
    #[arg(long, env = "CONNECT_CHATD_NO_PROXY", value_name = "LIST")]
    pub no_proxy: Option<String>,
    /// File holding user:password for the proxy (beats credentials in the URL).
    #[arg(long, env = "CONNECT_CHATD_PROXY_CREDENTIALS_FILE", value_name = "PATH")]
    pub proxy_credentials_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust besides the OS store (a private or
    /// TLS-inspecting CA).
    #[arg(long, env = "CONNECT_CHATD_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

impl EgressArgs {
    /// The proxies and trust from the flags (or their variables) and the environment.
    pub fn egress(&self) -> Result<crate::egress::Egress, ConfigError> {
        use crate::egress::{Egress, EgressKey, EgressSettings};
        let settings = EgressSettings {
            proxy: self.proxy.as_ref().map(|p| p.expose().to_string()),
            no_proxy: self.no_proxy.clone(),
            proxy_credentials_file: self.proxy_credentials_file.clone(),
            ca_file: self.ca_file.clone(),
        };
        Egress::from_process_env(&settings).map_err(|e| {
            let key = match e.key {
                EgressKey::Proxy => "--proxy",
                EgressKey::NoProxy => "--no-proxy",
                EgressKey::ProxyCredentialsFile => "--proxy-credentials-file",
                EgressKey::CaFile => "--ca-file",
                EgressKey::Env(name) => name,
            };
            ConfigError::new(key, e.message)
        })
    }
}

/// A flag's value kept as a [`Secret`] (a proxy URL may hold a password).
fn secret_arg(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryArg {
    All,
    None,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// all: print the transcript so far, then follow; none: only what arrives after start.
    #[arg(long, value_enum, default_value_t = HistoryArg::All, env = "CONNECT_CHATD_HISTORY")]
    pub history: HistoryArg,
    /// Directory for the durable cursor; a restart resumes after the last printed Item.
    #[arg(long, env = "CONNECT_CHATD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Send ConnectParticipant=true (message-streaming customers, agents in non-streaming chats).
    #[arg(long, env = "CONNECT_CHATD_CONNECT_PARTICIPANT")]
    pub connect_participant: bool,
    /// Seconds between heartbeats; a reply missing at the next one means a dead socket.
    #[arg(
        long,
        default_value = "10",
        env = "CONNECT_CHATD_HEARTBEAT_INTERVAL",
        value_name = "SECS"
    )]
    pub heartbeat_interval: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnectionTypeArg {
    Websocket,
    ConnectionCredentials,
    Webrtc,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Connection types to ask for, comma-separated.
    #[arg(
        long = "type",
        value_enum,
        value_delimiter = ',',
        default_value = "websocket,connection-credentials"
    )]
    pub types: Vec<ConnectionTypeArg>,
    /// Send ConnectParticipant=true.
    #[arg(long)]
    pub connect_participant: bool,
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8600", env = "CONNECT_CHATD_EMULATOR_LISTEN")]
    pub listen: SocketAddr,
    /// Seconds a presigned websocket URL may wait before it is dialled.
    #[arg(long, default_value = "100", value_name = "SECS")]
    pub connect_window: f64,
    /// Seconds from CreateParticipantConnection until the websocket is closed.
    #[arg(long, default_value = "3600", value_name = "SECS")]
    pub connection_expiry: f64,
    /// Seconds a ConnectionToken lives.
    #[arg(long, default_value = "86400", value_name = "SECS")]
    pub token_expiry: f64,
    /// Create a chat at start and print its ContactId and ParticipantToken on stdout.
    #[arg(long)]
    pub create_chat: bool,
    /// Serve TLS (https://, presigned URLs wss://) with a certificate for localhost and
    /// 127.0.0.1 signed by a CA generated at start.
    #[arg(long)]
    pub tls: bool,
    /// Where to write that CA's PEM (what a client's ca_file trusts); default
    /// connect-chatd-emulator-PORT-ca.pem in the temporary directory.
    #[arg(long, value_name = "PATH", requires = "tls")]
    pub tls_ca_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Speed of the scripted conversation: 1 is real time, 0.1 is ten times faster.
    #[arg(long, default_value = "1", value_name = "FACTOR")]
    pub pace: f64,
}

/// A configuration or usage error: exit code 78.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            key,
            problem: problem.into(),
        }
    }
}

/// A positive, finite number of seconds.
pub fn seconds(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && value > 0.0 && value < 1e9 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::new(
            key,
            format!("{value} is not a positive number of seconds"),
        ))
    }
}

impl EndpointArgs {
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        match (&self.target.region, &self.target.endpoint) {
            (Some(region), None) => {
                let variant = match (self.fips, self.dual_stack) {
                    (true, _) => EndpointVariant::Fips,
                    (_, true) => EndpointVariant::DualStack,
                    _ => EndpointVariant::Standard,
                };
                Endpoint::for_region(region, variant).map_err(|e| ConfigError::new("--region", e.to_string()))
            }
            (None, Some(url)) => {
                if self.fips || self.dual_stack {
                    return Err(ConfigError::new(
                        "--endpoint",
                        "--fips and --dual-stack go with --region",
                    ));
                }
                Endpoint::from_url(url).map_err(|e| ConfigError::new("--endpoint", e.to_string()))
            }
            _ => Err(ConfigError::new("--region/--endpoint", "give exactly one")),
        }
    }

    pub fn api_client(&self) -> Result<ApiClient, ConfigError> {
        ApiClient::builder(self.endpoint()?)
            .egress(self.egress.egress()?)
            .build()
            .map_err(|e| ConfigError::new("--endpoint", e.to_string()))
    }

    /// The ParticipantToken from `--participant-token-file`, else `CONNECT_PARTICIPANT_TOKEN`.
    pub fn participant_token(&self) -> Result<Secret, ConfigError> {
        let (key, raw) = match &self.participant_token_file {
            Some(path) => {
                let raw = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(
                        "--participant-token-file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                ("--participant-token-file", raw)
            }
            None => match std::env::var(TOKEN_ENV) {
                Ok(v) => (TOKEN_ENV, v),
                Err(_) => {
                    return Err(ConfigError::new(
                        "--participant-token-file",
                        format!("no ParticipantToken: give --participant-token-file PATH or set {TOKEN_ENV}"),
                    ))
                }
            },
        };
        let token = raw.trim();
        if token.is_empty() {
            return Err(ConfigError::new(key, "the ParticipantToken is empty"));
        }
        if token.len() > 1000 || token.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(
                key,
                "that does not look like a ParticipantToken (whitespace inside, or over 1000 characters)",
            ));
        }
        Ok(Secret::new(token))
    }
}

impl TailArgs {
    pub fn supervisor_config(&self) -> Result<SupervisorConfig, ConfigError> {
        let mut cfg = SupervisorConfig {
            history: match self.history {
                HistoryArg::All => History::All,
                HistoryArg::None => History::None,
            },
            connect_participant: self.connect_participant,
            ..Default::default()
        };
        cfg.socket.heartbeat_interval = seconds("--heartbeat-interval", self.heartbeat_interval)?;
        Ok(cfg)
    }
}
