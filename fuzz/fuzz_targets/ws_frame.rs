//! The websocket frame decoder: the outer JSON frame, and a chat frame's `content`, an
//! Item encoded as a JSON string and parsed a second time.
#![no_main]
use connect_chatd::socket::frame::{decode, Inbound};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (tungstenite checks before the decoder sees them).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Ok(Inbound::Chat(item)) => check_item(&item),
        Ok(Inbound::SubscribeAck { success, status }) => assert_eq!(success, status == "success"),
        Ok(_) | Err(_) => {}
    }
});
