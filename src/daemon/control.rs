//! The control API: HTTP/1.1 + JSON under `/v1`, on a unix socket (mode 0600) or a
//! loopback TCP address guarded by a bearer secret.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/sessions` | add a session (`201`), or get the one holding that token (`200`) |
//! | `GET /v1/sessions` | `{"sessions": [...]}` |
//! | `GET /v1/sessions/{name}` | one session |
//! | `DELETE /v1/sessions/{name}[?disconnect=true]` | stop following it (`204`) |
//! | `GET /v1/sessions/{name}/items` | its Items as Server-Sent Events (`id:` = Item Id) |
//! | `GET /v1/items` | every session's Items (`id:` = `NAME/ID`) |
//!
//! Every error is `{"error": {"code", "message"}}` with the status it names.

pub(crate) use super::streams::{resume, Position, Resume, StreamQuery};
use super::{Daemon, DaemonError, NewSession};
use crate::secret::Secret;
use crate::session::History;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The one error type of the API, and its JSON shape.
#[derive(Debug)]
pub struct ApiFailure {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u32>,
}

impl ApiFailure {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiFailure {
        ApiFailure {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// With a `Retry-After` header of `seconds`.
    pub(crate) fn retry_after(self, seconds: u32) -> ApiFailure {
        ApiFailure {
            retry_after: Some(seconds),
            ..self
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiFailure {
        ApiFailure::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        response
    }
}

impl From<DaemonError> for ApiFailure {
    fn from(e: DaemonError) -> ApiFailure {
        // Both say when to come back.
        let retry = match &e {
            DaemonError::Cluster(_) => Some(("cluster_unavailable", RETRY_CLUSTER)),
            DaemonError::TooManySessions(_) => Some(("too_many_sessions", RETRY_SESSIONS)),
            _ => None,
        };
        if let Some((code, after)) = retry {
            return ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string()).retry_after(after);
        }
        let (status, code) = match &e {
            DaemonError::Invalid { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            DaemonError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            DaemonError::NameTaken(_) => (StatusCode::CONFLICT, "conflict"),
            DaemonError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            DaemonError::Ended(_) => (StatusCode::GONE, "chat_ended"),
            DaemonError::NotConnected(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_connected"),
            DaemonError::Journal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            DaemonError::TooManySessions(_) | DaemonError::Cluster(_) => unreachable!("answered above"),
        };
        ApiFailure::new(status, code, e.to_string())
    }
}

/// `Retry-After` when `limits.max_sessions` is reached, in seconds.
const RETRY_SESSIONS: u32 = 30;
/// `Retry-After` while the cluster's NATS is not reachable, in seconds.
const RETRY_CLUSTER: u32 = 5;

/// A JSON body: `application/json` (else 415), within `limits.max_body` (else 413), of
/// the expected shape (else 400 naming the field).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiFailure> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiFailure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiFailure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is over limits.max_body bytes",
                )
            } else {
                ApiFailure::bad_request(format!("cannot read the body: {e}"))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiFailure::bad_request(format!("invalid body: {e}")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddBody {
    participant_token: String,
    name: Option<String>,
    history: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    receipts: Option<bool>,
}

type AppState = Arc<Daemon>;

/// The router, with bearer authentication when `bearer` is set.
pub fn router(daemon: Arc<Daemon>, bearer: Option<Secret>) -> Router {
    let mut app = Router::new()
        .route("/v1/sessions", get(list_sessions).post(add_session))
        .route("/v1/sessions/{name}", get(show_session).delete(remove_session))
        .route("/v1/sessions/{name}/items", get(super::streams::session_items))
        .route("/v1/items", get(super::streams::all_items))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(super::metrics::metrics))
        .merge(super::outbound::routes())
        .fallback(|| async { ApiFailure::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiFailure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(daemon.capacity().max_body))
        .with_state(daemon);
    if let Some(secret) = bearer {
        let secret = Arc::new(secret);
        app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
            let secret = secret.clone();
            async move { authenticate(&secret, req, next).await }
        }));
    }
    app
}

async fn authenticate(secret: &Secret, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), secret.expose().as_bytes()) {
        next.run(req).await
    } else {
        ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
        .into_response()
    }
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0 && !b.is_empty()
}

