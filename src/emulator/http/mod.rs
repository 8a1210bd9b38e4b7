//! The emulator's HTTP side: the eleven API operations under `/participant/…` (bearer
//! tokens, rest-json errors with `x-amzn-ErrorType`), presigned attachment URLs, the
//! websocket upgrade at `/websocket`, and the admin interface under `/admin/…`.
//!
//! This file holds the router, the API operations and the presigned attachment URLs;
//! `admin.rs` the admin interface (scripting chats, faults, quirks, sockets, timing,
//! stats).

mod admin;

use super::state::{ServiceError, State as EmuState};
use super::Shared;
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
use serde::Serialize;
use std::sync::Arc;
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
        .route("/admin/chats", post(admin::admin_create_chat))
        .route(
            "/admin/chats/{contact}/participants",
            post(admin::admin_add_participant),
        )
        .route("/admin/chats/{contact}/messages", post(admin::admin_message))
        .route("/admin/chats/{contact}/events", post(admin::admin_event))
        .route("/admin/chats/{contact}/end", post(admin::admin_end))
        .route("/admin/chats/{contact}/transcript", get(admin::admin_transcript))
        .route(
            "/admin/faults",
            post(admin::admin_fault).delete(admin::admin_clear_faults),
        )
        .route("/admin/quirks", post(admin::admin_quirks))
        .route("/admin/sockets/drop", post(admin::admin_drop))
        .route("/admin/sockets/stall", post(admin::admin_stall))
        .route("/admin/sockets/send", post(admin::admin_send))
        .route("/admin/timing", post(admin::admin_timing))
        .route("/admin/stats", get(admin::admin_stats))
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
