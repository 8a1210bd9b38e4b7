//! The emulator's HTTP side: the eleven API operations under `/participant/…` (bearer
//! tokens, rest-json errors with `x-amzn-ErrorType`), presigned attachment URLs, the
//! websocket upgrade at `/websocket`, and the admin interface under `/admin/…`.

use super::state::{ServiceError, State as EmuState};
use super::{EmulatorError, FaultSpec, Shared, Timing};
use crate::api::model::*;
use crate::api::ErrorCode;
use crate::clock::format_http_date;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

type AppState = (Arc<Shared>, watch::Receiver<bool>);

pub(crate) fn router(shared: Arc<Shared>, stopped: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/participant/connection", post(create_participant_connection))
        .route("/participant/transcript", post(get_transcript))
        .route("/participant/message", post(send_message))
        .route("/participant/event", post(send_event))
        .route("/participant/disconnect", post(disconnect_participant))
        .route(
            "/participant/start-attachment-upload",
            post(start_attachment_upload),
        )
        .route(
            "/participant/complete-attachment-upload",
            post(complete_attachment_upload),
        )
        .route("/participant/attachment", post(get_attachment))
        .route("/participant/authentication-url", post(get_authentication_url))
        .route(
            "/participant/cancel-authentication",
            post(cancel_participant_authentication),
        )
        .route("/participant/views/{view_token}", get(describe_view))
        .route("/websocket", get(super::ws::upgrade))
        .route(
            "/attachments/{id}",
            get(download_attachment).put(upload_attachment),
        )
        .route("/admin/chats", post(admin_create_chat))
        .route("/admin/chats/{contact}/participants", post(admin_add_participant))
        .route("/admin/chats/{contact}/messages", post(admin_message))
        .route("/admin/chats/{contact}/events", post(admin_event))
        .route("/admin/chats/{contact}/end", post(admin_end))
        .route("/admin/chats/{contact}/transcript", get(admin_transcript))
        .route("/admin/faults", post(admin_fault).delete(admin_clear_faults))
        .route("/admin/quirks", post(admin_quirks))
        .route("/admin/sockets/drop", post(admin_drop))
        .route("/admin/sockets/stall", post(admin_stall))
        .route("/admin/sockets/send", post(admin_send))
        .route("/admin/timing", post(admin_timing))
        .route("/admin/stats", get(admin_stats))
        .with_state((shared, stopped))
}

/// A JSON response carrying the emulator clock's `Date` (so clients under a paused
/// test clock see consistent server time) and a request id.
fn respond(st: &EmuState, status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format_http_date(st.clock.now())) {
        h.insert(header::DATE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-amzn-RequestId", v);
    }
    resp
}

fn error_response(st: &EmuState, e: &ServiceError) -> Response {
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = respond(
        st,
        status,
        serde_json::json!({ "message": e.message }).to_string(),
    );
    let kind = format!(
        "{}:http://internal.amazon.com/coral/com.amazonaws.connect.participant/",
        e.code.as_str()
    );
    if let Ok(v) = HeaderValue::from_str(&kind) {
        resp.headers_mut().insert("x-amzn-ErrorType", v);
    }
    resp
}

/// Runs one API operation: count it, apply an injected fault (stalling outside the
/// lock), check the bearer header, parse the body, act.
async fn operation<Req, Resp>(
    shared: &Shared,
    name: &'static str,
    headers: &HeaderMap,
    body: &[u8],
    act: impl FnOnce(&mut EmuState, &str, Req) -> Result<Resp, ServiceError>,
) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    let (delay, fault) = shared.lock().begin_call(name);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut st = shared.lock();
    let result = fault.and_then(|()| {
        let bearer = headers
            .get("x-amz-bearer")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ServiceError::new(ErrorCode::AccessDenied, "Missing X-Amz-Bearer token"))?
            .to_string();
        let body = if body.is_empty() { &b"{}"[..] } else { body };
        let req: Req = serde_json::from_slice(body)
            .map_err(|e| ServiceError::new(ErrorCode::Validation, format!("Invalid request body: {e}")))?;
        act(&mut st, &bearer, req)
    });
    match result {
        Ok(resp) => {
            let body = serde_json::to_string(&resp).expect("responses serialise");
            respond(&st, StatusCode::OK, body)
        }
        Err(e) => error_response(&st, &e),
    }
}

macro_rules! api_handler {
    ($fn_name:ident, $op:literal, $req:ty, $method:ident) => {
        async fn $fn_name(State((shared, _)): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
            operation(&shared, $op, &headers, &body, |st, bearer, req: $req| {
                st.$method(bearer, req)
            })
            .await
        }
    };
}

