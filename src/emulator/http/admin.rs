//! The emulator's admin interface under `/admin/…`: chats created and scripted
//! (participants, messages, events, the end, the transcript), faults injected and
//! cleared, quirks, sockets dropped, stalled or sent raw frames, timing changed, and
//! the stats read. Errors are `{"message": …}` with 404, 409 or 400.

use super::{respond, AppState};
use crate::api::model::*;
use crate::emulator::state::State as EmuState;
use crate::emulator::{EmulatorError, FaultSpec, Quirks, Shared, Timing};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

fn admin_result<T: Serialize>(shared: &Shared, r: Result<T, EmulatorError>) -> Response {
    let st = shared.lock();
    match r {
        Ok(v) => respond(
            &st,
            StatusCode::OK,
            serde_json::to_string(&v).expect("serialises"),
        ),
        Err(e) => {
            let status = match e {
                EmulatorError::UnknownChat(_) | EmulatorError::UnknownParticipant(_) => StatusCode::NOT_FOUND,
                EmulatorError::ChatEnded(_) => StatusCode::CONFLICT,
                EmulatorError::Invalid(_) => StatusCode::BAD_REQUEST,
            };
            respond(
                &st,
                status,
                serde_json::json!({ "message": e.to_string() }).to_string(),
            )
        }
    }
}

fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, EmulatorError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| EmulatorError::Invalid(format!("invalid JSON body: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateChatBody {
    contact_id: Option<String>,
    display_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreatedChatBody {
    contact_id: String,
    participant_id: String,
    participant_token: String,
}

pub(super) async fn admin_create_chat(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    let r = parse::<CreateChatBody>(&body).and_then(|b| {
        let name = b.display_name.unwrap_or_else(|| "Customer".into());
        let (contact_id, participant_id, participant_token) =
            shared.lock().create_chat(b.contact_id, name)?;
        Ok(CreatedChatBody {
            contact_id,
            participant_id,
            participant_token,
        })
    });
    admin_result(&shared, r)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ParticipantBody {
    display_name: Option<String>,
    participant_role: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AddedParticipant {
    participant_id: String,
    participant_token: String,
}

pub(super) async fn admin_add_participant(
    State((shared, _)): State<AppState>,
    Path(contact): Path<String>,
    body: Bytes,
) -> Response {
    let r = parse::<ParticipantBody>(&body).and_then(|b| {
        let role = ParticipantRole::from(b.participant_role.as_deref().unwrap_or("AGENT"));
        let name = b.display_name.unwrap_or_else(|| "Agent".into());
        let (participant_id, participant_token) = shared.lock().add_participant(&contact, name, role)?;
        Ok(AddedParticipant {
            participant_id,
            participant_token,
        })
    });
    admin_result(&shared, r)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PublishBody {
    content: Option<String>,
    content_type: Option<String>,
    display_name: Option<String>,
    participant_role: Option<String>,
    participant_id: Option<String>,
}

fn admin_publish(shared: &Shared, contact: &str, body: &[u8], event: bool) -> Result<Item, EmulatorError> {
    let b: PublishBody = parse(body)?;
    let mut st = shared.lock();
    let pid = match b.participant_id {
        Some(p) => p,
        None => {
            let role = ParticipantRole::from(b.participant_role.as_deref().unwrap_or("AGENT"));
            st.participant_named(contact, b.display_name.as_deref().unwrap_or("Agent"), &role)?
        }
    };
    let (kind, default_type) = if event {
        (ChatItemType::Event, CONTENT_TYPE_TYPING)
    } else {
        (ChatItemType::Message, "text/plain")
    };
    if !event && b.content.as_deref().unwrap_or("").is_empty() {
        return Err(EmulatorError::Invalid("Content is required".into()));
    }
    let ct = b.content_type.as_deref().unwrap_or(default_type);
    let item = st.item_from(&pid, kind, ct, b.content);
    if item.display_name.is_none() {
        return Err(EmulatorError::UnknownParticipant(pid));
    }
    st.publish(contact, item)
}

pub(super) async fn admin_message(
    State((shared, _)): State<AppState>,
    Path(contact): Path<String>,
    body: Bytes,
) -> Response {
    let r = admin_publish(&shared, &contact, &body, false);
    admin_result(&shared, r)
}

pub(super) async fn admin_event(
    State((shared, _)): State<AppState>,
    Path(contact): Path<String>,
    body: Bytes,
) -> Response {
    let r = admin_publish(&shared, &contact, &body, true);
    admin_result(&shared, r)
}

pub(super) async fn admin_end(State((shared, _)): State<AppState>, Path(contact): Path<String>) -> Response {
    let r = shared.lock().end_chat(&contact);
    admin_result(&shared, r)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TranscriptBody {
    transcript: Vec<Item>,
}

pub(super) async fn admin_transcript(
    State((shared, _)): State<AppState>,
    Path(contact): Path<String>,
) -> Response {
    let r = shared
        .lock()
        .transcript_of(&contact)
        .map(|transcript| TranscriptBody { transcript });
    admin_result(&shared, r)
}

pub(super) async fn admin_fault(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    let r = serde_json::from_slice::<FaultSpec>(&body)
        .map_err(|e| EmulatorError::Invalid(format!("expected {{\"Operation\",\"Status\",\"Count\"}}: {e}")))
        .and_then(|f| {
            if !(400..=599).contains(&f.status) {
                return Err(EmulatorError::Invalid(format!(
                    "Status {} is not an error status",
                    f.status
                )));
            }
            shared.lock().add_fault(f.clone());
            Ok(f)
        });
    admin_result(&shared, r)
}

pub(super) async fn admin_clear_faults(State((shared, _)): State<AppState>) -> Response {
    shared.lock().clear_faults();
    admin_result(&shared, Ok(serde_json::json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SocketsBody {
    participant_id: Option<String>,
    frame: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Affected {
    affected: usize,
}

fn admin_sockets(
    shared: &Shared,
    body: &[u8],
    act: impl FnOnce(&mut EmuState, SocketsBody) -> usize,
) -> Response {
    let r = parse::<SocketsBody>(body).map(|b| Affected {
        affected: act(&mut shared.lock(), b),
    });
    admin_result(shared, r)
}

pub(super) async fn admin_drop(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    admin_sockets(&shared, &body, |st, b| {
        st.drop_sockets(b.participant_id.as_deref())
    })
}

pub(super) async fn admin_stall(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    admin_sockets(&shared, &body, |st, b| {
        st.stall_sockets(b.participant_id.as_deref())
    })
}

pub(super) async fn admin_send(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    admin_sockets(&shared, &body, |st, b| {
        st.send_raw(b.participant_id.as_deref(), b.frame.as_deref().unwrap_or(""))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TimingBody {
    connect_window_seconds: Option<f64>,
    connection_expiry_seconds: Option<f64>,
    token_expiry_seconds: Option<f64>,
    max_sockets_per_participant: Option<usize>,
    socket_queue_frames: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TimingOut {
    connect_window_seconds: f64,
    connection_expiry_seconds: f64,
    token_expiry_seconds: f64,
    max_sockets_per_participant: usize,
    socket_queue_frames: usize,
}

pub(super) async fn admin_timing(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    let secs = |v: Option<f64>, name: &str, old: Duration| -> Result<Duration, EmulatorError> {
        match v {
            None => Ok(old),
            Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(EmulatorError::Invalid(format!(
                "{name} {s} must be a positive number of seconds below 1e9"
            ))),
        }
    };
    let r = parse::<TimingBody>(&body).and_then(|b| {
        let mut st = shared.lock();
        let old = st.timing;
        let t = Timing {
            connect_window: secs(
                b.connect_window_seconds,
                "ConnectWindowSeconds",
                old.connect_window,
            )?,
            connection_expiry: secs(
                b.connection_expiry_seconds,
                "ConnectionExpirySeconds",
                old.connection_expiry,
            )?,
            token_expiry: secs(b.token_expiry_seconds, "TokenExpirySeconds", old.token_expiry)?,
            max_sockets_per_participant: b
                .max_sockets_per_participant
                .unwrap_or(old.max_sockets_per_participant),
            socket_queue: match b.socket_queue_frames {
                None => old.socket_queue,
                Some(n @ 1..=10_000_000) => n,
                Some(n) => {
                    return Err(EmulatorError::Invalid(format!(
                        "SocketQueueFrames {n} must be between 1 and 10000000"
                    )))
                }
            },
        };
        st.set_timing(t);
        Ok(TimingOut {
            connect_window_seconds: t.connect_window.as_secs_f64(),
            connection_expiry_seconds: t.connection_expiry.as_secs_f64(),
            token_expiry_seconds: t.token_expiry.as_secs_f64(),
            max_sockets_per_participant: t.max_sockets_per_participant,
            socket_queue_frames: t.socket_queue,
        })
    });
    admin_result(&shared, r)
}

pub(super) async fn admin_quirks(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    let r = parse::<Quirks>(&body).inspect(|q| shared.lock().quirks = *q);
    admin_result(&shared, r)
}

pub(super) async fn admin_stats(State((shared, _)): State<AppState>) -> Response {
    let stats = shared.lock().stats();
    admin_result(&shared, Ok(stats))
}
