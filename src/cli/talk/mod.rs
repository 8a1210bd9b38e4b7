//! Talking back from the command line: `send`, `event`, `disconnect`, `attach` and
//! `attachment get`. Each goes straight to the service with a ConnectionToken (the one
//! saved in `--state-dir` while it is valid, else one from a
//! `CONNECTION_CREDENTIALS`-only CreateParticipantConnection: no websocket), or, with
//! `--session NAME`, through a running daemon's control API.
//!
//! Every send carries a ClientToken (`--idempotency-key`, else a fresh one reused by
//! every retry of that call), so a retried request never posts twice. Exit codes: 0
//! sent, 1 the service (or the daemon) refused it (a chat that has ended says so), 69
//! the daemon cannot be reached, 77 the ParticipantToken was rejected, 78 bad input
//! (named: content, content type, size, file).

use super::control_client::{self, Control};
use super::exit;
use super::{ControlArgs, EndpointArgs, Target};
use crate::api::model::*;
use crate::api::outbound::{self, EventKind, InvalidOutbound};
use crate::api::{ApiClient, ApiError};
use crate::secret::Secret;
use crate::session::store::{Loaded, SavedState, StateStore};
use clap::{Args, ValueEnum};
use std::io::Read;
use std::path::PathBuf;

mod attachments;
pub use attachments::{attach, attachment, AttachArgs, AttachmentAction, AttachmentArgs};

/// How long a saved ConnectionToken must still be valid to be used.
const TOKEN_MARGIN: time::Duration = time::Duration::minutes(2);

/// Where a command goes: the service itself, or a running daemon's session.
#[derive(Debug, Args, Clone)]
pub struct TalkTarget {
    /// Through the running daemon: the session's name.
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
    #[command(flatten)]
    pub control: ControlArgs,
    /// AWS region of the Amazon Connect instance (direct use).
    #[arg(long, env = "CONNECT_CHATD_REGION")]
    pub region: Option<String>,
    /// Explicit endpoint URL (direct use).
    #[arg(long, env = "CONNECT_CHATD_ENDPOINT", conflicts_with = "region")]
    pub endpoint: Option<String>,
    /// With --region: the FIPS endpoint.
    #[arg(long, env = "CONNECT_CHATD_FIPS")]
    pub fips: bool,
    /// With --region: the dual-stack endpoint.
    #[arg(long, env = "CONNECT_CHATD_DUAL_STACK")]
    pub dual_stack: bool,
    /// File holding the ParticipantToken (else CONNECT_PARTICIPANT_TOKEN).
    #[arg(long, env = "CONNECT_CHATD_PARTICIPANT_TOKEN_FILE", value_name = "PATH")]
    pub participant_token_file: Option<PathBuf>,
    /// Where a ConnectionToken is kept between commands (shared with `tail --state-dir`).
    #[arg(long, env = "CONNECT_CHATD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub egress: super::EgressArgs,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub target: TalkTarget,
    /// text/plain, text/markdown, application/json or
    /// application/vnd.amazonaws.connect.message.interactive.response.
    #[arg(long, default_value = "text/plain")]
    pub content_type: String,
    /// Makes a retry of this command post once (sent as the ClientToken).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// The message; `-` (or nothing) reads it from stdin.
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventArg {
    Typing,
    Read,
    Delivered,
    /// DisconnectParticipant (there is no disconnect event): as `connect-chatd disconnect`.
    Disconnect,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    #[command(flatten)]
    pub target: TalkTarget,
    pub kind: EventArg,
    /// The message a read or delivered receipt is for.
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    #[command(flatten)]
    pub target: TalkTarget,
}

/// A failure, with its exit code.
struct Failure(u8, String);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        if e.is_access_denied() {
            Failure(
                exit::FAILURE,
                format!("the chat has ended or this participant left it ({e})"),
            )
        } else {
            Failure(exit::FAILURE, e.to_string())
        }
    }
}

