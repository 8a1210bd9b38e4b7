//! Every API response decoder: the first byte picks the operation, the rest is the
//! body of a 2xx answer, decoded as the client decodes it (`decode_response`), then
//! what the session derives from it.
#![no_main]
use connect_chatd::api::client::decode_response;
use connect_chatd::api::model::*;
use connect_chatd::api::Operation;
use connect_chatd::clock::until;
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fn roundtrip<T>(v: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_vec(v).expect("a response serialises");
    let again: T = serde_json::from_slice(&text).expect("a serialised response decodes");
    assert_eq!(&again, v, "a response changed in a round trip");
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else {
        return;
    };
    let op = Operation::ALL[usize::from(op) % Operation::ALL.len()];
    let now = time::OffsetDateTime::now_utc();
    match op {
        Operation::CreateParticipantConnection => {
            if let Ok(r) = decode_response::<CreateParticipantConnectionResponse>(op, body) {
                if let Some(ws) = &r.websocket {
                    let _ = until(now, ws.connection_expiry.0);
                }
                if let Some(c) = &r.connection_credentials {
                    let _ = until(now, c.expiry.0);
                }
                let _ = serde_json::to_vec(&r).expect("serialises");
            }
        }
        Operation::GetTranscript => {
            if let Ok(r) = decode_response::<GetTranscriptResponse>(op, body) {
                for item in &r.transcript {
                    check_item(item);
                }
            }
        }
        Operation::SendMessage => {
            if let Ok(r) = decode_response::<SendMessageResponse>(op, body) {
                roundtrip(&r);
            }
        }
        Operation::SendEvent => {
            if let Ok(r) = decode_response::<SendEventResponse>(op, body) {
                roundtrip(&r);
            }
        }
        Operation::StartAttachmentUpload => {
            if let Ok(r) = decode_response::<StartAttachmentUploadResponse>(op, body) {
                let _ = serde_json::to_vec(&r).expect("serialises");
            }
        }
        Operation::GetAttachment => {
            if let Ok(r) = decode_response::<GetAttachmentResponse>(op, body) {
                let _ = serde_json::to_vec(&r).expect("serialises");
            }
        }
        Operation::GetAuthenticationUrl => {
            if let Ok(r) = decode_response::<GetAuthenticationUrlResponse>(op, body) {
                roundtrip(&r);
            }
        }
        Operation::DescribeView => {
            if let Ok(r) = decode_response::<DescribeViewResponse>(op, body) {
                roundtrip(&r);
            }
        }
        Operation::DisconnectParticipant
        | Operation::CompleteAttachmentUpload
        | Operation::CancelParticipantAuthentication => {
            let _ = decode_response::<EmptyResponse>(op, body);
        }
    }
});
