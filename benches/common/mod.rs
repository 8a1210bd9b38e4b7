//! What both benchmarks measure the same way: the publishing of a burst, and the raw
//! tokio-tungstenite reader that is their baseline (so the baseline is one piece of
//! code, whichever bench reports it).
#![allow(dead_code)]

use connect_chatd::api::model::{ConnectionType, CreateParticipantConnectionRequest, ParticipantRole};
use connect_chatd::api::{ApiClient, Endpoint};
use connect_chatd::emulator::{CreatedChat, Emulator};
use connect_chatd::secret::Secret;
use connect_chatd::socket::frame;
use futures_util::{SinkExt, StreamExt};
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The median (NaN of nothing).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A client of the emulator's API, without retries or limits.
pub fn api(endpoint: &str) -> ApiClient {
    ApiClient::builder(Endpoint::from_url(endpoint).unwrap())
        .build()
        .unwrap()
}

/// A presigned websocket URL for this participant.
pub async fn websocket_url(api: &ApiClient, token: &Secret) -> String {
    let req = CreateParticipantConnectionRequest {
        connection_types: Some(vec![ConnectionType::Websocket]),
        connect_participant: None,
    };
    let resp = api
        .create_participant_connection(token, &req)
        .await
        .expect("a connection");
    resp.websocket.expect("a websocket URL").url.expose().to_string()
}

/// Publishes `n` agent messages as fast as the emulator takes them.
pub async fn publish(emu: &Emulator, chat: &CreatedChat, n: usize) {
    for i in 0..n {
        emu.publish_message(
            &chat.contact_id,
            "Ana",
            ParticipantRole::Agent,
            "Hello, how can I help you today?",
        )
        .unwrap();
        if i % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
}

/// Frames/s of a raw websocket that subscribes and only counts text frames.
pub async fn raw_rate(emu: &Emulator, n: usize) -> f64 {
    let chat = emu.create_chat("Bench");
    let url = websocket_url(&api(&emu.endpoint()), &chat.participant_token).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text(frame::SUBSCRIBE)).await.unwrap();
    ws.next().await.unwrap().unwrap();
    let t = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            if let Some(Ok(Message::Text(_))) = ws.next().await {
                got += 1;
            }
        }
    });
    publish(emu, &chat, n).await;
    reader.await.unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}