api_handler!(
    create_participant_connection,
    "CreateParticipantConnection",
    CreateParticipantConnectionRequest,
    create_participant_connection
);
api_handler!(
    get_transcript,
    "GetTranscript",
    GetTranscriptRequest,
    get_transcript
);
api_handler!(send_message, "SendMessage", SendMessageRequest, send_message);
api_handler!(send_event, "SendEvent", SendEventRequest, send_event);
api_handler!(
    disconnect_participant,
    "DisconnectParticipant",
    DisconnectParticipantRequest,
    disconnect_participant
);
api_handler!(
    start_attachment_upload,
    "StartAttachmentUpload",
    StartAttachmentUploadRequest,
    start_attachment_upload
);
api_handler!(
    complete_attachment_upload,
    "CompleteAttachmentUpload",
    CompleteAttachmentUploadRequest,
    complete_attachment_upload
);
api_handler!(
    get_attachment,
    "GetAttachment",
    GetAttachmentRequest,
    get_attachment
);
api_handler!(
    get_authentication_url,
    "GetAuthenticationUrl",
    GetAuthenticationUrlRequest,
    get_authentication_url
);
api_handler!(
    cancel_participant_authentication,
    "CancelParticipantAuthentication",
    CancelParticipantAuthenticationRequest,
    cancel_participant_authentication
);

async fn describe_view(
    State((shared, _)): State<AppState>,
    Path(view_token): Path<String>,
    headers: HeaderMap,
) -> Response {
    operation(
        &shared,
        "DescribeView",
        &headers,
        b"{}",
        |st, bearer, _: serde_json::Value| st.describe_view(bearer, &view_token),
    )
    .await
}

async fn upload_attachment(
    State((shared, _)): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = shared.lock();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match st.upload_attachment(&id, content_type, body) {
        Ok(()) => respond(&st, StatusCode::OK, "{}".into()),
        Err(e) => error_response(&st, &e),
    }
}

async fn download_attachment(State((shared, _)): State<AppState>, Path(id): Path<String>) -> Response {
    let st = shared.lock();
    match st.attachment_bytes(&id) {
        Some(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        None => error_response(
            &st,
            &ServiceError::new(ErrorCode::ResourceNotFound, "No such attachment"),
        ),
    }
}

// ------------------------------------------------------------------ admin

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

async fn admin_create_chat(State((shared, _)): State<AppState>, body: Bytes) -> Response {
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

async fn admin_add_participant(
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

async fn admin_message(
    State((shared, _)): State<AppState>,
    Path(contact): Path<String>,
    body: Bytes,
) -> Response {
    let r = admin_publish(&shared, &contact, &body, false);
    admin_result(&shared, r)
}

async fn admin_event(
    State((shared, _)): State<AppState>,
    Path(contact): Path<String>,
    body: Bytes,
) -> Response {
    let r = admin_publish(&shared, &contact, &body, true);
    admin_result(&shared, r)
}

async fn admin_end(State((shared, _)): State<AppState>, Path(contact): Path<String>) -> Response {
    let r = shared.lock().end_chat(&contact);
    admin_result(&shared, r)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TranscriptBody {
    transcript: Vec<Item>,
}

async fn admin_transcript(State((shared, _)): State<AppState>, Path(contact): Path<String>) -> Response {
    let r = shared
        .lock()
        .transcript_of(&contact)
        .map(|transcript| TranscriptBody { transcript });
    admin_result(&shared, r)
}

async fn admin_fault(State((shared, _)): State<AppState>, body: Bytes) -> Response {
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

async fn admin_clear_faults(State((shared, _)): State<AppState>) -> Response {
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

async fn admin_drop(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    admin_sockets(&shared, &body, |st, b| {
        st.drop_sockets(b.participant_id.as_deref())
    })
}

async fn admin_stall(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    admin_sockets(&shared, &body, |st, b| {
        st.stall_sockets(b.participant_id.as_deref())
    })
}

async fn admin_send(State((shared, _)): State<AppState>, body: Bytes) -> Response {
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

async fn admin_timing(State((shared, _)): State<AppState>, body: Bytes) -> Response {
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

async fn admin_quirks(State((shared, _)): State<AppState>, body: Bytes) -> Response {
    let r = parse::<super::Quirks>(&body).inspect(|q| shared.lock().quirks = *q);
    admin_result(&shared, r)
}

async fn admin_stats(State((shared, _)): State<AppState>) -> Response {
    let stats = shared.lock().stats();
    admin_result(&shared, Ok(stats))
}