impl From<InvalidOutbound> for Failure {
    fn from(e: InvalidOutbound) -> Failure {
        Failure(exit::CONFIG, e.to_string())
    }
}

fn finish(result: Result<serde_json::Value, Failure>) -> u8 {
    finish_quiet(result.map(Some))
}

/// As [`finish`]; `None`: the command's output was written already.
fn finish_quiet(result: Result<Option<serde_json::Value>, Failure>) -> u8 {
    match result {
        Ok(Some(v)) => {
            println!("{v}");
            exit::OK
        }
        Ok(None) => exit::OK,
        Err(Failure(code, message)) => {
            eprintln!("connect-chatd: {message}");
            code
        }
    }
}

/// The service and a ConnectionToken for direct use.
struct Direct {
    api: ApiClient,
    token: Secret,
}

impl TalkTarget {
    fn endpoint_args(&self) -> EndpointArgs {
        EndpointArgs {
            target: Target {
                region: self.region.clone(),
                endpoint: self.endpoint.clone(),
            },
            fips: self.fips,
            dual_stack: self.dual_stack,
            participant_token_file: self.participant_token_file.clone(),
            egress: self.egress.clone(),
        }
    }

    /// The daemon's address when `--session` is given.
    fn daemon(&self) -> Result<Option<(Control, String)>, Failure> {
        match &self.session {
            Some(name) => {
                let control = super::sessions::control_of(&self.control)
                    .map_err(|code| Failure(code, "cannot find the daemon".into()))?;
                Ok(Some((control, name.clone())))
            }
            None => Ok(None),
        }
    }

    async fn direct(&self) -> Result<Direct, Failure> {
        let config = |e: super::ConfigError| Failure(exit::CONFIG, e.to_string());
        let args = self.endpoint_args();
        let api = args.api_client().map_err(config)?;
        let participant = args.participant_token().map_err(config)?;
        let store = match &self.state_dir {
            Some(dir) => Some(
                StateStore::open(dir, &participant)
                    .map_err(|e| Failure(exit::CONFIG, format!("--state-dir: {e}")))?,
            ),
            None => None,
        };
        let saved = match store.as_ref().map(StateStore::load) {
            Some(Loaded::Resumed(s)) => Some(s),
            _ => None,
        };
        let now = api.server_now();
        if let Some(s) = &saved {
            if let (Some(token), Some(expiry)) = (&s.connection_token, &s.connection_expiry) {
                if expiry.0 - now > TOKEN_MARGIN {
                    return Ok(Direct {
                        api,
                        token: token.clone(),
                    });
                }
            }
        }
        let request = CreateParticipantConnectionRequest {
            connection_types: Some(vec![ConnectionType::ConnectionCredentials]),
            connect_participant: None,
        };
        let resp = api
            .create_participant_connection(&participant, &request)
            .await
            .map_err(|e| {
                if e.is_access_denied() {
                    Failure(
                        exit::TOKEN_REJECTED,
                        format!("the participant token was rejected ({e})"),
                    )
                } else {
                    Failure(exit::FAILURE, e.to_string())
                }
            })?;
        let creds = resp.connection_credentials.ok_or_else(|| {
            Failure(
                exit::FAILURE,
                "CreateParticipantConnection gave no ConnectionCredentials".into(),
            )
        })?;
        if let Some(store) = &store {
            let state = SavedState {
                cursor: saved.and_then(|s| s.cursor),
                connection_token: Some(creds.connection_token.clone()),
                connection_expiry: Some(creds.expiry),
            };
            if let Err(e) = store.save(&state) {
                tracing::warn!(error = %e, "cannot save the ConnectionToken");
            }
        }
        Ok(Direct {
            api,
            token: creds.connection_token,
        })
    }
}

