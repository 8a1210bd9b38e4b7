//! Talking back through the daemon: the control API's routes that send into a chat.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/sessions/{name}/messages` | `{"content", "content_type"?}` → SendMessage |
//! | `POST /v1/sessions/{name}/events` | `{"content_type", "content"?}` → SendEvent (typing, read, delivered) |
//! | `POST /v1/sessions/{name}/attachments` | `{"path", "content_type"?, "name"?}`, or the file itself as the body |
//! | `POST /v1/sessions/{name}/disconnect` | DisconnectParticipant |
//!
//! Each uses the session's current ConnectionToken, the process-wide rate limiter and
//! the API client's retries of 429/5xx. An `Idempotency-Key` header becomes the
//! ClientToken, and the answer is remembered in the journal (for the retention
//! period), so a client that retries after a timeout or a daemon restart gets the first
//! answer again instead of posting twice. Typing events go out at most once per 10 s
//! per session (leading edge); the others answer `{"Throttled": true}`.

use super::control::{ApiFailure, JsonBody};
use super::session::RunningSession;
use super::{Daemon, DaemonError};
use crate::api::model::{DisconnectParticipantRequest, SendEventRequest, SendMessageRequest};
use crate::api::outbound::{self, AttachError, EventKind, InvalidOutbound};
use crate::api::ApiError;
use crate::secret::Secret;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The largest attachment body accepted (the service's 20 MB, and some room).
pub const ATTACHMENT_BODY_LIMIT: usize = 21 * 1024 * 1024;

/// The longest Idempotency-Key (a ClientToken is at most 500 characters; attachments
/// derive a second one from it).
pub const MAX_IDEMPOTENCY_KEY: usize = 400;

type AppState = Arc<Daemon>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{name}/messages", post(send_message))
        .route("/v1/sessions/{name}/events", post(send_event))
        .route(
            "/v1/sessions/{name}/attachments",
            post(send_attachment).layer(axum::extract::DefaultBodyLimit::max(ATTACHMENT_BODY_LIMIT)),
        )
        .route("/v1/sessions/{name}/disconnect", post(disconnect))
}

impl From<InvalidOutbound> for ApiFailure {
    fn from(e: InvalidOutbound) -> ApiFailure {
        ApiFailure::bad_request(e.to_string())
    }
}

/// A service answer as the control API gives it.
fn api_failure(e: ApiError) -> ApiFailure {
    if e.is_access_denied() {
        return ApiFailure::new(
            StatusCode::GONE,
            "chat_ended",
            format!("the chat has ended ({e})"),
        );
    }
    match &e {
        ApiError::Service { status, .. } if (400..500).contains(status) && *status != 429 => {
            ApiFailure::new(StatusCode::BAD_REQUEST, "rejected_by_service", e.to_string())
        }
        ApiError::Service { status: 429, .. } => {
            ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "throttled", e.to_string())
        }
        _ => ApiFailure::new(StatusCode::BAD_GATEWAY, "service_unavailable", e.to_string()),
    }
}

/// The session and its ConnectionToken.
fn connected(daemon: &Daemon, name: &str) -> Result<(Arc<RunningSession>, Secret), ApiFailure> {
    let session = daemon.running(name)?;
    let token = session
        .connection_token()
        .ok_or_else(|| DaemonError::NotConnected(name.to_string()))?;
    Ok((session, token))
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiFailure> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiFailure::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            ))
        })?;
    Ok(Some(key.to_string()))
}

