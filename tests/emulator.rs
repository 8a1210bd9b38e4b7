//! The emulator's behaviour, checked with the project's own client and with raw
//! websockets: all eleven operations, transcript paging, the websocket protocol and
//! its limits, and the admin side.

mod common;

use common::*;
use connect_chatd::api::model::*;
use connect_chatd::emulator::{Emulator, FaultSpec, Timing};
use connect_chatd::secret::Secret;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn connection(emu: &Emulator, token: &Secret) -> (String, Secret) {
    let resp = client(emu)
        .create_participant_connection(
            token,
            &CreateParticipantConnectionRequest {
                connection_types: Some(vec![
                    ConnectionType::Websocket,
                    ConnectionType::ConnectionCredentials,
                ]),
                connect_participant: Some(true),
            },
        )
        .await
        .unwrap();
    (
        resp.websocket.unwrap().url.expose().to_string(),
        resp.connection_credentials.unwrap().connection_token,
    )
}

type Raw = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_socket(url: &str) -> Raw {
    tokio_tungstenite::connect_async(url).await.expect("upgrade").0
}

async fn next_text(ws: &mut Raw) -> serde_json::Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame")
            .expect("open")
            .unwrap()
        {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

async fn subscribe(ws: &mut Raw) -> serde_json::Value {
    ws.send(Message::text(
        r#"{"topic":"aws/subscribe","content":{"topics":["aws/chat"]}}"#,
    ))
    .await
    .unwrap();
    next_text(ws).await
}

#[tokio::test(start_paused = true)]
async fn all_eleven_operations_work() {
    let emu = emulator(Timing::default()).await;
    let api = client(&emu);
    let chat = emu.create_chat("Cleo");
    let (_, ct) = connection(&emu, &chat.participant_token).await;
    let message = SendMessageRequest {
        content_type: "text/markdown".into(),
        content: "**hi**".into(),
        client_token: Some("tok-1".into()),
    };
    let sent = api.send_message(&ct, &message).await.unwrap();
    // The same ClientToken again: the same message, not a second one.
    let again = api.send_message(&ct, &message).await.unwrap();
    assert_eq!(sent.id, again.id);
    api.send_event(
        &ct,
        &SendEventRequest {
            content_type: CONTENT_TYPE_READ.into(),
            content: Some(format!(r#"{{"messageId":"{}"}}"#, sent.id.as_deref().unwrap())),
            client_token: None,
        },
    )
    .await
    .unwrap();
    let started = api
        .start_attachment_upload(
            &ct,
            &StartAttachmentUploadRequest {
                content_type: "text/plain".into(),
                attachment_size_in_bytes: 5,
                attachment_name: "a.txt".into(),
                client_token: String::new(),
            },
        )
        .await
        .unwrap();
    let upload = started.upload_metadata.unwrap();
    assert!(
        !format!("{upload:?}").contains("Signature="),
        "the upload URL is redacted in Debug"
    );
    let put = reqwest::Client::new()
        .put(upload.url.clone().unwrap().expose())
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    // A PUT without the signed headers is refused, as a store would.
    let unsigned = reqwest::Client::new()
        .put(upload.url.unwrap().expose())
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    let att_id = started.attachment_id.unwrap();
    api.complete_attachment_upload(
        &ct,
        &CompleteAttachmentUploadRequest {
            attachment_ids: vec![att_id.clone()],
            client_token: String::new(),
        },
    )
    .await
    .unwrap();
    let got = api
        .get_attachment(
            &ct,
            &GetAttachmentRequest {
                attachment_id: att_id.clone(),
                url_expiry_in_seconds: Some(60),
            },
        )
        .await
        .unwrap();
    assert_eq!(got.attachment_size_in_bytes, 5);
    let session = "0123456789abcdef0123456789abcdef0123".to_string();
    let auth = api
        .get_authentication_url(
            &ct,
            &GetAuthenticationUrlRequest {
                session_id: session.clone(),
                redirect_uri: "https://example.com/back".into(),
            },
        )
        .await
        .unwrap();
    assert!(auth.authentication_url.unwrap().contains(&session));
    api.cancel_participant_authentication(
        &ct,
        &CancelParticipantAuthenticationRequest { session_id: session },
    )
    .await
    .unwrap();
    let view = api.describe_view(&ct, "interactive-list").await.unwrap();
    assert_eq!(view.view.unwrap().version, Some(1));
    let transcript = api
        .get_transcript(
            &ct,
            &GetTranscriptRequest {
                max_results: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let kinds: Vec<_> = transcript
        .transcript
        .iter()
        .map(|i| i.item_type.clone().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            ChatItemType::Event,
            ChatItemType::Message,
            ChatItemType::Attachment
        ],
        "joined, the message once, the attachment; receipts and acks are not kept"
    );
    assert_eq!(
        transcript.initial_contact_id.as_deref(),
        Some(chat.contact_id.as_str())
    );
    api.disconnect_participant(&ct, &DisconnectParticipantRequest::default())
        .await
        .unwrap();
    // The customer left: the chat ended, and the token no longer sends.
    let ended = emu.transcript(&chat.contact_id).unwrap();
    assert!(ended.last().unwrap().is_chat_ended());
    let e = api
        .send_message(
            &ct,
            &SendMessageRequest {
                content_type: "text/plain".into(),
                content: "late".into(),
                client_token: None,
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_access_denied());
    let calls = emu.stats().calls;
    for op in connect_chatd::api::Operation::ALL {
        assert!(
            calls.get(op.name()).copied().unwrap_or(0) >= 1,
            "{} was called: {calls:?}",
            op.name()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn transcript_pages_forward_and_backward() {
    let emu = emulator(Timing::default()).await;
    let api = client(&emu);
    let chat = emu.create_chat("Cleo");
    for n in 0..24 {
        agent_says(&emu, &chat, &format!("m{n}"));
    }
    let all = ids(&emu.transcript(&chat.contact_id).unwrap());
    assert_eq!(all.len(), 26, "customer joined, agent joined, 24 messages");
    let (_, ct) = connection(&emu, &chat.participant_token).await;
    let page = |dir: ScanDirection, sort: SortKey, start: Option<StartPosition>, next: Option<String>| {
        GetTranscriptRequest {
            max_results: Some(10),
            scan_direction: Some(dir),
            sort_order: Some(sort),
            start_position: start,
            next_token: next,
            contact_id: None,
        }
    };
    // FORWARD from an Id (inclusive), paging until NextToken is empty.
    let mut got = Vec::new();
    let mut next = None;
    loop {
        let start = Some(StartPosition {
            id: Some(all[5].clone()),
            ..Default::default()
        });
        let r = api
            .get_transcript(
                &ct,
                &page(ScanDirection::Forward, SortKey::Ascending, start, next),
            )
            .await
            .unwrap();
        got.extend(ids(&r.transcript));
        match r.next_token {
            Some(t) => next = Some(t),
            None => break,
        }
    }
    assert_eq!(got, all[5..].to_vec());
    // BACKWARD from the most recent, descending.
    let r = api
        .get_transcript(
            &ct,
            &page(ScanDirection::Backward, SortKey::Descending, None, None),
        )
        .await
        .unwrap();
    let expected: Vec<_> = all[16..].iter().rev().cloned().collect();
    assert_eq!(ids(&r.transcript), expected);
    let r2 = api
        .get_transcript(
            &ct,
            &page(ScanDirection::Backward, SortKey::Descending, None, r.next_token),
        )
        .await
        .unwrap();
    let expected: Vec<_> = all[6..16].iter().rev().cloned().collect();
    assert_eq!(ids(&r2.transcript), expected);
    // A token from elsewhere is refused.
    let e = api
        .get_transcript(
            &ct,
            &page(
                ScanDirection::Forward,
                SortKey::Ascending,
                None,
                Some("garbage".into()),
            ),
        )
        .await
        .unwrap_err();
    assert!(e.is_validation());
}

#[tokio::test(start_paused = true)]
async fn websocket_protocol_heartbeat_and_no_replay() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    let (url, _) = connection(&emu, &chat.participant_token).await;
    let mut ws = raw_socket(&url).await;
    // Published before anyone subscribed: never replayed on the socket.
    let before = agent_says(&emu, &chat, "before");
    assert_eq!(
        subscribe(&mut ws).await,
        serde_json::json!({"topic":"aws/subscribe","content":{"status":"success","topics":["aws/chat"]}})
    );
    ws.send(Message::text(r#"{"topic":"aws/heartbeat"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        serde_json::json!({"topic":"aws/heartbeat"})
    );
    ws.send(Message::text(r#"{"topic":"aws/ping"}"#)).await.unwrap();
    assert_eq!(next_text(&mut ws).await["statusCode"], 200);
    let after = agent_says(&emu, &chat, "after");
    let frame = next_text(&mut ws).await;
    assert_eq!(frame["topic"], "aws/chat");
    assert_eq!(frame["contentType"], "application/json");
    let item: Item = serde_json::from_str(frame["content"].as_str().expect("content is a string")).unwrap();
    assert_eq!(item.id, after.id);
    assert_ne!(item.id, before.id);
}

#[tokio::test(start_paused = true)]
async fn connect_window_socket_limit_and_expiry() {
    let emu = emulator(Timing {
        connection_expiry: Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    let chat = emu.create_chat("Cleo");
    // A URL dialled after its 100 s window is refused.
    let (stale, _) = connection(&emu, &chat.participant_token).await;
    tokio::time::sleep(Duration::from_secs(101)).await;
    let err = tokio_tungstenite::connect_async(&stale).await.unwrap_err();
    assert!(
        matches!(err, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 403),
        "{err}"
    );
    // Five sockets per participant; the sixth is refused.
    let mut open = Vec::new();
    for _ in 0..5 {
        let (url, _) = connection(&emu, &chat.participant_token).await;
        open.push(raw_socket(&url).await);
    }
    let (url, _) = connection(&emu, &chat.participant_token).await;
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
    assert_eq!(emu.stats().max_open_sockets[&chat.participant_id], 5);
    // At ConnectionExpiry the server closes the socket.
    let mut ws = open.pop().unwrap();
    subscribe(&mut ws).await;
    tokio::time::sleep(Duration::from_secs(601)).await;
    let closed = loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => break f,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(closed.unwrap().code), 1001);
}

#[tokio::test(start_paused = true)]
async fn subscribe_failures_and_raw_frames_can_be_injected() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Cleo");
    emu.inject_fault(FaultSpec::fail("Subscribe", 500, 1));
    let (url, _) = connection(&emu, &chat.participant_token).await;
    let mut ws = raw_socket(&url).await;
    assert_eq!(subscribe(&mut ws).await["content"]["status"], "failure");
    assert_eq!(subscribe(&mut ws).await["content"]["status"], "success");
    assert_eq!(emu.send_raw_frame(None, "{not json"), 1);
    match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), "{not json"),
        other => panic!("{other:?}"),
    }
}

/// One admin request: its status and JSON body.
async fn admin(method: reqwest::Method, url: String, body: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .request(method, url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn admin_http_interface_scripts_a_chat() {
    use reqwest::Method;
    let emu = emulator(Timing::default()).await;
    let base = emu.endpoint();
    let (_, chat) = admin(
        Method::POST,
        format!("{base}/admin/chats"),
        r#"{"DisplayName":"Cleo"}"#,
    )
    .await;
    let contact = chat["ContactId"].as_str().unwrap();
    assert!(chat["ParticipantToken"].is_string());
    let (_, msg) = admin(
        Method::POST,
        format!("{base}/admin/chats/{contact}/messages"),
        r#"{"Content":"hello","DisplayName":"Ana"}"#,
    )
    .await;
    assert_eq!(msg["ParticipantRole"], "AGENT");
    let fault = r#"{"Operation":"GetTranscript","Status":429,"Count":2}"#;
    assert_eq!(
        admin(Method::POST, format!("{base}/admin/faults"), fault).await.0,
        200
    );
    assert_eq!(
        admin(Method::POST, format!("{base}/admin/faults"), r#"{"Status":429}"#)
            .await
            .0,
        400
    );
    let huge = r#"{"ConnectionExpirySeconds":1e300}"#;
    assert_eq!(
        admin(Method::POST, format!("{base}/admin/timing"), huge).await.0,
        400
    );
    let timing = r#"{"ConnectionExpirySeconds":15}"#;
    let (_, timing) = admin(Method::POST, format!("{base}/admin/timing"), timing).await;
    assert_eq!(timing["ConnectionExpirySeconds"], 15.0);
    let end = format!("{base}/admin/chats/{contact}/end");
    assert_eq!(admin(Method::POST, end.clone(), "").await.0, 200);
    assert_eq!(admin(Method::POST, end, "").await.0, 409, "a chat ends once");
    let (_, transcript) = admin(
        Method::GET,
        format!("{base}/admin/chats/{contact}/transcript"),
        "",
    )
    .await;
    assert_eq!(transcript["Transcript"].as_array().unwrap().len(), 4);
    let (_, stats) = admin(Method::GET, format!("{base}/admin/stats"), "").await;
    assert!(stats["Calls"].is_object());
}