/// A request to the daemon: its JSON answer, or a failure with the daemon's error.
async fn via_daemon(
    control: &Control,
    path: &str,
    body: &serde_json::Value,
    idempotency_key: Option<&str>,
) -> Result<serde_json::Value, Failure> {
    let headers: Vec<(&str, &str)> = idempotency_key
        .map(|k| ("idempotency-key", k))
        .into_iter()
        .collect();
    let (status, bytes) = control_client::call_with(control, "POST", path, Some(body), &headers)
        .await
        .map_err(|e| match e {
            control_client::ClientError::Connect { .. } => {
                Failure(super::sessions::UNAVAILABLE, e.to_string())
            }
            other => Failure(exit::FAILURE, other.to_string()),
        })?;
    let text = String::from_utf8_lossy(&bytes);
    if !(200..300).contains(&status) {
        return Err(Failure(
            exit::FAILURE,
            format!("the daemon answered {status}: {text}"),
        ));
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

fn session_path(name: &str, what: &str) -> String {
    format!("/v1/sessions/{}/{what}", super::sessions::encode(name))
}

fn read_text(text: Option<&str>) -> Result<String, Failure> {
    match text {
        Some(t) if t != "-" => Ok(t.to_string()),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Failure(exit::CONFIG, format!("cannot read the message from stdin: {e}")))?;
            // A trailing newline from `echo` is not part of the message.
            Ok(s.strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&s)
                .to_string())
        }
    }
}

pub async fn send(args: SendArgs) -> u8 {
    finish(send_inner(args).await)
}

async fn send_inner(args: SendArgs) -> Result<serde_json::Value, Failure> {
    let text = read_text(args.text.as_deref())?;
    let mut request = outbound::message(&args.content_type, &text)?;
    if let Some((control, name)) = args.target.daemon()? {
        let body = serde_json::json!({"content": text, "content_type": args.content_type});
        return via_daemon(
            &control,
            &session_path(&name, "messages"),
            &body,
            args.idempotency_key.as_deref(),
        )
        .await;
    }
    let d = args.target.direct().await?;
    request.client_token = args.idempotency_key;
    let resp = d.api.send_message(&d.token, &request).await?;
    Ok(serde_json::json!({"Id": resp.id, "AbsoluteTime": resp.absolute_time}))
}

pub async fn event(args: EventArgs) -> u8 {
    finish(event_inner(args).await)
}

async fn event_inner(args: EventArgs) -> Result<serde_json::Value, Failure> {
    let kind = match args.kind {
        EventArg::Typing => EventKind::Typing,
        EventArg::Read => EventKind::Read,
        EventArg::Delivered => EventKind::Delivered,
        EventArg::Disconnect => return disconnect_inner(&args.target).await,
    };
    let mut request = outbound::event(kind, args.message_id.as_deref(), None)?;
    if let Some((control, name)) = args.target.daemon()? {
        let body = serde_json::json!({"content_type": request.content_type, "content": request.content});
        return via_daemon(
            &control,
            &session_path(&name, "events"),
            &body,
            args.idempotency_key.as_deref(),
        )
        .await;
    }
    let d = args.target.direct().await?;
    request.client_token = args.idempotency_key;
    let resp = d.api.send_event(&d.token, &request).await?;
    Ok(serde_json::json!({"Id": resp.id, "AbsoluteTime": resp.absolute_time}))
}

pub async fn disconnect(args: DisconnectArgs) -> u8 {
    finish(disconnect_inner(&args.target).await)
}

async fn disconnect_inner(target: &TalkTarget) -> Result<serde_json::Value, Failure> {
    if let Some((control, name)) = target.daemon()? {
        return via_daemon(
            &control,
            &session_path(&name, "disconnect"),
            &serde_json::json!({}),
            None,
        )
        .await;
    }
    let d = target.direct().await?;
    d.api
        .disconnect_participant(&d.token, &DisconnectParticipantRequest { client_token: None })
        .await?;
    Ok(serde_json::json!({"Disconnected": true}))
}
