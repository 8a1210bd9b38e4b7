//! The API client: retries, idempotency tokens, error decoding and secrets, against a
//! scripted server that records every attempt and against the emulator.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use common::*;
use connect_chatd::api::model::*;
use connect_chatd::api::{ApiClient, Endpoint, ErrorCode, RetryPolicy};
use connect_chatd::emulator::{FaultSpec, Timing};
use connect_chatd::secret::Secret;
use std::sync::{Arc, Mutex};

/// A server that fails the first `fail` requests with `status`, then succeeds, and
/// records each request's bearer header and body.
#[derive(Clone, Default)]
struct Script {
    fail: usize,
    status: u16,
    seen: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

async fn scripted(State(s): State<Script>, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    let bearer = headers
        .get("x-amz-bearer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let n = {
        let mut seen = s.seen.lock().unwrap();
        seen.push((bearer, body));
        seen.len()
    };
    if n <= s.fail {
        let code = ErrorCode::from_status(s.status);
        let mut h = HeaderMap::new();
        h.insert("x-amzn-ErrorType", code.as_str().parse().unwrap());
        return (
            StatusCode::from_u16(s.status).unwrap(),
            h,
            r#"{"message":"scripted"}"#,
        )
            .into_response();
    }
    (
        StatusCode::OK,
        r#"{"Id":"m1","AbsoluteTime":"2026-11-25T12:00:00.000Z"}"#,
    )
        .into_response()
}

async fn script_server(fail: usize, status: u16) -> (ApiClient, Script) {
    let script = Script {
        fail,
        status,
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/participant/message", post(scripted))
        .route("/participant/event", post(scripted))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let api = ApiClient::builder(Endpoint::from_url(&format!("http://{addr}")).unwrap())
        .retry(RetryPolicy::default())
        .build()
        .unwrap();
    (api, script)
}

fn message() -> SendMessageRequest {
    SendMessageRequest {
        content_type: "text/plain".into(),
        content: "hi".into(),
        client_token: None,
    }
}

#[tokio::test(start_paused = true)]
async fn retries_keep_one_client_token_and_succeed() {
    for status in [429, 500, 503] {
        let (api, script) = script_server(2, status).await;
        let resp = api.send_message(&Secret::new("ct-1"), &message()).await.unwrap();
        assert_eq!(resp.id.as_deref(), Some("m1"));
        let seen = script.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "two failures, then success ({status})");
        let tokens: Vec<_> = seen
            .iter()
            .map(|(_, b)| b["ClientToken"].as_str().unwrap().to_string())
            .collect();
        assert!(tokens.iter().all(|t| t == &tokens[0]), "{tokens:?}");
        assert_eq!(tokens[0].len(), 36, "a UUID");
        assert!(seen.iter().all(|(bearer, _)| bearer == "ct-1"));
    }
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_never_retried() {
    for (status, code) in [
        (400, ErrorCode::Validation),
        (402, ErrorCode::ServiceQuotaExceeded),
        (403, ErrorCode::AccessDenied),
        (404, ErrorCode::ResourceNotFound),
        (409, ErrorCode::Conflict),
    ] {
        let (api, script) = script_server(10, status).await;
        let err = api
            .send_event(
                &Secret::new("ct-1"),
                &SendEventRequest {
                    content_type: CONTENT_TYPE_TYPING.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&code));
        assert!(!err.is_retryable());
        assert_eq!(script.seen.lock().unwrap().len(), 1, "{status} was not retried");
    }
}

#[tokio::test(start_paused = true)]
async fn retries_give_up_after_the_policy() {
    let (api, script) = script_server(100, 500).await;
    let err = api
        .send_message(&Secret::new("ct-1"), &message())
        .await
        .unwrap_err();
    assert!(err.is_retryable() && err.status() == Some(500));
    assert_eq!(script.seen.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_explicit_client_token_is_kept() {
    let (api, script) = script_server(0, 500).await;
    let mut req = message();
    req.client_token = Some("my-token".into());
    api.send_message(&Secret::new("ct-1"), &req).await.unwrap();
    assert_eq!(script.seen.lock().unwrap()[0].1["ClientToken"], "my-token");
}

#[tokio::test(start_paused = true)]
async fn emulator_errors_decode_with_their_codes() {
    let emu = emulator(Timing::default()).await;
    let api = client(&emu);
    let chat = emu.create_chat("Cleo");
    let conn = api
        .create_participant_connection(
            &chat.participant_token,
            &CreateParticipantConnectionRequest {
                connection_types: Some(vec![ConnectionType::ConnectionCredentials]),
                connect_participant: None,
            },
        )
        .await
        .unwrap();
    let ct = conn.connection_credentials.unwrap().connection_token;
    // 403: a bad token.
    let e = api
        .get_transcript(&Secret::new("nope"), &GetTranscriptRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::AccessDenied));
    // 400: MaxResults out of range.
    let e = api
        .get_transcript(
            &ct,
            &GetTranscriptRequest {
                max_results: Some(101),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::Validation));
    // 404: an unknown view.
    let e = api.describe_view(&ct, "no-such-view").await.unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::ResourceNotFound));
    // 429 and 500, injected, exhaust a one-attempt policy.
    let once = ApiClient::builder(Endpoint::from_url(&emu.endpoint()).unwrap())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    for status in [429, 500] {
        emu.inject_fault(FaultSpec::fail("SendMessage", status, 1));
        let e = once.send_message(&ct, &message()).await.unwrap_err();
        assert_eq!(e.status(), Some(status));
        assert!(e.is_retryable());
    }
    // 402: more than 20 MB.
    let e = api
        .start_attachment_upload(
            &ct,
            &StartAttachmentUploadRequest {
                content_type: "image/png".into(),
                attachment_size_in_bytes: 21 * 1024 * 1024,
                attachment_name: "big.png".into(),
                client_token: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::ServiceQuotaExceeded));
    // 409: a receipt for a message that does not exist.
    let e = api
        .send_event(
            &ct,
            &SendEventRequest {
                content_type: CONTENT_TYPE_READ.into(),
                content: Some(r#"{"messageId":"nope"}"#.into()),
                client_token: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::Conflict));
    // No error message or Debug output carries a token.
    let all = format!("{e} {e:?} {ct:?} {chat:?} {api:?}");
    assert!(
        !all.contains(ct.expose()) && !all.contains(chat.participant_token.expose()),
        "{all}"
    );
}

#[test]
fn debug_output_of_requests_and_configs_hides_secrets() {
    let creds = ConnectionCredentials {
        connection_token: Secret::new("ct-secret-value"),
        expiry: Timestamp(time::OffsetDateTime::UNIX_EPOCH),
    };
    let ws = Websocket {
        url: connect_chatd::secret::PresignedUrl::new("wss://x.example/?X-Amz-Security-Token=qs-secret"),
        connection_expiry: Timestamp(time::OffsetDateTime::UNIX_EPOCH),
    };
    let resp = CreateParticipantConnectionResponse {
        websocket: Some(ws),
        connection_credentials: Some(creds),
        webrtc_connection: Some(WebRtcConnection {
            attendee: Some(Attendee {
                attendee_id: Some("a".into()),
                join_token: Some(Secret::new("jt-secret")),
            }),
            meeting: None,
        }),
    };
    let text = format!(
        "{resp:?} {resp:#?} {:?}",
        connect_chatd::session::SupervisorConfig::default()
    );
    for secret in ["ct-secret-value", "qs-secret", "jt-secret"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

async fn dated(State(date): State<String>) -> axum::response::Response {
    let mut h = HeaderMap::new();
    h.insert("date", date.parse().unwrap());
    (StatusCode::OK, h, "{}").into_response()
}

/// The server's clock is learnt from `Date`; a nonsensical one is ignored, not a panic.
#[tokio::test]
async fn server_time_follows_plausible_date_headers_only() {
    let now = time::OffsetDateTime::now_utc();
    for (date, expected_offset_s) in [
        (
            connect_chatd::clock::format_http_date(now + time::Duration::hours(2)),
            7200,
        ),
        ("Fri, 31 Dec 9999 23:59:59 GMT".to_string(), 0),
        ("not a date".to_string(), 0),
    ] {
        let app = axum::Router::new()
            .route("/participant/connection", post(dated))
            .with_state(date.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let api = ApiClient::builder(Endpoint::from_url(&format!("http://{addr}")).unwrap())
            .build()
            .unwrap();
        api.create_participant_connection(&Secret::new("p"), &CreateParticipantConnectionRequest::default())
            .await
            .unwrap();
        let offset = (api.server_now() - time::OffsetDateTime::now_utc()).whole_seconds();
        assert!((offset - expected_offset_s).abs() <= 2, "{date}: offset {offset}");
    }
}