/// The probes alone, for the `[http]` listener (no authentication: they tell nothing
/// about any chat).
pub fn probes(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(super::metrics::metrics))
        .fallback(|| async { ApiFailure::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(daemon)
}

/// 200 whenever the event loop answers.
async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// 200 once the daemon is ready (control API listening, every configured session
/// subscribed) and no session has been connecting, subscribing or reconnecting for
/// longer than `http.readyz_grace`; 503 before, meanwhile and once shutdown has begun.
async fn readyz(State(daemon): State<AppState>) -> Response {
    use super::Readiness;
    let message = match daemon.readiness() {
        Readiness::Ready => return Json(serde_json::json!({"status": "ready"})).into_response(),
        Readiness::Starting => "starting: the control API or a configured session is not up yet".to_string(),
        Readiness::NotLive { sessions, grace } => {
            format!("{sessions} session(s) not live for over {} s", grace.as_secs())
        }
        Readiness::Stopping => "shutting down".to_string(),
    };
    ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message).into_response()
}

async fn list_sessions(State(daemon): State<AppState>) -> Response {
    if let Some(cluster) = daemon.cluster() {
        return Json(serde_json::json!({ "sessions": cluster.list(&daemon) })).into_response();
    }
    Json(serde_json::json!({ "sessions": daemon.list() })).into_response()
}

/// The session a `POST /v1/sessions` body asks for.
pub(crate) fn new_session(body: AddBody) -> Result<NewSession, ApiFailure> {
    let token = body.participant_token.trim();
    if token.is_empty() {
        return Err(ApiFailure::bad_request("participant_token must not be empty"));
    }
    let history = match body.history.as_deref() {
        None | Some("all") => History::All,
        Some("none") => History::None,
        Some(other) => {
            return Err(ApiFailure::bad_request(format!(
                "history must be \"all\" or \"none\", not {other:?}"
            )))
        }
    };
    Ok(NewSession {
        participant_token: Secret::new(token),
        name: body.name,
        history,
        labels: body.labels.unwrap_or_default(),
        receipts: body.receipts.unwrap_or(false),
        source: crate::journal::SessionSource::Api,
    })
}

async fn add_session(
    State(daemon): State<AppState>,
    JsonBody(body): JsonBody<AddBody>,
) -> Result<Response, ApiFailure> {
    let (view, created) = match daemon.cluster() {
        Some(cluster) => cluster.add(&daemon, new_session(body)?).await?,
        None => {
            let (view, created) = daemon.add(new_session(body)?).await?;
            (serde_json::to_value(view).expect("a view serialises"), created)
        }
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn show_session(
    State(daemon): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiFailure> {
    if let Some(cluster) = daemon.cluster() {
        return cluster
            .get(&daemon, &name)
            .map(|v| Json(v).into_response())
            .ok_or_else(|| DaemonError::NotFound(name).into());
    }
    daemon
        .get(&name)
        .map(|v| Json(v).into_response())
        .ok_or_else(|| DaemonError::NotFound(name).into())
}

#[derive(Deserialize)]
pub(crate) struct RemoveQuery {
    pub(crate) disconnect: Option<bool>,
}

async fn remove_session(
    State(daemon): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<RemoveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(q) = query.map_err(|e| ApiFailure::bad_request(format!("disconnect: {e}")))?;
    match daemon.cluster() {
        Some(cluster) => {
            cluster
                .remove(&daemon, &name, q.disconnect.unwrap_or(false))
                .await?
        }
        None => daemon.remove(&name, q.disconnect.unwrap_or(false)).await?,
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret!", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"", b""));
    }
}
