//! The emulator's websocket side: the upgrade of a presigned URL (connect window,
//! socket limit, injected upgrade faults) and one task per socket that answers
//! subscribe, heartbeat and ping frames, forwards published chat frames, closes at
//! ConnectionExpiry, and plays dropped or half-open sockets on demand.

use super::state::Outbound;
use super::Shared;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub(crate) async fn upgrade(
    State((shared, stopped)): State<(Arc<Shared>, watch::Receiver<bool>)>,
    Query(query): Query<HashMap<String, String>>,
    mut req: Request,
) -> Response {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return (StatusCode::BAD_REQUEST, "expected a websocket upgrade").into_response();
    };
    let url_token = query.get("X-Amz-Security-Token").cloned().unwrap_or_default();
    let (delay, fault) = shared.lock().begin_call("WebsocketUpgrade");
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let opened = match fault {
        Ok(()) => shared.lock().open_socket(&url_token),
        Err(e) => Err((e.code.status(), "Injected upgrade failure")),
    };
    let (id, expires, outbound) = match opened {
        Ok(v) => v,
        Err((status, message)) => {
            let body = serde_json::json!({ "message": message }).to_string();
            return Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .expect("static response parts");
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // Small buffers: the default 128 KiB read buffer is resident per socket,
                // and load tests hold thousands of sockets.
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(WRITE_BATCH)
                    .max_write_buffer_size(4 << 20)
                    .max_message_size(Some(1 << 20));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                    .await;
                serve_socket(&shared, id, expires, ws, outbound, stopped).await;
            }
            Err(e) => tracing::debug!(error = %e, "emulator: upgrade did not complete"),
        }
        shared.lock().close_socket(id);
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a valid header"),
    );
    resp
}

async fn serve_socket<S>(
    shared: &Shared,
    id: u64,
    expires: Instant,
    mut ws: WebSocketStream<S>,
    mut outbound: tokio::sync::mpsc::Receiver<Outbound>,
    mut stopped: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = sleep_until(expires), if !stalled => {
                let _ = ws.send(close_frame(1001, "connection expired")).await;
                break;
            }
            _ = async { let _ = stopped.wait_for(|s| *s).await; } => break,
            out = outbound.recv() => {
                let Some(out) = out else { break };
                if !send_outbound(&mut ws, id, out, &mut outbound, &mut stalled).await {
                    break;
                }
            }
            msg = ws.next() => match msg {
                None | Some(Err(_)) => break,
                Some(Ok(_)) if stalled => {}
                Some(Ok(Message::Text(t))) => {
                    tracing::trace!(socket = id, frame = %t.as_str(), "emulator: received a frame");
                    if let Some(reply) = answer(shared, id, t.as_str()) {
                        if ws.send(Message::text(reply)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // tungstenite queued the close reply; reading on flushes it and
                    // ends the stream once the handshake is complete.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// Frames written before one flush at most.
const MAX_BATCH: usize = 256;

/// Bytes tungstenite gathers before it writes without a flush.
const WRITE_BATCH: usize = 64 * 1024;

/// Carries out what the state asked of a socket; false when the socket is done. Text
/// frames already queued behind the first go out in the same write (a server's TCP
/// stack coalesces them too), the flush ending the batch.
async fn send_outbound<S>(
    ws: &mut WebSocketStream<S>,
    id: u64,
    first: Outbound,
    outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
    stalled: &mut bool,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut next = Some(first);
    let mut batched = 0;
    while let Some(out) = next.take() {
        match out {
            // Removed from the state (queue overflow): vanish.
            Outbound::Drop => return false,
            Outbound::Stall => *stalled = true,
            Outbound::Text(_) | Outbound::Binary(_) if *stalled => {}
            Outbound::Binary(b) => {
                if ws.feed(Message::binary(b)).await.is_err() {
                    return false;
                }
            }
            Outbound::Text(t) => {
                tracing::trace!(socket = id, bytes = t.len(), "emulator: sending a frame");
                if ws.feed(Message::text(t)).await.is_err() {
                    return false;
                }
            }
            Outbound::Close(code, reason) => {
                if !*stalled {
                    let _ = ws.send(close_frame(code, reason)).await;
                }
                return false;
            }
        }
        batched += 1;
        if batched < MAX_BATCH {
            next = outbound.try_recv().ok();
        }
    }
    ws.flush().await.is_ok()
}

/// The emulator's reply to a client frame, if it gets one.
pub(super) fn answer(shared: &Shared, id: u64, text: &str) -> Option<String> {
    let frame: Value = serde_json::from_str(text).ok()?;
    match frame.get("topic").and_then(Value::as_str)? {
        "aws/subscribe" => {
            let topics_ok = frame
                .pointer("/content/topics")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|t| t == "aws/chat"));
            Some(shared.lock().subscribe(id, topics_ok))
        }
        "aws/heartbeat" => Some(r#"{"topic":"aws/heartbeat"}"#.to_string()),
        "aws/ping" => Some(r#"{"topic":"aws/ping","statusCode":200,"statusContent":"OK"}"#.to_string()),
        "aws/unsubscribe" => {
            Some(r#"{"topic":"aws/unsubscribe","content":{"status":"success"}}"#.to_string())
        }
        _ => None,
    }
}