/// Runs `send` once per Idempotency-Key: a key answered before gets that answer again
/// (with `Idempotent-Replayed: true`); a new one is remembered once `send` succeeds.
async fn once<F>(daemon: &Daemon, session: &str, key: Option<String>, send: F) -> Result<Response, ApiFailure>
where
    F: std::future::Future<Output = Result<(StatusCode, Value), ApiFailure>>,
{
    let journal = daemon.journal();
    if let Some(k) = &key {
        let stored = journal
            .answer(session, k)
            .map_err(|e| ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        if let Some((status, body)) = stored {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            return Ok((status, [("idempotent-replayed", "true")], Json(body)).into_response());
        }
    }
    let (status, body) = send.await?;
    if let Some(k) = &key {
        if let Err(e) = journal
            .remember_answer(session, k, status.as_u16(), &body.to_string())
            .await
        {
            tracing::warn!(session, error = %e, "cannot remember an idempotent answer");
        }
    }
    Ok((status, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageBody {
    content: String,
    content_type: Option<String>,
}

async fn send_message(
    State(daemon): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MessageBody>,
) -> Result<Response, ApiFailure> {
    let key = idempotency_key(&headers)?;
    let mut request = message_request(&body)?;
    let (session, token) = connected(&daemon, &name)?;
    request.client_token = key.clone();
    once(&daemon, &name, key, async {
        let resp = daemon
            .api()
            .send_message(&token, &request)
            .await
            .map_err(api_failure)?;
        if let Some(id) = &resp.id {
            // Its echo on the socket is this participant's own: no receipt for it.
            session.sent.lock().expect("receipts lock").own_message(id);
        }
        Ok((
            StatusCode::OK,
            json!({"Id": resp.id, "AbsoluteTime": resp.absolute_time}),
        ))
    })
    .await
}

/// The SendMessage a `…/messages` body asks for, checked.
pub(crate) fn message_request(body: &MessageBody) -> Result<SendMessageRequest, InvalidOutbound> {
    outbound::message(
        body.content_type.as_deref().unwrap_or("text/plain"),
        &body.content,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventBody {
    content_type: String,
    content: Option<String>,
}

async fn send_event(
    State(daemon): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EventBody>,
) -> Result<Response, ApiFailure> {
    let key = idempotency_key(&headers)?;
    let (kind, mut request, receipt_for) = event_request(&body)?;
    let (session, token) = connected(&daemon, &name)?;
    if kind == EventKind::Typing && !session.typing.pass() {
        return Ok((StatusCode::OK, Json(json!({"Throttled": true}))).into_response());
    }
    if let Some(id) = &receipt_for {
        // At most one receipt of each kind per message.
        if session.sent.lock().expect("receipts lock").has(kind, id) {
            return Ok((StatusCode::OK, Json(json!({"Duplicate": true}))).into_response());
        }
    }
    request.client_token = key.clone();
    once(&daemon, &name, key, async {
        let resp = daemon
            .api()
            .send_event(&token, &request)
            .await
            .map_err(api_failure)?;
        if let Some(id) = &receipt_for {
            session.sent.lock().expect("receipts lock").mark(kind, id);
        }
        Ok((
            StatusCode::OK,
            json!({"Id": resp.id, "AbsoluteTime": resp.absolute_time}),
        ))
    })
    .await
}

/// The SendEvent an `…/events` body asks for, checked: its kind, the request, and the
/// message a receipt is for.
pub(crate) fn event_request(
    body: &EventBody,
) -> Result<(EventKind, SendEventRequest, Option<String>), InvalidOutbound> {
    let kind = EventKind::from_content_type(&body.content_type)?;
    let request = outbound::event(kind, None, body.content.as_deref())?;
    let receipt_for = request
        .content
        .as_deref()
        .filter(|_| kind != EventKind::Typing)
        .and_then(outbound::receipt_message_id);
    Ok((kind, request, receipt_for))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachmentBody {
    path: std::path::PathBuf,
    content_type: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct AttachmentQuery {
    pub(crate) name: Option<String>,
}

/// The attachment: `{"path": …}` for a file the daemon can read, or the file itself as
/// the body (its type as `Content-Type`, its name as `?name=`).
async fn send_attachment(
    State(daemon): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<AttachmentQuery>,
    req: Request,
) -> Result<Response, ApiFailure> {
    let headers = req.headers().clone();
    let key = idempotency_key(&headers)?;
    let given_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    let (file_name, content_type, bytes) = if given_type.as_deref() == Some("application/json") {
        let JsonBody(body) = JsonBody::<AttachmentBody>::from_request(req, &()).await?;
        let (file_name, content_type) = attachment_name(&body)?;
        let size = tokio::fs::metadata(&body.path)
            .await
            .map_err(|e| ApiFailure::bad_request(format!("path: {}: {e}", body.path.display())))?
            .len();
        outbound::attachment(&file_name, size)?;
        let bytes = tokio::fs::read(&body.path)
            .await
            .map_err(|e| ApiFailure::bad_request(format!("path: {}: {e}", body.path.display())))?;
        (file_name, content_type, bytes)
    } else {
        let file_name = q.name.ok_or_else(|| {
            ApiFailure::bad_request("name: give the file's name as ?name= (or send JSON with a path)")
        })?;
        let content_type = outbound::attachment_type(&file_name, given_type.as_deref())?;
        let bytes = Bytes::from_request(req, &()).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiFailure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the attachment is over {ATTACHMENT_BODY_LIMIT} bytes"),
                )
            } else {
                ApiFailure::bad_request(format!("cannot read the body: {e}"))
            }
        })?;
        outbound::attachment(&file_name, bytes.len() as u64)?;
        (file_name, content_type, bytes.to_vec())
    };
    let (_, token) = connected(&daemon, &name)?;
    once(&daemon, &name, key.clone(), async {
        let attached = outbound::attach(daemon.api(), &token, &file_name, &content_type, bytes, key)
            .await
            .map_err(|e| match e {
                AttachError::Invalid(i) => i.into(),
                AttachError::Api(a) => api_failure(a),
                other => ApiFailure::new(StatusCode::BAD_GATEWAY, "service_unavailable", other.to_string()),
            })?;
        Ok((
            StatusCode::OK,
            serde_json::to_value(attached).expect("serialises"),
        ))
    })
    .await
}

/// The file name and content type of an attachment named by a `{"path": …}` body.
pub(crate) fn attachment_name(body: &AttachmentBody) -> Result<(String, String), ApiFailure> {
    let file_name = match &body.name {
        Some(n) => n.clone(),
        None => body
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| ApiFailure::bad_request("path: not a file name"))?,
    };
    let content_type = outbound::attachment_type(&file_name, body.content_type.as_deref())?;
    Ok((file_name, content_type))
}

async fn disconnect(
    State(daemon): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiFailure> {
    let key = idempotency_key(&headers)?;
    let (_, token) = connected(&daemon, &name)?;
    once(&daemon, &name, key.clone(), async {
        let request = DisconnectParticipantRequest { client_token: key };
        daemon
            .api()
            .disconnect_participant(&token, &request)
            .await
            .map_err(api_failure)?;
        Ok((StatusCode::OK, json!({"Disconnected": true})))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::super::session::{LeadingEdge, TYPING_EVERY};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn typing_is_throttled_on_the_leading_edge() {
        let typing = LeadingEdge::new(TYPING_EVERY);
        assert!(typing.pass(), "the first goes at once");
        let mut passed = 0;
        // An application asking every 100 ms for a minute: one per 10 s.
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            passed += usize::from(typing.pass());
        }
        assert_eq!(passed, 6);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!typing.pass(), "9.x s after the last: still throttled");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(typing.pass());
    }
}
