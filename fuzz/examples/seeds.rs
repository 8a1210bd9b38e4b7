//! Writes the seed corpus (`fuzz/corpus/<target>/`) from real traffic: a session of
//! calls against the emulator's router (every operation, errors, admin requests),
//! the frames its sockets send, the example configuration, and the control API's
//! documented requests. Run from `fuzz/`: `cargo run --example seeds`.
use axum::body::Body;
use axum::http::Request;
use connect_chatd::emulator::Offline;
use http_body_util::BodyExt;
use std::path::Path;
use tower::ServiceExt;

struct Corpus;

impl Corpus {
    fn put(&self, target: &str, name: &str, data: &[u8]) {
        let dir = Path::new("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    }
}

struct Call {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
}

async fn send(emu: &Offline, c: &Call) -> (u16, Option<String>, Vec<u8>) {
    let mut req = Request::builder().method(c.method).uri(&c.path);
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    let resp = emu
        .router()
        .oneshot(req.body(Body::from(c.body.clone())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, kind, body)
}

/// An emulator_http input: the request with the placeholders its harness fills in.
fn http_seed(c: &Call, subst: &[(&str, &str)]) -> Vec<u8> {
    let un = |s: &str| {
        let mut s = s.to_string();
        for (real, ph) in subst {
            if !real.is_empty() {
                s = s.replace(real, ph);
            }
        }
        s
    };
    let mut out = format!("{} {}\n", c.method, un(&c.path));
    for (k, v) in &c.headers {
        out.push_str(&format!("{k}: {}\n", un(v)));
    }
    out.push('\n');
    out.push_str(&un(&c.body));
    out.into_bytes()
}

const OPS: [&str; 11] = [
    "connection",
    "transcript",
    "message",
    "event",
    "disconnect",
    "start-attachment-upload",
    "complete-attachment-upload",
    "attachment",
    "authentication-url",
    "cancel-authentication",
    "views",
];

fn main() {
    let corpus = Corpus;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let emu = Offline::new();
        let pt = emu.chat.participant_token.expose().to_string();
        let cid = emu.chat.contact_id.clone();
        let post = |path: &str, bearer: &str, body: &str| Call {
            method: "POST",
            path: path.to_string(),
            headers: vec![
                ("x-amz-bearer", bearer.to_string()),
                ("content-type", "application/json".to_string()),
            ],
            body: body.to_string(),
        };
        let admin = |method: &'static str, path: &str, body: &str| Call {
            method,
            path: path.to_string(),
            headers: vec![],
            body: body.to_string(),
        };
        // CreateParticipantConnection first: its ConnectionToken is used below.
        let connect = post(
            "/participant/connection",
            &pt,
            r#"{"Type":["WEBSOCKET","CONNECTION_CREDENTIALS"],"ConnectParticipant":true}"#,
        );
        let (_, _, answer) = send(&emu, &connect).await;
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        let ct = v["ConnectionCredentials"]["ConnectionToken"].as_str().unwrap().to_string();
        let url = v["Websocket"]["Url"].as_str().unwrap().to_string();
        let url_token = url.split("X-Amz-Security-Token=").nth(1).unwrap().to_string();
        let subst = [
            (pt.as_str(), "$PT"),
            (ct.as_str(), "$CT"),
            (cid.as_str(), "$CID"),
            (url_token.as_str(), "$URLTOKEN"),
        ];
        let mut calls = vec![
            connect,
            post("/participant/connection", &pt, r#"{"Type":["CONNECTION_CREDENTIALS"]}"#),
            post("/participant/connection", &pt, r#"{"Type":["WEBSOCKET"]}"#),
            admin(
                "POST",
                &format!("/admin/chats/{cid}/messages"),
                r#"{"Content":"Hello!","DisplayName":"Ana","ParticipantRole":"AGENT"}"#,
            ),
            admin(
                "POST",
                &format!("/admin/chats/{cid}/events"),
                r#"{"ContentType":"application/vnd.amazonaws.connect.event.typing","DisplayName":"Ana","ParticipantRole":"AGENT"}"#,
            ),
            admin(
                "POST",
                &format!("/admin/chats/{cid}/participants"),
                r#"{"DisplayName":"Sam","ParticipantRole":"SUPERVISOR"}"#,
            ),
            post(
                "/participant/message",
                &ct,
                r#"{"ContentType":"text/plain","Content":"hé, \u2603 ok?","ClientToken":"t-1"}"#,
            ),
            post(
                "/participant/message",
                &ct,
                r#"{"ContentType":"text/markdown","Content":"**bold**"}"#,
            ),
            post(
                "/participant/event",
                &ct,
                r#"{"ContentType":"application/vnd.amazonaws.connect.event.typing"}"#,
            ),
            post(
                "/participant/transcript",
                &ct,
                r#"{"ScanDirection":"FORWARD","SortOrder":"ASCENDING","MaxResults":2}"#,
            ),
            post(
                "/participant/transcript",
                &ct,
                r#"{"ScanDirection":"BACKWARD","SortOrder":"DESCENDING","MaxResults":10,"StartPosition":{"MostRecent":10}}"#,
            ),
            post("/participant/transcript", &ct, "{}"),
            post(
                "/participant/start-attachment-upload",
                &ct,
                r#"{"ContentType":"text/plain","AttachmentSizeInBytes":5,"AttachmentName":"a.txt","ClientToken":"u-1"}"#,
            ),
            post(
                "/participant/authentication-url",
                &ct,
                r#"{"SessionId":"s-1","RedirectUri":"https://example.com/cb"}"#,
            ),
            post("/participant/cancel-authentication", &ct, r#"{"SessionId":"s-1"}"#),
            Call {
                method: "GET",
                path: "/participant/views/view-1".into(),
                headers: vec![("x-amz-bearer", ct.clone())],
                body: String::new(),
            },
            Call {
                method: "GET",
                path: format!("/websocket?X-Amz-Security-Token={url_token}"),
                headers: vec![
                    ("connection", "upgrade".into()),
                    ("upgrade", "websocket".into()),
                    ("sec-websocket-version", "13".into()),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".into()),
                ],
                body: String::new(),
            },
            // Errors: no token, a bad token, a bad body, injected faults.
            post("/participant/transcript", "", "{}"),
            post("/participant/transcript", "not-a-token", "{}"),
            post("/participant/message", &ct, r#"{"Content":5}"#),
            post("/participant/message", &ct, r#"{"ContentType":"image/png","Content":"x"}"#),
            admin("POST", "/admin/faults", r#"{"Operation":"GetTranscript","Status":429,"Count":1}"#),
            post("/participant/transcript", &ct, "{}"),
            admin(
                "POST",
                "/admin/faults",
                r#"{"Operation":"SendMessage","Status":500,"Count":1,"DelayMs":20}"#,
            ),
            post("/participant/message", &ct, r#"{"ContentType":"text/plain","Content":"x"}"#),
            admin("DELETE", "/admin/faults", ""),
            admin("POST", "/admin/quirks", r#"{"EndlessNextToken":true}"#),
            admin(
                "POST",
                "/admin/timing",
                r#"{"ConnectWindowSeconds":100,"ConnectionExpirySeconds":3600,"TokenExpirySeconds":86400,"MaxSocketsPerParticipant":5,"SocketQueueFrames":4096}"#,
            ),
            admin("POST", "/admin/sockets/drop", "{}"),
            admin("POST", "/admin/sockets/stall", r#"{"ParticipantId":"p"}"#),
            admin("POST", "/admin/sockets/send", r#"{"Frame":"{\"topic\":\"aws/chat\"}"}"#),
            admin("GET", "/admin/stats", ""),
            admin("GET", &format!("/admin/chats/{cid}/transcript"), ""),
            admin("POST", "/admin/chats", r#"{"ContactId":"c-2","DisplayName":"Bo"}"#),
            admin("POST", &format!("/admin/chats/{cid}/end"), ""),
            post("/participant/transcript", &ct, r#"{"MaxResults":100}"#),
            post("/participant/disconnect", &ct, r#"{"ClientToken":"d-1"}"#),
            post("/participant/message", &ct, r#"{"ContentType":"text/plain","Content":"late"}"#),
        ];
        // An attachment's whole round: start, PUT, complete, get.
        let (_, _, up) = send(&emu, &calls[12]).await;
        let up: serde_json::Value = serde_json::from_slice(&up).unwrap();
        let att = up["AttachmentId"].as_str().unwrap().to_string();
        let put_url = up["UploadMetadata"]["Url"].as_str().unwrap().to_string();
        let put_path = put_url.trim_start_matches("http://emulator.invalid").to_string();
        calls.insert(
            13,
            Call {
                method: "PUT",
                path: put_path,
                headers: vec![("content-type", "text/plain".into())],
                body: "hello".into(),
            },
        );
        calls.insert(
            14,
            post(
                "/participant/complete-attachment-upload",
                &ct,
                &format!(r#"{{"AttachmentIds":["{att}"],"ClientToken":"c-1"}}"#),
            ),
        );
        calls.insert(15, post("/participant/attachment", &ct, &format!(r#"{{"AttachmentId":"{att}"}}"#)));
        let mut n = 0;
        for c in &calls {
            let (status, kind, body) = send(&emu, c).await;
            n += 1;
            corpus.put("emulator_http", &format!("{n:02}"), &http_seed(c, &subst));
            let Some(op) = c.path.strip_prefix("/participant/") else {
                continue;
            };
            let op = op.split('/').next().unwrap();
            let Some(i) = OPS.iter().position(|o| *o == op) else {
                continue;
            };
            if status < 300 {
                let mut seed = vec![i as u8];
                seed.extend_from_slice(&body);
                corpus.put("api_response", &format!("{op}-{n:02}"), &seed);
                if op == "transcript" {
                    // Each Item, as the socket would have carried it.
                    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    for (k, item) in page["Transcript"].as_array().unwrap().iter().enumerate() {
                        let frame = serde_json::json!({
                            "topic": "aws/chat",
                            "contentType": "application/json",
                            "content": item.to_string(),
                        });
                        corpus.put("ws_frame", &format!("chat-{n:02}-{k}"), frame.to_string().as_bytes());
                    }
                }
            } else {
                let mut seed = (status - 400).to_le_bytes().to_vec();
                seed.extend_from_slice(kind.unwrap_or_default().as_bytes());
                seed.push(b'\n');
                seed.extend_from_slice(&body);
                corpus.put("api_error", &format!("{status}-{n:02}"), &seed);
            }
        }
        // The emulator's answers to what a client sends, and what the client sends.
        for (k, frame) in [
            r#"{"topic":"aws/subscribe","content":{"topics":["aws/chat"]}}"#,
            r#"{"topic":"aws/heartbeat"}"#,
            r#"{"topic":"aws/ping"}"#,
            r#"{"topic":"aws/unsubscribe","content":{"topics":["aws/chat"]}}"#,
            r#"{"topic":"aws/subscribe","content":{"topics":["aws/typing"]}}"#,
        ]
        .iter()
        .enumerate()
        {
            corpus.put("emulator_ws", &format!("client-{k}"), frame.as_bytes());
            if let Some(answer) = emu.socket_frame(1, frame) {
                corpus.put("ws_frame", &format!("answer-{k}"), answer.as_bytes());
            }
        }
    });
    // Frames only a real gateway sends.
    corpus.put(
        "ws_frame",
        "gateway-forbidden",
        br#"{"message":"Forbidden","connectionId":"c-1","requestId":"r-1"}"#,
    );
    corpus.put(
        "ws_frame",
        "ping-reply",
        br#"{"topic":"aws/ping","statusCode":200,"statusContent":"OK"}"#,
    );
    // botocore-shaped errors without a header: the body names the type.
    corpus.put(
        "api_error",
        "body-type",
        b"\x1d\x00\n{\"__type\":\"com.amazonaws.connect.participant#ThrottlingException\",\"message\":\"Rate exceeded\"}",
    );
    corpus.put(
        "api_error",
        "body-code",
        b"\x00\x00\n{\"code\":\"ValidationException\",\"Message\":\"1 validation error\"}",
    );
    corpus.put("api_error", "bare-503", b"\x67\x00\n");
    // The configuration: the example file, and the environment layer.
    let example = std::fs::read_to_string("../config/connect-chatd.toml").unwrap();
    corpus.put("config", "example", example.as_bytes());
    corpus.put(
        "config",
        "endpoint-sessions",
        concat!(
            "endpoint = \"http://127.0.0.1:8600\"\n\n[control]\nlisten = \"127.0.0.1:7001\"\ntoken_file = \"secret\"\n\n",
            "[limits.GetTranscript]\nrate = 2\nburst = 5\n\n",
            "[[sessions]]\nname = \"chat-1\"\nparticipant_token_file = \"token\"\nhistory = \"none\"\nreceipts = true\n",
            "labels = { team = \"a\" }\n\n[[sessions]]\nparticipant_token_file = \"token\"\n\n",
            "[[consumers]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/in\"\nsecret_file = \"secret\"\n",
        )
        .as_bytes(),
    );
    corpus.put(
        "config",
        "env",
        concat!(
            "region = \"eu-west-2\"\n%%env\nCONNECT_CHATD_CONTROL__LISTEN=unix:/x.sock\nCONNECT_CHATD_LOG_LEVEL=debug\n",
            "CONNECT_CHATD_LIMITS__GETTRANSCRIPT__BURST=3\nCONNECT_CHATD_JOURNAL__FSYNC=always\n",
            "CONNECT_CHATD_JOURNAL__RETENTION=90m\nCONNECT_CHATD_HEARTBEAT_INTERVAL=1.5\nCONNECT_CHATD_FIPS=true\n",
        )
        .as_bytes(),
    );
    corpus.put(
        "config",
        "env-endpoint",
        b"\n%%env\nCONNECT_CHATD_ENDPOINT=http://localhost:8600\nCONNECT_CHATD_STDOUT=true\nCONNECT_CHATD_HTTP__LISTEN=127.0.0.1:9100\nCONNECT_CHATD_LOG_FORMAT=json\n",
    );
    corpus.put(
        "config",
        "bad",
        b"region = 5\nheartbeat_interval = \"-1s\"\n[nope]\n",
    );
    // The control API's bodies (first byte: route | content type << 2) as the README
    // documents them.
    let bodies: [(u8, &str, &str); 9] = [
        (
            0,
            "",
            r#"{"participant_token":"pt-1","name":"chat-2","history":"none","labels":{"team":"a"},"receipts":true}"#,
        ),
        (0, "", r#"{"participant_token":"pt-1"}"#),
        (4, "", r#"{"participant_token":"  ","history":"some"}"#),
        (
            1,
            "order-42",
            r#"{"content":"Hello","content_type":"text/markdown"}"#,
        ),
        (1, "", r#"{"content":"hi"}"#),
        (
            2,
            "",
            r#"{"content_type":"application/vnd.amazonaws.connect.event.typing"}"#,
        ),
        (
            2,
            "r-1",
            r#"{"content_type":"application/vnd.amazonaws.connect.event.message.read","content":"{\"messageId\":\"m-1\"}"}"#,
        ),
        (
            3,
            "a-1",
            r#"{"path":"/tmp/pic.png","content_type":"image/png","name":"pic.png"}"#,
        ),
        (11, "", r#"{"path":"/tmp/notes.txt"}"#),
    ];
    for (k, (sel, key, body)) in bodies.iter().enumerate() {
        corpus.put(
            "control_body",
            &format!("{k}"),
            format!("{}{key}\n{body}", *sel as char).as_bytes(),
        );
    }
    for (k, seed) in [
        "-\n/v1/sessions/chat-1/items?from=start",
        "-\n/v1/sessions/chat-1/items?after=5c1f0a2e-6c1d-4f1e-9a3b-2d4c6e8f0a1b",
        "chat-1/5c1f0a2e-6c1d-4f1e-9a3b-2d4c6e8f0a1b\n/v1/items",
        "#42\n/v1/sessions/chat-1/items",
        "-\n/v1/items?after=chat-1/%2342",
        "-\n/v1/items?from=now",
        "-\n/v1/sessions/chat-2?disconnect=true",
        "-\n/v1/sessions/chat-1/attachments?name=pic%20one.png",
    ]
    .iter()
    .enumerate()
    {
        corpus.put("sse_resume", &format!("{k}"), seed.as_bytes());
    }
}
