//! The emulator's request parsing: any request to its router (the eleven operations,
//! attachments, the websocket upgrade, the admin side), straight to the router with no
//! socket, on a fresh emulator holding one chat. The input is `METHOD PATH` on the
//! first line, `name: value` header lines, an empty line, then the body. `$PT`,
//! `$CT`, `$CID` and `$URLTOKEN` are replaced with the chat's ParticipantToken, a
//! ConnectionToken, its ContactId and a presigned URL's token (from a real
//! CreateParticipantConnection made first), so inputs get past authentication.
#![no_main]
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use connect_chatd::emulator::Offline;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

fn runtime() -> tokio::runtime::Runtime {
    // The clock is paused: an injected delay of hours passes at once.
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

async fn call(emulator: &Offline, req: Request<Body>) -> (u16, Vec<u8>) {
    let resp = emulator.router().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes().to_vec());
    (status, body.unwrap_or_default())
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.windows(2).position(|w| w == b"\n\n") else {
        return;
    };
    let (head, body) = (&data[..split], &data[split + 2..]);
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    runtime().block_on(async {
        let emulator = Offline::new();
        let pt = emulator.chat.participant_token.expose().to_string();
        let connect = Request::post("/participant/connection")
            .header("x-amz-bearer", &pt)
            .body(Body::from(r#"{"Type":["WEBSOCKET","CONNECTION_CREDENTIALS"]}"#))
            .unwrap();
        let (status, answer) = call(&emulator, connect).await;
        assert_eq!(status, 200);
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        let ct = answer["ConnectionCredentials"]["ConnectionToken"]
            .as_str()
            .unwrap()
            .to_string();
        let url = answer["Websocket"]["Url"].as_str().unwrap();
        let url_token = url
            .split("X-Amz-Security-Token=")
            .nth(1)
            .unwrap_or("")
            .to_string();
        let fill = |s: &str| {
            s.replace("$PT", &pt)
                .replace("$CT", &ct)
                .replace("$CID", &emulator.chat.contact_id)
                .replace("$URLTOKEN", &url_token)
        };
        let mut lines = head.lines();
        let Some((method, path)) = lines.next().and_then(|l| l.split_once(' ')) else {
            return;
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return;
        };
        let mut req = Request::builder().method(method).uri(fill(path));
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return;
            };
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(&fill(value.trim())),
            ) else {
                return;
            };
            req = req.header(name, value);
        }
        let body = String::from_utf8(body.to_vec())
            .map(|b| Body::from(fill(&b)))
            .unwrap_or_else(|e| Body::from(e.into_bytes()));
        // A request hyper would not have parsed never reaches the router.
        let Ok(req) = req.body(body) else {
            return;
        };
        let (status, answer) = call(&emulator, req).await;
        // The emulator stays up and answers: no 5xx unless a fault was asked for.
        assert!((100..600).contains(&status));
        if status >= 400 && !answer.is_empty() && path.starts_with("/participant/") {
            // The service's errors are JSON with a message, as the client decodes them.
            let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
                panic!(
                    "error body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&answer)
                )
            });
            assert!(v.get("message").is_some(), "{v}");
        }
    });
});
